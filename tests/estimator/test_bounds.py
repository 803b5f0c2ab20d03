"""Property tests: over random groups, signed and unsigned, |A| stays within the documented bound
and the estimator equals the independent float64 reference (tests/estimator/conftest.py)."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from omegaconf import OmegaConf

from mapo_verl.mixed_advantage import advantage_bound, compute_mixed_advantage, group_ids_from_index
from mapo_verl.verl_plugin import compute_mapo_outcome_advantage

from .conftest import reference_mapo

PROPERTY = settings(
    max_examples=150, deadline=None, derandomize=True, database=None, suppress_health_check=[HealthCheck.too_slow]
)

# heights above the floor: exact levels (binary, graded rewards, ties) and arbitrary values
height = st.one_of(
    st.sampled_from([0.0, 0.1, 0.9, 1.0, 2.0]),
    st.floats(min_value=0.0, max_value=10.0, allow_nan=False, allow_subnormal=False),
)


@st.composite
def batches(draw: st.DrawFn, signed: bool) -> dict:
    floor = draw(st.floats(min_value=-5.0, max_value=5.0, allow_subnormal=False)) if signed else 0.0
    groups = draw(st.lists(st.lists(height, min_size=1, max_size=16), min_size=1, max_size=6))
    scores = [floor + h for group in groups for h in group]
    index = [g for g, group in enumerate(groups) for _ in group]
    order = draw(st.permutations(range(len(scores))))
    return {
        "scores": [scores[i] for i in order],
        "index": [index[i] for i in order],
        "reward_min": floor,
        "success_threshold": floor + draw(st.sampled_from([0.5, 1.0, 1.9])),
        "lambda_fn": draw(st.sampled_from(["tcr", "linear", "zero", "one"])),
        "norm_by_std": draw(st.booleans()),
    }


def _bounds(scores: list[float], index: list[int], norm_by_std: bool) -> torch.Tensor:
    """Each response's bound from its own group (G and, without std norm, the group's spread)."""
    members: dict[int, list[float]] = {}
    for s, g in zip(scores, index, strict=True):
        members.setdefault(g, []).append(s)
    per_group = {
        g: advantage_bound(len(v), norm_by_std=norm_by_std, spread=max(v) - min(v)) for g, v in members.items()
    }
    return torch.tensor([per_group[g] for g in index], dtype=torch.float64)


def _run(batch: dict, dtype: torch.dtype) -> torch.Tensor:
    knobs = {k: batch[k] for k in ("success_threshold", "reward_min", "lambda_fn", "norm_by_std")}
    scores = torch.tensor(batch["scores"], dtype=dtype)
    return compute_mixed_advantage(scores, group_ids_from_index(batch["index"]), **knobs).advantage


@pytest.mark.parametrize("signed", [False, True], ids=["unsigned", "signed"])
def test_bound_and_reference_over_random_groups(signed: bool) -> None:
    @PROPERTY
    @given(batches(signed))
    def check(batch: dict) -> None:
        bound = _bounds(batch["scores"], batch["index"], batch["norm_by_std"])
        ours = _run(batch, torch.float64)
        assert bool((ours.abs() <= bound * (1 + 1e-12) + 1e-12).all()), (ours, bound)
        knobs = {k: batch[k] for k in ("success_threshold", "reward_min", "lambda_fn", "norm_by_std")}
        expected = torch.tensor(reference_mapo(batch["scores"], batch["index"], **knobs), dtype=torch.float64)
        torch.testing.assert_close(ours, expected, rtol=1e-7, atol=1e-7)
        as_float32 = _run(batch, torch.float32).double()  # verl's dtype: the bound holds after the cast too
        assert bool((as_float32.abs() <= bound * (1 + 1e-6) + 1e-6).all()), (as_float32, bound)

    check()


def test_bound_is_reached() -> None:
    """The bound is tight: one success among G - 1 floor scores gets APD = G - 1 (lambda = 1 at p -> 0)."""
    for g in (2, 5, 12):
        scores = torch.tensor([1.0] + [0.0] * (g - 1), dtype=torch.float64)
        adv = compute_mixed_advantage(scores, group_ids_from_index([0] * g), lambda_fn="one", epsilon=1e-12).advantage
        assert adv[0].item() == pytest.approx(advantage_bound(g), rel=1e-9)


def test_verl_signature_honours_reward_min_from_the_config() -> None:
    rewards = torch.tensor([[1.0], [-1.0], [0.0], [0.0]])
    cfg = OmegaConf.create({"mapo": {"reward_min": -1.0}})
    adv, _ = compute_mapo_outcome_advantage(rewards, torch.ones_like(rewards), np.array(["g"] * 4, dtype=object), cfg)
    assert adv.abs().max().item() <= advantage_bound(4)
