"""``python -m mapo_verl compare``: estimators against each other through verl's trainer, over seeds, with bands.

For every estimator and seed (the same seeds for every estimator) one ``main_ppo`` run, one after another, each in
``DIR/runs/<estimator>-s<seed>/`` (verl's file-logger ``metrics.jsonl``, the rollout dumps, ``main_ppo.log``).
Validation runs before training and every ``--test-freq`` steps. The aggregation reads the logs with the report
tool's readers (:mod:`mapo_verl.report`) and writes, atomically:

* ``DIR/summary.json``: ``{"runs": [{"estimator", "seed", "steps", "metrics", "val_acc": [[step, acc], ...]}]}``
  (``metrics`` relative to ``DIR``), plus the settings and the aggregate table;
* ``DIR/table.md``: per estimator the held-out accuracy at the start and at the end (mean and 95% t-interval over
  seeds), the rise, and the steps to reach ``--target``; then per-step certainty side by side (the share of groups
  at each success ratio p, and the mean lambda(p) over groups, from the rollout dumps), p and lambda(p) by each
  run's own ``algorithm.mapo.success_threshold`` and ``lambda_fn`` (its config composed as its ``main_ppo`` does);
* ``DIR/curves.png`` (the ``plots`` extra): the curves, mean over seeds with a 95% band.

CPU (``--backend cpu``, the default): the shipped config shrunk to the tiny model, on the learnable ``shapes`` task
(``python -m data_prep.shapes``), warm-started on the answer format with random answers. GPU clusters
(``--backend gpu``): ``--config NAME`` and the trailing Hydra overrides go to every run unchanged, plus the
estimator, the seeds, the step count and the logging.

Each knob is declared once, as a field of :class:`Settings` or :class:`Invocation` (:func:`option`: its default,
help and flag); the command line and the ``--quick`` preset (:data:`QUICK`) are built from those declarations.
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
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import MISSING, Field, asdict, dataclass, field, fields, replace
from functools import cache
from pathlib import Path
from typing import TYPE_CHECKING, Any

from mapo_verl.atomic_io import write_text
from mapo_verl.supervise import ending_trees_on_sigterm
from mapo_verl.verl_log import METRICS_FILE, TRAINING_STEP_KEY
from mapo_verl_cpu.fixtures.tiny_model import TinyModelSpec
from mapo_verl_cpu.runners import Placement
from mapo_verl_cpu.runners import run as run_with
from mapo_verl_cpu.runners.rollouts import ROLLOUTS, cpu_run_spec
from mapo_verl_cpu.runners.spec import (
    CONFIG_DIR,
    DEFAULT_CONFIG,
    REPO_ROOT,
    RunSpec,
    bad_overrides,
    tiny_overrides,
)

if TYPE_CHECKING:
    from mapo_verl.mixed_advantage import MapoSettings


def log(msg: str) -> None:
    print(f"[compare] {msg}", flush=True)


# ------------------------------------------------------------------------------------------------ the knobs
def option(
    default: Any = MISSING,
    *,
    help_text: str,
    cli: Callable[[Any], Any] | None = None,
    quick: bool = False,
    **argparse_kw: Any,
) -> Any:
    """One knob, declared once, as a dataclass field: ``default`` as the command line spells it (the field's own
    default is ``cli(default)``), the help text, ``cli`` (the flag's value -> the field's; None from it means the
    flag was left out), ``quick`` (``--quick``'s preset holds this knob at its default) and argparse's own keywords
    (``type`` where the default does not tell it, ``choices``, ``required``, ``nargs``). The flag is the field's name
    with dashes (``test_freq``: ``--test-freq``); a field with ``nargs`` is the positional argument."""
    metadata = {"help": help_text, "cli": cli, "quick": quick, "argparse": argparse_kw, "default": default}
    if default is MISSING:
        return field(metadata=metadata)
    return field(default=cli(default) if cli is not None and default is not None else default, metadata=metadata)


def _names(text: str) -> tuple[str, ...] | None:
    """``mapo,grpo`` -> ``("mapo", "grpo")``; an empty flag is a flag left out."""
    return tuple(name for name in text.split(",") if name) if text else None


def _first_seeds(count: int) -> tuple[int, ...]:
    """K -> seeds 1..K."""
    return tuple(range(1, count + 1))


#: runs at a time when ``--jobs`` is left out, per backend
JOBS = {"cpu": 2, "gpu": 1}


@dataclass(frozen=True)
class Settings:
    """What every run of one comparison shares (in ``summary.json``); each field is one knob (:func:`option`)."""

    estimators: tuple[str, ...] = option(
        "mapo,grpo", help_text="comma-separated adv_estimator names", cli=_names, quick=True
    )
    seeds: tuple[int, ...] = option(
        2, help_text="seeds per estimator, 1..K, the same for all", cli=_first_seeds, quick=True
    )
    steps: int = option(10, help_text="training steps per run", quick=True)
    #: left out, it is at most ``steps`` (:func:`settings_of`): every run validates at least once after training
    test_freq: int = option(5, help_text="validate every N steps; left out, at most --steps", quick=True)
    backend: str = option(
        "cpu", help_text="cpu: tiny model on the shapes task; gpu: the config as it is", choices=tuple(JOBS)
    )
    config: str = option(DEFAULT_CONFIG, help_text="shipped training config")
    prompts: int = option(16, help_text="cpu: prompts per step")
    n: int = option(8, help_text="cpu: responses per prompt")
    #: prompts per PPO update (``actor.ppo_mini_batch_size``): 8 of 16 = two updates a step, as PPO does
    mini_batch: int = option(8, help_text="cpu: prompts per PPO update, a divisor of --prompts (8 of 16: two a step)")
    lr: float = option(1e-3, help_text="cpu: actor learning rate, every estimator")
    train_size: int = option(512, help_text="cpu: shapes training prompts (python -m data_prep.shapes)")
    test_size: int = option(64, help_text="cpu: shapes held-out prompts")
    warm_steps: int = option(300, help_text="cpu: steps of the answer-format warm start")
    target: float = option(0.5, help_text="held-out accuracy for 'steps to target'")
    overrides: tuple[str, ...] = option(
        (), help_text="Hydra overrides passed to every main_ppo run", cli=tuple, nargs="*"
    )


@dataclass(frozen=True)
class Invocation:
    """How one ``compare`` runs, beside its :class:`Settings` (not in ``summary.json``); each field is one knob."""

    out: str = option(help_text="output folder", required=True)
    cache_dir: str | None = option(None, type=str, help_text="cpu: where the tiny model is cached (~/.cache/mapo-verl)")
    timeout: float | None = option(None, type=float, help_text="seconds per run before its process tree ends")
    jobs: int | None = option(
        None,
        type=int,
        help_text="runs at a time, each with its own private Ray ("
        + "; ".join(f"{backend}: {jobs}" for backend, jobs in JOBS.items())
        + ")",
    )


#: ``--quick``: the knobs marked ``quick`` at their defaults, as the command line spells them (both estimators,
#: 2 seeds each, two runs at a time): 593 s measured on 2 CPU cores (docs/learning.md)
QUICK: Mapping[str, Any] = {f.name: f.metadata["default"] for f in fields(Settings) if f.metadata["quick"]}


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


def group_success(dump: Path, success_threshold: float) -> list[float]:
    """Success ratio p of every prompt group in one verl rollout dump (``uid`` = ``<group>_<rollout>_<output>``): the
    share of its scores that MAPO counts as a success at ``success_threshold`` (:func:`~mapo_verl.mixed_advantage.
    is_success`, the estimator's own rule)."""
    import torch

    from mapo_verl.mixed_advantage import is_success

    groups: dict[str, list[float]] = {}
    for line in dump.read_text().splitlines():
        if line.strip():
            row = json.loads(line)
            groups.setdefault(str(row["uid"]).rsplit("_", 2)[0], []).append(float(row["score"]))
    return [
        int(is_success(torch.tensor(scores, dtype=torch.float64), success_threshold).sum()) / len(scores)
        for scores in groups.values()
    ]


def certainty(rollout_dir: Path, success_threshold: float) -> dict[int, list[float]]:
    """step -> the success ratio p of each group, from ``<step>.jsonl`` dumps (empty when there are none)."""
    if not rollout_dir.is_dir():
        return {}
    return {int(f.stem): group_success(f, success_threshold) for f in rollout_dir.glob("*.jsonl") if f.stem.isdigit()}


def lambdas(ps: Sequence[float], lambda_fn: str) -> list[float]:
    """MAPO's certainty weight lambda(p) of each success ratio, with the run's ``algorithm.mapo.lambda_fn``
    (:func:`~mapo_verl.mixed_advantage.trajectory_certainty_weight`; ``tcr``: 1 - 4p(1 - p))."""
    import torch

    from mapo_verl.mixed_advantage import trajectory_certainty_weight

    return trajectory_certainty_weight(torch.tensor(list(ps), dtype=torch.float64), lambda_fn).tolist()


def average(values: Sequence[float]) -> float:
    """The plain mean (of lambda(p) over groups)."""
    return sum(values) / len(values)


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
_COMPOSING = threading.Lock()  # Hydra's global state: one composition at a time


@cache
def _mapo_settings(config_dir: str, config_name: str, overrides: tuple[str, ...]) -> MapoSettings:
    from mapo_verl.compose import ComposeError, compose
    from mapo_verl.mixed_advantage import MapoSettings

    try:
        algorithm = compose(config_dir, config_name, overrides).get("algorithm")
    except ComposeError as err:
        # main_ppo cannot compose it either: the run writes no rollout dumps, whatever the settings read here
        log(f"MAPO settings: {err}; p and lambda(p) with the defaults")
        return MapoSettings()
    from mapo_verl.verl_plugin import settings_from_config

    try:
        return settings_from_config(algorithm)
    except ValueError as err:
        # Where MAPO's own reading of the config does not apply (e.g. algorithm.use_kl_in_reward=true, which a
        # grpo run may set and a mapo run refuses), the run has no MAPO settings: its p and lambda(p) follow the
        # defaults of the settings dataclass, MapoSettings(), and the log says so.
        log(f"MAPO settings of {config_name} (+{len(overrides)} overrides): {err}; p and lambda(p) with the defaults")
        return MapoSettings()


def mapo_settings(spec: RunSpec) -> MapoSettings:
    """MAPO's settings of one run (``algorithm.mapo.success_threshold``, ``lambda_fn``, ...), read from its config
    composed exactly as its ``main_ppo`` composes it (:func:`mapo_verl.compose.compose` with the spec's config and
    overrides; once per config and overrides)."""
    with _COMPOSING:
        return _mapo_settings(str(spec.config_dir), spec.config_name, tuple(spec.overrides))


def read_run(run_dir: Path, mapo: MapoSettings | None = None) -> dict:
    """One run's validation accuracy per step (mean over its validation sets) and training steps, via the report
    tool's readers, and per step each group's success ratio p (``p``) and lambda(p) (``lambdas``) by the run's own
    MAPO settings ``mapo`` (:func:`mapo_settings`; None: the settings dataclass's defaults, ``MapoSettings()``)."""
    from mapo_verl.mixed_advantage import MapoSettings
    from mapo_verl.report import ReportError, load_run, validation_accuracy

    mapo = MapoSettings() if mapo is None else mapo
    try:
        run = load_run(str(run_dir / METRICS_FILE))
    except ReportError:
        return {"steps": 0, "val_acc": [], "score": [], "lambda": [], "p": {}, "lambdas": {}, "kinds": {}}
    val_acc = []
    for step in sorted(run.steps):
        per_set = validation_accuracy(run, step=str(step))
        if per_set:
            val_acc.append([step, sum(per_set.values()) / len(per_set)])
    trained = [s for s, d in run.steps.items() if TRAINING_STEP_KEY in d]
    p = dict(sorted(certainty(run_dir / "rollouts", mapo.success_threshold).items()))
    return {
        "steps": max(trained, default=0),
        "val_acc": val_acc,
        "score": run.series("critic/score/mean"),
        "lambda": run.series("mapo/lambda_mean"),
        "p": p,
        "lambdas": {step: lambdas(ps, mapo.lambda_fn) for step, ps in p.items()},
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
    """Per training step, per estimator (pooled over seeds): the share of groups at each p, and mean lambda(p) (each
    run's p and lambda(p) by its own MAPO settings, :func:`read_run`)."""
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
            lams = [lam for r in runs if r["estimator"] == est for lam in r["lambdas"].get(step, [])]
            cells.append(f"{average(lams):.3f}")
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
        ("mean lambda(p) over groups", lambda r: [[s, average(lams)] for s, lams in r["lambdas"].items() if lams]),
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

    from data_prep.shapes import ANSWERS
    from mapo_verl_cpu.fixtures.tiny_model import WarmStartExample

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
        env = {**os.environ, "VERL_FILE_LOGGER_PATH": str(run_dir / METRICS_FILE)}
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
def _add_option(parser: argparse.ArgumentParser, knob: Field) -> None:
    """The flag (or the positional argument) of one :func:`option`; left out, it parses as None (the default)."""
    meta = knob.metadata
    kw = dict(meta["argparse"])
    text = meta["help"]
    if meta["default"] not in (MISSING, None, ()):
        kw.setdefault("type", type(meta["default"]))
        text += f" ({meta['default']})"
    if "nargs" in kw:
        parser.add_argument(knob.name, default=None, help=text, **kw)
    else:
        parser.add_argument("--" + knob.name.replace("_", "-"), default=None, help=text, **kw)


def build_parser() -> argparse.ArgumentParser:
    """The command line, built from the knobs of :class:`Invocation` and :class:`Settings` and the :data:`QUICK`
    preset."""
    parser = argparse.ArgumentParser(
        prog="python -m mapo_verl compare",
        description=__doc__.splitlines()[0],
        epilog="Trailing key=value arguments are Hydra overrides for every run.",
    )
    preset = ", ".join(f"--{name.replace('_', '-')} {value}" for name, value in QUICK.items())
    parser.add_argument("--quick", action="store_true", help=f"the CPU preset, also the defaults: {preset} (~10 min)")
    for knob in (*fields(Invocation), *fields(Settings)):
        _add_option(parser, knob)
    return parser


def _given(args: argparse.Namespace, knobs: Sequence[Field]) -> dict[str, Any]:
    """The knobs the command line gives, as field values (each flag's value through its ``cli``)."""
    values = {}
    for knob in knobs:
        raw = getattr(args, knob.name, None)
        convert = knob.metadata["cli"]
        value = raw if raw is None or convert is None else convert(raw)
        if value is not None:
            values[knob.name] = value
    return values


def settings_of(args: argparse.Namespace) -> Settings:
    """The settings from the arguments (``--quick`` fills what is not given with :data:`QUICK`, the rest takes the
    fields' defaults); ValueError naming a bad one."""
    knobs = fields(Settings)
    given = _given(args, knobs)
    if args.quick:
        preset = _given(argparse.Namespace(**QUICK), [k for k in knobs if k.name in QUICK])
        given = {**preset, **given}
    settings = Settings(**given)
    if args.test_freq is None:  # left out: at most the step count, so that every run validates after training
        settings = replace(settings, test_freq=min(settings.test_freq, max(settings.steps, 1)))
    s = settings
    if not s.estimators or not s.seeds or s.steps < 1 or s.test_freq < 1 or s.prompts < 1 or s.n < 2:
        raise ValueError("--estimators must name one, --seeds/--steps/--test-freq/--prompts >= 1, --n >= 2")
    if s.mini_batch < 1 or s.prompts % s.mini_batch:
        raise ValueError(f"--mini-batch must divide --prompts ({s.prompts}), got {s.mini_batch}")
    if s.train_size < 1 or s.test_size < 1:
        raise ValueError("--train-size/--test-size must be >= 1")
    bad = bad_overrides(s.overrides)
    if bad:
        raise ValueError(f"not a Hydra override (key=value): {' '.join(bad)}")
    if not (CONFIG_DIR / f"{s.config}.yaml").is_file() and s.backend == "cpu":
        raise ValueError(f"--config: {CONFIG_DIR / s.config}.yaml not found")
    return settings


def invocation_of(args: argparse.Namespace, backend: str) -> Invocation:
    """How this invocation runs, ``--jobs`` left out: :data:`JOBS` of ``backend``; ValueError on a bad one."""
    invocation = Invocation(**_given(args, fields(Invocation)))
    if invocation.jobs is None:
        invocation = replace(invocation, jobs=JOBS[backend])
    if invocation.jobs < 1:
        raise ValueError("--jobs must be >= 1")
    return invocation


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        settings = settings_of(args)
        invocation = invocation_of(args, settings.backend)
    except ValueError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    start = time.monotonic()
    out = Path(invocation.out).resolve()
    out.mkdir(parents=True, exist_ok=True)
    model_dir = data_dir = None
    if settings.backend == "cpu":
        from mapo_verl_cpu.fixtures.tiny_model import build_tiny_model

        data_dir = prepare_shapes(out, settings.train_size, settings.test_size)
        log(f"data: {data_dir} (python -m data_prep.shapes)")
        examples = format_examples(data_dir / "train.parquet")
        model_dir = build_tiny_model(
            Path(invocation.cache_dir) if invocation.cache_dir else None,
            examples=examples,
            warm_steps=settings.warm_steps,
            spec=COMPARE_MODEL_SPEC,
            warm_style="format",
        )
        log(f"model: {model_dir} (format warm start, every answer alike; {time.monotonic() - start:.0f} s so far)")
    plan = [(e, s) for s in settings.seeds for e in settings.estimators]
    specs = {(e, s): run_spec(settings, e, s, out / "runs" / f"{e}-s{s}", model_dir, data_dir) for e, s in plan}
    # each run's p and lambda(p) by its own algorithm.mapo settings, composed before any run starts
    mapo = {key: mapo_settings(spec) for key, spec in specs.items()}
    for key, spec in specs.items():
        log(
            f"{key[0]} seed {key[1]}: success_threshold={mapo[key].success_threshold:g}, "
            f"lambda_fn={mapo[key].lambda_fn} (from {spec.config_name} and its overrides)"
        )
    done: dict[tuple[str, int], dict] = {}
    lock = threading.Lock()

    def one_run(i: int, estimator: str, seed: int) -> None:
        spec = specs[(estimator, seed)]
        spec.metrics_path.unlink(missing_ok=True)
        log(f"run {i}/{len(plan)}: {estimator} seed {seed}, {settings.steps} steps -> {spec.out}")

        def report(msg: str) -> None:
            log(f"  [{estimator} s{seed}] {msg}")

        outcome = run_with("local", spec, Placement(), invocation.timeout, report)
        result = read_run(spec.out, mapo[(estimator, seed)])
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
    with ending_trees_on_sigterm(), ThreadPoolExecutor(max_workers=invocation.jobs) as pool:
        for future in [pool.submit(one_run, i, e, s) for i, (e, s) in enumerate(plan, 1)]:
            future.result()
    runs = [done[key] for key in plan]
    status = next((r["returncode"] for r in runs if r["returncode"]), 0)
    print(render_table(aggregate(runs, settings.target), settings.target), flush=True)
    log(f"wrote {out / 'summary.json'}, {out / 'table.md'}, {out / 'curves.png'} ({time.monotonic() - start:.0f} s)")
    return status


if __name__ == "__main__":
    sys.exit(main())
