"""Statistics over seeds, tables (CSV, Markdown) and atomic file output."""

from __future__ import annotations

import io
import math
import warnings
from pathlib import Path

import numpy as np
import pandas as pd

from mapo_verl.atomic_io import atomic_write
from mapo_verl_cpu.experiments.study.allocation import AllocationMetrics, outlier_zscore
from mapo_verl_cpu.experiments.study.estimators import get_spec
from mapo_verl_cpu.experiments.study.simulation import SimResult, steps_to_target

# Two-sided 95% Student-t quantiles t_{0.975, df} (no scipy dependency).
_T975 = {1: 12.706, 2: 4.303, 3: 3.182, 4: 2.776, 5: 2.571, 6: 2.447, 7: 2.365, 8: 2.306, 9: 2.262, 10: 2.228,
         11: 2.201, 12: 2.179, 13: 2.160, 14: 2.145, 15: 2.131, 16: 2.120, 17: 2.110, 18: 2.101, 19: 2.093,
         20: 2.086, 25: 2.060, 30: 2.042, 40: 2.021, 60: 2.000, 120: 1.980}  # fmt: skip


def t_quantile(df: int) -> float:
    """t_{0.975, df}; the next tabulated df at or below ``df`` (conservative), 1.96 beyond 120."""
    if df < 1:
        return math.nan
    if df > 120:
        return 1.96
    return _T975[max(k for k in _T975 if k <= df)]


def mean_ci(values: np.ndarray, axis: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Mean and the 95% t-interval half-width t_{0.975, n-1} * sd / sqrt(n) along ``axis``."""
    n = values.shape[axis]
    mean = values.mean(axis=axis)
    if n < 2:
        return mean, np.full_like(mean, np.nan)
    half = t_quantile(n - 1) * values.std(axis=axis, ddof=1) / math.sqrt(n)
    return mean, half


# ------------------------------------------------------------------------------------- atomic output
def write_csv(path: Path, frame: pd.DataFrame) -> None:
    atomic_write(path, lambda tmp: frame.to_csv(tmp, index=False, float_format="%.6g"))


def save_figure(path: Path, fig, dpi: int = 100) -> None:
    """PNG at ``dpi``, reduced to a 256-colour palette (a third of the size, visually the same)."""
    from PIL import Image

    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=dpi)
    buffer.seek(0)
    image = Image.open(buffer).convert("RGB").quantize(colors=256, method=Image.Quantize.MEDIANCUT)
    atomic_write(path, lambda tmp: image.save(tmp, format="png", optimize=True))


# ----------------------------------------------------------------------------------------- learning
def learning_curves_frame(results: dict[str, SimResult]) -> pd.DataFrame:
    """Per (preset, estimator, step): mean accuracy (all/hard/easy) over seeds and its 95% CI half-width."""
    frames = []
    for preset, res in results.items():
        steps = np.arange(res.acc_all.shape[-1])
        for e, key in enumerate(res.estimators):
            cols: dict[str, object] = {"preset": preset, "estimator": key, "step": steps}
            for name, acc in (("all", res.acc_all), ("hard", res.acc_hard), ("easy", res.acc_easy)):
                mean, half = mean_ci(acc[e], axis=0)
                cols[f"acc_{name}"], cols[f"acc_{name}_ci"] = mean, half
            frames.append(pd.DataFrame(cols))
    return pd.concat(frames, ignore_index=True)


def learning_per_seed_frame(results: dict[str, SimResult], target: float | None = None) -> pd.DataFrame:
    """Per (preset, estimator, seed): final accuracy (all/hard/easy), mean accuracy, steps to target."""
    rows = []
    for preset, res in results.items():
        tgt = default_target(res) if target is None else target
        for e, key in enumerate(res.estimators):
            steps = steps_to_target(res.acc_all[e], tgt)
            for s, seed in enumerate(res.config.seeds):
                rows.append(
                    {
                        "preset": preset,
                        "estimator": key,
                        "seed": seed,
                        "initial_acc": res.acc_all[e, s, 0],
                        "final_acc": res.acc_all[e, s, -1],
                        "final_hard": res.acc_hard[e, s, -1],
                        "final_easy": res.acc_easy[e, s, -1],
                        "mean_acc": res.acc_all[e, s].mean(),
                        "target_acc": tgt,
                        "steps_to_target": steps[s],
                    }
                )
    return pd.DataFrame(rows)


def default_target(res: SimResult, fraction: float = 0.9) -> float:
    """acc0 + fraction * (best final mean accuracy of any estimator - acc0): estimator-neutral."""
    initial = float(res.acc_all[:, :, 0].mean())
    best = float(res.acc_all[:, :, -1].mean(axis=1).max())
    return initial + fraction * (best - initial)


def learning_summary(
    results: dict[str, SimResult], target: float | None = None, baseline: str = "grpo"
) -> pd.DataFrame:
    """One row per (preset, estimator): final accuracy (all/hard/easy) with 95% CIs over seeds, the
    paired difference to ``baseline`` (same task and random numbers per seed), the mean accuracy
    over training (area under the curve) and the steps to reach the target accuracy."""
    rows = []
    for preset, res in results.items():
        tgt = default_target(res) if target is None else target
        base = res.estimators.index(baseline) if baseline in res.estimators else None
        for e, key in enumerate(res.estimators):
            final, final_ci = mean_ci(res.acc_all[e, :, -1])
            hard, hard_ci = mean_ci(res.acc_hard[e, :, -1])
            easy, easy_ci = mean_ci(res.acc_easy[e, :, -1])
            auc, auc_ci = mean_ci(res.acc_all[e].mean(axis=-1))
            if base is not None:
                diff, diff_ci = mean_ci(res.acc_all[e, :, -1] - res.acc_all[base, :, -1])
                dhard, dhard_ci = mean_ci(res.acc_hard[e, :, -1] - res.acc_hard[base, :, -1])
                deasy, deasy_ci = mean_ci(res.acc_easy[e, :, -1] - res.acc_easy[base, :, -1])
                dauc, dauc_ci = mean_ci(res.acc_all[e].mean(-1) - res.acc_all[base].mean(-1))
            else:
                diff = diff_ci = dhard = dhard_ci = deasy = deasy_ci = dauc = dauc_ci = math.nan
            with np.errstate(all="ignore"), warnings.catch_warnings():
                warnings.simplefilter("ignore", RuntimeWarning)
                ess = float(np.nanmean(res.weight_ess[e]))
                hard_push = float(np.nanmean(res.hard_push[e]))
            steps = steps_to_target(res.acc_all[e], tgt)
            reached = np.isfinite(steps)
            rows.append(
                {
                    "preset": preset,
                    "estimator": key,
                    "label": get_spec(key).label,
                    "seeds": len(res.config.seeds),
                    "hard_fraction": float(res.hard_fraction.mean()),
                    "initial_acc": float(res.acc_all[e, :, 0].mean()),
                    "final_acc": float(final),
                    "final_acc_ci": float(final_ci),
                    "final_hard": float(hard),
                    "final_hard_ci": float(hard_ci),
                    "final_easy": float(easy),
                    "final_easy_ci": float(easy_ci),
                    f"final_minus_{baseline}": float(diff),
                    f"final_minus_{baseline}_ci": float(diff_ci),
                    f"hard_minus_{baseline}": float(dhard),
                    f"hard_minus_{baseline}_ci": float(dhard_ci),
                    f"easy_minus_{baseline}": float(deasy),
                    f"easy_minus_{baseline}_ci": float(deasy_ci),
                    "mean_acc": float(auc),
                    "mean_acc_ci": float(auc_ci),
                    f"mean_acc_minus_{baseline}": float(dauc),
                    f"mean_acc_minus_{baseline}_ci": float(dauc_ci),
                    "push_ess": ess,
                    "push_on_hard": hard_push,
                    "target_acc": tgt,
                    # NaN unless every seed reached the target (a mean over the lucky seeds would mislead)
                    "steps_to_target_mean": float(steps.mean()) if reached.all() else math.nan,
                    "steps_to_target_median": float(np.median(steps)) if reached.all() else math.nan,
                    "seeds_reaching_target": int(reached.sum()),
                }
            )
    return pd.DataFrame(rows)


# ----------------------------------------------------------------------------------------- markdown
def _pm(mean: float, half: float, digits: int = 3, signed: bool = False) -> str:
    if not math.isfinite(mean):
        return "–"
    fmt = f"{{:{'+' if signed else ''}.{digits}f}}"
    return fmt.format(mean) + (f" ± {half:.{digits}f}" if math.isfinite(half) else "")


def allocation_markdown(metrics: list[AllocationMetrics], group_size: int) -> str:
    g = group_size
    lines = [
        f"| estimator | A(fail), N={g - 1} (easy) | A(fail), N={g // 2} | reversion ratio | "
        f"A(success), N=1 (hard) | mirror ratio | A(0.9 among 1.0s) |",
        "|---|---:|---:|---:|---:|---:|---:|",
    ]
    for m in metrics:
        lines.append(
            f"| {m.label} | {m.fail_easy:.3f} | {m.fail_coinflip:.3f} | {m.reversion_ratio:.2f} | "
            f"{m.succ_hard:.3f} | {m.mirror_ratio:.2f} | {m.graded_outlier:.3f} |"
        )
    return "\n".join(lines)


def graded_markdown(graded: pd.DataFrame) -> str:
    sizes = sorted(graded["G"].unique())
    head = " | ".join(f"G={g}: 0.9 / 1.0" for g in sizes)
    lines = [f"| estimator | {head} |", "|---|" + "---:|" * len(sizes)]
    for _key, rows in graded.groupby("estimator", sort=False):
        by_g = rows.set_index("G")
        cells = " | ".join(f"{by_g.loc[g, 'adv_outlier']:.3f} / {by_g.loc[g, 'adv_others']:.3f}" for g in sizes)
        lines.append(f"| {rows['label'].iloc[0]} | {cells} |")
    return "\n".join(lines)


def learning_markdown(summary: pd.DataFrame, baseline: str = "grpo") -> str:
    b = baseline
    lines = [
        f"| preset | estimator | final acc | Δ vs {b} | hard | Δ hard | easy | Δ easy | mean acc (AUC) | Δ AUC "
        "| steps to target | push on hard | push ESS |",
        "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for _, r in summary.iterrows():
        steps = r["steps_to_target_mean"]
        steps_txt = f"{steps:.1f}" if math.isfinite(steps) else f"– ({r['seeds_reaching_target']}/{r['seeds']})"
        cells = [str(r["preset"]), str(r["label"])]
        for value, delta in (("final_acc", f"final_minus_{b}"), ("final_hard", f"hard_minus_{b}"),
                             ("final_easy", f"easy_minus_{b}"), ("mean_acc", f"mean_acc_minus_{b}")):  # fmt: skip
            cells += [_pm(r[value], r[f"{value}_ci"]), _pm(r[delta], r[f"{delta}_ci"], signed=True)]
        cells += [steps_txt, f"{r['push_on_hard']:.2f}", f"{r['push_ess']:.2f}"]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def summary_markdown(
    metrics: list[AllocationMetrics], graded: pd.DataFrame, summary: pd.DataFrame, group_size: int
) -> str:
    """``summary.md``: the allocation tables, GRPO's outlier z-score and the learning table, with legends."""
    g = group_size
    targets = summary.groupby("preset", sort=False)["target_acc"].first()
    lines = [
        "# Advantage allocation study (simulation of the mechanism, not the paper's VLM results)",
        "",
        f"## Allocation, G = {g}, binary reward (success = 1)",
        "",
        allocation_markdown(metrics, g),
        "",
        f"reversion ratio = |A(fail, N={g - 1})| / |A(fail, N={g // 2})|; "
        "mirror ratio = A(success, N=1) / |A(fail, N=G-1)| (1 = exact mirror).",
        "",
        "## One 0.9 among 1.0s (graded reward; success = 1.0): advantage of the 0.9 / of each 1.0",
        "",
        graded_markdown(graded),
        "",
        f"GRPO's outlier z-score is -(G-1)/sqrt(G) with the unbiased std (G=4: {outlier_zscore(4):.2f}, "
        f"G={g}: {outlier_zscore(g):.2f}) and -sqrt(G-1) with the population std "
        f"(G=4: {outlier_zscore(4, unbiased=False):.2f}, the paper's -1.73).",
        "",
        "## Learning (95% t-intervals over seeds; differences are paired: same task and random numbers)",
        "",
        learning_markdown(summary),
        "",
        "Targets (90% of the way from the initial accuracy to the best final mean accuracy, unless --target): "
        + ", ".join(f"{preset} {target:.3f}" for preset, target in targets.items())
        + ".  Push on hard: the share of sum_i |A_i| that lands on hard prompts; push ESS: "
        "(sum_i |A_i|)^2 / (n sum_i A_i^2), how evenly the update is spread over the responses (both averaged "
        "over training).",
        "",
    ]
    if "grpo" not in set(summary["estimator"]):
        lines.append("(no `grpo` in this run: paired differences are empty)\n")
    return "\n".join(lines)
