"""The learning simulation: determinism, learning signal, independence of batched runs, verl's loss."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from mapo_verl_cpu.experiments.study.estimators import ESTIMATORS
from mapo_verl_cpu.experiments.study.simulation import (
    SimConfig,
    clipped_surrogate,
    make_task,
    simulate,
    steps_to_target,
)

SMALL = SimConfig(preset="uniform", num_prompts=64, batch_prompts=8, steps=25, seeds=(0, 1, 2))


@pytest.fixture(scope="module")
def grpo_mapo_zero():
    return simulate(SMALL, [ESTIMATORS["grpo"], ESTIMATORS["mapo_tcr"], ESTIMATORS["zero"]])


@pytest.mark.slow  # simulation runs (seconds each on two busy cores)
def test_seed_gives_identical_results(grpo_mapo_zero) -> None:
    again = simulate(SMALL, [ESTIMATORS["grpo"], ESTIMATORS["mapo_tcr"], ESTIMATORS["zero"]])
    for name in ("acc_all", "acc_hard", "acc_easy", "weight_ess", "hard_push"):
        assert np.array_equal(getattr(grpo_mapo_zero, name), getattr(again, name), equal_nan=True), name
    other = simulate(SimConfig(**{**SMALL.to_dict(), "seeds": (3, 4, 5)}), [ESTIMATORS["grpo"]])
    assert not np.allclose(other.acc_all[0], grpo_mapo_zero.acc_all[0])


@pytest.mark.slow  # simulation runs (seconds each on two busy cores)
def test_grpo_learns_and_zero_advantage_does_not(grpo_mapo_zero) -> None:
    grpo, zero = grpo_mapo_zero.acc_all[0], grpo_mapo_zero.acc_all[2]
    assert (grpo[:, -1] > grpo[:, 0] + 0.15).all()  # every seed improves substantially
    assert (grpo[:, -1] > grpo[:, 5]).all()
    assert np.array_equal(zero, np.repeat(zero[:, :1], zero.shape[1], axis=1))  # not a single change
    assert np.array_equal(grpo[:, 0], zero[:, 0])  # same starting point (common random numbers)


@pytest.mark.slow  # simulation runs (seconds each on two busy cores)
def test_push_diagnostics(grpo_mapo_zero) -> None:
    ess, hard = grpo_mapo_zero.weight_ess, grpo_mapo_zero.hard_push
    assert np.isnan(ess[2]).all() and np.isnan(hard[2]).all()  # zero advantages push nothing
    finite = np.isfinite(ess[:2])
    assert finite.mean() > 0.9 and ((ess[:2][finite] > 0) & (ess[:2][finite] <= 1 + 1e-9)).all()
    assert ((hard[:2][finite] >= 0) & (hard[:2][finite] <= 1)).all()
    # APD-weighted MAPO concentrates the push on fewer responses than GRPO (same rollouts)
    assert np.nanmean(ess[1]) < np.nanmean(ess[0])


@pytest.mark.slow  # simulation runs (seconds each on two busy cores)
def test_batched_runs_are_independent(grpo_mapo_zero) -> None:
    alone = simulate(SMALL, [ESTIMATORS["grpo"]])
    np.testing.assert_allclose(alone.acc_all[0], grpo_mapo_zero.acc_all[0], rtol=0, atol=1e-5)


def test_initial_accuracy_follows_difficulty() -> None:
    cfg = SimConfig(preset="hard-heavy", num_prompts=200, seeds=(7,))
    task = make_task(cfg)
    p_correct = torch.softmax(task.bias, -1).gather(-1, task.correct.unsqueeze(-1)).squeeze(-1)
    logit_q = (1 - task.difficulty) * np.log(0.9 / 0.1) + task.difficulty * np.log(0.01 / 0.99)
    torch.testing.assert_close(p_correct, torch.sigmoid(logit_q), rtol=1e-5, atol=1e-6)
    easy = make_task(SimConfig(preset="easy-heavy", num_prompts=200, seeds=(7,)))
    assert easy.difficulty.mean() < 0.45 < 0.55 < task.difficulty.mean()
    assert task.hard.float().mean() > 0.5 > easy.hard.float().mean()


def test_clipped_surrogate_matches_verl() -> None:
    from omegaconf import OmegaConf
    from verl.trainer.ppo.core_algos import compute_policy_loss_vanilla

    gen = torch.Generator().manual_seed(0)
    old = -torch.rand(64, 1, generator=gen) * 3
    new = old + torch.randn(64, 1, generator=gen) * 0.5
    adv = torch.randn(64, 1, generator=gen) * 2
    mask = torch.ones(64, 1)
    cfg = OmegaConf.create({"clip_ratio": 0.2, "clip_ratio_low": None, "clip_ratio_high": None, "clip_ratio_c": 3.0,
                            "global_batch_info": {}})  # fmt: skip
    ref, _ = compute_policy_loss_vanilla(old, new, adv, mask, loss_agg_mode="token-mean", config=cfg)
    ours = clipped_surrogate(new, old, adv, clip=0.2, clip_c=3.0).mean()
    torch.testing.assert_close(ours, ref)


def test_steps_to_target() -> None:
    curves = np.array([[0.1, 0.4, 0.6, 0.7], [0.1, 0.2, 0.3, 0.4]])
    out = steps_to_target(curves, 0.5)
    assert out[0] == 2 and np.isnan(out[1])
