"""Figures (matplotlib, Agg backend): allocation against p, and learning curves with 95% bands.

matplotlib is the optional extra ``mapo-verl[plots]``: it is imported only when a figure is drawn, so the
rest of the study (and the plug-in on Ray workers) never needs it.
"""

from __future__ import annotations

from pathlib import Path
from types import ModuleType

import numpy as np
import pandas as pd

from mapo_verl.mixed_advantage import trajectory_certainty_weight
from mapo_verl_cpu.experiments.study.estimators import get_spec
from mapo_verl_cpu.experiments.study.simulation import SimResult
from mapo_verl_cpu.experiments.study.tables import mean_ci, save_figure

PLOTS_EXTRA_HINT = "pip install 'mapo-verl[plots]'"


def require_matplotlib() -> None:
    """Raise ``ImportError`` naming the extra when matplotlib is not installed."""
    try:
        import matplotlib  # noqa: F401
    except ImportError as err:
        raise ImportError(f"the study's figures need matplotlib, the optional extra: {PLOTS_EXTRA_HINT}") from err


def _pyplot() -> ModuleType:
    """matplotlib.pyplot on the non-interactive Agg backend (imported here, on first use)."""
    require_matplotlib()
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


_MARKERS = {"grpo": "o", "drgrpo": "s", "apd": "^", "mapo_tcr": "D", "mapo_linear": "v", "zero": "x"}


def _style(key: str) -> dict:
    spec = get_spec(key)
    return {"color": spec.color, "label": spec.label, "marker": _MARKERS.get(key, "o")}


def plot_allocation(binary: pd.DataFrame, graded: pd.DataFrame, path: Path) -> None:
    """2 x 3 panels: success's and failure's advantage vs p, lambda(p), mirror ratio,
    each group's share of the total push sum_i |A_i|, and the graded 0.9-among-1.0s example."""
    plt = _pyplot()
    import torch

    g = int(binary["G"].iloc[0])
    fig, axes = plt.subplots(2, 3, figsize=(15, 8.6))
    (ax_s, ax_f, ax_l), (ax_m, ax_w, ax_g) = axes
    for key, rows in binary.groupby("estimator", sort=False):
        st = _style(str(key))
        ax_s.plot(rows["p"], rows["adv_success"], ms=4, lw=1.5, **st)
        ax_f.plot(rows["p"], rows["adv_failure"], ms=4, lw=1.5, **st)
        by_n = rows.set_index("N")
        n = np.arange(1, g)
        ratio = by_n.loc[n, "adv_success"].to_numpy() / np.abs(by_n.loc[g - n, "adv_failure"].to_numpy())
        ax_m.plot(n / g, ratio, ms=4, lw=1.5, **st)
        weight = rows["group_abs_sum"].to_numpy()
        ax_w.plot(rows["p"], weight / weight.sum(), ms=4, lw=1.5, **st)

    ax_s.set_yscale("symlog", linthresh=1.0)
    ax_s.set_title(f"(a) advantage of a success (G={g}, binary reward)", fontsize=11)
    ax_s.set_ylabel("advantage (symlog scale)")
    ax_f.set_title("(b) advantage of a failure", fontsize=11)
    ax_f.set_ylabel("advantage")
    for ax in (ax_s, ax_f):
        ax.axhline(0, color="0.6", lw=0.8)
        ax.set_xlabel("success ratio p = N / G")
    ax_s.annotate("rare success on a hard prompt", xy=(1 / g, 8), xytext=(0.3, 6), fontsize=9,
                  arrowprops={"arrowstyle": "->", "color": "0.4"})  # fmt: skip
    ax_f.annotate("reversion: the rare failure\non an easy prompt", xy=((g - 1) / g, -3.1), xytext=(0.3, -2.6),
                  fontsize=9, arrowprops={"arrowstyle": "->", "color": "0.4"})  # fmt: skip

    p = torch.linspace(0, 1, 201, dtype=torch.float64)
    for fn, color in (("tcr", "tab:red"), ("linear", "tab:orange")):
        ax_l.plot(p, trajectory_certainty_weight(p, fn), color=color, lw=2, label=f"MAPO {fn}")
    ax_l.axhline(1, color="tab:gray", ls="--", lw=1.2, label="APD (λ=1)")
    ax_l.axhline(0, color="tab:blue", ls="--", lw=1.2, label="GRPO / Dr.GRPO (λ=0)")
    ax_l.set_title("(c) certainty weight λ(p) of the APD term", fontsize=11)
    ax_l.set_xlabel("success ratio p")
    ax_l.set_ylabel("λ(p)")
    ax_l.set_ylim(-0.05, 1.1)
    ax_l.legend(fontsize=8, loc="upper center")

    ax_m.set_yscale("log")
    ax_m.axhline(1, color="0.6", lw=0.8)
    ax_m.set_title("(d) mirror: A(success at p) / |A(failure at 1-p)|", fontsize=11)
    ax_m.set_xlabel("success ratio p of the hard group (its mirror has 1-p)")
    ax_m.set_ylabel("ratio (1 = perfect mirror)")

    ax_w.set_title("(e) share of the push Σ|A_i| each group gets", fontsize=11)
    ax_w.set_xlabel("success ratio p")
    ax_w.set_ylabel("Σ_i |A_i| / Σ over all p")

    sizes = sorted(graded["G"].unique())
    keys = list(dict.fromkeys(graded["estimator"]))
    width = 0.8 / len(keys)
    for i, key in enumerate(keys):
        rows = graded[graded["estimator"] == key].set_index("G")
        vals = [rows.loc[s, "adv_outlier"] for s in sizes]
        st = _style(key)
        bars = ax_g.bar(np.arange(len(sizes)) + (i - (len(keys) - 1) / 2) * width, vals, width,
                        color=st["color"], label=st["label"])  # fmt: skip
        ax_g.bar_label(bars, fmt="%.2f", fontsize=7, padding=2, rotation=90)
    ax_g.set_xticks(np.arange(len(sizes)), [f"G={s}" for s in sizes])
    ax_g.axhline(0, color="0.6", lw=0.8)
    ax_g.set_title("(f) advantage of one 0.9 among 1.0s (graded)", fontsize=11)
    ax_g.set_ylabel("advantage of the 0.9")
    ax_g.set_ylim(0.3, min(graded["adv_outlier"].min(), 0.0) * 1.25)  # inverted: bars grow downwards

    handles, labels = ax_s.get_legend_handles_labels()
    fig.legend(handles, labels, loc="upper center", ncol=len(labels), fontsize=10, frameon=False)
    for ax in axes.flat:
        ax.grid(alpha=0.3)
    fig.tight_layout(rect=(0, 0, 1, 0.96))
    save_figure(path, fig)
    plt.close(fig)


def _band(ax, steps: np.ndarray, curves: np.ndarray, key: str, lw: float = 1.6) -> None:
    mean, half = mean_ci(curves, axis=0)
    st = _style(key)
    ax.plot(steps, mean, color=st["color"], label=st["label"], lw=lw)
    if np.isfinite(half).all():
        ax.fill_between(steps, mean - half, mean + half, color=st["color"], alpha=0.18, lw=0)


def plot_learning(results: dict[str, SimResult], path: Path) -> None:
    """Rows: difficulty presets; columns: accuracy on all / hard / easy prompts; 95% bands over seeds."""
    plt = _pyplot()
    presets = list(results)
    fig, axes = plt.subplots(len(presets), 3, figsize=(13, 3.2 * len(presets)), squeeze=False)
    for r, preset in enumerate(presets):
        res = results[preset]
        steps = np.arange(res.acc_all.shape[-1])
        for c, (name, acc) in enumerate((("all", res.acc_all), ("hard", res.acc_hard), ("easy", res.acc_easy))):
            ax = axes[r, c]
            for e, key in enumerate(res.estimators):
                _band(ax, steps, acc[e], key)
            share = f" ({res.hard_fraction.mean():.0%} of prompts)" if name == "hard" else ""
            ax.set_title(f"{preset}: accuracy on {name} prompts{share}", fontsize=10)
            ax.set_xlabel("training step")
            ax.set_ylabel("expected accuracy")
            ax.grid(alpha=0.3)
    handles, labels = axes[0, 0].get_legend_handles_labels()
    n_seeds = len(next(iter(results.values())).config.seeds)
    fig.legend(handles, labels, loc="upper center", ncol=len(labels), fontsize=10, frameon=False)
    fig.suptitle(f"mean and 95% t-band over {n_seeds} seeds", y=0.965, fontsize=9, color="0.3")
    fig.tight_layout(rect=(0, 0, 1, 0.955))
    save_figure(path, fig)
    plt.close(fig)


def plot_learning_vs_baseline(results: dict[str, SimResult], path: Path, baseline: str = "grpo") -> None:
    """Paired difference to ``baseline`` (same task and random numbers per seed), all/hard/easy."""
    plt = _pyplot()
    presets = list(results)
    fig, axes = plt.subplots(len(presets), 3, figsize=(13, 3.0 * len(presets)), squeeze=False)
    for r, preset in enumerate(presets):
        res = results[preset]
        if baseline not in res.estimators:
            continue
        b = res.estimators.index(baseline)
        steps = np.arange(res.acc_all.shape[-1])
        for c, (name, acc) in enumerate((("all", res.acc_all), ("hard", res.acc_hard), ("easy", res.acc_easy))):
            ax = axes[r, c]
            for e, key in enumerate(res.estimators):
                if e != b:
                    _band(ax, steps, acc[e] - acc[b], key)
            ax.axhline(0, color=get_spec(baseline).color, lw=1.2, ls="--")
            ax.set_title(f"{preset}: {name} prompts, accuracy − {get_spec(baseline).label}", fontsize=10)
            ax.set_xlabel("training step")
            ax.set_ylabel("Δ accuracy (paired)")
            ax.grid(alpha=0.3)
    handles, labels = axes[0, 0].get_legend_handles_labels()
    fig.legend(handles, labels, loc="upper center", ncol=max(1, len(labels)), fontsize=10, frameon=False)
    fig.tight_layout(rect=(0, 0, 1, 0.965))
    save_figure(path, fig)
    plt.close(fig)
