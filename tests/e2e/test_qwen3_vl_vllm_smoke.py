"""``python -m mapo_verl smoke --rollout vllm --config mapo_geo3k_qwen3_vl_8b``: verl's vLLM rollout (vLLM's CPU build,
``.venv-vllm``) serves the tiny Qwen3-VL with the config's multimodal limits, and MAPO trains two steps.

The server starts on dummy weights and vLLM renders each prompt's image tokens with its own Qwen3-VL processing, so
rollout log-probs that match the actor's at every step show both the weight sync and that vLLM saw the image tokens
the actor scores. One vLLM trainer job (about 3.5 minutes on 2 cores; docs/cpu-smoke.md, "Qwen3-VL").
"""

from __future__ import annotations

import math

import pytest

pytestmark = [pytest.mark.e2e, pytest.mark.slow, pytest.mark.ray]

CONFIG = "mapo_geo3k_qwen3_vl_8b"
#: as tests/e2e/test_vllm_smoke.py: the sync check needs an update that moves the policy
LR = "actor_rollout_ref.actor.optim.lr=1e-3"
MAX_ROLLOUT_PROBS_DIFF = 0.05
MAPO_KEYS = ("mapo/lambda_mean", "mapo/p_mean", "mapo/num_groups", "mapo/groups_p0_frac", "mapo/groups_p1_frac")


@pytest.fixture(scope="module")
def smoke_qwen3_vl_vllm(tmp_path_factory, model_cache, vllm_python, smoke_runner, memory_claim):
    out = tmp_path_factory.mktemp("smoke_qwen3_vl_vllm") / "run"
    memory = memory_claim("vllm", f"smoke --rollout vllm --config {CONFIG}")
    args = ("--rollout", "vllm", "--config", CONFIG, "--steps", "2", "trainer.save_freq=-1", LR)
    return smoke_runner(out, model_cache, *args, python=vllm_python, memory=memory)


def test_verls_vllm_server_served_qwen3_vl_with_the_configs_limits(smoke_qwen3_vl_vllm):
    command = (smoke_qwen3_vl_vllm.out / "command.txt").read_text()
    assert "actor_rollout_ref.rollout.name=vllm" in command
    assert "tiny Qwen3-VL" in smoke_qwen3_vl_vllm.console
    log = (smoke_qwen3_vl_vllm.out / "main_ppo.log").read_text()
    assert "vLLMHttpServer" in log, "verl's vLLM server actor did not start"
    assert "Qwen3VLForConditionalGeneration" in log
    # presets/qwen3_vl.yaml's engine_kwargs reach vLLM's server arguments
    assert "'--limit_mm_per_prompt',\n" in log and '\'{"image": 1, "video": 0}\'' in log


def test_two_steps_log_mapo_metrics_and_the_rollout_matches_the_actor(smoke_qwen3_vl_vllm):
    steps = smoke_qwen3_vl_vllm.training_steps()
    assert sorted(steps) == [1, 2]
    for step, data in steps.items():
        for key in (*MAPO_KEYS, "actor/pg_loss", "actor/grad_norm"):
            assert key in data and math.isfinite(data[key]), (step, key, data.get(key))
        assert data["training/rollout_probs_diff_max"] <= MAX_ROLLOUT_PROBS_DIFF, (step, data)
    assert steps[2]["actor/kl_loss"] > 0, "step 1's update did not move the policy"
