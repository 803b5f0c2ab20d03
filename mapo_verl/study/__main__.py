"""``python -m mapo_verl.study``: allocation tables and a learning simulation, written to ``--out``.

Outputs (all written atomically): ``allocation.csv``, ``allocation_graded.csv``,
``learning_curves.csv`` (mean and CI per step), ``learning_per_seed.csv``, ``learning_summary.csv``,
``summary.md``, ``config.json`` and the figures ``allocation.png``, ``learning.png``,
``learning_vs_grpo.png``.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
import time
import warnings
from dataclasses import replace
from pathlib import Path

from mapo_verl.study.estimators import DEFAULT_ESTIMATORS, ESTIMATORS, get_spec
from mapo_verl.study.simulation import PRESETS, SimConfig

QUICK = {"steps": 20, "seeds": 2, "num_prompts": 96, "batch_prompts": 8}


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python -m mapo_verl.study",
        description="CPU study of advantage allocation (MAPO vs GRPO, Dr.GRPO, APD): tables, a simulation, plots.",
    )
    d = SimConfig()
    p.add_argument("--out", type=Path, default=Path("out/study"), help="output folder (default: out/study)")
    p.add_argument("--group-size", type=int, default=d.group_size, help="rollouts per prompt G (default: 12)")
    p.add_argument("--seeds", type=int, default=len(d.seeds), help="seeds per preset (default: 8)")
    p.add_argument("--seed", type=int, default=0, help="first seed; runs use seed..seed+seeds-1 (default: 0)")
    p.add_argument("--steps", type=int, default=d.steps, help="training steps (default: 150)")
    p.add_argument("--presets", default=",".join(PRESETS), help=f"comma list of {', '.join(PRESETS)}")
    p.add_argument("--estimators", default=",".join(DEFAULT_ESTIMATORS), help=f"comma list of {', '.join(ESTIMATORS)}")
    p.add_argument("--lr", type=float, default=d.lr, help="Adam learning rate (default: 0.03)")
    p.add_argument(
        "--skill-shift",
        type=float,
        default=d.skill_shift,
        help="0: hard prompts need the easy prompts' skill; 1: an orthogonal one (default: 0.5)",
    )
    p.add_argument("--num-prompts", type=int, default=d.num_prompts, help="prompts per task (default: 512)")
    p.add_argument("--batch-prompts", type=int, default=d.batch_prompts, help="prompts per step (default: 16)")
    p.add_argument("--target", type=float, default=None,
                   help="accuracy target for steps-to-target (default: per preset, 90%% of the way from the "
                        "initial accuracy to the best final mean accuracy of any estimator)")  # fmt: skip
    p.add_argument("--quick", action="store_true", help=f"tiny run for tests: {QUICK}")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    return p


def _split(text: str) -> list[str]:
    return [t.strip() for t in text.split(",") if t.strip()]


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    started = time.perf_counter()
    import torch

    torch.set_num_threads(1)  # tiny tensors: one thread is fastest and leaves the other cores free
    warnings.filterwarnings("ignore")
    logging.getLogger("mapo_verl").setLevel(logging.ERROR)

    from tqdm import tqdm

    from mapo_verl.atomic_io import write_text
    from mapo_verl.study.allocation import allocation_metrics, binary_allocation, graded_allocation, outlier_zscore
    from mapo_verl.study.plots import plot_allocation, plot_learning, plot_learning_vs_baseline
    from mapo_verl.study.report import (
        allocation_markdown,
        graded_markdown,
        learning_curves_frame,
        learning_markdown,
        learning_per_seed_frame,
        learning_summary,
        write_csv,
    )
    from mapo_verl.study.simulation import simulate

    settings = {"steps": args.steps, "seeds": args.seeds, "num_prompts": args.num_prompts,
                "batch_prompts": args.batch_prompts}  # fmt: skip
    if args.quick:
        settings.update(QUICK)
    try:
        specs = [get_spec(k) for k in _split(args.estimators)]
        presets = _split(args.presets)
        base = SimConfig(
            group_size=args.group_size,
            steps=settings["steps"],
            seeds=tuple(range(args.seed, args.seed + settings["seeds"])),
            num_prompts=settings["num_prompts"],
            batch_prompts=settings["batch_prompts"],
            lr=args.lr,
            skill_shift=args.skill_shift,
        )
        configs = {preset: replace(base, preset=preset) for preset in presets}
    except ValueError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    out: Path = args.out

    # Part 1: allocation.
    binary = binary_allocation(specs, args.group_size)
    graded = graded_allocation(specs, sorted({4, args.group_size}))
    metrics = allocation_metrics(binary, graded)

    # Part 2: learning (the long part).
    results = {}
    total = sum(c.steps for c in configs.values())
    with tqdm(
        total=total, desc="simulating", unit="step", disable=args.no_progress, file=sys.stderr, mininterval=1.0
    ) as bar:
        for preset, cfg in configs.items():
            bar.set_postfix_str(preset)
            results[preset] = simulate(cfg, specs, on_step=bar.update)
    summary = learning_summary(results, target=args.target)

    # Output.
    write_csv(out / "allocation.csv", binary)
    write_csv(out / "allocation_graded.csv", graded)
    write_csv(out / "learning_curves.csv", learning_curves_frame(results))
    write_csv(out / "learning_per_seed.csv", learning_per_seed_frame(results, target=args.target))
    write_csv(out / "learning_summary.csv", summary)
    plot_allocation(binary, graded, out / "allocation.png")
    plot_learning(results, out / "learning.png")
    has_grpo = any(s.key == "grpo" for s in specs)
    if has_grpo:
        plot_learning_vs_baseline(results, out / "learning_vs_grpo.png")
    run_config = {"argv": sys.argv[1:] if argv is None else argv, "estimators": [s.key for s in specs],
                  "simulation": {p: c.to_dict() for p, c in configs.items()}}  # fmt: skip
    write_text(out / "config.json", json.dumps(run_config, indent=2) + "\n")
    g = args.group_size
    md = [
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
        + ", ".join(f"{p} {t:.3f}" for p, t in summary.groupby("preset", sort=False)["target_acc"].first().items())
        + ".  Push on hard: the share of sum_i |A_i| that lands on hard prompts; push ESS: "
        "(sum_i |A_i|)^2 / (n sum_i A_i^2), how evenly the update is spread over the responses (both averaged "
        "over training).",
        "",
    ]
    if not has_grpo:
        md.append("(no `grpo` in this run: paired differences are empty)\n")
    write_text(out / "summary.md", "\n".join(md))

    # Console summary.
    elapsed = time.perf_counter() - started
    print(f"\nallocation, G={g} (binary):")
    print(f"  {'estimator':18s} {'A_fail(easy)':>12s} {'reversion':>10s} {'A_succ(hard)':>12s} {'mirror':>7s} "
          f"{'0.9 among 1.0s':>15s}")  # fmt: skip
    for m in metrics:
        print(f"  {m.label:18s} {m.fail_easy:12.3f} {m.reversion_ratio:10.2f} {m.succ_hard:12.3f} "
              f"{m.mirror_ratio:7.2f} {m.graded_outlier:15.3f}")  # fmt: skip
    n_seeds = len(base.seeds)
    print(f"\nlearning, {base.steps} steps, {n_seeds} seeds (final accuracy; Δ = paired difference to GRPO, 95% CI):")
    for preset, rows in summary.groupby("preset", sort=False):
        print(f"  {preset} (hard share {rows['hard_fraction'].iloc[0]:.0%}, initial acc "
              f"{rows['initial_acc'].iloc[0]:.3f}, target {rows['target_acc'].iloc[0]:.3f})")  # fmt: skip
        for _, r in rows.iterrows():
            nan = float("nan")
            delta, ci = (r["final_minus_grpo"], r["final_minus_grpo_ci"]) if has_grpo else (nan, nan)
            dh, de = (r["hard_minus_grpo"], r["easy_minus_grpo"]) if has_grpo else (nan, nan)
            steps = r["steps_to_target_mean"]
            steps_txt = f"{steps:5.1f}" if steps == steps else f"– ({r['seeds_reaching_target']}/{r['seeds']})"
            print(
                f"    {r['label']:17s} final {r['final_acc']:.3f} (Δ {delta:+.4f} ± {ci:.4f})  "
                f"hard {r['final_hard']:.3f} (Δ {dh:+.4f})  easy {r['final_easy']:.3f} (Δ {de:+.4f})  "
                f"steps to target {steps_txt:>7s}  push on hard {r['push_on_hard']:.2f}"
            )
    print(f"\nwrote {out}/: allocation.{{csv,png}}, allocation_graded.csv, learning.png, "
          f"learning_vs_grpo.png, learning_curves.csv, learning_per_seed.csv, learning_summary.csv, summary.md, "
          "config.json")  # fmt: skip
    print(f"wall time {elapsed:.1f} s")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
