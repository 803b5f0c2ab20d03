"""Part 1: how each estimator allocates advantage across groups of different certainty.

For a group of G responses with binary rewards and N successes (p = N / G) every estimator
gives one value to all successes and one to all failures.  With mu = p and the unbiased
sigma = sqrt(G p (1 - p) / (G - 1)):

    GRPO      success (1 - p) / sigma          failure  -p / sigma
    Dr.GRPO   success 1 - p                    failure  -p
    APD       success (1 - p) / p              failure  -1
    MAPO      (1 - lambda(p)) * GRPO + lambda(p) * APD

Two numbers summarise the paper's two complaints about GRPO:

* advantage reversion: ``reversion_ratio`` = |A_fail(N = G-1)| / |A_fail(N = G/2)|, how much
  harder the rare failure on a near-certain (easy) group is pushed down than a failure on a
  coin-flip group (GRPO: (G-1)/sqrt(G) against ~1);
* advantage mirror: ``mirror_ratio`` = A_succ(N = 1) / |A_fail(N = G-1)|, the rare success on a
  hard prompt against the rare failure on an easy one; exactly 1 when the allocation mirrors
  p <-> 1-p (GRPO and Dr.GRPO), > 1 when the hard prompt's success counts for more.

The graded case is the paper's example: one 0.9 among G-1 rewards of 1.0 (success = 1.0).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import pandas as pd
import torch

from mapo_verl_cpu.experiments.study.estimators import EstimatorSpec, compute_advantages, group_uids


def binary_allocation(specs: list[EstimatorSpec], group_size: int) -> pd.DataFrame:
    """One row per (estimator, N): p, the success's and failure's advantage, lambda, sum_i |A_i|.

    All G+1 groups (N = 0..G) go through the estimator in one verl batch.  A success's
    advantage is NaN when N = 0 (there is none), a failure's when N = G.
    """
    g = group_size
    scores = torch.tensor([1.0 if i < n else 0.0 for n in range(g + 1) for i in range(g)])
    uid = group_uids(g + 1, g, prefix="N")
    rows = []
    for spec in specs:
        adv = compute_advantages(spec, scores, uid).double().view(g + 1, g)
        for n in range(g + 1):
            p = n / g
            rows.append(
                {
                    "estimator": spec.key,
                    "label": spec.label,
                    "G": g,
                    "N": n,
                    "p": p,
                    "adv_success": float(adv[n, 0]) if n > 0 else math.nan,
                    "adv_failure": float(adv[n, -1]) if n < g else math.nan,
                    "lambda": lambda_of(spec, p),
                    "group_abs_sum": float(adv[n].abs().sum()),
                }
            )
    return pd.DataFrame(rows)


def lambda_of(spec: EstimatorSpec, p: float) -> float:
    """The weight of the APD term: 0 for GRPO/Dr.GRPO, 1 for APD, lambda(p) for MAPO."""
    if spec.registry_name != "mapo":
        return 0.0
    from mapo_verl.mixed_advantage import trajectory_certainty_weight

    return float(trajectory_certainty_weight(torch.tensor(p, dtype=torch.float64), spec.lambda_fn or "tcr"))


def graded_allocation(specs: list[EstimatorSpec], group_sizes: list[int], outlier: float = 0.9) -> pd.DataFrame:
    """The paper's graded group: one ``outlier`` reward among G-1 rewards of 1.0, per estimator and G."""
    rows = []
    for g in group_sizes:
        scores = torch.tensor([outlier] + [1.0] * (g - 1))
        uid = group_uids(1, g, prefix="graded")
        for spec in specs:
            adv = compute_advantages(spec, scores, uid).double()
            rows.append(
                {
                    "estimator": spec.key,
                    "label": spec.label,
                    "G": g,
                    "outlier_reward": outlier,
                    "adv_outlier": float(adv[0]),
                    "adv_others": float(adv[1]),
                }
            )
    return pd.DataFrame(rows)


@dataclass(frozen=True)
class AllocationMetrics:
    """Reversion and mirror for one estimator (see the module docstring)."""

    estimator: str
    label: str
    fail_easy: float  # A_fail at N = G-1 (the rare failure on an easy group)
    succ_hard: float  # A_succ at N = 1 (the rare success on a hard group)
    fail_coinflip: float  # A_fail at N = round(G/2)
    reversion_ratio: float
    mirror_ratio: float
    graded_outlier: float  # the 0.9's advantage among 1.0s at the same G


def _ratio(numerator: float, denominator: float) -> float:
    """numerator / denominator, NaN where the denominator is 0 (the all-zero estimator `zero`)."""
    return numerator / denominator if denominator != 0 else math.nan


def allocation_metrics(binary: pd.DataFrame, graded: pd.DataFrame) -> list[AllocationMetrics]:
    """Reduce the binary table (one G) and the graded table to :class:`AllocationMetrics`."""
    out = []
    for key, rows in binary.groupby("estimator", sort=False):
        g = int(rows["G"].iloc[0])
        by_n = rows.set_index("N")
        fail_easy = float(by_n.loc[g - 1, "adv_failure"])
        succ_hard = float(by_n.loc[1, "adv_success"])
        fail_mid = float(by_n.loc[g // 2, "adv_failure"])
        same_g = graded[(graded["estimator"] == key) & (graded["G"] == g)]
        out.append(
            AllocationMetrics(
                estimator=str(key),
                label=str(rows["label"].iloc[0]),
                fail_easy=fail_easy,
                succ_hard=succ_hard,
                fail_coinflip=fail_mid,
                reversion_ratio=_ratio(abs(fail_easy), abs(fail_mid)),
                mirror_ratio=_ratio(succ_hard, abs(fail_easy)),
                graded_outlier=float(same_g["adv_outlier"].iloc[0]) if len(same_g) else math.nan,
            )
        )
    return out


def outlier_zscore(group_size: int, unbiased: bool = True) -> float:
    """GRPO's advantage of one 0.9 among G-1 1.0s (any outlier value): -(G-1)/sqrt(G) with the
    unbiased std, -sqrt(G-1) with the population std; the paper's -1.73 = -sqrt(3) is G = 4
    with the population std (verl's unbiased std gives -1.5 there)."""
    g = group_size
    return -(g - 1) / math.sqrt(g) if unbiased else -math.sqrt(g - 1)
