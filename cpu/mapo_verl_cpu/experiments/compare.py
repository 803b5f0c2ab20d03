"""``python -m mapo_verl compare``: estimators against each other through verl's trainer, over seeds, with bands.

For every estimator and seed (the same seeds for every estimator) one ``main_ppo`` run, one after another, each in
``DIR/runs/<estimator>-s<seed>/`` (verl's file-logger ``metrics.jsonl``, the rollout dumps, ``main_ppo.log``).
Validation runs before training and every ``--test-freq`` steps. The aggregation reads the logs with the report
tool's readers (:mod:`mapo_verl.report`) and writes, atomically:

* ``DIR/summary.json``: ``{"runs": [{"estimator", "seed", "steps", "metrics", "val_acc": [[step, acc], ...]}]}``
  (``metrics`` relative to ``DIR``), plus the settings and the aggregate table;
* ``DIR/table.md``: per estimator the held-out accuracy at the start and at the end (mean and 95% t-interval over
  seeds), the rise, and the steps to reach ``--target``; then per-step certainty side by side (the share of groups
  at each success ratio p, and the mean lambda(p) = 1 - 4p(1 - p) over groups, from the rollout dumps);
* ``DIR/curves.png`` (the ``plots`` extra): the curves, mean over seeds with a 95% band.

CPU (``--backend cpu``, the default): the shipped config shrunk to the tiny model, on the learnable ``shapes`` task
(``python -m data_prep.shapes``), warm-started on the answer format with random answers. GPU clusters
(``--backend gpu``): ``--config NAME`` and the trailing Hydra overrides go to every run unchanged, plus the
estimator, the seeds, the step count and the logging.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import subprocess
import sys
import threading
import time
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass
from pathlib import Path

from mapo_verl_cpu.fixtures.tiny_model import TinyModelSpec
from mapo_verl_cpu.runners.local import run_local
from mapo_verl_cpu.runners.rollouts import ROLLOUTS, cpu_run_spec
from mapo_verl_cpu.runners.spec import (
    CONFIG_DIR,
    DEFAULT_CONFIG,
    REPO_ROOT,
    RunSpec,
    bad_overrides,
    tiny_overrides,
)

from mapo_verl.atomic_io import write_text
from mapo_verl.supervise import ending_trees_on_sigterm

#: ``--quick``: both estimators, 2 seeds each, two runs at a time: 593 s measured on 2 CPU cores (docs/learning.md).
QUICK = {"estimators": "mapo,grpo", "seeds": 2, "steps": 10, "test_freq": 5}
SUCCESS = 1.0  # the shipped configs' algorithm.mapo.success_threshold


def log(msg: str) -> None:
    print(f"[compare] {msg}", flush=True)


@dataclass(frozen=True)
class Settings:
    """What every run of one comparison shares."""

    estimators: tuple[str, ...]
    seeds: tuple[int, ...]
    steps: int
    test_freq: int
    backend: str = "cpu"
    config: str = DEFAULT_CONFIG
    prompts: int = 16
    n: int = 8
    #: prompts per PPO update (``actor.ppo_mini_batch_size``): 8 of 16 = two updates a step, as PPO does
    mini_batch: int = 8
    lr: float = 1e-3
    train_size: int = 512
    test_size: int = 64
    warm_steps: int = 300
    target: float = 0.5
    overrides: tuple[str, ...] = ()


# --------------------------------------------------------------------------------------------- statistics
def interval(values: Sequence[float]) -> tuple[float, float, float]:
    """Mean and 95% Student t interval (:func:`mapo_verl_cpu.experiments.study.tables.mean_ci`) as (mean, low, high).

    One value: its interval is the value itself; none: NaNs.
    """
    import numpy as np
    from mapo_verl_cpu.experiments.study.tables import mean_ci

    if not values:
        return math.nan, math.nan, math.nan
    mean, half = (float(x) for x in mean_ci(np.asarray(values, dtype=float)))
    half = 0.0 if len(values) == 1 else half
    return mean, mean - half, mean + half


def steps_to_target(val_acc: Sequence[Sequence[float]], target: float) -> int | None:
    """The first validation step whose accuracy is at least ``target``; None when never reached."""
    return next((int(step) for step, acc in val_acc if acc >= target), None)


def group_success(dump: Path) -> list[float]:
    """Success ratio p of every prompt group in one verl rollout dump (``uid`` = ``<group>_<rollout>_<output>``)."""
    groups: dict[str, list[float]] = {}
    for line in dump.read_text().splitlines():
        if line.strip():
            row = json.loads(line)
            groups.setdefault(str(row["uid"]).rsplit("_", 2)[0], []).append(float(row["score"]))
    return [sum(s >= SUCCESS for s in scores) / len(scores) for scores in groups.values()]


def certainty(rollout_dir: Path) -> dict[int, list[float]]:
    """step -> the success ratio p of each group, from ``<step>.jsonl`` dumps (empty when there are none)."""
    if not rollout_dir.is_dir():
        return {}
    return {int(f.stem): group_success(f) for f in rollout_dir.glob("*.jsonl") if f.stem.isdigit()}


def lambdas(ps: Sequence[float]) -> list[float]:
    """MAPO's certainty weight lambda(p) = 1 - 4p(1 - p) of each success ratio (the estimator's own ``tcr``)."""
    import torch

    from mapo_verl.mixed_advantage import trajectory_certainty_weight

    return trajectory_certainty_weight(torch.tensor(list(ps), dtype=torch.float64)).tolist()


def mean_lambda(ps: Sequence[float]) -> float:
    """Mean lambda(p) over groups."""
    return sum(lambdas(ps)) / len(ps)


def question_kind(prompt: str) -> str:
    """The ``shapes`` question kind a validation prompt asks (``colour``/``count``), else ``other``."""
    from data_prep.shapes import QUESTIONS

    return next((kind for kind, text in QUESTIONS.items() if text in prompt), "other")


def kind_accuracy(validation_dir: Path) -> dict[str, list[list[float]]]:
    """kind -> [[step, held-out accuracy of that kind's questions], ...] from verl's validation dumps
    (``trainer.validation_data_dir``: ``<step>.jsonl`` rows with ``input`` and the reward's ``acc``)."""
    if not validation_dir.is_dir():
        return {}
    per_kind: dict[str, list[list[float]]] = {}
    for dump in sorted((f for f in validation_dir.glob("*.jsonl") if f.stem.isdigit()), key=lambda f: int(f.stem)):
        hits: dict[str, list[float]] = {}
        for line in dump.read_text().splitlines():
            if line.strip():
                row = json.loads(line)
                acc = float(row["acc"] if "acc" in row else row["score"])
                hits.setdefault(question_kind(str(row["input"])), []).append(acc)
        for kind, accs in sorted(hits.items()):
            per_kind.setdefault(kind, []).append([int(dump.stem), sum(accs) / len(accs)])
    return per_kind


# --------------------------------------------------------------------------------------------- reading runs
def read_run(run_dir: Path) -> dict:
    """One run's validation accuracy per step (mean over its validation sets) and training steps, via the report
    tool's readers, and its per-step success ratios."""
    from mapo_verl.report import ReportError, load_run, validation_accuracy

    metrics = run_dir / "metrics.jsonl"
    try:
        run = load_run(str(metrics))
    except ReportError:
        return {"steps": 0, "val_acc": [], "score": [], "lambda": [], "p": {}, "kinds": {}}
    val_acc = []
    for step in sorted(run.steps):
        per_set = validation_accuracy(run, step=str(step))
        if per_set:
            val_acc.append([step, sum(per_set.values()) / len(per_set)])
    trained = [s for s, d in run.steps.items() if "actor/pg_loss" in d]
    p = {step: ps for step, ps in sorted(certainty(run_dir / "rollouts").items())}
    return {
        "steps": max(trained, default=0),
        "val_acc": val_acc,
        "score": run.series("critic/score/mean"),
        "lambda": run.series("mapo/lambda_mean"),
        "p": p,
        "kinds": kind_accuracy(run_dir / "validation"),
    }


def aggregate(runs: Sequence[dict], target: float) -> list[dict]:
    """Per estimator: start and final held-out accuracy (mean, 95% interval), the rise, steps to ``target``."""
    table = []
    for est in dict.fromkeys(r["estimator"] for r in runs):
        mine = [r for r in runs if r["estimator"] == est and r["val_acc"]]
        start = [r["val_acc"][0][1] for r in mine]
        final = [r["val_acc"][-1][1] for r in mine]
        rise = [f - s for s, f in zip(start, final, strict=True)]
        reached = [steps_to_target(r["val_acc"], target) for r in mine]
        table.append(
            {
                "estimator": est,
                "runs": len(mine),
                "start": interval(start),
                "final": interval(final),
                "rise": interval(rise),
                "min_rise": min(rise, default=math.nan),
                "steps_to_target": reached,
            }
        )
    return table


def _ci(triple: Sequence[float]) -> str:
    mean, lo, hi = triple
    return f"{mean:.3f} [{lo:.3f}, {hi:.3f}]" if math.isfinite(mean) else "n/a"


def render_table(table: Sequence[dict], target: float) -> str:
    """The Markdown table of :func:`aggregate`."""
    lines = [
        f"| estimator | runs | held-out acc at step 0 | final held-out acc (95% CI) | rise (95% CI) | "
        f"worst rise | steps to acc >= {target:g} |",
        "| --- | --- | --- | --- | --- | --- | --- |",
    ]
    for row in table:
        reached = ", ".join("never" if s is None else str(s) for s in row["steps_to_target"]) or "n/a"
        lines.append(
            f"| {row['estimator']} | {row['runs']} | {_ci(row['start'])} | {_ci(row['final'])} | "
            f"{_ci(row['rise'])} | {row['min_rise']:+.3f} | {reached} |"
        )
    return "\n".join(lines)


def render_kinds(runs: Sequence[dict]) -> str:
    """Per estimator and question kind: held-out accuracy at the first and the last validation (mean, 95% interval
    over seeds), from the validation dumps; what was learned, the picture read or one answer written."""
    lines = ["| estimator | question kind | held-out acc at start | at the end |", "| --- | --- | --- | --- |"]
    for est in dict.fromkeys(r["estimator"] for r in runs):
        mine = [r for r in runs if r["estimator"] == est]
        for kind in sorted({k for r in mine for k in r.get("kinds", {})}):
            curves = [r["kinds"][kind] for r in mine if r.get("kinds", {}).get(kind)]
            start, end = interval([c[0][1] for c in curves]), interval([c[-1][1] for c in curves])
            lines.append(f"| {est} | {kind} | {_ci(start)} | {_ci(end)} |")
    return "\n".join(lines) if len(lines) > 2 else "(no validation dumps: no accuracy per question kind)"


def render_certainty(runs: Sequence[dict]) -> str:
    """Per training step, per estimator (pooled over seeds): the share of groups at each p, and mean lambda(p)."""
    estimators = list(dict.fromkeys(r["estimator"] for r in runs))
    levels = sorted({p for r in runs for ps in r["p"].values() for p in ps})
    if not levels:
        return "(no rollout dumps: no per-step certainty)"
    head = ["step"] + [
        f"{e}: {h}" for e in estimators for h in ("p hist " + "/".join(f"{v:g}" for v in levels), "mean lambda")
    ]
    lines = ["| " + " | ".join(head) + " |", "|" + " --- |" * len(head)]
    steps = sorted({s for r in runs for s in r["p"]})
    for step in steps:
        cells = [str(step)]
        for est in estimators:
            ps = [p for r in runs if r["estimator"] == est for p in r["p"].get(step, [])]
            if not ps:
                cells += ["", ""]
                continue
            cells.append(" ".join(f"{sum(p == v for p in ps) / len(ps):.2f}" for v in levels))
            cells.append(f"{mean_lambda(ps):.3f}")
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def _band(
    series_per_run: Sequence[Sequence[Sequence[float]]],
) -> tuple[list[int], list[float], list[float], list[float]]:
    by_step: dict[int, list[float]] = {}
    for series in series_per_run:
        for step, value in series:
            by_step.setdefault(int(step), []).append(float(value))
    steps = sorted(by_step)
    stats = [interval(by_step[s]) for s in steps]
    return steps, [m for m, _, _ in stats], [lo for _, lo, _ in stats], [hi for _, _, hi in stats]


def plot(runs: Sequence[dict], path: Path) -> bool:
    """Held-out accuracy, training score, mean lambda(p) and the share of mixed groups (0 < p < 1) per step, mean
    over seeds with a 95% band clipped to [0, 1]; False (and nothing written) without matplotlib."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return False
    from mapo_verl.atomic_io import atomic_write

    panels = (
        ("held-out accuracy", lambda r: r["val_acc"]),
        ("training score (mean)", lambda r: r["score"]),
        ("mean lambda(p) over groups", lambda r: [[s, mean_lambda(ps)] for s, ps in r["p"].items() if ps]),
        (
            "groups with 0 < p < 1",
            lambda r: [[s, sum(0 < p < 1 for p in ps) / len(ps)] for s, ps in r["p"].items() if ps],
        ),
    )
    fig, axes = plt.subplots(1, len(panels), figsize=(4.2 * len(panels), 3.4))
    for ax, (title, series) in zip(axes, panels, strict=True):
        for est in dict.fromkeys(r["estimator"] for r in runs):
            mine = [series(r) for r in runs if r["estimator"] == est]
            steps, mean, lo, hi = _band(mine)
            if steps:
                (line,) = ax.plot(steps, mean, marker="o", ms=3, label=f"{est} ({len(mine)} seeds)")
                # every panel is a share or a score in [0, 1]; a t-interval over few seeds runs far past it
                low, high = ([min(max(v, 0.0), 1.0) for v in band] for band in (lo, hi))
                ax.fill_between(steps, low, high, color=line.get_color(), alpha=0.2)
        ax.set_title(title)
        ax.set_ylim(-0.02, 1.02)
        ax.set_xlabel("step")
        ax.grid(alpha=0.3)
    axes[0].legend()
    fig.tight_layout()
    atomic_write(path, lambda tmp: fig.savefig(tmp, format="png", dpi=110))
    plt.close(fig)
    return True


def write_outputs(out: Path, settings: Settings, runs: Sequence[dict]) -> dict:
    """``summary.json``, ``table.md`` and ``curves.png`` from the runs read so far; returns the summary."""
    table = aggregate(runs, settings.target)
    text = render_table(table, settings.target) + "\n\nHeld-out accuracy per question kind:\n\n"
    text += render_kinds(runs) + "\n\nPer-step certainty (training groups, seeds pooled):\n\n"
    text += render_certainty(runs) + "\n"
    write_text(out / "table.md", text)
    keys = ("estimator", "seed", "steps", "metrics", "val_acc", "kinds", "returncode", "seconds")
    public = [{k: r[k] for k in keys} for r in runs]
    summary = {"runs": public, "settings": asdict(settings), "table": table}
    write_text(out / "summary.json", json.dumps(summary, indent=2) + "\n")
    plot(runs, out / "curves.png")
    return summary


# ------------------------------------------------------------------------------------------------ CPU set-up
def prepare_shapes(out: Path, train_size: int, test_size: int) -> Path:
    """``python -m data_prep.shapes`` into ``out/data/shapes`` (as a user would run it); returns the folder."""
    dest = out / "data" / "shapes"
    cmd = [
        sys.executable,
        "-m",
        "data_prep.shapes",
        "--local-save-dir",
        str(dest),
        "--no-progress",
        "--train-size",
        str(train_size),
        "--test-size",
        str(test_size),
    ]
    result = subprocess.run(cmd, cwd=REPO_ROOT, capture_output=True, text=True, check=False)
    if result.returncode != 0:
        raise RuntimeError(f"data_prep.shapes failed ({result.returncode}):\n{result.stdout}\n{result.stderr}")
    return dest


#: the tiny model of the CPU comparison: weights drawn with std 0.1 (not 0.02), so that the picture reaches the
#: answer's logits at initialisation, and up to 224 x 224 pixels (64 image tokens, a third of the prompt)
COMPARE_MODEL_SPEC = TinyModelSpec(initializer_range=0.1, max_pixels=224 * 224)


def format_examples(train_parquet: Path, count: int = 64) -> list:
    """Warm-start examples that teach the answer *format* only: each of the first ``count`` training prompts once
    with every answer its question allows (``shapes.ANSWERS``: 1-2 for colour, 1-4 for count), so that the answer
    carries no information about the picture (no test prompt is used)."""
    import pyarrow.parquet as pq
    from mapo_verl_cpu.fixtures.tiny_model import WarmStartExample

    from data_prep.shapes import ANSWERS

    rows = pq.read_table(train_parquet).to_pylist()[:count]
    return [
        WarmStartExample(
            question=row["prompt"][-1]["content"],
            answer=answer,
            images=tuple(img["bytes"] for img in row["images"]),
        )
        for row in rows
        for answer in ANSWERS[question_kind(row["prompt"][-1]["content"])]
    ]


def run_spec(
    settings: Settings, estimator: str, seed: int, run_dir: Path, model_dir: Path | None, data_dir: Path | None
) -> RunSpec:
    """The ``main_ppo`` run of one estimator and seed; the user's overrides last."""
    common = [
        f"algorithm.adv_estimator={estimator}",
        f"data.seed={seed}",
        f"actor_rollout_ref.rollout.seed={seed}",
        f"trainer.total_training_steps={settings.steps}",
        f"trainer.test_freq={settings.test_freq}",
        "trainer.val_before_train=True",
        "trainer.logger=[console,file]",
        f"trainer.experiment_name=compare-{estimator}-s{seed}",
        f"trainer.rollout_data_dir={run_dir / 'rollouts'}",
        f"trainer.validation_data_dir={run_dir / 'validation'}",
        f"trainer.default_local_dir={run_dir / 'checkpoints'}",
    ]
    if settings.backend == "gpu":
        env = {**os.environ, "VERL_FILE_LOGGER_PATH": str(run_dir / "metrics.jsonl")}
        spec = RunSpec(out=run_dir, overrides=tuple(common), steps=settings.steps, config_name=settings.config, env=env)
        return spec.with_overrides(settings.overrides)
    assert model_dir is not None and data_dir is not None
    rollout = ROLLOUTS["hf"]
    base = tiny_overrides(
        model_dir=model_dir,
        data_dir=data_dir,
        out=run_dir,
        steps=settings.steps,
        estimator=estimator,
        prompts=settings.prompts,
        n=settings.n,
        lr=settings.lr,
    )
    cpu = [
        *rollout.overrides,
        f"actor_rollout_ref.actor.ppo_mini_batch_size={settings.mini_batch}",
        f"data.mm_processor_kwargs.max_pixels={COMPARE_MODEL_SPEC.max_pixels}",
        "trainer.save_freq=-1",
        "actor_rollout_ref.rollout.val_kwargs.temperature=0",  # greedy held-out answers: no sampling noise
    ]
    spec = cpu_run_spec(rollout, out=run_dir, overrides=base, steps=settings.steps, config_name=settings.config)
    return spec.with_overrides([*common, *cpu, *settings.overrides])


# ---------------------------------------------------------------------------------------------------- main
def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m mapo_verl compare",
        description=__doc__.splitlines()[0],
        epilog="Trailing key=value arguments are Hydra overrides for every run.",
    )
    parser.add_argument("--out", required=True, help="output folder")
    parser.add_argument("--estimators", default=None, help="comma-separated adv_estimator names (mapo,grpo)")
    parser.add_argument("--seeds", type=int, default=None, help="seeds per estimator, 1..K, the same for all (2)")
    parser.add_argument("--steps", type=int, default=None, help=f"training steps per run ({QUICK['steps']})")
    parser.add_argument("--test-freq", type=int, default=None, help=f"validate every N steps ({QUICK['test_freq']})")
    parser.add_argument("--quick", action="store_true", help="mapo and grpo, 2 seeds, the CPU defaults (~10 min)")
    parser.add_argument(
        "--backend",
        choices=("cpu", "gpu"),
        default="cpu",
        help="cpu: tiny model on the shapes task (default); gpu: the config as it is",
    )
    parser.add_argument("--config", default=DEFAULT_CONFIG, help=f"shipped training config ({DEFAULT_CONFIG})")
    parser.add_argument("--prompts", type=int, default=Settings.prompts, help="cpu: prompts per step (16)")
    parser.add_argument("--n", type=int, default=Settings.n, help="cpu: responses per prompt (8)")
    parser.add_argument(
        "--mini-batch", type=int, default=Settings.mini_batch, help="cpu: prompts per PPO update (8: two a step)"
    )
    parser.add_argument("--lr", type=float, default=1e-3, help="cpu: actor learning rate, every estimator (1e-3)")
    parser.add_argument("--warm-steps", type=int, default=Settings.warm_steps, help="cpu: format warm start (300)")
    parser.add_argument("--target", type=float, default=0.5, help="held-out accuracy for 'steps to target' (0.5)")
    parser.add_argument("--cache-dir", default=None, help="cpu: where the tiny model is cached (~/.cache/mapo-verl)")
    parser.add_argument("--timeout", type=float, default=None, help="seconds per run before its process tree ends")
    parser.add_argument(
        "--jobs", type=int, default=None, help="runs at a time, each with its own private Ray (cpu: 2; gpu: 1)"
    )
    parser.add_argument("overrides", nargs="*", help="Hydra overrides passed to every main_ppo run")
    return parser


def settings_of(args: argparse.Namespace) -> Settings:
    """The settings from the arguments (``--quick`` fills what is not given); ValueError naming a bad one."""
    estimators = tuple(e for e in (args.estimators or QUICK["estimators"]).split(",") if e)
    seeds = QUICK["seeds"] if args.seeds is None else args.seeds
    steps = QUICK["steps"] if args.steps is None else args.steps
    test_freq = min(QUICK["test_freq"], max(steps, 1)) if args.test_freq is None else args.test_freq
    if not estimators or seeds < 1 or steps < 1 or test_freq < 1 or args.prompts < 1 or args.n < 2:
        raise ValueError("--estimators must name one, --seeds/--steps/--test-freq/--prompts >= 1, --n >= 2")
    if args.mini_batch < 1 or args.prompts % args.mini_batch:
        raise ValueError(f"--mini-batch must divide --prompts ({args.prompts}), got {args.mini_batch}")
    bad = bad_overrides(args.overrides)
    if bad:
        raise ValueError(f"not a Hydra override (key=value): {' '.join(bad)}")
    if not (CONFIG_DIR / f"{args.config}.yaml").is_file() and args.backend == "cpu":
        raise ValueError(f"--config: {CONFIG_DIR / args.config}.yaml not found")
    return Settings(
        estimators=estimators,
        seeds=tuple(range(1, seeds + 1)),
        steps=steps,
        test_freq=test_freq,
        backend=args.backend,
        config=args.config,
        prompts=args.prompts,
        n=args.n,
        mini_batch=args.mini_batch,
        lr=args.lr,
        warm_steps=args.warm_steps,
        target=args.target,
        overrides=tuple(args.overrides),
    )


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        settings = settings_of(args)
    except ValueError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    if args.jobs is None:
        args.jobs = 2 if settings.backend == "cpu" else 1
    if args.jobs < 1:
        print("error: --jobs must be >= 1", file=sys.stderr)
        return 2
    start = time.monotonic()
    out = Path(args.out).resolve()
    out.mkdir(parents=True, exist_ok=True)
    model_dir = data_dir = None
    if settings.backend == "cpu":
        from mapo_verl_cpu.fixtures.tiny_model import build_tiny_model

        data_dir = prepare_shapes(out, settings.train_size, settings.test_size)
        log(f"data: {data_dir} (python -m data_prep.shapes)")
        examples = format_examples(data_dir / "train.parquet")
        model_dir = build_tiny_model(
            Path(args.cache_dir) if args.cache_dir else None,
            examples=examples,
            warm_steps=settings.warm_steps,
            spec=COMPARE_MODEL_SPEC,
            warm_style="format",
        )
        log(f"model: {model_dir} (format warm start, every answer alike; {time.monotonic() - start:.0f} s so far)")
    plan = [(e, s) for s in settings.seeds for e in settings.estimators]
    done: dict[tuple[str, int], dict] = {}
    lock = threading.Lock()

    def one_run(i: int, estimator: str, seed: int) -> None:
        run_dir = out / "runs" / f"{estimator}-s{seed}"
        (run_dir / "metrics.jsonl").unlink(missing_ok=True)
        spec = run_spec(settings, estimator, seed, run_dir, model_dir, data_dir)
        log(f"run {i}/{len(plan)}: {estimator} seed {seed}, {settings.steps} steps -> {run_dir}")
        outcome = run_local(spec, args.timeout, lambda msg, tag=f"{estimator} s{seed}": log(f"  [{tag}] {msg}"))
        result = read_run(run_dir)
        curve = " ".join(f"{s}:{a:.2f}" for s, a in result["val_acc"])
        log(f"  {estimator} seed {seed}: held-out accuracy by step {curve or '(none)'} ({outcome.seconds:.0f} s)")
        with lock:
            done[(estimator, seed)] = {
                "estimator": estimator,
                "seed": seed,
                "metrics": str(spec.metrics_path.relative_to(out)),
                "returncode": 124 if outcome.timed_out else outcome.returncode,
                "seconds": round(outcome.seconds, 1),
                **result,
            }
            write_outputs(out, settings, [done[key] for key in plan if key in done])

    # SIGTERM (kill, scancel) ends every run's process tree, whichever thread supervises it
    with ending_trees_on_sigterm(), ThreadPoolExecutor(max_workers=args.jobs) as pool:
        for future in [pool.submit(one_run, i, e, s) for i, (e, s) in enumerate(plan, 1)]:
            future.result()
    runs = [done[key] for key in plan]
    status = next((r["returncode"] for r in runs if r["returncode"]), 0)
    print(render_table(aggregate(runs, settings.target), settings.target), flush=True)
    log(f"wrote {out / 'summary.json'}, {out / 'table.md'}, {out / 'curves.png'} ({time.monotonic() - start:.0f} s)")
    return status


if __name__ == "__main__":
    sys.exit(main())
