"""Agent loops that return several outputs per session: with ``mapo``, verl's own V1 function computes the group
statistics from each session's final output and gives every output of the session that advantage (as it does for
GRPO), against an independent reference on hundreds of random agent-loop batches."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from omegaconf import OmegaConf
from verl import DataProto
from verl.trainer.ppo.v1 import utils as v1_utils

from mapo_verl import metrics, sessions

# What a run that selects mapo does in its TaskRunner (mapo_verl.run_hooks): verl's function gets the session path.
sessions.install()


def agent_loop_batch(rng: np.random.Generator, prompts: int = 5, n: int = 4, response_length: int = 6):
    """Rows as verl's agent loop puts them in TransferQueue: prompt ``uid``, rollout ``session_id`` (n per prompt),
    0-3 outputs per session (0: the loop returned nothing, no rows), keys ``{uid}_{session_id}_{index}``, shuffled.
    Rewards in {0, 0.1, 0.9, 1} on each output's last token."""
    keys, uids = [], []
    for p in range(prompts):
        uid = f"prompt{p}-{int(rng.integers(1 << 30))}"
        for session in range(n):
            for index in range(int(rng.choice([0, 1, 1, 2, 3]))):
                keys.append(f"{uid}_{session}_{index}")
                uids.append(uid)
    order = rng.permutation(len(keys))
    keys, uids = [keys[i] for i in order], [uids[i] for i in order]
    lengths = rng.integers(1, response_length + 1, size=len(keys))
    mask = torch.from_numpy((np.arange(response_length)[None, :] < lengths[:, None]).astype(np.float32))
    rewards = torch.zeros(len(keys), response_length)
    rewards[torch.arange(len(keys)), torch.from_numpy(lengths - 1)] = torch.from_numpy(
        rng.choice(np.array([0.0, 0.1, 0.9, 1.0], dtype=np.float32), size=len(keys))
    )
    data = DataProto.from_dict(
        tensors={"token_level_rewards": rewards, "response_mask": mask},
        non_tensors={"uid": np.array(uids, dtype=object)},
    )
    return data, keys


def reference_by_session(keys: list[str], scores: list[float], reference, **kwargs) -> list[float]:
    """Each session's final output (highest index) is its group member; every output gets its session's value."""
    final: dict[str, tuple[int, int]] = {}
    for row, key in enumerate(keys):
        uid, session, index = key.rsplit("_", 2)
        if (uid, session) not in final or final[(uid, session)][0] < int(index):
            final[(uid, session)] = (int(index), row)
    sessions_in_order = list(final)
    final_rows = [final[s][1] for s in sessions_in_order]
    values = reference([scores[r] for r in final_rows], [s[0] for s in sessions_in_order], **kwargs)
    value_of = dict(zip(sessions_in_order, values, strict=True))
    return [value_of[tuple(key.rsplit("_", 2)[:2])] for key in keys]


def _config(**mapo):
    return OmegaConf.create({"adv_estimator": "mapo", "norm_adv_by_std_in_grpo": True, "mapo": mapo})


@pytest.mark.parametrize("mapo", [{}, {"lambda_fn": "linear", "success_threshold": 0.9}])
def test_verls_function_groups_mapo_by_session_final_output(rng, reference, mapo):
    multi = 0
    for _ in range(300):
        data, keys = agent_loop_batch(rng)
        if not keys:
            continue
        scores = data.batch["token_level_rewards"].sum(-1).tolist()
        multi += len({k.rsplit("_", 1)[0] for k in keys}) < len(keys)
        out = v1_utils.compute_advantage_for_multi_trajectories(
            data, batch_keys=keys, adv_estimator="mapo", config=_config(**mapo)
        )
        expected = torch.tensor(reference_by_session(keys, scores, reference, **mapo))[:, None]
        expected = (expected * out.batch["response_mask"]).to(torch.float32)
        torch.testing.assert_close(out.batch["advantages"], expected, rtol=1e-5, atol=1e-5)
        torch.testing.assert_close(out.batch["returns"], expected, rtol=1e-5, atol=1e-5)
    assert multi > 250  # most batches hold sessions of several outputs


def test_metrics_count_sessions_not_rows(rng):
    data, keys = agent_loop_batch(rng, prompts=6, n=4)
    with metrics.collect() as block:
        v1_utils.compute_advantage_for_multi_trajectories(data, batch_keys=keys, adv_estimator="mapo", config=_config())
    found = block.metrics()
    sessions_seen = {k.rsplit("_", 1)[0] for k in keys}
    assert found["mapo/num_groups"] == len({k.split("_")[0] for k in keys})
    finals = {}
    for row, key in enumerate(keys):
        session, index = key.rsplit("_", 1)
        finals[session] = max(finals.get(session, (-1, 0)), (int(index), row))
    scores = data.batch["token_level_rewards"].sum(-1)
    per_prompt: dict[str, list[float]] = {}
    for session in sessions_seen:
        per_prompt.setdefault(session.split("_")[0], []).append(float(scores[finals[session][1]]))
    p = [sum(s >= 1.0 for s in v) / len(v) for v in per_prompt.values()]
    assert found["mapo/p_mean"] == pytest.approx(sum(p) / len(p))


def test_other_estimators_and_single_output_sessions_go_to_verl_unchanged(rng, reference):
    original = v1_utils.compute_advantage_for_multi_trajectories.__wrapped__
    data, keys = agent_loop_batch(rng)
    ours = v1_utils.compute_advantage_for_multi_trajectories(data, keys, "grpo", config=_config()).batch["advantages"]
    verls = original(data, keys, "grpo", config=_config()).batch["advantages"]
    torch.testing.assert_close(ours, verls)
    # one output per session (the usual agent loop): mapo over every row, as verl's plain path computes it
    first_row: dict[str, int] = {}
    for row, key in enumerate(keys):
        first_row.setdefault(key.rsplit("_", 1)[0], row)
    one = data.select_idxs(list(first_row.values()))
    single = [f"{session}_0" for session in first_row]
    out = v1_utils.compute_advantage_for_multi_trajectories(one, single, "mapo", config=_config())
    scores = one.batch["token_level_rewards"].sum(-1).tolist()
    expected = torch.tensor(reference(scores, list(one.non_tensor_batch["uid"])))[:, None] * one.batch["response_mask"]
    torch.testing.assert_close(out.batch["advantages"], expected.to(torch.float32), rtol=1e-5, atol=1e-5)


def test_a_key_not_in_verls_format_names_its_row():
    with pytest.raises(ValueError, match=r"trajectory key 'oops' \(row 1\)"):
        sessions.final_outputs(["a_0_0", "oops"])
