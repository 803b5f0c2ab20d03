"""Mixed Advantage Policy Optimization (MAPO, arXiv 2509.18849): the math, in pure PyTorch.

Nothing here imports verl; :mod:`mapo_verl.verl_plugin` adapts it to verl's estimator
signature.  For the G responses of one prompt (a *group*) with outcome scores s_i:

    mu        = mean_i s_i
    sigma     = std_i s_i                      (unbiased, as ``torch.std`` and verl's GRPO)
    N         = #{i : s_i >= success_threshold}  (trajectory certainty counts successes)
    p         = N / G                          (success ratio)
    lambda(p) = 1 - 4 p (1 - p) = (2p - 1)^2   ("tcr", the paper's trajectory certainty reweight)

    deviation_i = (s_i - mu) / (sigma + eps)   (GRPO's z-score; ``s_i - mu`` without std norm)
    APD_i       = (s_i - mu) / (|mu| + eps)    (Advantage Percent Deviation)
    A_i         = (1 - lambda(p)) * deviation_i + lambda(p) * APD_i

The paper writes APD as (s_i - mu) / mu, which assumes non-negative rewards.  We divide by
|mu| so that a signed reward with a negative group mean keeps the advantage's sign (a response
above the mean is always pushed up); for mu >= 0 the two are identical.

A group of a single response carries no relative signal and gets A = 0.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd
import torch

#: Absolute slack, scaled by max(1, |threshold|), when comparing a score with the success
#: threshold: 0.9 * 1.0 + 0.1 * 1.0 is 0.99999994 in float32 and must still count as 1.0.
SUCCESS_TOLERANCE = 1e-6


def _lambda_tcr(p: torch.Tensor) -> torch.Tensor:
    return 1.0 - 4.0 * p * (1.0 - p)


def _lambda_linear(p: torch.Tensor) -> torch.Tensor:
    return (2.0 * p - 1.0).abs()


def _lambda_zero(p: torch.Tensor) -> torch.Tensor:
    return torch.zeros_like(p)


def _lambda_one(p: torch.Tensor) -> torch.Tensor:
    return torch.ones_like(p)


#: lambda(p) choices.  ``tcr`` is the paper's; ``zero`` reduces MAPO to GRPO (pure deviation),
#: ``one`` to pure Advantage Percent Deviation; ``linear`` is a gentler certainty ramp |2p - 1|.
LAMBDA_FUNCTIONS: dict[str, Callable[[torch.Tensor], torch.Tensor]] = {
    "tcr": _lambda_tcr,
    "linear": _lambda_linear,
    "zero": _lambda_zero,
    "one": _lambda_one,
}


def trajectory_certainty_weight(success_ratio: torch.Tensor, lambda_fn: str = "tcr") -> torch.Tensor:
    """lambda(p): how much of the APD term a group with success ratio p receives.

    ``tcr``: 1 - 4p(1-p); ``linear``: |2p-1|; ``zero``: 0; ``one``: 1.  All map [0, 1] into
    [0, 1], are symmetric about p = 1/2, and (but ``one``) vanish at the most uncertain p = 1/2.
    """
    try:
        weight = LAMBDA_FUNCTIONS[lambda_fn]
    except KeyError:
        raise ValueError(
            f"unknown lambda_fn {lambda_fn!r}; valid names: {', '.join(sorted(LAMBDA_FUNCTIONS))}"
        ) from None
    return weight(success_ratio)


def is_success(scores: torch.Tensor, success_threshold: float) -> torch.Tensor:
    """s_i >= threshold, with slack ``SUCCESS_TOLERANCE * max(1, |threshold|)`` for float32 rounding."""
    return scores >= success_threshold - SUCCESS_TOLERANCE * max(1.0, abs(success_threshold))


def advantage_percent_deviation(scores: torch.Tensor, mean: torch.Tensor, epsilon: float) -> torch.Tensor:
    """APD_i = (s_i - mu) / (|mu| + eps): the deviation as a fraction of the group mean."""
    return (scores - mean) / (mean.abs() + epsilon)


def group_deviation(
    scores: torch.Tensor, mean: torch.Tensor, std: torch.Tensor, epsilon: float, norm_by_std: bool
) -> torch.Tensor:
    """GRPO's advantage: (s_i - mu) / (sigma + eps), or s_i - mu when ``norm_by_std`` is false."""
    centred = scores - mean
    return centred / (std + epsilon) if norm_by_std else centred


@dataclass(frozen=True)
class GroupIds:
    """Responses mapped to dense group ids 0..num_groups-1, with each group's size (on the host)."""

    ids: np.ndarray  # (B,) int64
    sizes: np.ndarray  # (num_groups,) int64
    labels: np.ndarray  # (num_groups,) the original label of each group

    @property
    def num_groups(self) -> int:
        return int(self.sizes.shape[0])


def group_ids_from_index(index: Any) -> GroupIds:
    """Map arbitrary group labels (verl's uid object array, ints, a list) to dense ids.

    One hashing pass (``pandas.factorize``), no Python loop; order of appearance is kept, so
    groups may be uneven and interleaved in any order.
    """
    if isinstance(index, torch.Tensor):
        index = index.detach().cpu().numpy()
    labels_in = np.asarray(index, dtype=object) if not isinstance(index, np.ndarray) else index
    if labels_in.ndim != 1:
        raise ValueError(f"index must be one-dimensional (one group label per response), got shape {labels_in.shape}")
    codes, labels = pd.factorize(labels_in, use_na_sentinel=False)
    codes = codes.astype(np.int64, copy=False)
    sizes = np.bincount(codes, minlength=len(labels)).astype(np.int64, copy=False)
    return GroupIds(ids=codes, sizes=sizes, labels=np.asarray(labels, dtype=object))


@dataclass(frozen=True)
class MixedAdvantage:
    """Per-response results of :func:`mixed_advantage` (all shape (B,), on the scores' device).

    ``advantage`` is A_i; the rest explain it: the group's success ratio p, lambda(p), and the
    two terms that A_i mixes.  ``singleton`` marks responses alone in their group (A_i = 0).
    """

    advantage: torch.Tensor
    success_ratio: torch.Tensor
    certainty_weight: torch.Tensor
    deviation: torch.Tensor
    percent_deviation: torch.Tensor
    success: torch.Tensor
    singleton: torch.Tensor


def mixed_advantage(
    scores: torch.Tensor,
    groups: GroupIds,
    *,
    success_threshold: float = 1.0,
    lambda_fn: str = "tcr",
    epsilon: float = 1e-6,
    norm_by_std: bool = True,
) -> MixedAdvantage:
    """MAPO's advantage A_i for each response's outcome score s_i (see the module docstring).

    Group sums use ``index_add_`` over the dense ids, so the cost is a few passes over B scores,
    with no loop over groups and no host synchronisation.  Statistics are accumulated in float64
    (B is small; this keeps mu and sigma exact to float32 output precision); the result is cast
    back to the scores' dtype.
    """
    if scores.ndim != 1:
        raise ValueError(f"scores must be one-dimensional (one per response), got shape {tuple(scores.shape)}")
    if groups.ids.shape[0] != scores.shape[0]:
        raise ValueError(f"index has {groups.ids.shape[0]} entries but there are {scores.shape[0]} responses")
    if lambda_fn not in LAMBDA_FUNCTIONS:  # fail before any arithmetic
        trajectory_certainty_weight(scores.new_zeros(0), lambda_fn)

    device = scores.device
    ids = torch.from_numpy(groups.ids).to(device, non_blocking=True)
    sizes = torch.from_numpy(groups.sizes).to(device=device, dtype=torch.float64, non_blocking=True)
    s = scores.to(torch.float64)

    sums = torch.zeros(groups.num_groups, dtype=torch.float64, device=device).index_add_(0, ids, s)
    mean_g = sums / sizes
    centred = s - mean_g.index_select(0, ids)
    sq = torch.zeros_like(sums).index_add_(0, ids, centred * centred)
    std_g = (sq / (sizes - 1.0).clamp_min(1.0)).sqrt()  # Bessel-corrected, as torch.std

    success = is_success(s, success_threshold)
    successes_g = torch.zeros_like(sums).index_add_(0, ids, success.to(torch.float64))
    ratio_g = successes_g / sizes
    weight_g = trajectory_certainty_weight(ratio_g, lambda_fn)

    # index_select, not advanced indexing: x[ids] takes milliseconds on a busy multi-threaded CPU.
    mean, std, ratio, weight = (x.index_select(0, ids) for x in (mean_g, std_g, ratio_g, weight_g))
    deviation = group_deviation(s, mean, std, epsilon, norm_by_std)
    percent = advantage_percent_deviation(s, mean, epsilon)
    advantage = (1.0 - weight) * deviation + weight * percent

    singleton = (sizes == 1.0).index_select(0, ids)
    advantage = advantage.masked_fill(singleton, 0.0)

    out = scores.dtype
    return MixedAdvantage(
        advantage=advantage.to(out),
        success_ratio=ratio.to(out),
        certainty_weight=weight.to(out),
        deviation=deviation.to(out),
        percent_deviation=percent.to(out),
        success=success,
        singleton=singleton,
    )
