"""The rollout backends a CPU run can use, one entry each: overrides, environment, interpreter, progress marker.

To add a backend, add a :class:`Rollout` to :data:`ROLLOUTS` (and, when it needs verl to learn a new engine, a
module under :mod:`mapo_verl.runs.cpu_backend`). ``python -m mapo_verl smoke --rollout NAME`` then uses it.
"""

from __future__ import annotations

import sys
from collections.abc import Callable
from dataclasses import dataclass, field


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
    summary="transformers generation in a Ray actor (mapo_verl.runs.cpu_backend.hf_rollout)",
    overrides=("actor_rollout_ref.rollout.name=hf",),
    ready_marker=("LLMServerManager: ['hf://", "workers and the hf rollout server are up"),
)

ROLLOUTS: dict[str, Rollout] = {HF.name: HF}
