"""MAPO's run hooks (step metrics, sessions, success field, checkpoint guard) change verl only in runs that select
``mapo``: each switch of ``mapo_verl.run_hooks`` in a fresh interpreter that imports verl as a TaskRunner does."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from mapo_verl import run_hooks

PROBE = """
import importlib, json, sys
import verl
from omegaconf import OmegaConf
from mapo_verl import run_hooks

def run(config):  # as TaskRunnerV1.run(config): verl's trainer module imported with the run's config in scope
    return importlib.import_module("verl.trainer.ppo.v1.trainer_base")

estimator, via = sys.argv[1], sys.argv[2]
config = OmegaConf.create({"algorithm": {"adv_estimator": estimator}})
if via == "callback":  # verl's per-run extension point: trainer.checkpoint_callback_class
    importlib.import_module("verl.trainer.ppo.v1.trainer_base")
    run_hooks.MapoRunHooks(config=config)
else:
    run(config)
from verl.trainer.ppo.v1.trainer_base import PPOTrainer
from verl.utils.checkpoint import checkpoint_manager
print(json.dumps({"installed": run_hooks.installed(), "step": hasattr(PPOTrainer.step, "__wrapped__"),
                  "reader": hasattr(checkpoint_manager.find_latest_ckpt_path, "__wrapped__")}))
"""


def _probe(estimator: str, via: str, switch: str | None) -> dict:
    env = {k: v for k, v in os.environ.items() if k != run_hooks.ENV}
    if switch is not None:
        env[run_hooks.ENV] = switch
    proc = subprocess.run(
        [sys.executable, "-c", PROBE, estimator, via], capture_output=True, text=True, timeout=300, env=env
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    return json.loads(proc.stdout.strip().splitlines()[-1])


@pytest.mark.slow
@pytest.mark.parametrize(
    ("estimator", "via", "switch", "on"),
    [
        ("mapo", "run", None, True),  # auto: the run's config selects mapo
        ("grpo", "run", None, False),  # auto: any other estimator keeps verl's own functions
        ("mapo", "callback", None, True),  # trainer.checkpoint_callback_class=mapo_verl.run_hooks.MapoRunHooks
        ("grpo", "run", "1", True),  # MAPO_RUN_HOOKS=1: on in every process
        ("mapo", "run", "0", False),  # MAPO_RUN_HOOKS=0: never (the estimator still trains)
    ],
)
def test_hooks_follow_the_run(estimator, via, switch, on):
    assert _probe(estimator, via, switch) == {"installed": on, "step": on, "reader": on}


def test_mode_names_the_variable_on_a_bad_value(monkeypatch):
    monkeypatch.setenv(run_hooks.ENV, "maybe")
    with pytest.raises(ValueError, match=r"MAPO_RUN_HOOKS='maybe': expected auto, 1 or 0"):
        run_hooks.mode()
    monkeypatch.setenv(run_hooks.ENV, "off")
    assert run_hooks.mode() == "0"
