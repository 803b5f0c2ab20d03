"""``algorithm.mapo.success_key``: each response's success read from a reward field (``acc``), so that p and
lambda(p) count correct answers while GRPO's deviation and APD use the shaped reward; through verl's own
``compute_advantage`` (the batch layout of the legacy trainer and of tests) and the V1 trainer's session function
(reward fields as TransferQueue holds them), against an independent reference on hundreds of random batches."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from omegaconf import OmegaConf
from verl import DataProto
from verl.trainer.ppo import ray_trainer
from verl.trainer.ppo.v1 import utils as v1_utils

from mapo_verl import metrics, run_hooks, success_field
from mapo_verl.verl_plugin import settings_from_config

# What a run that selects mapo does in its TaskRunner (mapo_verl.run_hooks).
run_hooks.install("tests: the hooks of a mapo run")


def shaped_batch(rng: np.random.Generator, groups: int = 8, n: int = 6, length: int = 5):
    """Rewards as verl's ``dapo`` manager with our router makes them: 0.9 acc + 0.1 format minus an overlong
    penalty in [0, 1] on some responses (so correct answers can fall below 1 and the floor is -1); ``acc`` apart."""
    uids = np.array([f"g{g}" for g in range(groups) for _ in range(n)], dtype=object)[rng.permutation(groups * n)]
    acc = rng.integers(0, 2, size=uids.size).astype(float)
    fmt = rng.integers(0, 2, size=uids.size).astype(float)
    penalty = np.where(rng.random(uids.size) < 0.4, rng.random(uids.size), 0.0)
    scores = 0.9 * acc + 0.1 * fmt - penalty
    rewards = torch.zeros(uids.size, length)
    lengths = rng.integers(1, length + 1, size=uids.size)
    rewards[torch.arange(uids.size), torch.from_numpy(lengths - 1)] = torch.tensor(scores, dtype=torch.float32)
    mask = torch.from_numpy((np.arange(length)[None, :] < lengths[:, None]).astype(np.float32))
    return rewards, mask, uids, acc


def _algorithm(**mapo):
    mapo = {"success_key": "acc", "reward_min": -1.0, **mapo}
    return OmegaConf.create({"adv_estimator": "mapo", "norm_adv_by_std_in_grpo": True, "mapo": mapo})


def test_verls_compute_advantage_takes_p_from_the_success_field(rng, reference):
    differs = 0
    for _ in range(300):
        rewards, mask, uids, acc = shaped_batch(rng)
        data = DataProto.from_dict(
            tensors={"token_level_rewards": rewards, "response_mask": mask},
            non_tensors={"uid": uids, "acc": acc.astype(object)},
        )
        out = ray_trainer.compute_advantage(data, adv_estimator="mapo", config=_algorithm())
        scores = rewards.sum(-1).tolist()
        expected = reference(scores, list(uids), reward_min=-1.0, success=list(acc.astype(bool)))
        thresholded = reference(scores, list(uids), reward_min=-1.0)
        differs += not np.allclose(expected, thresholded, atol=1e-5)
        torch.testing.assert_close(
            out.batch["advantages"], torch.tensor(expected, dtype=torch.float32)[:, None] * mask, rtol=1e-5, atol=1e-5
        )
    assert differs > 200  # the shaped reward hides correct answers from the threshold, the field does not


def test_v1_session_function_reads_the_fields_transfer_queue_holds(rng, reference):
    """Rows keyed as verl's agent loop keys them, two outputs in some sessions; the reward fields per key, as
    ``PPOTrainer._compute_advantage`` fetches them (``success_field.reward_fields_for``)."""
    for _ in range(100):
        rewards, mask, uids, acc = shaped_batch(rng)
        keys, seen = [], {}
        for uid in uids:  # the second row of a prompt's rollout k is output 1 of session k // 2
            k = seen[uid] = seen.get(uid, -1) + 1
            keys.append(f"{uid}_{k // 2}_{k % 2}")
        data = DataProto.from_dict(
            tensors={"token_level_rewards": rewards, "response_mask": mask}, non_tensors={"uid": uids}
        )
        fields = {key: {"acc": float(a), "score": 0.0} for key, a in zip(keys, acc, strict=True)}
        with success_field.reward_fields_for(fields), metrics.collect() as block:
            out = v1_utils.compute_advantage_for_multi_trajectories(data, keys, "mapo", config=_algorithm())
        final = {}
        for row, key in enumerate(keys):
            session, index = key.rsplit("_", 1)
            final[session] = max(final.get(session, (-1, 0)), (int(index), row))
        sessions = list(final)
        rows = [final[s][1] for s in sessions]
        values = reference(
            [float(rewards[r].sum()) for r in rows], [s.split("_")[0] for s in sessions], reward_min=-1.0,
            success=[bool(acc[r]) for r in rows],
        )  # fmt: skip
        per_session = dict(zip(sessions, values, strict=True))
        expected = torch.tensor([per_session[k.rsplit("_", 1)[0]] for k in keys], dtype=torch.float32)[:, None]
        torch.testing.assert_close(out.batch["advantages"], expected * mask, rtol=1e-5, atol=1e-5)
        p = {}
        for s, r in zip(sessions, rows, strict=True):
            p.setdefault(s.split("_")[0], []).append(acc[r])
        assert block.metrics()["mapo/p_mean"] == pytest.approx(np.mean([np.mean(v) for v in p.values()]))


def test_a_missing_field_names_the_key_and_the_fields_present(rng):
    rewards, mask, uids, acc = shaped_batch(rng, groups=2)
    data = DataProto.from_dict(
        tensors={"token_level_rewards": rewards, "response_mask": mask}, non_tensors={"uid": uids, "format": acc}
    )
    with pytest.raises(ValueError, match=r"success_key='acc'.*no 'acc' field \(present: \['format', 'uid'\]\)"):
        ray_trainer.compute_advantage(data, adv_estimator="mapo", config=_algorithm())
    keys = [f"{u}_{i}_0" for i, u in enumerate(uids)]
    with (
        success_field.reward_fields_for({k: {"score": 1.0} for k in keys}),
        pytest.raises(ValueError, match=r"no 'acc' field \(present: \['score'\]\)"),
    ):
        v1_utils.compute_advantage_for_multi_trajectories(data, keys, "mapo", config=_algorithm())


def test_values_other_than_one_or_zero_name_their_rows(rng):
    rewards, mask, uids, acc = shaped_batch(rng, groups=2)
    acc = acc.astype(object)
    acc[3] = 0.5
    data = DataProto.from_dict(
        tensors={"token_level_rewards": rewards, "response_mask": mask}, non_tensors={"uid": uids, "acc": acc}
    )
    with pytest.raises(ValueError, match=r"must be 1 \(success\) or 0 \(failure\).*rows \[3\] hold \[0.5\]"):
        ray_trainer.compute_advantage(data, adv_estimator="mapo", config=_algorithm())


def test_kl_in_the_reward_is_allowed_only_with_a_success_key():
    with pytest.raises(ValueError, match=r"use_kl_in_reward=true.*\+algorithm\.mapo\.success_key=acc"):
        settings_from_config(OmegaConf.create({"use_kl_in_reward": True}))
    settings = settings_from_config(OmegaConf.create({"use_kl_in_reward": True, "mapo": {"success_key": "acc"}}))
    assert settings.success_key == "acc"
    assert settings_from_config(OmegaConf.create({"mapo": {"success_key": None}})).success_key is None
    with pytest.raises(ValueError, match="success_key must be a reward field's name"):
        settings_from_config(OmegaConf.create({"mapo": {"success_key": ""}}))
