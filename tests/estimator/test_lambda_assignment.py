"""``algorithm.mapo.lambda_assignment``: each group's own lambda (the default, unchanged), or another group's (the
control that reproduces the authors' indexing in effect; docs/fidelity.md, M1)."""

from __future__ import annotations

import hashlib
from collections import Counter

import numpy as np
import pytest
import torch
from omegaconf import OmegaConf

from mapo_verl import metrics
from mapo_verl.mixed_advantage import compute_mixed_advantage, group_ids_from_index, permuted_weight_source
from mapo_verl.verl_plugin import MAPO_KEYS, compute_mapo_outcome_advantage, settings_from_config

SCORES = [1.0, 0.0, 0.9, 1.0, 0.1, 1.0, 1.0, 0.0, 1.0, 0.0, 0.0, 0.1]
INDEX = ["b", "a", "b", "c", "a", "b", "c", "a", "b", "c", "a", "c"]
# float32 advantages of SCORES / INDEX computed by the estimator before lambda_assignment existed (commit 889eef5)
BEFORE_TCR = [
    "0x1.868e72p-2", "-0x1.fffac2p-1", "-0x1.24ead6p+0", "0x1.ba2e56p-1", "0x1.7ffc12p+1", "0x1.868e72p-2",
    "0x1.ba2e56p-1", "-0x1.fffac2p-1", "0x1.868e72p-2", "-0x1.e8b9f4p-1", "-0x1.fffac2p-1", "-0x1.8ba2bap-1",
]  # fmt: skip
BEFORE_LINEAR_NO_STD = [
    "0x1.9ed9e6p-6", "-0x1.fffac2p-1", "-0x1.37236cp-4", "0x1.e66666p-2", "0x1.7ffc12p+1", "0x1.9ed9e6p-6",
    "0x1.e66666p-2", "-0x1.fffac2p-1", "0x1.9ed9e6p-6", "-0x1.0ccccdp-1", "-0x1.fffac2p-1", "-0x1.b33334p-2",
]  # fmt: skip
# sha256 of the (batch, tokens) float32 advantages of random_batch(default_rng(17), num_groups=40), twice, before
BEFORE_RANDOM = {
    "tcr": "7111b2290cc17fe47ac827698ed448c1e9493c07fe053c2f0b8f6ae8434b6d15",
    "linear": "087157cd239c1aa6e9e13d1ba3b4f6b159ca4600b1ebf0e683f929107aff377e",
}


def _cfg(**mapo) -> object:
    norm = mapo.pop("norm_adv_by_std_in_grpo", True)
    return OmegaConf.create({"norm_adv_by_std_in_grpo": norm, "mapo": mapo})


def _bits(values: list[str]) -> torch.Tensor:
    return torch.tensor([float.fromhex(v) for v in values], dtype=torch.float32)


# --------------------------------------------------------------------------------- the default is unchanged
def test_default_is_bit_identical_to_the_estimator_before_the_option():
    scores, groups = torch.tensor(SCORES), group_ids_from_index(INDEX)
    default = compute_mixed_advantage(scores, groups)
    assert torch.equal(default.advantage, _bits(BEFORE_TCR))
    explicit = compute_mixed_advantage(scores, groups, lambda_assignment="group")
    assert torch.equal(explicit.advantage, default.advantage)
    assert explicit.applied_weight is explicit.certainty_weight and not explicit.permuted.any()
    other = compute_mixed_advantage(scores, groups, lambda_fn="linear", norm_by_std=False, lambda_assignment="group")
    assert torch.equal(other.advantage, _bits(BEFORE_LINEAR_NO_STD))


def test_default_through_verl_signature_is_bit_identical_on_random_batches(make_batch):
    rng = np.random.default_rng(17)
    for lambda_fn in ("tcr", "linear"):
        rewards, mask, index = make_batch(rng, num_groups=40)
        for cfg in (_cfg(lambda_fn=lambda_fn), _cfg(lambda_fn=lambda_fn, lambda_assignment="group")):
            adv, _ = compute_mapo_outcome_advantage(rewards, mask, index, cfg)
            assert hashlib.sha256(adv.numpy().tobytes()).hexdigest() == BEFORE_RANDOM[lambda_fn]


# ------------------------------------------------------------------------------------------ the control
@pytest.mark.parametrize("lambda_fn", ["tcr", "linear", "one"])
@pytest.mark.parametrize("norm", [True, False])
def test_permuted_matches_the_independent_reference(rng, make_batch, reference, lambda_fn, norm):
    for _ in range(4):
        rewards, mask, index = make_batch(rng, num_groups=int(rng.integers(2, 40)))
        cfg = _cfg(lambda_fn=lambda_fn, norm_adv_by_std_in_grpo=norm, lambda_assignment="permuted")
        adv, _ = compute_mapo_outcome_advantage(rewards, mask, index, cfg)
        expected = reference(
            rewards.sum(-1).double().tolist(), list(index), lambda_fn=lambda_fn, norm_by_std=norm,
            lambda_assignment="permuted",
        )  # fmt: skip
        expected = torch.tensor(expected, dtype=torch.float64)[:, None] * mask.double()
        torch.testing.assert_close(adv.double(), expected, rtol=1e-5, atol=1e-5)


def test_weight_source_matches_the_reference_rule(rng, make_batch, reference_source):
    for num_groups in (1, 2, 3, 17, 64):
        _, _, index = make_batch(rng, num_groups=num_groups)
        groups = group_ids_from_index(index)
        ours = groups.labels[permuted_weight_source(groups)].tolist()
        assert ours == reference_source(list(index))


def _equal_groups(rng: np.random.Generator, num_groups: int, n: int) -> tuple[list[float], list[str]]:
    """verl's layout after its length balancing: ``num_groups`` prompts x ``n`` rollouts, rows shuffled."""
    p = rng.uniform(0, 1, size=num_groups)
    scores = [float(rng.uniform() < p[g]) for g in range(num_groups) for _ in range(n)]
    index = [f"uid-{g}" for g in range(num_groups) for _ in range(n)]
    order = rng.permutation(len(index))
    return [scores[i] for i in order], [index[i] for i in order]


def test_every_response_gets_another_groups_lambda_and_the_batch_keeps_its_weights(rng, reference_source):
    for num_groups, n in ((2, 5), (3, 12), (13, 12), (64, 8)):
        scores, index = _equal_groups(rng, num_groups, n)
        result = compute_mixed_advantage(
            torch.tensor(scores), group_ids_from_index(index), lambda_assignment="permuted"
        )
        own, applied = result.certainty_weight.tolist(), result.applied_weight.tolist()
        by_group = {uid: w for uid, w in zip(index, own, strict=True)}
        source = reference_source(index)
        assert all(s != uid for s, uid in zip(source, index, strict=True))
        assert applied == [by_group[s] for s in source]
        assert Counter(applied) == Counter(own)  # each group's lambda handed out exactly n times
        assert result.permuted.all()
        if n <= num_groups - 1:  # a group's responses get n different groups' lambdas
            for uid in set(index):
                assert len({s for s, u in zip(source, index, strict=True) if u == uid}) == n


def test_permuted_keeps_each_responses_own_deviation_and_apd(rng):
    """A_i = (1 - w_i) D_i + w_i APD_i with the response's own D_i and APD_i and the lambda it was handed."""
    scores, index = _equal_groups(rng, 9, 6)
    scores = [s * 0.9 + 0.1 * float(rng.uniform() < 0.5) for s in scores]  # 0, 0.1, 0.9, 1.0 like the router's
    result = compute_mixed_advantage(torch.tensor(scores, dtype=torch.float64), group_ids_from_index(index),
                             lambda_assignment="permuted")  # fmt: skip
    zero = compute_mixed_advantage(
        torch.tensor(scores, dtype=torch.float64), group_ids_from_index(index), lambda_fn="zero"
    )
    one = compute_mixed_advantage(
        torch.tensor(scores, dtype=torch.float64), group_ids_from_index(index), lambda_fn="one"
    )
    w = result.applied_weight
    torch.testing.assert_close(result.advantage, (1 - w) * zero.advantage + w * one.advantage)


def test_permuted_is_deterministic_and_follows_the_groups_not_their_place_in_the_batch(rng, make_batch):
    rewards, mask, index = make_batch(rng, num_groups=25)
    cfg = _cfg(lambda_assignment="permuted")
    first, _ = compute_mapo_outcome_advantage(rewards, mask, index, cfg)
    again, _ = compute_mapo_outcome_advantage(rewards.clone(), mask.clone(), index.copy(), cfg)
    assert torch.equal(first, again)
    # move whole groups around, keeping each group's rows in their order: every response keeps its advantage
    labels = list(dict.fromkeys(index))
    shuffled = [labels[k] for k in rng.permutation(len(labels))]
    order = [i for label in shuffled for i in np.flatnonzero(index == label)]
    moved, _ = compute_mapo_outcome_advantage(rewards[order], mask[order], index[order], cfg)
    assert torch.equal(moved, first[order])


def test_a_single_group_has_nothing_to_permute():
    scores, groups = torch.tensor([1.0, 0.0, 0.0, 0.0]), group_ids_from_index(["only"] * 4)
    result = compute_mixed_advantage(scores, groups, lambda_assignment="permuted")
    assert torch.equal(result.advantage, compute_mixed_advantage(scores, groups).advantage)
    assert not result.permuted.any()


def test_the_authors_indexing_in_effect(reference_source, lambda_reference):
    """A re-creation of ``grpomixpro``'s weighting (ray_trainer.py:162-173 after ``_balance_batch``, :663): row j
    gets the lambda of the group ranked j // n by first appearance. Ours shares what matters: the batch's weights
    are kept, and they land on unrelated groups (never the own one here; theirs about 1 in K)."""
    rng = np.random.default_rng(2509)
    num_groups, n = 512, 12
    scores, index = _equal_groups(rng, num_groups, n)
    p = {uid: sum(s for s, u in zip(scores, index, strict=True) if u == uid) / n for uid in set(index)}
    intended = [lambda_reference["tcr"](p[uid]) for uid in index]
    ranked = list(dict.fromkeys(index))  # their id2count_ones: insertion order = first appearance
    theirs = [lambda_reference["tcr"](p[ranked[j // n]]) for j in range(len(index))]
    theirs_own = sum(ranked[j // n] == index[j] for j in range(len(index))) / len(index)

    ours = compute_mixed_advantage(torch.tensor(scores, dtype=torch.float64), group_ids_from_index(index),
                           lambda_assignment="permuted")  # fmt: skip
    applied = ours.applied_weight.tolist()
    assert ours.certainty_weight.tolist() == pytest.approx(intended)
    assert theirs_own < 0.01 and not any(s == u for s, u in zip(reference_source(index), index, strict=True))
    assert sorted(applied) == pytest.approx(sorted(intended)) and sorted(theirs) == pytest.approx(sorted(intended))
    for weights in (theirs, applied):
        assert abs(np.corrcoef(intended, weights)[0, 1]) < 0.1
    assert np.corrcoef(intended, intended)[0, 1] == pytest.approx(1.0)  # the default: intended = applied


# -------------------------------------------------------------------------------------- settings, metrics
def test_settings_accept_the_two_values_and_refuse_others():
    assert "lambda_assignment" in MAPO_KEYS
    assert settings_from_config(None).lambda_assignment == "group"
    assert settings_from_config(_cfg()).lambda_assignment == "group"
    assert settings_from_config(_cfg(lambda_assignment="permuted")).lambda_assignment == "permuted"
    idx, rewards = np.array(["a", "a"], dtype=object), torch.tensor([[1.0], [0.0]])
    with pytest.raises(ValueError, match=r"lambda_assignment='shuffled'.*valid values: group, permuted"):
        compute_mapo_outcome_advantage(rewards, torch.ones_like(rewards), idx, _cfg(lambda_assignment="shuffled"))
    with pytest.raises(ValueError, match="unknown lambda_assignment"):
        compute_mixed_advantage(torch.tensor([1.0, 0.0]), group_ids_from_index(["a", "a"]), lambda_assignment="random")


@pytest.mark.parametrize(("assignment", "expected"), [(None, 0.0), ("group", 0.0), ("permuted", 1.0)])
def test_metrics_say_which_assignment_was_used(rng, lambda_reference, assignment, expected):
    scores, index = _equal_groups(rng, 6, 4)
    rewards = torch.tensor(scores)[:, None]
    cfg = _cfg() if assignment is None else _cfg(lambda_assignment=assignment)
    with metrics.collect() as block:
        compute_mapo_outcome_advantage(rewards, torch.ones_like(rewards), np.array(index, dtype=object), cfg)
    got = block.metrics()
    assert got["mapo/lambda_permuted"] == expected
    p = [sum(s for s, u in zip(scores, index, strict=True) if u == g) / 4 for g in set(index)]
    own = float(np.mean([lambda_reference["tcr"](x) for x in p]))
    assert got["mapo/lambda_mean"] == pytest.approx(own)  # the groups' own lambda, whichever assignment
