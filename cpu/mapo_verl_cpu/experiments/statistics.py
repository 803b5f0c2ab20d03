"""Statistics over seeds for ``compare``: means with 95% Student t intervals, paired differences, curve areas.

Pure functions on plain numbers (no numpy, no scipy: scipy is not a dependency). With ``n`` values ``x_1..x_n``:

* mean ``m = sum(x_i) / n``, sample standard deviation ``s = sqrt(sum((x_i - m)^2) / (n - 1))``;
* 95% interval ``m -+ t_{0.975, n-1} * s / sqrt(n)`` (:func:`t_quantile`), reported only for ``n >= 2`` and
  ``s > 0``: one value, or values that all agree, give no interval ("n/a"), never a zero-width one;
* paired difference of arm A against arm B: the values above for ``d_k = a_k - b_k`` over the seeds ``k`` both arms
  completed; its smallest detectable difference at this seed count is the interval's half-width
  ``t_{0.975, n-1} * s_d / sqrt(n)`` (:func:`detectable_difference`): a mean difference at least that large, at the
  spread seen, gives an interval that excludes 0;
* area under a curve ``[(t_0, y_0), ..., (t_m, y_m)]``: the trapezoid sum ``sum((t_j - t_{j-1}) * (y_j + y_{j-1}) / 2)``
  divided by the span ``t_m - t_0`` (the curve's mean height; in [0, 1] for accuracies).
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

#: two-sided 95% Student t quantiles t_{0.975, df} for df = 1..30 (tests/runs/test_compare_statistics.py checks each
#: against the t distribution's integral)
T975 = (
    12.7062, 4.3027, 3.1824, 2.7764, 2.5706, 2.4469, 2.3646, 2.3060, 2.2622, 2.2281,
    2.2010, 2.1788, 2.1604, 2.1448, 2.1314, 2.1199, 2.1098, 2.1009, 2.0930, 2.0860,
    2.0796, 2.0739, 2.0687, 2.0639, 2.0595, 2.0555, 2.0518, 2.0484, 2.0452, 2.0423,
)  # fmt: skip
#: the normal distribution's 0.975 quantile
Z975 = 1.959963984540054


def t_quantile(df: int) -> float:
    """t_{0.975, df}: :data:`T975` for df <= 30, above it the Cornish-Fisher expansion around the normal quantile
    ``z + (z^3 + z) / (4 df) + (5 z^5 + 16 z^3 + 3 z) / (96 df^2)`` (within 1e-4 of the exact value for df > 30)."""
    if df < 1:
        raise ValueError(f"degrees of freedom must be >= 1, got {df}")
    if df <= len(T975):
        return T975[df - 1]
    z = Z975
    return z + (z**3 + z) / (4 * df) + (5 * z**5 + 16 * z**3 + 3 * z) / (96 * df**2)


@dataclass(frozen=True)
class Estimate:
    """A mean over ``n`` values and its 95% interval ``[low, high]``; ``low``/``high`` None when there is none
    (fewer than two values, or no spread among them); ``mean`` None when there are no values."""

    mean: float | None
    low: float | None
    high: float | None
    n: int

    @property
    def has_interval(self) -> bool:
        return self.low is not None and self.high is not None

    def covers_zero(self) -> bool | None:
        """Whether the interval contains 0; None without an interval."""
        return None if not self.has_interval else self.low <= 0.0 <= self.high

    def as_dict(self) -> dict[str, float | int | None]:
        return {"mean": self.mean, "low": self.low, "high": self.high, "n": self.n}

    def text(self, signed: bool = False) -> str:
        """``0.797 [0.598, 0.995]``; ``0.797 (n/a: 1 seed)`` or ``(n/a: 3 seeds agree)`` without one; ``n/a``."""
        fmt = "{:+.3f}" if signed else "{:.3f}"
        if self.mean is None:
            return "n/a"
        if not self.has_interval:
            why = "1 seed" if self.n == 1 else f"{self.n} seeds agree"
            return f"{fmt.format(self.mean)} (n/a: {why})"
        return f"{fmt.format(self.mean)} [{fmt.format(self.low)}, {fmt.format(self.high)}]"


def mean_interval(values: Sequence[float], bounds: tuple[float, float] | None = None) -> Estimate:
    """Mean and 95% t interval of ``values`` (module docstring), the interval clipped to ``bounds`` (``(0, 1)`` for
    accuracies: a t interval over few seeds runs past what an accuracy can be)."""
    n = len(values)
    if n == 0:
        return Estimate(None, None, None, 0)
    mean = math.fsum(values) / n
    if n == 1:
        return Estimate(mean, None, None, 1)
    sd = math.sqrt(math.fsum((x - mean) ** 2 for x in values) / (n - 1))
    if sd <= 1e-12 * max(1.0, abs(mean)):
        return Estimate(mean, None, None, n)
    half = t_quantile(n - 1) * sd / math.sqrt(n)
    low, high = mean - half, mean + half
    if bounds is not None:
        low, high = max(low, bounds[0]), min(high, bounds[1])
    return Estimate(mean, low, high, n)


def detectable_difference(values: Sequence[float]) -> float | None:
    """``t_{0.975, n-1} * s / sqrt(n)`` of ``values`` (paired differences): the smallest mean difference whose 95%
    interval excludes 0 at their spread; None below two values or without spread."""
    n = len(values)
    if n < 2:
        return None
    mean = math.fsum(values) / n
    sd = math.sqrt(math.fsum((x - mean) ** 2 for x in values) / (n - 1))
    return None if sd <= 1e-12 * max(1.0, abs(mean)) else t_quantile(n - 1) * sd / math.sqrt(n)


def paired_values(arm: Mapping[int, float], reference: Mapping[int, float]) -> list[float]:
    """``arm[k] - reference[k]`` for the seeds ``k`` both hold, in seed order."""
    return [arm[seed] - reference[seed] for seed in sorted(arm.keys() & reference.keys())]


def paired_difference(
    arm: Mapping[int, float], reference: Mapping[int, float], bounds: tuple[float, float] | None = (-1.0, 1.0)
) -> Estimate:
    """``arm - reference`` paired by seed over the seeds both hold (seed -> value), as :func:`mean_interval`."""
    return mean_interval(paired_values(arm, reference), bounds)


def curve_area(curve: Sequence[Sequence[float]]) -> float | None:
    """The trapezoid area under ``[[step, value], ...]`` divided by its step span; None with fewer than two steps."""
    points = sorted((float(step), float(value)) for step, value in curve)
    if len(points) < 2 or points[-1][0] == points[0][0]:
        return None
    area = math.fsum((t1 - t0) * (y0 + y1) / 2 for (t0, y0), (t1, y1) in itertools.pairwise(points))
    return area / (points[-1][0] - points[0][0])
