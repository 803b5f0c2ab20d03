"""The estimator's numbers: hand-computed groups, an independent reference, edge cases, errors."""

from __future__ import annotations

import logging
import math

import numpy as np
import pytest
import torch
from omegaconf import OmegaConf

from mapo_verl import verl_plugin
from mapo_verl.mixed_advantage import compute_mixed_advantage, group_ids_from_index, trajectory_certainty_weight
from mapo_verl.verl_plugin import compute_mapo_outcome_advantage


def _outcome(scores: list[float], index: list[object], config=None) -> torch.Tensor:
    """Run the registered estimator on one-token responses and return the per-response advantage."""
    rewards = torch.tensor(scores, dtype=torch.float32)[:, None]
    adv, ret = compute_mapo_outcome_advantage(rewards, torch.ones_like(rewards), np.array(index, dtype=object), config)
    assert adv is ret or torch.equal(adv, ret)
    return adv[:, 0]


def _cfg(**mapo) -> object:
    norm = mapo.pop("norm_adv_by_std_in_grpo", True)
    return OmegaConf.create({"norm_adv_by_std_in_grpo": norm, "mapo": mapo})


def test_worked_example_from_the_issue() -> None:
    # [0.9, 1, 1, 1]: p = 3/4, lambda = 1 - 4 * 3/4 * 1/4 = 1/4, mu = 0.975, sigma = 0.05.
    result = compute_mixed_advantage(torch.tensor([0.9, 1.0, 1.0, 1.0]), group_ids_from_index([7, 7, 7, 7]))
    assert result.success_ratio.tolist() == pytest.approx([0.75] * 4)
    assert result.certainty_weight.tolist() == pytest.approx([0.25] * 4)
    assert result.advantage.tolist() == pytest.approx([-1.1442, 0.3814, 0.3814, 0.3814], abs=1e-4)
    # exact form in float64, eps = 1e-6: 0.75 * (-0.075 / (0.05 + eps)) + 0.25 * (-0.075 / (0.975 + eps))
    exact = compute_mixed_advantage(
        torch.tensor([0.9, 1.0, 1.0, 1.0], dtype=torch.float64), group_ids_from_index([7] * 4)
    )
    eps = 1e-6
    assert float(exact.advantage[0]) == pytest.approx(0.75 * -0.075 / (0.05 + eps) + 0.25 * -0.075 / (0.975 + eps))


def test_balanced_binary_group_is_pure_grpo() -> None:
    # p = 1/2 gives lambda = 0 under tcr: A = z-score = +-(0.5 / sigma), sigma = sqrt(1/3) for G = 4.
    adv = _outcome([1, 0, 1, 0], ["a"] * 4)
    z = 0.5 / math.sqrt(1 / 3)
    assert adv.tolist() == pytest.approx([z, -z, z, -z], rel=1e-5)


def test_rare_success_is_mostly_percent_deviation() -> None:
    # one success among 4: p = 1/4, lambda = 1/4, mu = 1/4, sigma = 1/2.
    # success: 0.75 * (0.75 / 0.5) + 0.25 * (0.75 / 0.25) = 1.125 + 0.75 = 1.875
    # failure: 0.75 * (-0.25 / 0.5) + 0.25 * (-0.25 / 0.25) = -0.375 - 0.25 = -0.625
    adv = _outcome([0, 1, 0, 0], ["q"] * 4)
    assert adv.tolist() == pytest.approx([-0.625, 1.875, -0.625, -0.625], rel=1e-5)


@pytest.mark.parametrize(
    ("lambda_fn", "expected"),
    [
        ("tcr", [1.0, 0.64, 0.0, 0.64, 1.0]),
        ("linear", [1.0, 0.8, 0.0, 0.8, 1.0]),
        ("zero", [0.0] * 5),
        ("one", [1.0] * 5),
    ],
)
def test_lambda_functions(lambda_fn: str, expected: list[float]) -> None:
    p = torch.tensor([0.0, 0.1, 0.5, 0.9, 1.0], dtype=torch.float64)
    assert trajectory_certainty_weight(p, lambda_fn).tolist() == pytest.approx(expected)


@pytest.mark.parametrize("lambda_fn", ["tcr", "linear", "zero", "one"])
@pytest.mark.parametrize("norm", [True, False])
def test_matches_independent_reference_on_random_uneven_shuffled_batches(
    rng, make_batch, reference, lambda_fn: str, norm: bool
) -> None:
    for _ in range(5):
        rewards, mask, index = make_batch(rng, num_groups=int(rng.integers(1, 40)))
        cfg = _cfg(lambda_fn=lambda_fn, norm_adv_by_std_in_grpo=norm)
        adv, _ = compute_mapo_outcome_advantage(rewards, mask, index, cfg)
        expected = reference(rewards.sum(-1).double().tolist(), list(index), lambda_fn=lambda_fn, norm_by_std=norm)
        expected = torch.tensor(expected, dtype=torch.float64)[:, None] * mask.double()
        torch.testing.assert_close(adv.double(), expected, rtol=1e-5, atol=1e-5)
        assert adv.dtype == rewards.dtype


def test_reward_spread_over_tokens_is_summed(reference) -> None:
    rewards = torch.tensor([[0.5, 0.5, 0.0], [0.25, 0.0, 0.0], [0.0, 0.0, 1.0], [0.0, 0.0, 0.0]])
    mask = torch.tensor([[1.0, 1.0, 0.0], [1.0, 0.0, 0.0], [1.0, 1.0, 1.0], [1.0, 1.0, 1.0]])
    adv, _ = compute_mapo_outcome_advantage(rewards, mask, np.array(["u"] * 4, dtype=object))
    expected = torch.tensor(reference([1.0, 0.25, 1.0, 0.0], ["u"] * 4), dtype=torch.float32)[:, None] * mask
    torch.testing.assert_close(adv, expected, rtol=1e-5, atol=1e-6)
    assert (adv[mask == 0] == 0).all()


def test_invariant_under_batch_permutation(rng, make_batch) -> None:
    rewards, mask, index = make_batch(rng, num_groups=30)
    adv, _ = compute_mapo_outcome_advantage(rewards, mask, index)
    perm = torch.from_numpy(rng.permutation(len(index)))
    adv_perm, _ = compute_mapo_outcome_advantage(rewards[perm], mask[perm], index[perm.numpy()])
    torch.testing.assert_close(adv_perm, adv[perm], rtol=0, atol=1e-6)


def test_all_fail_all_succeed_give_zero() -> None:
    adv = _outcome([0, 0, 0, 1, 1, 1, 0.9, 0.9], ["f", "f", "f", "s", "s", "s", "g", "g"])
    assert adv.abs().max().item() == 0.0


def test_size_one_groups_get_zero_and_warn_once(caplog) -> None:
    verl_plugin._warned_singleton = False
    with caplog.at_level(logging.WARNING, logger="mapo_verl.verl_plugin"):
        adv = _outcome([1.0, 0.0, 1.0, 0.3], ["solo", "pair", "pair", "other-solo"])
        _outcome([1.0], ["again"])
    assert adv[0].item() == 0.0 and adv[3].item() == 0.0
    assert adv[1].item() < 0 < adv[2].item()
    warnings = [r for r in caplog.records if "single response" in r.getMessage()]
    assert len(warnings) == 1
    assert "2 of 3 groups" in warnings[0].getMessage()


def test_signed_group_from_the_issue_with_its_floor(reference) -> None:
    # rewards in [-1, 1], group [1, -1, 0, 0]: mu = 0, p = 1/4, lambda = 1/4, sigma = sqrt(2/3).
    # APD = (s - 0) / (0 - (-1)) = s; GRPO = s / sigma; MAPO = 0.75 * s / sigma + 0.25 * s.
    scores, index = [1.0, -1.0, 0.0, 0.0], ["n"] * 4
    adv = _outcome(scores, index, _cfg(reward_min=-1.0))
    top = 0.75 / math.sqrt(2 / 3) + 0.25
    assert adv.tolist() == pytest.approx([top, -top, 0.0, 0.0], rel=1e-5)
    assert adv.tolist() == pytest.approx(reference(scores, index, reward_min=-1.0), rel=1e-6)
    assert adv.abs().max().item() <= 3  # G - 1 (the old |mu| rule gave about 250,000 here)


def test_score_below_the_floor_is_an_error_naming_count_uids_and_knob() -> None:
    rewards = torch.tensor([[1.0], [-1.0], [0.0], [-0.5], [1.0]])
    index = np.array(["u1", "u1", "u2", "u2", "u2"], dtype=object)
    with pytest.raises(ValueError, match=r"2 of 5 response scores .*2 below algorithm.mapo.reward_min=0.*u1.*u2"):
        compute_mapo_outcome_advantage(rewards, torch.ones_like(rewards), index)
    with pytest.raises(ValueError, match=r"1 of 5 .*below algorithm.mapo.reward_min=-0.75"):
        compute_mapo_outcome_advantage(rewards, torch.ones_like(rewards), index, _cfg(reward_min=-0.75))


@pytest.mark.parametrize(("low", "high"), [(0.0, 1.0), (-1.0, 1.0), (-5.0, -2.0), (2.0, 7.0)])
def test_binary_rewards_give_the_papers_apd_whatever_the_levels(low: float, high: float) -> None:
    # 3 successes of 8: p = 3/8, APD = (1 - p) / p = 5/3 for a success and -1 for a failure.
    scores = [high] * 3 + [low] * 5
    cfg = _cfg(lambda_fn="one", reward_min=low, success_threshold=high)
    adv = _outcome(scores, ["b"] * 8, cfg)
    assert adv.tolist() == pytest.approx([5 / 3] * 3 + [-1.0] * 5, rel=1e-5)


def test_shifting_reward_and_floor_together_changes_nothing(rng, make_batch) -> None:
    rewards, mask, index = make_batch(rng, num_groups=20)
    base, _ = compute_mapo_outcome_advantage(rewards, mask, index, _cfg())
    last = mask.cumsum(-1) == mask.sum(-1, keepdim=True)  # the shift goes on one token per response
    for shift in (-3.0, 2.5):
        shifted = rewards + shift * (last & (mask > 0)).float()
        cfg = _cfg(reward_min=shift, success_threshold=1.0 + shift)
        adv, _ = compute_mapo_outcome_advantage(shifted, mask, index, cfg)
        torch.testing.assert_close(adv, base, rtol=1e-5, atol=1e-5)


def test_all_wrong_group_with_a_format_bonus_gets_g_minus_one() -> None:
    # G = 12, format_weight 0.1: one well-formatted wrong answer (0.1), eleven zeros. p = 0, lambda = 1: APD.
    scores, index = [0.1] + [0.0] * 11, ["w"] * 12
    mapo = _outcome(scores, index)
    grpo = _outcome(scores, index, _cfg(lambda_fn="zero"))
    assert mapo[0].item() == pytest.approx(11.0, rel=1e-3) and mapo[1:].tolist() == pytest.approx([-1.0] * 11, rel=1e-3)
    assert grpo[0].item() == pytest.approx(11 / math.sqrt(12), rel=1e-4)  # about +3.2


def test_kl_in_reward_is_refused_naming_the_fix() -> None:
    rewards = torch.tensor([[1.0], [0.0]])
    cfg = OmegaConf.create({"use_kl_in_reward": True, "mapo": {}})
    with pytest.raises(ValueError, match=r"use_kl_in_reward=true.*actor_rollout_ref.actor.use_kl_loss=true"):
        compute_mapo_outcome_advantage(rewards, torch.ones_like(rewards), np.array(["a", "a"], dtype=object), cfg)
    ok = OmegaConf.create({"use_kl_in_reward": False})
    compute_mapo_outcome_advantage(rewards, torch.ones_like(rewards), np.array(["a", "a"], dtype=object), ok)


def test_threshold_between_reward_values() -> None:
    scores = [0.0, 0.5, 0.7, 0.9]
    low = compute_mixed_advantage(torch.tensor(scores), group_ids_from_index([0] * 4), success_threshold=0.6)
    assert low.success.tolist() == [False, False, True, True]
    assert float(low.success_ratio[0]) == pytest.approx(0.5)
    assert float(low.certainty_weight[0]) == pytest.approx(0.0)
    high = compute_mixed_advantage(torch.tensor(scores), group_ids_from_index([0] * 4), success_threshold=0.8)
    assert float(high.success_ratio[0]) == pytest.approx(0.25)


def test_float32_rounding_still_counts_as_success() -> None:
    # 0.9 * acc + 0.1 * format computed in float32 lands just below 1.0.
    score = torch.tensor(0.9, dtype=torch.float32) * 1 + torch.tensor(0.1, dtype=torch.float32) * 1
    result = compute_mixed_advantage(torch.stack([score, torch.tensor(0.9)]), group_ids_from_index(["x", "x"]))
    assert result.success.tolist() == [True, False]


def test_double_and_bfloat16_inputs_keep_their_dtype() -> None:
    for dtype in (torch.float64, torch.bfloat16):
        rewards = torch.tensor([[1.0], [0.0], [1.0]], dtype=dtype)
        adv, _ = compute_mapo_outcome_advantage(
            rewards, torch.ones(3, 1, dtype=torch.int64), np.array(["a", "a", "a"], dtype=object)
        )
        assert adv.dtype == dtype


def test_integer_and_list_indices_group_like_strings() -> None:
    scores = [1.0, 0.0, 0.0, 1.0, 1.0]
    by_str = _outcome(scores, ["a", "b", "a", "b", "b"])
    by_int = _outcome(scores, [3, 9, 3, 9, 9])
    torch.testing.assert_close(by_str, by_int)


@pytest.mark.parametrize("bad", [float("nan"), float("inf")])
def test_non_finite_scores_are_rejected_with_rows_and_uids(bad: float) -> None:
    rewards = torch.tensor([[1.0], [bad], [0.0], [bad]])
    with pytest.raises(ValueError, match=r"2 of 4 response scores are invalid \(2 NaN or inf.*rows \[1, 3\].*uid-b"):
        compute_mapo_outcome_advantage(
            rewards, torch.ones_like(rewards), np.array(["uid-a", "uid-b", "uid-a", "uid-b"], dtype=object)
        )


def test_missing_or_misshapen_inputs_are_rejected() -> None:
    rewards, mask = torch.zeros(3, 2), torch.ones(3, 2)
    with pytest.raises(ValueError, match="needs `index`"):
        compute_mapo_outcome_advantage(rewards, mask)
    with pytest.raises(ValueError, match="index has 2 entries but token_level_rewards has 3 rows"):
        compute_mapo_outcome_advantage(rewards, mask, np.array(["a", "b"], dtype=object))
    with pytest.raises(ValueError, match=r"response_mask shape \(3, 3\) does not match"):
        compute_mapo_outcome_advantage(rewards, torch.ones(3, 3), np.array(["a"] * 3, dtype=object))
    with pytest.raises(ValueError, match=r"\(batch, response_length\)"):
        compute_mapo_outcome_advantage(torch.zeros(3), torch.ones(3), np.array(["a"] * 3, dtype=object))


def test_bad_config_is_rejected_with_names() -> None:
    idx = np.array(["a", "a"], dtype=object)
    rewards = torch.tensor([[1.0], [0.0]])
    with pytest.raises(ValueError, match=r"lambda_fn='cosine'.*valid names: linear, one, tcr, zero"):
        compute_mapo_outcome_advantage(rewards, torch.ones_like(rewards), idx, _cfg(lambda_fn="cosine"))
    with pytest.raises(ValueError, match=r"unknown key\(s\) algorithm.mapo.lamda_fn"):
        compute_mapo_outcome_advantage(rewards, torch.ones_like(rewards), idx, _cfg(lamda_fn="tcr"))
    with pytest.raises(ValueError, match="epsilon must be a positive number"):
        compute_mapo_outcome_advantage(rewards, torch.ones_like(rewards), idx, _cfg(epsilon=0))
    with pytest.raises(ValueError, match=r"algorithm\.mapo\.success_threshold must be finite"):
        compute_mapo_outcome_advantage(rewards, torch.ones_like(rewards), idx, _cfg(success_threshold=float("nan")))
    with pytest.raises(ValueError, match=r"algorithm\.mapo\.reward_min must be a number"):
        compute_mapo_outcome_advantage(rewards, torch.ones_like(rewards), idx, _cfg(reward_min="low"))
    with pytest.raises(ValueError, match=r"success_threshold=0.5 must lie above algorithm.mapo.reward_min=0.5"):
        compute_mapo_outcome_advantage(
            rewards, torch.ones_like(rewards), idx, _cfg(success_threshold=0.5, reward_min=0.5)
        )


def test_defaults_without_config_and_with_empty_section() -> None:
    scores, index = [0.9, 1.0, 1.0, 1.0], ["w"] * 4
    expected = [-1.1442, 0.3814, 0.3814, 0.3814]
    assert _outcome(scores, index).tolist() == pytest.approx(expected, abs=1e-4)
    assert _outcome(scores, index, OmegaConf.create({})).tolist() == pytest.approx(expected, abs=1e-4)
    # an explicit null is refused (it used to run the default silently), naming the key
    with pytest.raises(ValueError, match=r"algorithm\.mapo\.lambda_fn is null"):
        _outcome(scores, index, {"mapo": {"lambda_fn": None}})
