"""The GPU install recipe (scripts/install_gpu.sh) and the doctor's checks of the stack against verl's pins.

The fast tests check the script against the installed verl's metadata; the slow one runs the GPU recipe in a fresh
venv as far as a CPU machine allows (everything resolved and installed; flash-attn without its CUDA kernels).
"""

from __future__ import annotations

import importlib.metadata as metadata
import json
import re
import subprocess
from pathlib import Path

import pytest
from packaging.requirements import Requirement

from mapo_verl import cli

REPO = Path(__file__).resolve().parents[2]
SCRIPT = REPO / "scripts" / "install_gpu.sh"
VLLM_PYTHON = REPO / ".venv-vllm" / "bin" / "python"


def script_versions() -> dict[str, str]:
    """NAME_VERSION=x assignments of the script -> {name: x}."""
    found = re.findall(r"^([A-Z_]+)_VERSION=(\S+)$", SCRIPT.read_text(), flags=re.M)
    return {name.lower().replace("_", "-"): value for name, value in found}


def verl_extra_pins(extra: str) -> dict[str, str]:
    pins = {}
    for line in metadata.requires("verl") or []:
        req = Requirement(line)
        if req.marker is not None and req.marker.evaluate({"extra": extra}):
            exact = [s.version for s in req.specifier if s.operator == "=="]
            if exact:
                pins[req.name] = exact[0]
    return pins


def test_script_is_valid_bash():
    subprocess.run(["bash", "-n", str(SCRIPT)], check=True)


def test_script_pins_are_verls():
    ours = script_versions()
    assert ours["verl"] == metadata.version("verl")
    vllm_extra = verl_extra_pins("vllm")
    for name in ("torch", "torchvision", "torchaudio", "vllm", "transformers"):
        assert ours[name] == vllm_extra[name], name
    assert ours["flash-attn"] == verl_extra_pins("flash-attn-cu130torch211")["flash-attn"]
    assert cli.verl_stack_pins() == {n: ours[n] for n in ("torch", "transformers", "vllm", "flash-attn")}


def test_torch_is_installed_before_flash_attn_without_build_isolation():
    text = SCRIPT.read_text()
    assert text.index('"${PIP[@]}" "${TORCH_PINS[@]}"\n') < text.index("--no-build-isolation")
    assert re.search(r'--no-build-isolation "flash-attn==\$FLASH_ATTN_VERSION"', text)


def test_the_gpu_extra_leaves_flash_attn_to_the_recipe():
    """`pip install -e '.[gpu]'` must not build flash-attn under build isolation (it imports torch to build)."""
    gpu = [Requirement(r) for r in metadata.requires("mapo-verl") or [] if 'extra == "gpu"' in r]
    assert gpu and all(r.name != "flash-attn" for r in gpu)


def test_doctor_names_each_mismatch_on_a_cpu_dev_install():
    lines = dict((line, ok) for ok, line in cli.stack_checks())
    if metadata.version("torch").split("+")[0] != cli.verl_stack_pins()["torch"]:
        assert any(not ok and line.startswith("torch ") and "verl's pin torch==" in line for line, ok in lines.items())
    try:
        metadata.version("vllm")
    except metadata.PackageNotFoundError:
        assert any(not ok and line.startswith("vllm is not installed") for line, ok in lines.items())


@pytest.mark.slow
def test_doctor_versions_pass_in_the_vllm_cpu_venv():
    if not VLLM_PYTHON.is_file():
        pytest.skip(f"{VLLM_PYTHON} is absent: build it with `make venv-vllm` (make test does)")
    proc = subprocess.run(
        [str(VLLM_PYTHON), "-m", "mapo_verl", "doctor", "--versions"], capture_output=True, text=True, timeout=300
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "vllm 0.24.0 matches verl's pin" in proc.stdout
    assert "vLLM is its CPU build (vllm-cpu 0.24.0)" in proc.stdout


@pytest.mark.slow
def test_the_gpu_recipe_installs_in_a_fresh_venv(gpu_recipe_install):
    """The README's GPU install, run for real except for compiling flash-attn's CUDA kernels (started in the
    background when the session's tests were collected, tests/install/conftest.py); then `doctor` passes every pin
    and fails only where a GPU is needed (no CUDA device, no flash-attn kernels)."""
    code, output = gpu_recipe_install.wait()
    assert code == 0, output[-6000:]
    venv = gpu_recipe_install.venv
    doctor = subprocess.run(
        [str(venv / "bin" / "python"), "-m", "mapo_verl", "doctor", "--versions"],
        capture_output=True,
        text=True,
        timeout=300,
    )
    out = doctor.stdout
    for name, version in cli.verl_stack_pins().items():
        assert f"[ok ] {name} {version} matches verl's pin" in out, (name, out)
    fails = [line for line in out.splitlines() if line.startswith("[FAIL]")]
    assert len(fails) == 2, out
    assert fails[0].startswith("[FAIL] CUDA: no GPU visible (torch is built for CUDA")
    assert fails[1].startswith("[FAIL] flash-attn's CUDA kernels (flash_attn_2_cuda) do not load")
    # What a GPU node installs is the product alone: no CPU harness (its backend, tiny models, runners, the local
    # Slurm), and verl loads one plug-in there, `mapo`.
    probe = """
import importlib.metadata as m, importlib.util as u, json, pathlib, mapo_verl
print(json.dumps({
    "plugins": sorted(e.name for e in m.entry_points(group="verl.plugins")),
    "commands": sorted(e.name for e in m.entry_points(group="mapo_verl.commands")),
    "harness": u.find_spec("mapo_verl_cpu") is not None,
    "modules": sorted(p.name for p in pathlib.Path(mapo_verl.__file__).parent.rglob("*.py")),
}))
"""
    found = subprocess.run(
        [str(venv / "bin" / "python"), "-c", probe], capture_output=True, text=True, timeout=300, cwd=venv
    )
    assert found.returncode == 0, found.stderr[-3000:]
    installed = json.loads(found.stdout.strip().splitlines()[-1])
    assert installed["plugins"] == ["mapo"], installed
    assert installed["commands"] == [] and installed["harness"] is False, installed
    harness_only = {"tiny_model.py", "hf_rollout.py", "platform.py", "slurm_cluster.py", "smoke.py", "compare.py"}
    assert not harness_only & set(installed["modules"]), installed["modules"]
    smoke = subprocess.run(
        [str(venv / "bin" / "python"), "-m", "mapo_verl", "smoke"], capture_output=True, text=True, timeout=300
    )
    assert smoke.returncode == 2 and "pip install -e cpu/" in smoke.stderr, smoke.stderr
