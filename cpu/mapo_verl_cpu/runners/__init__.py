"""Runners: each takes a :class:`~mapo_verl_cpu.runners.spec.RunSpec` to its end through one launcher.

Every runner module has the same entry point, ``run(spec, placement, timeout, report) -> Outcome``
(:class:`mapo_verl.supervise.Outcome`; ``Outcome.job`` names the launcher's job where there is one), and raises a
:class:`RunnerError` subclass when the launcher refuses the run before it starts. :func:`run` picks one by name.

===============  ===================================================================================
runner           how
===============  ===================================================================================
``local``        ``main_ppo`` as a supervised subprocess here, with a private Ray instance
``slurm``        ``sbatch`` of the shipped ``scripts/slurm_train.sbatch``, polled to its end
``ray``          ``scripts/ray_cluster.sh submit`` to a running Ray cluster, its logs followed
===============  ===================================================================================
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from dataclasses import dataclass

from mapo_verl.supervise import Outcome
from mapo_verl_cpu.runners.spec import RunSpec

#: runner name -> its module
RUNNERS = {
    "local": "mapo_verl_cpu.runners.local",
    "slurm": "mapo_verl_cpu.runners.slurm",
    "ray": "mapo_verl_cpu.runners.ray_job",
}


class RunnerError(RuntimeError):
    """A launcher refused the run before it started (no cluster, a request that cannot fit, a failed submit)."""


@dataclass(frozen=True)
class Placement:
    """Where a run goes: nodes, and per node the GPUs and CPUs a scheduler is asked for (local: one node)."""

    nodes: int = 1
    gpus_per_node: int = 1
    cpus_per_node: int = 8


def run(
    runner: str, spec: RunSpec, placement: Placement, timeout: float | None, report: Callable[[str], None]
) -> Outcome:
    """Run ``spec`` with the runner named ``runner`` (a key of :data:`RUNNERS`)."""
    if runner not in RUNNERS:
        raise RunnerError(f"unknown runner {runner!r}; known: {', '.join(RUNNERS)}")
    return importlib.import_module(RUNNERS[runner]).run(spec, placement, timeout, report)
