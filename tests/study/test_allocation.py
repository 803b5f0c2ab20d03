"""Allocation values from verl's registry against the closed-form binary/graded formulas."""

from __future__ import annotations

import math

import numpy as np
import pytest

from mapo_verl_cpu.experiments.study.allocation import (
    allocation_metrics,
    binary_allocation,
    graded_allocation,
    outlier_zscore,
)
from mapo_verl_cpu.experiments.study.estimators import DEFAULT_ESTIMATORS, ESTIMATORS

EPS = 1e-6
SPECS = [ESTIMATORS[k] for k in DEFAULT_ESTIMATORS]


def expected(key: str, g: int, n: int) -> tuple[float, float]:
    """(success's, failure's) advantage for N successes out of G, written out by hand."""
    p = n / g
    sigma = math.sqrt(g * p * (1 - p) / (g - 1))
    grpo = ((1 - p) / (sigma + EPS), -p / (sigma + EPS))
    dr = (1 - p, -p)
    apd = ((1 - p) / (p + EPS), -p / (p + EPS))
    lam = {"mapo_tcr": (2 * p - 1) ** 2, "mapo_linear": abs(2 * p - 1)}
    if key == "grpo":
        return grpo
    if key == "drgrpo":
        return dr
    if key == "apd":
        return apd
    w = lam[key]
    return ((1 - w) * grpo[0] + w * apd[0], (1 - w) * grpo[1] + w * apd[1])


@pytest.mark.parametrize("g", [4, 5, 12])
def test_binary_allocation_matches_formulas(g: int) -> None:
    table = binary_allocation(SPECS, g)
    assert len(table) == len(SPECS) * (g + 1)
    for _, row in table.iterrows():
        succ, fail = expected(row["estimator"], g, int(row["N"]))
        if row["N"] > 0:
            assert row["adv_success"] == pytest.approx(succ, rel=1e-5, abs=1e-5), row.to_dict()
        else:
            assert math.isnan(row["adv_success"])
        if row["N"] < g:
            assert row["adv_failure"] == pytest.approx(fail, rel=1e-5, abs=1e-5), row.to_dict()
        else:
            assert math.isnan(row["adv_failure"])
    # a group whose responses all agree carries no signal under any estimator
    assert np.allclose(table.loc[table["N"].isin([0, g]), "group_abs_sum"], 0.0, atol=1e-6)


def test_graded_outlier_and_paper_example() -> None:
    graded = graded_allocation(SPECS, [4, 12]).set_index(["estimator", "G"])
    # verl's GRPO uses the unbiased std: -(G-1)/sqrt(G); -1.5 at G = 4
    assert graded.loc[("grpo", 4), "adv_outlier"] == pytest.approx(-1.5, abs=1e-4)
    assert graded.loc[("grpo", 12), "adv_outlier"] == pytest.approx(outlier_zscore(12), rel=1e-4)
    assert outlier_zscore(4, unbiased=False) == pytest.approx(-1.732, abs=1e-3)  # the paper's number
    for g in (4, 12):
        mu = 1 - 0.1 / g
        sigma = math.sqrt(((0.9 - mu) ** 2 + (g - 1) * (1 - mu) ** 2) / (g - 1))
        dev, apd = (0.9 - mu) / (sigma + EPS), (0.9 - mu) / (mu + EPS)
        lam = (2 * (g - 1) / g - 1) ** 2  # 0.9 is not a success: p = (G-1)/G
        assert graded.loc[("mapo_tcr", g), "adv_outlier"] == pytest.approx((1 - lam) * dev + lam * apd, rel=1e-4)
        assert graded.loc[("drgrpo", g), "adv_outlier"] == pytest.approx(0.9 - mu, rel=1e-4)
        assert graded.loc[("apd", g), "adv_outlier"] == pytest.approx(apd, rel=1e-4)


def test_reversion_and_mirror_metrics() -> None:
    g = 12
    metrics = {m.estimator: m for m in allocation_metrics(binary_allocation(SPECS, g), graded_allocation(SPECS, [g]))}
    # GRPO and Dr.GRPO mirror p <-> 1-p exactly; the certainty weight breaks the mirror
    assert metrics["grpo"].mirror_ratio == pytest.approx(1.0, rel=1e-5)
    assert metrics["drgrpo"].mirror_ratio == pytest.approx(1.0, rel=1e-5)
    assert metrics["apd"].mirror_ratio == pytest.approx(11.0, rel=1e-4)
    assert metrics["mapo_tcr"].mirror_ratio > 1.5
    # GRPO's reversion: the rare failure on an easy group against a failure at p = 1/2
    sigma_easy, sigma_half = math.sqrt(g * (11 / 12) * (1 / 12) / (g - 1)), math.sqrt(g * 0.25 / (g - 1))
    assert metrics["grpo"].reversion_ratio == pytest.approx((11 / 12 / sigma_easy) / (0.5 / sigma_half), rel=1e-4)
    assert metrics["grpo"].fail_easy == pytest.approx(-11 / math.sqrt(12), rel=1e-5)
    assert metrics["mapo_tcr"].reversion_ratio < metrics["grpo"].reversion_ratio
    assert metrics["apd"].reversion_ratio == pytest.approx(1.0, rel=1e-4)
