"""``python -m mapo_verl smoke --config mapo_geo3k_qwen3_vl_8b``: verl's real trainer trains the shipped Qwen3-VL
config, shrunk to the tiny Qwen3-VL, for two steps with the ``hf`` rollout (validation, checkpoint at step 2).

One trainer job (about 2 minutes on 2 cores with the model built; docs/cpu-smoke.md, "Qwen3-VL"), the session
fixture ``smoke_qwen3_vl`` of tests/e2e/conftest.py, which also logs to the dashboards that test_loggers.py reads.
The every-config test leaves this config to this file.
"""

from __future__ import annotations

import json
import math
import shlex
from pathlib import Path

import pytest

pytestmark = [pytest.mark.e2e, pytest.mark.slow, pytest.mark.ray]

#: the rollout's and the actor's probabilities of the sampled tokens differ by at most this much when both see the
#: same prompt tokens, image tokens included (measured about 0.01 with the tiny Qwen3-VL)
MAX_ROLLOUT_PROBS_DIFF = 0.05
MAPO_KEYS = ("mapo/lambda_mean", "mapo/p_mean", "mapo/num_groups", "mapo/groups_p0_frac", "mapo/groups_p1_frac")


def _model_path(run) -> Path:
    args = shlex.split((run.out / "command.txt").read_text())
    return Path(next(a.split("=", 1)[1] for a in args if a.startswith("actor_rollout_ref.model.path=")))


def test_the_smoke_trains_the_tiny_qwen3_vl(smoke_qwen3_vl):
    assert "tiny Qwen3-VL (built and warm-started once, then cached)" in smoke_qwen3_vl.console
    model = _model_path(smoke_qwen3_vl)
    assert json.loads((model / "config.json").read_text())["model_type"] == "qwen3_vl"
    log = (smoke_qwen3_vl.out / "main_ppo.log").read_text()
    assert "Qwen3VLForConditionalGeneration contains" in log, "verl's actor did not build the Qwen3-VL class"
    assert "Failed to create processor" not in log


def test_two_steps_log_mapo_metrics(smoke_qwen3_vl):
    steps = smoke_qwen3_vl.training_steps()
    assert sorted(steps) == [1, 2]
    for step, data in steps.items():
        for key in (*MAPO_KEYS, "actor/pg_loss", "actor/grad_norm", "critic/score/mean"):
            assert key in data and math.isfinite(data[key]), (step, key, data.get(key))
        assert data["mapo/num_groups"] == 4


def test_rollout_and_actor_agree_on_every_step(smoke_qwen3_vl):
    """The hf rollout generated from the prompt tokens the actor scores (the image tokens among them)."""
    for step, data in smoke_qwen3_vl.training_steps().items():
        assert data["training/rollout_probs_diff_max"] <= MAX_ROLLOUT_PROBS_DIFF, (step, data)


def test_validation_and_the_checkpoint(smoke_qwen3_vl):
    validated = [r for _, r in smoke_qwen3_vl.records if any(k.startswith("val-core/") for k in r)]
    assert len(validated) == 2, "validation before training and after step 2"
    assert (smoke_qwen3_vl.out / "checkpoints" / "global_step_2" / "actor").is_dir()
