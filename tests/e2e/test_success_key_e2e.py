"""MAPO with a shaped reward through verl's real trainer on CPU: verl's ``dapo`` reward manager with its overlong
penalty (a response length that triggers it) and ``algorithm.mapo.success_key=acc``. p comes from the reward's
``acc`` field (fetched from TransferQueue's reward_extra_info by the V1 trainer hook), not from the penalised score."""

from __future__ import annotations

import json
from collections import defaultdict

import pytest

from mapo_verl.data_sources import BY_NAME
from reward_fns import router

pytestmark = [pytest.mark.e2e, pytest.mark.slow, pytest.mark.ray]

#: max_resp_len 48 (the smoke's data.max_response_length), a buffer of 40: every response longer than 8 tokens is
#: penalised, by up to 0.5
SHAPED = (
    "reward.reward_manager.name=dapo",
    "++reward.reward_kwargs.overlong_buffer_cfg.enable=true",
    "++reward.reward_kwargs.overlong_buffer_cfg.len=40",
    "++reward.reward_kwargs.overlong_buffer_cfg.penalty_factor=0.5",
    "++reward.reward_kwargs.overlong_buffer_cfg.log=false",
    "++reward.reward_kwargs.max_resp_len=48",
    "algorithm.mapo.success_key=acc",
    "algorithm.mapo.reward_min=-1",
    "trainer.val_before_train=False",
)


@pytest.fixture(scope="module")
def shaped_run(tmp_path_factory, model_cache, memory_claim, smoke_runner):
    out = tmp_path_factory.mktemp("shaped") / "run"
    args = ["--steps", "1", *SHAPED, f"trainer.rollout_data_dir={out / 'rollouts'}"]
    return smoke_runner(out, model_cache, *args, memory=memory_claim("hf", "smoke (mapo, dapo overlong, acc)"))


def test_p_comes_from_acc_while_the_advantage_sees_the_penalised_score(shaped_run):
    steps = shaped_run.training_steps()
    assert sorted(steps) == [1]
    logged = steps[1]
    dump = [json.loads(line) for line in (shaped_run.out / "rollouts" / "1.jsonl").read_text().splitlines()]
    assert dump, "no rollouts dumped"
    source = BY_NAME["geo3k"].data_source
    by_prompt: dict[str, list[float]] = defaultdict(list)
    penalised = 0
    for row in dump:
        scored = router.compute_score(source, row["output"], row["gts"])  # the reward the dapo manager called
        by_prompt[row["uid"].rsplit("_", 2)[0]].append(scored["acc"])
        penalised += row["score"] < scored["score"] - 1e-6
    assert penalised > 0, "the overlong penalty never applied: the test shows nothing"
    p_from_acc = sum(sum(v) / len(v) for v in by_prompt.values()) / len(by_prompt)
    assert logged["mapo/num_groups"] == len(by_prompt)
    assert logged["mapo/p_mean"] == pytest.approx(p_from_acc, abs=1e-6)
    assert all(k in logged for k in ("mapo/lambda_mean", "actor/pg_loss"))
