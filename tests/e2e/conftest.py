"""Fixtures of the CPU-backend tests: the tiny model and the smoke runs, built once per session and shared."""

from __future__ import annotations

import contextlib
import os
import re
import subprocess
import sys
from collections.abc import Callable
from contextlib import AbstractContextManager
from dataclasses import dataclass
from pathlib import Path

import pytest

from mapo_verl.verl_log import read_records, training_steps

REPO = Path(__file__).resolve().parents[2]
SMOKE_TIMEOUT_S = 900


@dataclass
class SmokeRun:
    """One ``python -m mapo_verl smoke`` subprocess: its folder, console output and verl's file-logger records."""

    out: Path
    returncode: int
    console: str
    records: list[tuple[int, dict]]

    def training_steps(self) -> dict[int, dict]:
        """step -> metrics of the training steps (records with ``actor/pg_loss``)."""
        return training_steps(self.records)


def run_smoke(
    out: Path,
    cache_dir: Path,
    *args: str,
    python: str = sys.executable,
    extra_env: dict[str, str] | None = None,
    expect_success: bool = True,
    memory: AbstractContextManager | None = None,
) -> SmokeRun:
    """Run the smoke command as a user would, inside ``memory`` (its claim on the run's memory budget,
    tests/conftest.py); the JSONL is read before any later run replaces it."""
    env = {**os.environ, "RAY_AUTH_MODE": "disabled", **(extra_env or {})}
    env.pop("RAY_ADDRESS", None)
    cmd = [python, "-m", "mapo_verl", "smoke", "--out", str(out), "--cache-dir", str(cache_dir), *args]
    with memory or contextlib.nullcontext():
        proc = subprocess.run(
            cmd, cwd=REPO, env=env, capture_output=True, text=True, timeout=SMOKE_TIMEOUT_S, check=False
        )
    records = read_records(out / "metrics.jsonl")
    console = proc.stdout + proc.stderr
    if proc.returncode != 0 and expect_success:
        log = out / "main_ppo.log"
        tail = "\n".join(log.read_text().splitlines()[-60:]) if log.is_file() else ""
        pytest.fail(f"smoke run failed ({proc.returncode}):\n{console[-4000:]}\n--- main_ppo.log tail ---\n{tail}")
    return SmokeRun(out=out, returncode=proc.returncode, console=console, records=records)


#: verl's own per-run extension point, set to a probe that records whether verl's functions are its own
#: (tests/e2e/trainer_extras/mapo_hook_probe.py)
HOOK_PROBE = ("trainer.checkpoint_callback_class=mapo_hook_probe.HookProbe",)


def hook_probe_env(out: Path, name: str = "mapo") -> dict[str, str]:
    """The environment that puts the probe on the trainer's path and its findings in ``OUT/hook_probe_NAME.json``."""
    path = [str(Path(__file__).parent / "trainer_extras"), *filter(None, [os.environ.get("PYTHONPATH")])]
    return {"PYTHONPATH": os.pathsep.join(path), "MAPO_HOOK_PROBE_OUT": str(out / f"hook_probe_{name}.json")}


@pytest.fixture(scope="session")
def model_cache(test_run_dir: Path) -> Path:
    """The tiny models' cache of this run, shared by both pytest-xdist workers (a model is built in a temporary
    folder and renamed, so two builds at once are safe)."""
    cache = test_run_dir / "models"
    cache.mkdir(exist_ok=True)
    return cache


@pytest.fixture(scope="session")
def smoke_runner() -> Callable[..., SmokeRun]:
    """:func:`run_smoke`, for test files (which cannot import this conftest by name)."""
    return run_smoke


@pytest.fixture(scope="session")
def smoke_mapo(tmp_path_factory, model_cache, memory_claim) -> SmokeRun:
    """MAPO from scratch: validation, 2 training steps, a checkpoint at step 2 (verl's layout)."""
    out = tmp_path_factory.mktemp("smoke") / "run"
    claim = memory_claim("hf", "smoke (mapo)")
    return run_smoke(out, model_cache, "--steps", "2", *HOOK_PROBE, extra_env=hook_probe_env(out), memory=claim)


@pytest.fixture(scope="session")
def smoke_resumed_grpo(smoke_mapo, model_cache, memory_claim) -> SmokeRun:
    """The same folder, 3 steps, ``trainer.resume_mode=auto`` and the GRPO estimator: verl resumes from step 2 and
    trains step 3 with the baseline estimator (one job for both checks keeps the e2e tier near 4 minutes)."""
    return run_smoke(
        smoke_mapo.out,
        model_cache,
        "--steps",
        "3",
        "--estimator",
        "grpo",
        "trainer.resume_mode=auto",
        "trainer.val_before_train=False",
        *HOOK_PROBE,
        extra_env=hook_probe_env(smoke_mapo.out, "grpo"),
        memory=memory_claim("hf", "smoke (grpo, resumed)"),
    )


@pytest.fixture(scope="session")
def tiny_model_dir(model_cache) -> Path:
    """The tiny model without warm start (random weights), for the processor tests."""
    from mapo_verl_cpu.fixtures.tiny_model import build_tiny_model

    return build_tiny_model(model_cache)


@pytest.fixture(scope="session")
def sample_images() -> Callable[[], list]:
    """Images of several sizes: a real Geometry3K diagram where ../shared is present, plus synthetic ones."""

    def make() -> list:
        import numpy as np
        from PIL import Image

        rng = np.random.default_rng(0)
        images = [
            Image.fromarray(rng.integers(0, 256, (h, w, 3), dtype=np.uint8))
            for h, w in ((100, 120), (56, 300), (251, 250))
        ]
        from mapo_verl_cpu.checkout import realdata_dir

        real = realdata_dir() / "geo3k" / "11" / "img_diagram.png"
        if real.is_file():
            images.append(Image.open(real).convert("RGB"))
        return images

    return make


# ------------------------------------------------------------------------------------- vLLM rollout
VLLM_PYTHON = REPO / ".venv-vllm" / "bin" / "python"
#: a learning rate that moves the tiny policy within one step (actor/kl_loss > 0 at step 2)
VLLM_SMOKE_LR = "actor_rollout_ref.actor.optim.lr=1e-3"
#: a sitecustomize (on PYTHONPATH, so in every process: trainer, Ray workers, vLLM's engine core) that breaks verl's
#: weight sync into vLLM in two ways, one after the other. Until verl's file logger has a training step, the sync
#: does nothing: the server keeps its dummy weights, the negative control of the sync assertions. Once a step is
#: logged, the sync never returns: the trainer then waits silently, as verl's did after a failed sync.
BROKEN_SYNC_SITECUSTOMIZE = """
import importlib.abc, os, sys, time

_TARGET = "verl.workers.rollout.vllm_rollout.utils"


def _a_step_was_logged():
    try:
        with open(os.environ["VERL_FILE_LOGGER_PATH"], "rb") as log:
            return b'"actor/pg_loss"' in log.read()
    except (KeyError, OSError):
        return False


def _broken_sync(self, *args, **kwargs):
    if _a_step_was_logged():
        print("negative control: verl's weight sync into vLLM is hung", file=sys.stderr, flush=True)
        time.sleep(3600)


class _BrokenSync(importlib.abc.MetaPathFinder):
    def find_spec(self, fullname, path, target=None):
        if fullname != _TARGET:
            return None
        for finder in sys.meta_path:
            if finder is self or not hasattr(finder, "find_spec"):
                continue
            spec = finder.find_spec(fullname, path, target)
            if spec is not None:
                run = spec.loader.exec_module

                def exec_module(module, _run=run):
                    _run(module)
                    module.vLLMColocateWorkerExtension._update_weights = _broken_sync
                    print("negative control: verl's weight sync into vLLM is off", file=sys.stderr, flush=True)

                spec.loader.exec_module = exec_module
                return spec
        return None


sys.meta_path.insert(0, _BrokenSync())
"""


@pytest.fixture(scope="session")
def vllm_python() -> str:
    """``.venv-vllm``'s interpreter (``make venv-vllm``; ``make test`` builds it first)."""
    if not VLLM_PYTHON.is_file():
        pytest.skip(f"{VLLM_PYTHON} is absent: build it with `make venv-vllm` (make test does)")
    return str(VLLM_PYTHON)


@pytest.fixture(scope="session")
def smoke_vllm(tmp_path_factory, model_cache, vllm_python, memory_claim) -> SmokeRun:
    """MAPO with verl's vLLM rollout (server on dummy weights): validation, 2 steps at lr 1e-3, checkpoint."""
    out = tmp_path_factory.mktemp("smoke_vllm") / "run"
    memory = memory_claim("vllm", "smoke --rollout vllm")
    args = ("--rollout", "vllm", "--steps", "2", VLLM_SMOKE_LR)
    return run_smoke(out, model_cache, *args, python=vllm_python, memory=memory)


@pytest.fixture(scope="session")
def smoke_vllm_resumed(smoke_vllm, model_cache, vllm_python, memory_claim) -> SmokeRun:
    """The same folder with ``trainer.resume_mode=auto`` and 3 steps: verl resumes from step 2 and trains step 3."""
    return run_smoke(
        smoke_vllm.out,
        model_cache,
        "--rollout",
        "vllm",
        "--steps",
        "3",
        VLLM_SMOKE_LR,
        "trainer.resume_mode=auto",
        "trainer.val_before_train=False",
        python=vllm_python,
        memory=memory_claim("vllm", "smoke --rollout vllm (resumed)"),
    )


#: the broken-sync run's time limit: past its first logged step (about 100 s on quiet cores; up to 200 s measured
#: when another pytest worker's job shared the cores, 123 s in CI at ebdabe2 beside the every-config jobs), and the
#: only way it ends: every second above that is a CI worker waiting
BROKEN_SYNC_TIMEOUT_S = 300


def _site_with(tmp_path_factory, name: str, source: str) -> str:
    """PYTHONPATH with a folder holding ``sitecustomize.py`` = ``source`` first."""
    site = tmp_path_factory.mktemp(name)
    (site / "sitecustomize.py").write_text(source)
    return os.pathsep.join(p for p in (str(site), os.environ.get("PYTHONPATH", "")) if p)


@pytest.fixture(scope="session")
def smoke_vllm_broken_sync(tmp_path_factory, model_cache, vllm_python, memory_claim) -> SmokeRun:
    """2 steps with verl's weight sync into vLLM broken (:data:`BROKEN_SYNC_SITECUSTOMIZE`): step 1 trains on the
    server's dummy weights and is logged, then the sync after step 2's update never returns, and the smoke's
    ``--timeout`` must end the whole tree."""
    out = tmp_path_factory.mktemp("smoke_vllm_broken_sync") / "run"
    return run_smoke(
        out,
        model_cache,
        "--rollout",
        "vllm",
        "--steps",
        "2",
        "--timeout",
        str(BROKEN_SYNC_TIMEOUT_S),
        "trainer.val_before_train=False",
        "trainer.save_freq=-1",
        "trainer.test_freq=-1",
        python=vllm_python,
        extra_env={"PYTHONPATH": _site_with(tmp_path_factory, "broken_sync_site", BROKEN_SYNC_SITECUSTOMIZE)},
        expect_success=False,
        memory=memory_claim("vllm", "smoke --rollout vllm (sync broken)"),
    )


#: the Qwen3-VL config its smoke trains (2 steps, validation, a checkpoint; tests/e2e/test_qwen3_vl_smoke.py)
QWEN3_VL_CONFIG = "mapo_geo3k_qwen3_vl_8b"
#: every dashboard backend at once beside verl's console and file loggers (tests/e2e/test_loggers.py reads them back)
DASHBOARD_LOGGERS = "trainer.logger=[console,file,tensorboard,wandb,mlflow]"


def dashboard_env(out: Path) -> dict[str, str]:
    """Where each dashboard backend writes, everything inside the run's folder, and W&B offline: nothing is sent.
    MLflow's store is SQLite (MLflow 3 refuses a folder store unless told to)."""
    wandb_dir = out / "wandb_files"
    return {
        "TENSORBOARD_DIR": str(out / "tensorboard"),
        "WANDB_MODE": "offline",
        "WANDB_SILENT": "true",
        "WANDB_DIR": str(wandb_dir),
        "WANDB_CACHE_DIR": str(wandb_dir / "cache"),
        "WANDB_CONFIG_DIR": str(wandb_dir / "config"),
        "WANDB_DATA_DIR": str(wandb_dir / "data"),
        "MLFLOW_TRACKING_URI": f"sqlite:///{out / 'mlflow.db'}",
    }


@pytest.fixture(scope="session")
def smoke_qwen3_vl(tmp_path_factory, model_cache, memory_claim) -> SmokeRun:
    """``smoke --config mapo_geo3k_qwen3_vl_8b``: the tiny Qwen3-VL, 2 steps, validation before and after, a
    checkpoint at step 2, logged to TensorBoard, W&B (offline) and MLflow as well: one trainer job serves the
    Qwen3-VL smoke and the dashboards' tests (CI's time)."""
    out = tmp_path_factory.mktemp("smoke_qwen3_vl") / "run"
    memory = memory_claim("hf", f"smoke --config {QWEN3_VL_CONFIG} (tensorboard + wandb + mlflow)")
    args = ("--config", QWEN3_VL_CONFIG, "--steps", "2", DASHBOARD_LOGGERS)
    return run_smoke(out, model_cache, *args, extra_env=dashboard_env(out), memory=memory)


# ------------------------------------------------------------------------------- the README's `make smoke` sample
_PATH = re.compile(r"(?<![\w/])(/[\w.@+-]+)+/?")
_DATA_SOURCE = re.compile(r" \(from .*\)$")
_NUMBER = re.compile(r"[-+]?\d+(\.\d+)?(e[-+]?\d+)?")


def shape(line: str) -> str:
    """A line with paths and numbers masked (they differ between runs and machines); the lines of a step's
    ``mapo/*`` metrics become one marker (a step with no success has no ``adv_success_mean``, so their count varies).
    """
    if line.lstrip().startswith("mapo/"):
        return "MAPO-METRICS"
    if line.startswith("[smoke] data: "):  # the real Geometry3K records of ../shared, or generated diagrams without it
        return _DATA_SOURCE.sub(" (from SOURCE)", _PATH.sub("PATH", line.rstrip()))
    return _NUMBER.sub("N", _PATH.sub("PATH", line.rstrip()))


def shapes(lines: list[str]) -> list[str]:
    out: list[str] = []
    for line in lines:
        if line.strip() and not (shape(line) == "MAPO-METRICS" and out and out[-1] == "MAPO-METRICS"):
            out.append(shape(line))
    return out


def readme_sample() -> list[str]:
    text = (REPO / "README.md").read_text()
    block = re.search(r"^\$ make smoke\n(.*?)^```", text, re.MULTILINE | re.DOTALL)
    assert block, "README.md no longer shows `$ make smoke` followed by its output"
    return block.group(1).splitlines()


def own_lines(lines: list[str]) -> list[str]:
    """The smoke command's own lines: its [smoke] progress and the indented summary (not make's echo of the
    command, nor libraries' warnings on stderr)."""
    return [line for line in lines if line.startswith(("[smoke]", "  "))]


@pytest.fixture(scope="session")
def readme_smoke_sample() -> Callable[[str], None]:
    """A check that a smoke command's console output matches the README's `make smoke` sample, line by line, up to
    numbers, paths and the data source (real records of ``../shared`` or generated diagrams)."""

    def check(console: str) -> None:
        shown = shapes(own_lines(readme_sample()))
        real = shapes(own_lines(console.splitlines()))
        assert shown == real, "\n".join(["README:", *shown, "real output:", *real])

    return check
