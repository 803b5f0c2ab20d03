"""A verl checkpoint callback for the e2e tests: in the TaskRunner, where verl builds it with the run's config before
reading a checkpoint or taking a step, it records whether verl's trainer step and checkpoint reader are verl's own
functions, read from verl's modules themselves (source file, no wrapper), into ``$MAPO_HOOK_PROBE_OUT`` as JSON.

Selected with ``trainer.checkpoint_callback_class=mapo_hook_probe.HookProbe`` and this folder on ``PYTHONPATH``.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

from verl.trainer.ppo.checkpoint_callback import CheckpointCallback


def _verls_own(fn, source_file: str) -> bool:
    """``fn`` is the function verl defines in ``source_file``: not a wrapper around it."""
    return not hasattr(fn, "__wrapped__") and Path(fn.__code__.co_filename).name == source_file


class HookProbe(CheckpointCallback):
    def __init__(self, config=None):
        super().__init__(config=config)
        from verl.trainer.ppo import ray_trainer
        from verl.trainer.ppo.v1 import trainer_base
        from verl.utils.checkpoint import checkpoint_manager

        found = {
            "adv_estimator": str(config.algorithm.adv_estimator),
            "step_is_verls": _verls_own(trainer_base.PPOTrainer.step, "trainer_base.py"),
            "ckpt_reader_is_verls": all(
                _verls_own(module.find_latest_ckpt_path, "checkpoint_manager.py")
                for module in (checkpoint_manager, trainer_base, ray_trainer)
            ),
        }
        Path(os.environ["MAPO_HOOK_PROBE_OUT"]).write_text(json.dumps(found))
