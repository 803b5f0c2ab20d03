"""Mixed Advantage Policy Optimization (MAPO, arXiv 2509.18849): the math, in pure PyTorch.

Nothing here imports verl; :mod:`mapo_verl.verl_plugin` adapts it to verl's estimator
signature.  For the G responses of one prompt (a *group*) with outcome scores s_i and the
reward's floor r_min (``reward_min``, default 0: the paper's non-negative rewards):

    mu        = mean_i s_i
    sigma     = std_i s_i                        (unbiased, as ``torch.std`` and verl's GRPO)
    N         = #{i : s_i >= success_threshold}  (trajectory certainty counts successes)
    p         = N / G                            (success ratio)
    lambda(p) = 1 - 4 p (1 - p) = (2p - 1)^2     ("tcr", the paper's trajectory certainty reweight)

    D_i   = (s_i - mu) / (sigma + eps)           (GRPO's z-score; ``s_i - mu`` without std norm)
    APD_i = (s_i - mu) / (mu - r_min + eps)      (Advantage Percent Deviation)
    A_i   = (1 - lambda(p)) * D_i + lambda(p) * APD_i

APD is the deviation as a share of the group mean's height above the floor.  With r_min = 0 it
is the paper's (s_i - mu) / mu.  For binary rewards {r_min, b} it is exactly the paper's
(1 - p) / p for a success and -1 for a failure, whatever r_min and b are, so shifting the reward
and the floor together changes nothing.  A score below r_min is an error.

Bounds (G >= 2, every s_i >= r_min; t_i = s_i - r_min >= 0 has mean m = mu - r_min):

* APD: t_i - m <= (G - 1) m and m - t_i <= m, so  -1 <= APD_i <= G - 1.
* D with std norm: Samuelson's inequality with the unbiased sigma, |s_i - mu| <= sigma (G - 1) / sqrt(G),
  so |D_i| <= (G - 1) / sqrt(G) <= G - 1.
* D without std norm: s_i - mu = (1/G) sum_j (s_i - s_j), so |D_i| <= (1 - 1/G) (max_j s_j - min_j s_j).
* A mixes them with weights 1 - lambda and lambda in [0, 1]:  |A_i| <= G - 1 with std norm (the
  default), and |A_i| <= max(G - 1, (1 - 1/G) (max_j s_j - min_j s_j)) without.
  See :func:`advantage_bound`; ``tests/estimator/test_bounds.py`` checks it over random groups.

A group of a single response carries no relative signal and gets A = 0.

Which group's lambda a response is mixed with (``lambda_assignment``):

* ``group`` (default, the paper's intent): its own group's lambda(p), as above.
* ``permuted`` (a control): the lambda of *another* group of the batch, chosen by
  :func:`permuted_weight_source`; D_i and APD_i stay the response's own.  It reproduces in effect what the
  authors' code did (``grpomixpro`` hands out the weights by group order after the batch was reordered, so
  almost every response got another group's lambda; docs/fidelity.md, M1) and tests whether MAPO's gains
  need each group's own certainty.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd
import torch

#: Absolute slack, scaled by max(1, |threshold|), when comparing a score with the success
#: threshold or the reward floor: 0.9 * 1.0 + 0.1 * 1.0 is 0.99999994 in float32 and must
#: still count as 1.0.
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


@dataclass(frozen=True)
class MapoSettings:
    """MAPO's knobs with their defaults, defined once: verl's ``algorithm.mapo.*`` (plus verl's own
    ``algorithm.norm_adv_by_std_in_grpo``), ``explain``'s flags and the functions below all take them from here."""

    #: s_i >= success_threshold counts as a success (the module docstring's N)
    success_threshold: float = 1.0
    #: the reward's floor r_min; APD's denominator is measured from it
    reward_min: float = 0.0
    #: lambda(p), a name of :data:`LAMBDA_FUNCTIONS`
    lambda_fn: str = "tcr"
    #: eps of D_i and APD_i
    epsilon: float = 1e-6
    #: D_i with std normalisation (GRPO) or without (Dr.GRPO); verl's ``algorithm.norm_adv_by_std_in_grpo``
    norm_adv_by_std: bool = True
    #: ``group``: each response mixed with its own group's lambda (the paper); ``permuted``: another group's
    lambda_assignment: str = "group"
    #: a reward field (e.g. ``acc``) that says which responses succeeded (1) or failed (0); None: s_i >= threshold.
    #: With it, p and lambda(p) come from that field while D_i and APD_i use the (possibly shaped) reward
    success_key: str | None = None


#: the defaults
DEFAULTS = MapoSettings()


def validate_settings(settings: MapoSettings, name: Callable[[str], str] = lambda key: key) -> MapoSettings:
    """``settings`` when every knob is usable, else a ValueError naming the knob as ``name(field)`` spells it
    (the plug-in: ``algorithm.mapo.KEY``; ``explain``: ``--key``). One function for the plug-in, ``check`` and
    ``explain``: known ``lambda_fn`` and ``lambda_assignment``, finite numbers, epsilon > 0, and a success
    threshold above the reward's floor."""
    if settings.lambda_fn not in LAMBDA_FUNCTIONS:
        raise ValueError(
            f"{name('lambda_fn')}={settings.lambda_fn!r} is not a known lambda function; "
            f"valid names: {', '.join(sorted(LAMBDA_FUNCTIONS))}"
        )
    if settings.lambda_assignment not in LAMBDA_ASSIGNMENTS:
        raise ValueError(
            f"{name('lambda_assignment')}={settings.lambda_assignment!r} is not known; valid values: "
            f"{', '.join(LAMBDA_ASSIGNMENTS)} (group: each group's own lambda, the paper; permuted: another "
            "group's, the control)"
        )
    for key in ("success_threshold", "reward_min", "epsilon"):
        value = getattr(settings, key)
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise ValueError(f"{name(key)} must be a number, got {value!r}")
        if not math.isfinite(value):
            raise ValueError(f"{name(key)} must be finite, got {value!r}")
    key = settings.success_key
    if key is not None and (not isinstance(key, str) or not key):
        raise ValueError(f"{name('success_key')} must be a reward field's name (e.g. acc), got {key!r}")
    if settings.epsilon <= 0:
        raise ValueError(f"{name('epsilon')} must be a positive number, got {settings.epsilon:g}")
    if settings.success_threshold <= settings.reward_min:
        raise ValueError(
            f"{name('success_threshold')}={settings.success_threshold:g} must lie above "
            f"{name('reward_min')}={settings.reward_min:g} (the reward's floor)"
        )
    return settings


def trajectory_certainty_weight(success_ratio: torch.Tensor, lambda_fn: str = DEFAULTS.lambda_fn) -> torch.Tensor:
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


#: How a response's lambda is chosen: its own group's (``group``), or another group's (``permuted``, a control).
LAMBDA_ASSIGNMENTS = ("group", "permuted")


def _slack(level: float) -> float:
    return SUCCESS_TOLERANCE * max(1.0, abs(level))


def is_success(scores: torch.Tensor, success_threshold: float) -> torch.Tensor:
    """s_i >= threshold, with slack ``SUCCESS_TOLERANCE * max(1, |threshold|)`` for float32 rounding."""
    return scores >= success_threshold - _slack(success_threshold)


def advantage_bound(group_size: int, *, norm_by_std: bool = True, spread: float = 0.0) -> float:
    """The largest |A_i| a group of ``group_size`` scores >= reward_min can receive (module docstring).

    ``spread`` (max_j s_j - min_j s_j) matters only without std normalisation.
    """
    if group_size < 2:
        return 0.0
    apd = float(group_size - 1)
    return apd if norm_by_std else max(apd, (1.0 - 1.0 / group_size) * spread)


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
    missing = pd.isna(labels_in)
    if missing.any():
        rows = np.flatnonzero(missing)
        raise ValueError(
            f"{rows.size} response(s) have no group label (uid None or NaN) at rows {rows[:5].tolist()}: every "
            "response needs its prompt's uid (verl sets data.non_tensor_batch['uid'])"
        )
    codes, labels = pd.factorize(labels_in, use_na_sentinel=False)
    codes = codes.astype(np.int64, copy=False)
    sizes = np.bincount(codes, minlength=len(labels)).astype(np.int64, copy=False)
    return GroupIds(ids=codes, sizes=sizes, labels=np.asarray(labels, dtype=object))


def permuted_weight_source(groups: GroupIds) -> np.ndarray:
    """For each response, the dense id of the group whose lambda it receives under ``permuted`` (host, int64).

    The rule, deterministic for a given batch (its uids and their row order):

    1. The K groups are put on a cycle, ordered by a fixed-key hash of their label
       (``pandas.util.hash_array`` of ``str(label)``, default key; ties keep first appearance), so that the
       order does not follow the data's order (a dataset sorted by difficulty stays decorrelated).
    2. A response's offset o is its rank among its group's responses, in batch row order (0, 1, ...).
    3. It receives the lambda of the group 1 + (o mod (K - 1)) places further along the cycle.

    With K >= 2 the step lies in 1..K-1, so every response gets another group's lambda.  For each offset the
    map from groups to sources is a rotation of the cycle, so when every group has n responses (verl's batches)
    each group's lambda is handed out exactly n times: the weights of the batch are the intended ones,
    reassigned.  A group's responses get the lambdas of different groups when n <= K - 1.  This is what the
    authors' indexing did in effect: response row j got the lambda of the group ranked j // n, the batch's rows
    having been reordered by length, so each weight was repeated n times and almost never reached its own
    group (docs/fidelity.md, M1).  With a single group there is nothing to permute: its own lambda stays.
    """
    num_groups = groups.num_groups
    ids = groups.ids
    if num_groups < 2:
        return ids.copy()
    hashes = pd.util.hash_array(np.asarray([str(label) for label in groups.labels], dtype=object))
    cycle = np.argsort(hashes, kind="stable")  # group ids in cycle order
    position = np.empty(num_groups, dtype=np.int64)
    position[cycle] = np.arange(num_groups, dtype=np.int64)
    by_group = np.argsort(ids, kind="stable")  # rows grouped, each group's rows in row order
    starts = np.cumsum(groups.sizes) - groups.sizes
    offset = np.empty_like(ids)
    offset[by_group] = np.arange(ids.shape[0], dtype=np.int64) - starts[ids[by_group]]
    step = 1 + offset % (num_groups - 1)
    return cycle[(position[ids] + step) % num_groups]


def check_scores(scores: torch.Tensor, groups: GroupIds, reward_min: float) -> None:
    """Every score is finite and >= ``reward_min`` (within float32 slack); ValueError otherwise.

    On CPU the error names how many scores, which rows and uids, and the knob.  On CUDA the
    check is ``torch._assert_async`` (no host synchronisation): a failure surfaces as a CUDA
    device-side assertion with the same sentence at the next synchronisation, which ends the
    process, as an error at step 1 should.
    """
    floor = reward_min - _slack(reward_min)
    ok = torch.isfinite(scores) & (scores >= floor)
    rule = (
        f"response scores must be finite and >= algorithm.mapo.reward_min={reward_min:g} (the reward's floor; "
        "set it to the lowest score your reward can give)"
    )
    if scores.is_cuda:
        torch._assert_async(ok.all(), rule)
        return
    if bool(ok.all()):
        return
    rows = (~ok).nonzero().flatten().numpy()
    values = scores[torch.from_numpy(rows[:5])].tolist()
    uids = list(dict.fromkeys(str(groups.labels[groups.ids[r]]) for r in rows[:5]))
    nonfinite = int((~torch.isfinite(scores)).sum())
    below = rows.size - nonfinite
    raise ValueError(
        f"{rows.size} of {scores.numel()} response scores are invalid ({nonfinite} NaN or infinite, {below} below "
        f"algorithm.mapo.reward_min={reward_min:g}): rows {rows[:5].tolist()}, scores {values}, uids {uids}; {rule}"
    )


def _check_apd_resolution(
    centred: torch.Tensor,
    percent: torch.Tensor,
    applied: torch.Tensor,
    singleton: torch.Tensor,
    reward_min: float,
    out: torch.dtype,
    groups: GroupIds,
) -> None:
    """APD stays finite and, where a response deviates and its lambda > 0, above the output dtype's smallest normal
    number; otherwise ``reward_min`` lies so far below the rewards that APD = (s - mu) / (mu - r_min) overflows or
    underflows: a ValueError naming the knob (on CUDA ``torch._assert_async``, as :func:`check_scores`)."""
    tiny = torch.finfo(out).tiny
    lost = (centred != 0) & (applied > 0) & ~singleton & ~(percent.abs() >= tiny)  # NaN compares False: caught
    rule = (
        f"algorithm.mapo.reward_min={reward_min:g} lies so far below the rewards that APD = (s - mu) / (mu - r_min) "
        f"over- or underflows in {str(out).removeprefix('torch.')}; set it to the lowest score your reward can give"
    )
    if centred.is_cuda:
        torch._assert_async(~lost.any(), rule)
        return
    if not bool(lost.any()):
        return
    rows = lost.nonzero().flatten().numpy()
    uids = list(dict.fromkeys(str(groups.labels[groups.ids[r]]) for r in rows[:5]))
    raise ValueError(f"{rule}: rows {rows[:5].tolist()}, uids {uids}")


@dataclass(frozen=True)
class MixedAdvantageResult:
    """Per-response results of :func:`compute_mixed_advantage` (all shape (B,), on the scores' device).

    ``advantage`` is A_i; ``success_ratio`` the group's p and ``certainty_weight`` its lambda(p);
    ``success`` marks s_i >= threshold, ``singleton`` a response alone in its group (A_i = 0).
    ``applied_weight`` is the lambda A_i was mixed with (``certainty_weight`` itself under ``group``) and
    ``permuted`` marks a response whose lambda came from another group (``lambda_assignment="permuted"``).
    """

    advantage: torch.Tensor
    success_ratio: torch.Tensor
    certainty_weight: torch.Tensor
    success: torch.Tensor
    singleton: torch.Tensor
    applied_weight: torch.Tensor
    permuted: torch.Tensor


def compute_mixed_advantage(
    scores: torch.Tensor,
    groups: GroupIds,
    *,
    success_threshold: float = DEFAULTS.success_threshold,
    reward_min: float = DEFAULTS.reward_min,
    lambda_fn: str = DEFAULTS.lambda_fn,
    epsilon: float = DEFAULTS.epsilon,
    norm_by_std: bool = DEFAULTS.norm_adv_by_std,
    lambda_assignment: str = DEFAULTS.lambda_assignment,
    success: torch.Tensor | None = None,
) -> MixedAdvantageResult:
    """MAPO's advantage A_i for each response's outcome score s_i (see the module docstring).

    Scores are checked by :func:`check_scores`, then shifted to t_i = max(s_i - r_min, 0) (the
    clamp only absorbs float32 rounding below the floor), so that APD_i = (t_i - m) / (m + eps)
    and D_i is unchanged by the shift.  Group sums use ``index_add_`` over the dense ids: a few
    passes over B scores, no loop over groups, and on CUDA no host synchronisation.  Statistics
    are accumulated in float64; the result is cast back to the scores' dtype.

    ``lambda_assignment="permuted"`` mixes each response with another group's lambda
    (:func:`permuted_weight_source`); ``group`` (the default) runs exactly the computation above.
    ``success`` (a boolean per response) replaces s_i >= ``success_threshold`` as the count N behind p: a declared
    correctness signal, while D_i and APD_i still use the scores.
    """
    if scores.ndim != 1:
        raise ValueError(f"scores must be one-dimensional (one per response), got shape {tuple(scores.shape)}")
    if groups.ids.shape[0] != scores.shape[0]:
        raise ValueError(f"index has {groups.ids.shape[0]} entries but there are {scores.shape[0]} responses")
    if lambda_fn not in LAMBDA_FUNCTIONS:  # fail before any arithmetic
        trajectory_certainty_weight(scores.new_zeros(0), lambda_fn)
    if lambda_assignment not in LAMBDA_ASSIGNMENTS:
        raise ValueError(
            f"unknown lambda_assignment {lambda_assignment!r}; valid names: {', '.join(LAMBDA_ASSIGNMENTS)}"
        )
    if not (math.isfinite(reward_min) and math.isfinite(success_threshold)):
        raise ValueError(f"reward_min={reward_min} and success_threshold={success_threshold} must be finite")
    check_scores(scores, groups, reward_min)

    device = scores.device
    ids = torch.from_numpy(groups.ids).to(device, non_blocking=True)
    sizes = torch.from_numpy(groups.sizes).to(device=device, dtype=torch.float64, non_blocking=True)
    s = scores.to(torch.float64)
    t = (s - reward_min).clamp_min(0.0)  # height above the floor

    sums = torch.zeros(groups.num_groups, dtype=torch.float64, device=device).index_add_(0, ids, t)
    height_g = sums / sizes  # mu - r_min
    # s_i - mu from the scores themselves, so that no reward_min, however far below, can round the deviations away
    mean_g = torch.zeros_like(sums).index_add_(0, ids, s) / sizes
    centred = s - mean_g.index_select(0, ids)
    sq = torch.zeros_like(sums).index_add_(0, ids, centred * centred)
    std_g = (sq / (sizes - 1.0).clamp_min(1.0)).sqrt()  # Bessel-corrected, as torch.std

    if success is None:
        success = is_success(s, success_threshold)
    elif success.shape != scores.shape or success.dtype != torch.bool:
        raise ValueError(f"success must be a bool tensor of shape {tuple(scores.shape)}, got {success.dtype} "
                         f"{tuple(success.shape)}")  # fmt: skip
    else:
        success = success.to(device)
    successes_g = torch.zeros_like(sums).index_add_(0, ids, success.to(torch.float64))
    ratio_g = successes_g / sizes
    weight_g = trajectory_certainty_weight(ratio_g, lambda_fn)

    # index_select, not advanced indexing: x[ids] takes milliseconds on a busy multi-threaded CPU.
    height, std, ratio, weight = (x.index_select(0, ids) for x in (height_g, std_g, ratio_g, weight_g))
    applied = weight
    permuted = torch.zeros_like(success)
    if lambda_assignment == "permuted":
        source = permuted_weight_source(groups)
        applied = weight_g.index_select(0, torch.from_numpy(source).to(device, non_blocking=True))
        permuted = torch.from_numpy(source != groups.ids).to(device, non_blocking=True)
    deviation = centred / (std + epsilon) if norm_by_std else centred
    percent = centred / (height + epsilon)
    advantage = (1.0 - applied) * deviation + applied * percent

    singleton = (sizes == 1.0).index_select(0, ids)
    advantage = advantage.masked_fill(singleton, 0.0)

    out = scores.dtype
    _check_apd_resolution(centred, percent, applied, singleton, reward_min, out, groups)
    certainty = weight.to(out)
    return MixedAdvantageResult(
        advantage=advantage.to(out),
        success_ratio=ratio.to(out),
        certainty_weight=certainty,
        success=success,
        singleton=singleton,
        applied_weight=certainty if applied is weight else applied.to(out),
        permuted=permuted,
    )
