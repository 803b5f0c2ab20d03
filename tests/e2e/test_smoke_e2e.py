"""verl's real trainer (``main_ppo``) trains MAPO on CPU: the smoke run as a subprocess, checked through verl's logs.

Two jobs per session (about 2 minutes each on 2 cores): MAPO from scratch for 2 steps with a checkpoint, then the
same folder resumed (``trainer.resume_mode=auto``) for a third step with the GRPO baseline estimator.
"""

from __future__ import annotations

import json
import math
import re
from pathlib import Path

import pytest
import torch

pytestmark = [pytest.mark.e2e, pytest.mark.slow, pytest.mark.ray]

EVERY_STEP = (
    "mapo/lambda_mean",
    "mapo/p_mean",
    "mapo/groups_p0_frac",
    "mapo/groups_p1_frac",
    "critic/score/mean",
    "actor/pg_loss",
    "actor/grad_norm",
)
PROMPTS_PER_STEP = 4
# Rollout log-probs vs the actor's: ~0.01 here (fp32 server vs bf16 actor); a rollout that drops Qwen2.5-VL's
# 3-D positions gives 0.9 once the model has learned anything.
MAX_ROLLOUT_PROBS_DIFF = 0.1


def _finite(x: float) -> bool:
    return isinstance(x, (int, float)) and math.isfinite(x)


def _model_dir(console: str) -> Path:
    match = re.search(r"\[smoke\] model: (\S+)", console)
    assert match, "the smoke run did not print its model folder"
    return Path(match.group(1))


def _actor_state(step_dir: Path) -> dict[str, torch.Tensor]:
    """The actor's parameters in verl's checkpoint (FSDP shards of world size 1 are the full tensors)."""
    state = torch.load(step_dir / "actor" / "model_world_size_1_rank_0.pt", map_location="cpu", weights_only=False)
    return {k: (v.to_local() if hasattr(v, "to_local") else v).float() for k, v in state.items()}


def test_every_training_step_logs_mapo_and_loss_metrics(smoke_mapo):
    steps = smoke_mapo.training_steps()
    assert sorted(steps) == [1, 2]
    for step, data in steps.items():
        missing = [k for k in EVERY_STEP if k not in data]
        assert not missing, f"step {step}: {missing} not in verl's file-logger record"
        assert all(_finite(data[k]) for k in EVERY_STEP), {k: data[k] for k in EVERY_STEP}
        assert 0.0 <= data["mapo/p_mean"] <= 1.0
        assert 0.0 <= data["mapo/lambda_mean"] <= 1.0
        assert data["mapo/groups_p0_frac"] + data["mapo/groups_p1_frac"] <= 1.0
        assert data["mapo/num_groups"] == PROMPTS_PER_STEP


def test_validation_ran_before_and_after_training(smoke_mapo):
    val_steps = sorted(step for step, data in smoke_mapo.records if any(k.startswith("val-core/") for k in data))
    assert val_steps == [0, 2]


def test_a_step_trains_on_non_zero_advantages(smoke_mapo):
    """The warm-started model earns rewards that vary within groups: advantages, loss and gradient are not zero."""
    trained = [
        data
        for data in smoke_mapo.training_steps().values()
        if data["actor/pg_loss"] != 0.0
        and data["actor/grad_norm"] > 0.0
        and (data["critic/advantages/max"] > 0.0 or data["critic/advantages/min"] < 0.0)
    ]
    assert trained, "no step with non-zero advantages, policy loss and gradient"


def test_rollout_log_probs_agree_with_the_actor(smoke_mapo):
    for step, data in smoke_mapo.training_steps().items():
        # the model is not uniform (a uniform one would hide a position-encoding mismatch) ...
        assert data["actor/entropy"] < 0.5 * math.log(640), f"step {step}: entropy {data['actor/entropy']}"
        # ... and the rollout's log-probs match the actor's recomputation
        assert data["training/rollout_probs_diff_max"] < MAX_ROLLOUT_PROBS_DIFF, (step, data)


def test_checkpoint_in_verls_layout_and_weights_changed(smoke_mapo):
    ckpt = smoke_mapo.out / "checkpoints"
    assert (ckpt / "latest_checkpointed_iteration.txt").read_text().strip() == "2"
    step_dir = ckpt / "global_step_2"
    for name in ("model_world_size_1_rank_0.pt", "optim_world_size_1_rank_0.pt", "extra_state_world_size_1_rank_0.pt"):
        assert (step_dir / "actor" / name).is_file(), name
    assert (step_dir / "data.pt").is_file()

    from transformers import Qwen2_5_VLForConditionalGeneration

    model = Qwen2_5_VLForConditionalGeneration.from_pretrained(str(_model_dir(smoke_mapo.console)))
    initial = model.state_dict()  # the in-memory names verl's checkpoint uses
    trained = _actor_state(step_dir)
    shared = sorted(set(initial) & set(trained))
    assert len(shared) == len(initial), (
        f"checkpoint keys differ from the model's: {sorted(set(initial) ^ set(trained))[:5]}"
    )
    changed = [k for k in shared if not torch.equal(initial[k].float(), trained[k])]
    assert any(k.startswith("lm_head") or ".language_model." in k for k in changed), "actor weights did not change"


def test_summary_on_the_console(smoke_mapo):
    console = smoke_mapo.console
    assert "[smoke] 2 training step(s)" in console
    assert re.search(r"step 1: [\d.]+ s/step", console)
    assert "mapo/lambda_mean=" in console and "mapo/p_mean=" in console
    assert str(smoke_mapo.out / "metrics.jsonl") in console
    assert str(smoke_mapo.out / "checkpoints" / "global_step_2") in console


def test_resumes_from_the_checkpoint_and_grpo_trains(smoke_mapo, smoke_resumed_grpo):
    steps = smoke_resumed_grpo.training_steps()
    assert sorted(steps) == [3], "verl did not resume at step 3 from global_step_2"
    data = steps[3]
    assert data["training/global_step"] == 3
    for key in ("actor/pg_loss", "actor/grad_norm", "critic/score/mean"):
        assert _finite(data[key]), key
    assert data["actor/grad_norm"] > 0.0
    # resumed weights, not the initial model: the actor already differs from the reference
    assert data["actor/kl_loss"] > 0.0
    ckpt = smoke_resumed_grpo.out / "checkpoints"
    assert (ckpt / "latest_checkpointed_iteration.txt").read_text().strip() == "3"
    before, after = _actor_state(ckpt / "global_step_2"), _actor_state(ckpt / "global_step_3")
    assert any(not torch.equal(before[k], after[k]) for k in before), "the GRPO step did not change the weights"


def test_mapo_run_installs_its_hooks_and_a_grpo_run_keeps_verls_functions(smoke_mapo, smoke_resumed_grpo):
    """With the product installed, a GRPO run's trainer step and checkpoint reader are verl's own and it logs no
    ``mapo/*`` key; the MAPO run has both hooks (step metrics, checkpoint guard) and logs ``mapo/*``."""
    mapo = json.loads((smoke_mapo.out / "hook_probe_mapo.json").read_text())
    grpo = json.loads((smoke_mapo.out / "hook_probe_grpo.json").read_text())
    assert mapo == {"adv_estimator": "mapo", "step_is_verls": False, "ckpt_reader_is_verls": False}
    assert grpo == {"adv_estimator": "grpo", "step_is_verls": True, "ckpt_reader_is_verls": True}
    assert all(any(k.startswith("mapo/") for k in d) for d in smoke_mapo.training_steps().values())
    grpo_keys = {k for _, data in smoke_resumed_grpo.records for k in data}
    assert grpo_keys and not {k for k in grpo_keys if k.startswith("mapo/")}
