"""``python -m mapo_verl study``: allocation tables and a learning simulation, written to ``--out``.

Outputs (all written atomically): ``allocation.csv``, ``allocation_graded.csv``,
``learning_curves.csv`` (mean and CI per step), ``learning_per_seed.csv``, ``learning_summary.csv``,
``summary.md``, ``config.json`` and, unless ``--no-plots``, the figures ``allocation.png``,
``learning.png`` and ``learning_vs_grpo.png`` (these need the extra ``mapo-verl[plots]``).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass, replace
from pathlib import Path

import pandas as pd

from mapo_verl_cpu.experiments.study.allocation import AllocationMetrics
from mapo_verl_cpu.experiments.study.estimators import DEFAULT_ESTIMATORS, ESTIMATORS, EstimatorSpec, get_spec
from mapo_verl_cpu.experiments.study.simulation import PRESETS, SimConfig, SimResult

QUICK = {"steps": 20, "seeds": 2, "num_prompts": 96, "batch_prompts": 8}


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python -m mapo_verl study",
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
    p.add_argument("--no-plots", action="store_true", help="tables only (no matplotlib needed)")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    return p


@dataclass(frozen=True)
class StudyPlan:
    """What one invocation runs: the estimators, one simulation config per preset, and where it writes."""

    specs: list[EstimatorSpec]
    configs: dict[str, SimConfig]
    group_size: int
    out: Path
    target: float | None
    plots: bool
    progress: bool

    @property
    def has_grpo(self) -> bool:
        return any(spec.key == "grpo" for spec in self.specs)


def _split(text: str) -> list[str]:
    return [t.strip() for t in text.split(",") if t.strip()]


def plan_from_args(args: argparse.Namespace) -> StudyPlan:
    """Validate the arguments into a :class:`StudyPlan`; ``ValueError`` names the bad one."""
    settings = {"steps": args.steps, "seeds": args.seeds, "num_prompts": args.num_prompts,
                "batch_prompts": args.batch_prompts}  # fmt: skip
    if args.quick:
        settings.update(QUICK)
    base = SimConfig(
        group_size=args.group_size,
        steps=settings["steps"],
        seeds=tuple(range(args.seed, args.seed + settings["seeds"])),
        num_prompts=settings["num_prompts"],
        batch_prompts=settings["batch_prompts"],
        lr=args.lr,
        skill_shift=args.skill_shift,
    )
    return StudyPlan(
        specs=[get_spec(key) for key in _split(args.estimators)],
        configs={preset: replace(base, preset=preset) for preset in _split(args.presets)},
        group_size=args.group_size,
        out=args.out,
        target=args.target,
        plots=not args.no_plots,
        progress=not args.no_progress,
    )


def run_learning(plan: StudyPlan) -> dict[str, SimResult]:
    """The simulation for every preset (the long part), with one progress bar over all steps."""
    from tqdm import tqdm

    from mapo_verl_cpu.experiments.study.simulation import simulate

    results = {}
    total = sum(cfg.steps for cfg in plan.configs.values())
    with tqdm(total=total, desc="simulating", unit="step", disable=not plan.progress, file=sys.stderr,
              mininterval=1.0) as bar:  # fmt: skip
        for preset, cfg in plan.configs.items():
            bar.set_postfix_str(preset)
            results[preset] = simulate(cfg, plan.specs, on_step=bar.update)
    return results


def write_figures(plan: StudyPlan, binary: pd.DataFrame, graded: pd.DataFrame, results: dict[str, SimResult]) -> None:
    from mapo_verl_cpu.experiments.study.plots import plot_allocation, plot_learning, plot_learning_vs_baseline

    plot_allocation(binary, graded, plan.out / "allocation.png")
    plot_learning(results, plan.out / "learning.png")
    if plan.has_grpo:
        plot_learning_vs_baseline(results, plan.out / "learning_vs_grpo.png")


def print_summary(plan: StudyPlan, metrics: list[AllocationMetrics], summary: pd.DataFrame, elapsed: float) -> None:
    """The console digest: the allocation table, then final accuracy per preset and estimator."""
    g = plan.group_size
    print(f"\nallocation, G={g} (binary):")
    print(f"  {'estimator':18s} {'A_fail(easy)':>12s} {'reversion':>10s} {'A_succ(hard)':>12s} {'mirror':>7s} "
          f"{'0.9 among 1.0s':>15s}")  # fmt: skip
    for m in metrics:
        print(f"  {m.label:18s} {m.fail_easy:12.3f} {m.reversion_ratio:10.2f} {m.succ_hard:12.3f} "
              f"{m.mirror_ratio:7.2f} {m.graded_outlier:15.3f}")  # fmt: skip
    first = next(iter(plan.configs.values()))
    print(f"\nlearning, {first.steps} steps, {len(first.seeds)} seeds "
          "(final accuracy; Δ = paired difference to GRPO, 95% CI):")  # fmt: skip
    nan = float("nan")
    for preset, rows in summary.groupby("preset", sort=False):
        print(f"  {preset} (hard share {rows['hard_fraction'].iloc[0]:.0%}, initial acc "
              f"{rows['initial_acc'].iloc[0]:.3f}, target {rows['target_acc'].iloc[0]:.3f})")  # fmt: skip
        for _, r in rows.iterrows():
            delta, ci = (r["final_minus_grpo"], r["final_minus_grpo_ci"]) if plan.has_grpo else (nan, nan)
            dh, de = (r["hard_minus_grpo"], r["easy_minus_grpo"]) if plan.has_grpo else (nan, nan)
            steps = r["steps_to_target_mean"]
            steps_txt = f"{steps:5.1f}" if steps == steps else f"– ({r['seeds_reaching_target']}/{r['seeds']})"
            print(
                f"    {r['label']:17s} final {r['final_acc']:.3f} (Δ {delta:+.4f} ± {ci:.4f})  "
                f"hard {r['final_hard']:.3f} (Δ {dh:+.4f})  easy {r['final_easy']:.3f} (Δ {de:+.4f})  "
                f"steps to target {steps_txt:>7s}  push on hard {r['push_on_hard']:.2f}"
            )
    written = sorted(path.name for path in plan.out.iterdir() if path.is_file())
    print(f"\nwrote {plan.out}/: {', '.join(written)}")
    print(f"wall time {elapsed:.1f} s")


def run(plan: StudyPlan, argv: Sequence[str]) -> None:
    """Part 1 (allocation), part 2 (learning), then every table, figure and the run's settings."""
    from mapo_verl.atomic_io import write_text
    from mapo_verl_cpu.experiments.study.allocation import allocation_metrics, binary_allocation, graded_allocation
    from mapo_verl_cpu.experiments.study.tables import (
        learning_curves_frame,
        learning_per_seed_frame,
        learning_summary,
        summary_markdown,
        write_csv,
    )

    started = time.perf_counter()
    binary = binary_allocation(plan.specs, plan.group_size)
    graded = graded_allocation(plan.specs, sorted({4, plan.group_size}))
    metrics = allocation_metrics(binary, graded)
    results = run_learning(plan)
    summary = learning_summary(results, target=plan.target)

    out = plan.out
    write_csv(out / "allocation.csv", binary)
    write_csv(out / "allocation_graded.csv", graded)
    write_csv(out / "learning_curves.csv", learning_curves_frame(results))
    write_csv(out / "learning_per_seed.csv", learning_per_seed_frame(results, target=plan.target))
    write_csv(out / "learning_summary.csv", summary)
    if plan.plots:
        write_figures(plan, binary, graded, results)
    run_config = {"argv": list(argv), "estimators": [s.key for s in plan.specs],
                  "simulation": {p: c.to_dict() for p, c in plan.configs.items()}}  # fmt: skip
    write_text(out / "config.json", json.dumps(run_config, indent=2) + "\n")
    write_text(out / "summary.md", summary_markdown(metrics, graded, summary, plan.group_size))
    print_summary(plan, metrics, summary, time.perf_counter() - started)


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        plan = plan_from_args(args)
    except ValueError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    if plan.plots:
        from mapo_verl_cpu.experiments.study.plots import require_matplotlib

        try:
            require_matplotlib()
        except ImportError as err:
            print(f"error: {err} (or pass --no-plots)", file=sys.stderr)
            return 2
    import torch

    torch.set_num_threads(1)  # tiny tensors: one thread is fastest and leaves the other cores free
    # No warning filter: a run triggers none (checked with -W always); the one expected RuntimeWarning,
    # the mean of an all-NaN push diagnostic, is silenced where it arises (report.learning_summary).
    run(plan, sys.argv[1:] if argv is None else argv)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
