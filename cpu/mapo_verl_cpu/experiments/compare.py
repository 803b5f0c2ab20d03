"""``python -m mapo_verl compare``: arms (estimators with their own overrides) through verl's trainer, paired seeds.

An arm (:class:`Arm`, ``--arms``) is a name, an ``adv_estimator`` and Hydra overrides for its runs only (presets:
:data:`ARM_PRESETS`; ``--estimators a,b`` is ``--arms a,b``). For every arm and seed (the same seeds for every arm)
one ``main_ppo`` run, ``--jobs`` at a time, each in ``DIR/runs/<arm>-s<seed>/`` (verl's file-logger
``metrics.jsonl``, the rollout dumps, ``main_ppo.log``). Validation runs before training and every ``--test-freq``
steps. The aggregation reads the logs with the report tool's readers (:mod:`mapo_verl.report`), computes the
statistics of :mod:`mapo_verl_cpu.experiments.statistics` over the completed runs (a failed or timed-out run is
flagged and left out) and writes, atomically:

* ``DIR/summary.json`` (format :data:`SUMMARY_FORMAT`): ``runs`` (per run :data:`RUN_KEYS`, ``metrics`` relative to
  ``DIR``), ``settings``, ``arms`` (name -> estimator, overrides), ``table`` (per arm: start, final and area under
  the held-out curve, rise: mean, 95% t interval clipped to [0, 1], ``n``), ``reference``, ``paired`` and
  ``paired_area`` (arm -> difference from the reference paired by seed: mean, low, high, n) and ``controls``;
* ``DIR/table.md``: those tables (``n/a`` where there is no interval: one seed, or seeds that all agree), per run
  its status, final accuracy and area, per arm and question kind the held-out accuracy, then per-step certainty side
  by side (the share of groups at each success ratio p, and the mean lambda(p) over groups, from the rollout dumps),
  p and lambda(p) by each run's own ``algorithm.mapo`` settings (its config composed as its ``main_ppo`` does, the
  arm's overrides included);
* ``DIR/curves.png`` (the ``plots`` extra): the curves, per arm the mean over seeds with a 95% band.

CPU (``--backend cpu``, the default): the shipped config shrunk to the tiny model, on the learnable ``shapes`` task
(``python -m data_prep.shapes --colours 4``), warm-started on the answer format only (every training prompt of the
warm start with every answer, in balanced epochs). Seed k draws the tiny model's initial weights, its warm start,
the training order (``data.seed``) and the rollout sampling (``actor_rollout_ref.rollout.seed``, reproducible in
the ``hf`` rollout): every arm's run of seed k starts from the same weights and data, so arms pair by seed. GPU clusters
(``--backend gpu``): ``--config NAME`` and the trailing Hydra overrides go to every run unchanged, plus the
arm's estimator and overrides, the seeds, the step count and the logging.

Each knob is declared once, as a field of :class:`Settings` or :class:`Invocation` (:func:`option`: its default,
help and flag); the command line and the ``--quick`` preset (:data:`QUICK`) are built from those declarations.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import re
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
from mapo_verl.supervise import Outcome, ending_trees_on_sigterm
from mapo_verl.verl_log import METRICS_FILE, TRAINING_STEP_KEY
from mapo_verl_cpu.experiments.statistics import (
    Estimate,
    curve_area,
    detectable_difference,
    mean_interval,
    paired_difference,
    paired_values,
)
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
    override_key,
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
    positional: bool = False,
    **argparse_kw: Any,
) -> Any:
    """One knob, declared once, as a dataclass field: ``default`` as the command line spells it (the field's own
    default is ``cli(default)``), the help text, ``cli`` (the flag's value -> the field's; None from it means the
    flag was left out), ``quick`` (``--quick``'s preset holds this knob at its default) and argparse's own keywords
    (``type`` where the default does not tell it, ``choices``, ``required``, ``nargs``). The flag is the field's name
    with dashes (``test_freq``: ``--test-freq``), or no flag for the ``positional`` argument."""
    metadata = {
        "help": help_text, "cli": cli, "quick": quick, "positional": positional, "argparse": argparse_kw,
        "default": default,
    }  # fmt: skip
    if default is MISSING:
        return field(metadata=metadata)
    return field(default=cli(default) if cli is not None and default is not None else default, metadata=metadata)


def _names(text: str) -> tuple[str, ...] | None:
    """``mapo,grpo`` -> ``("mapo", "grpo")``; an empty flag is a flag left out."""
    return tuple(name for name in text.split(",") if name) if text else None


def seed_list(text: str) -> tuple[int, ...]:
    """``--seeds``: ``K`` -> seeds 1..K; ``A-B`` -> A..B; ``A,B,...`` -> those (a comparison's later seeds, to
    :func:`merge` with its first). ValueError naming the flag for anything else, a seed below 1 or a repeat."""
    try:
        if "," in text:
            seeds = tuple(int(part) for part in text.split(",") if part)
        elif "-" in text.strip("-"):
            low, high = (int(part) for part in text.split("-", 1))
            seeds = tuple(range(low, high + 1))
        else:
            seeds = tuple(range(1, int(text) + 1))
    except ValueError:
        raise ValueError(f"--seeds: K (seeds 1..K), A-B or A,B,... with whole numbers, got {text!r}") from None
    if not seeds or min(seeds) < 1 or len(set(seeds)) != len(seeds):
        raise ValueError(f"--seeds: at least one seed, each >= 1 and given once, got {text!r}")
    return seeds


#: runs at a time when ``--jobs`` is left out, per backend
JOBS = {"cpu": 2, "gpu": 1}

#: the CPU actor learning rate, ``--lr``'s default (every arm's, unless an arm overrides it)
CPU_LR = 1e-3


# ------------------------------------------------------------------------------------------------ the arms
@dataclass(frozen=True)
class Arm:
    """One arm of a comparison: a name (its runs' folders ``runs/<name>-s<seed>``), verl's ``adv_estimator`` and the
    Hydra overrides given to this arm's runs only (after every other override, so they win)."""

    name: str
    estimator: str
    overrides: tuple[str, ...] = ()

    def overrides_for(self, seed: int) -> tuple[str, ...]:
        """The arm's overrides for its run of ``seed``: ``{seed}`` in a value becomes the seed (``...rollout.seed=
        1000{seed}``: a sampling stream of the arm's own, still one per seed)."""
        return tuple(o.replace("{seed}", str(seed)) for o in self.overrides)


#: named arms, ``NAME: ESTIMATOR[:override...]``. ``grpo-twin`` is the negative control: grpo with a sampling
#: stream of its own (rollout seed 10001 for seed 1, 10002 for seed 2, ...): the same settings, independent
#: randomness (a twin sharing grpo's seeds would repeat its runs exactly). ``grpo-quarter-lr`` is the positive control
#: of the CPU runs: a quarter of ``--lr``'s default, :data:`CPU_LR`, so it learns more slowly.
ARM_PRESETS: Mapping[str, str] = {
    "grpo": "grpo",
    "mapo": "mapo",
    "mapo-permuted": "mapo:algorithm.mapo.lambda_assignment=permuted",
    "apd": "mapo:algorithm.mapo.lambda_fn=one",
    "grpo-twin": "grpo:actor_rollout_ref.rollout.seed=1000{seed}",
    "grpo-quarter-lr": f"grpo:actor_rollout_ref.actor.optim.lr={CPU_LR / 4:g}",
}
#: presets whose overrides are tuned to the CPU backend's settings
CPU_ONLY_PRESETS = frozenset({"grpo-quarter-lr"})
#: an arm's name: a folder name on every filesystem (letters, digits, ``.``, ``_``, ``-``; not starting with either)
ARM_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,63}")
ESTIMATOR_NAME = re.compile(r"[A-Za-z0-9_]+")


def parse_arm(text: str) -> Arm:
    """``NAME=ESTIMATOR[:key=value[:key=value...]]``, a bare ``ESTIMATOR[:...]`` (the arm named after it) or a
    preset name (:data:`ARM_PRESETS`); ``ESTIMATOR`` may itself be a preset, whose overrides come first. ValueError
    naming the arm for a bad name, estimator or override (an override's value cannot hold ``:`` or ``,``)."""
    head, _, rest = text.partition(":")
    name, has_name, estimator = head.partition("=")
    if not has_name:
        estimator = name
    overrides = tuple(rest.split(":")) if rest else ()
    if not ARM_NAME.fullmatch(name):
        raise ValueError(
            f"--arms: arm {text!r}: the name {name!r} must be letters, digits, '.', '_' or '-' (at most 64, starting "
            "with a letter or digit): it names the runs' folders"
        )
    bad = bad_overrides(overrides) + [o for o in overrides if override_key(o) == "algorithm.adv_estimator"]
    if bad:
        raise ValueError(
            f"--arms: arm {name}: {' '.join(repr(o) for o in bad)} is not an override of this arm (key=value, not "
            "algorithm.adv_estimator: the estimator goes after NAME=)"
        )
    if estimator in ARM_PRESETS and ARM_PRESETS[estimator] != estimator:
        preset = parse_arm(f"{estimator}={ARM_PRESETS[estimator]}")
        return Arm(name, preset.estimator, (*preset.overrides, *overrides))
    if not ESTIMATOR_NAME.fullmatch(estimator):
        raise ValueError(
            f"--arms: arm {name}: {estimator!r} is neither an estimator name nor a preset ({', '.join(ARM_PRESETS)})"
        )
    return Arm(name, estimator, overrides)


def parse_arms(text: str) -> tuple[Arm, ...] | None:
    """``--arms``: comma-separated :func:`parse_arm`; an empty flag is a flag left out. ValueError when two arms
    share a name."""
    arms = tuple(parse_arm(item) for item in text.split(",") if item) if text else ()
    names = [arm.name for arm in arms]
    twice = sorted({name for name in names if names.count(name) > 1})
    if twice:
        raise ValueError(f"--arms: arm name(s) {', '.join(twice)} given twice: every arm needs its own name")
    return arms or None


def check_arm_overrides(arm: Arm) -> None:
    """ValueError naming the arm when its ``algorithm.mapo.*`` overrides are not MAPO settings the plug-in accepts
    (:func:`mapo_verl.verl_plugin.settings_from_config`: known keys, known ``lambda_fn``/``lambda_assignment``, numbers
    in range); imports verl only for an arm that has such overrides."""
    prefix = "algorithm.mapo."
    knobs = {
        override_key(o).removeprefix(prefix): o.split("=", 1)[1]
        for o in arm.overrides
        if override_key(o).startswith(prefix) and "=" in o
    }
    if not knobs:
        return
    from mapo_verl.verl_plugin import settings_from_config

    try:
        settings_from_config({"mapo": knobs})
    except ValueError as err:
        raise ValueError(f"--arms: arm {arm.name}: {err}") from None


def reference_arm(settings: Settings) -> str:
    """The arm paired differences are taken against: ``--reference``, else ``grpo`` when it is an arm, else the
    first arm."""
    names = [arm.name for arm in settings.arms]
    if settings.reference:
        return settings.reference
    return "grpo" if "grpo" in names else names[0]


@dataclass(frozen=True)
class Settings:
    """What every run of one comparison shares (in ``summary.json``); each field is one knob (:func:`option`)."""

    arms: tuple[Arm, ...] = option(
        "mapo,grpo",
        help_text="comma-separated arms: a preset (" + ", ".join(ARM_PRESETS) + "), an estimator, or "
        "NAME=ESTIMATOR[:key=value...] with that arm's own Hydra overrides",
        cli=parse_arms,
        quick=True,
    )
    #: shorthand for ``--arms`` with bare estimator names: :func:`settings_of` turns it into ``arms`` (None here)
    estimators: tuple[str, ...] | None = option(
        None, type=str, help_text="comma-separated adv_estimator names: --arms of bare estimators", cli=_names
    )
    seeds: tuple[int, ...] = option(
        "2",
        type=str,
        help_text="seeds of every arm (paired by seed): K for 1..K, A-B, or A,B,...",
        cli=seed_list,
        quick=True,
    )
    steps: int = option(8, help_text="training steps per run", quick=True)
    #: left out, it is at most ``steps`` (:func:`settings_of`): every run validates at least once after training
    test_freq: int = option(2, help_text="validate every N steps; left out, at most --steps", quick=True)
    backend: str = option(
        "cpu", help_text="cpu: tiny model on the shapes task; gpu: the config as it is", choices=tuple(JOBS)
    )
    config: str = option(DEFAULT_CONFIG, help_text="shipped training config")
    prompts: int = option(16, help_text="cpu: prompts per step")
    n: int = option(8, help_text="cpu: responses per prompt")
    #: prompts per PPO update (``actor.ppo_mini_batch_size``): 8 of 16 = two updates a step, as PPO does
    mini_batch: int = option(8, help_text="cpu: prompts per PPO update, a divisor of --prompts (8 of 16: two a step)")
    lr: float = option(CPU_LR, help_text="cpu: actor learning rate, every arm (unless it overrides it)")
    train_size: int = option(512, help_text="cpu: shapes training prompts (python -m data_prep.shapes)")
    test_size: int = option(32, help_text="cpu: shapes held-out prompts (each validated --val-samples times)")
    colours: int = option(4, help_text="cpu: colours the shapes colour question asks about (2-4)", choices=(2, 3, 4))
    val_samples: int = option(
        4,
        help_text="cpu: sampled answers per held-out prompt at temperature 1 (held-out accuracy: their mean, the "
        "policy's expected accuracy); 0: one greedy answer",
    )
    warm_epochs: int = option(2, help_text="cpu: epochs of the answer-format warm start (every pair once an epoch)")
    target: float = option(0.5, help_text="held-out accuracy for 'steps to target'")
    reference: str | None = option(
        None, type=str, help_text="the arm the paired differences are taken against; left out: grpo, else the first"
    )
    negative_control: tuple[str, ...] | None = option(
        None, type=str, help_text="A,B: two arms of identical settings; their difference's interval should cover 0",
        cli=_names,
    )  # fmt: skip
    positive_control: str | None = option(
        None, type=str, help_text="an arm known to be worse; its difference from --reference should exclude 0"
    )
    overrides: tuple[str, ...] = option(
        (), help_text="Hydra overrides passed to every main_ppo run", cli=tuple, nargs="*", positional=True
    )


@dataclass(frozen=True)
class Invocation:
    """How one ``compare`` runs, beside its :class:`Settings` (not in ``summary.json``); each field is one knob."""

    out: str = option(help_text="output folder", required=True)
    cache_dir: str | None = option(None, type=str, help_text="cpu: where the tiny model is cached (~/.cache/mapo-verl)")
    timeout: float | None = option(None, type=float, help_text="seconds per run before its process tree ends")
    merge: tuple[str, ...] | None = option(
        None,
        type=str,
        nargs="+",
        help_text="instead of running: comparisons of the same settings and other seeds (their summary.json, or their "
        "folders to read the runs again), aggregated into --out as one",
        cli=tuple,
    )
    jobs: int | None = option(
        None,
        type=int,
        help_text="runs at a time, each with its own private Ray ("
        + "; ".join(f"{backend}: {jobs}" for backend, jobs in JOBS.items())
        + ")",
    )


#: ``--quick``: the knobs marked ``quick`` at their defaults, as the command line spells them (the arms mapo and
#: grpo, 2 seeds each, two runs at a time, 8 steps): under 15 minutes on 2 CPU cores, the models built on the way
#: (docs/measurements.md; at 10 steps it took 17 min)
QUICK: Mapping[str, Any] = {f.name: f.metadata["default"] for f in fields(Settings) if f.metadata["quick"]}


# --------------------------------------------------------------------------------------------- statistics
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
    from data_prep.shapes import question_kind as kind

    return kind(prompt)


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
    MAPO settings ``mapo`` (:func:`mapo_settings`; None: the settings dataclass's defaults, ``MapoSettings()``), whose
    ``lambda_fn`` and ``lambda_assignment`` the record keeps."""
    from mapo_verl.mixed_advantage import MapoSettings
    from mapo_verl.report import ReportError, load_run, validation_accuracy

    mapo = MapoSettings() if mapo is None else mapo
    settings = {"lambda_fn": mapo.lambda_fn, "lambda_assignment": mapo.lambda_assignment}
    try:
        run = load_run(str(run_dir / METRICS_FILE))
    except ReportError:
        return {"steps": 0, "val_acc": [], "score": [], "lambda": [], "p": {}, "lambdas": {}, "kinds": {}, **settings}
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
        **settings,
    }


ACCURACY = (0.0, 1.0)
DIFFERENCE = (-1.0, 1.0)


def arm_of(run: Mapping[str, Any]) -> str:
    """A run record's arm (a record from before arms: its estimator)."""
    return str(run.get("arm", run["estimator"]))


def run_status(run: Mapping[str, Any]) -> str:
    """``ok``, ``timed out`` (exit 124, :func:`main`'s mark), ``failed (exit N)`` or ``no validation``; only ``ok``
    runs enter the means, intervals and pairs."""
    code = int(run.get("returncode") or 0)
    if code == 124:
        return "timed out"
    if code:
        return f"failed (exit {code})"
    return "ok" if run["val_acc"] else "no validation"


def _completed(runs: Sequence[Mapping[str, Any]], arm: str) -> list[Mapping[str, Any]]:
    return [r for r in runs if arm_of(r) == arm and run_status(r) == "ok"]


def final_accuracy(run: Mapping[str, Any]) -> float:
    """The held-out accuracy at the run's last validation."""
    return float(run["val_acc"][-1][1])


def lambda_label(run: Mapping[str, Any]) -> str:
    """What lambda(p) a run's estimator used: ``tcr``, ``one, permuted``, ...; ``-`` for estimators other than
    mapo (whose lambda(p) only describes the groups), ``n/a`` for a record without its MAPO settings."""
    if run["estimator"] != "mapo":
        return "-"
    if "lambda_fn" not in run:
        return "n/a"
    return run["lambda_fn"] + (", permuted" if run.get("lambda_assignment") == "permuted" else "")


def aggregate(runs: Sequence[dict], target: float) -> list[dict]:
    """Per arm, over its completed runs (:func:`run_status` ``ok``): held-out accuracy at the start and at the end,
    the area under the held-out curve (:func:`~mapo_verl_cpu.experiments.statistics.curve_area`) and the rise (mean
    and 95% t interval, :func:`~mapo_verl_cpu.experiments.statistics.mean_interval`, accuracies clipped to [0, 1]),
    the worst rise, the steps to ``target``; the runs left out, with their seed and status."""
    table = []
    for arm in dict.fromkeys(arm_of(r) for r in runs):
        mine = [r for r in runs if arm_of(r) == arm]
        ok = _completed(runs, arm)
        start = [r["val_acc"][0][1] for r in ok]
        final = [final_accuracy(r) for r in ok]
        rise = [f - s for s, f in zip(start, final, strict=True)]
        areas = [a for a in (curve_area(r["val_acc"]) for r in ok) if a is not None]
        table.append(
            {
                "arm": arm,
                "estimator": mine[0]["estimator"],
                "lambda": lambda_label(mine[0]),
                "runs": len(ok),
                "failed": [{"seed": r["seed"], "status": run_status(r)} for r in mine if run_status(r) != "ok"],
                "start": mean_interval(start, ACCURACY).as_dict(),
                "final": mean_interval(final, ACCURACY).as_dict(),
                "area": mean_interval(areas, ACCURACY).as_dict(),
                "rise": mean_interval(rise, DIFFERENCE).as_dict(),
                "min_rise": min(rise, default=None),
                "steps_to_target": [steps_to_target(r["val_acc"], target) for r in ok],
            }
        )
    return table


def paired(runs: Sequence[dict], reference: str, value: Callable[[Mapping[str, Any]], float | None]) -> dict:
    """arm -> ``value(run) - value(reference's run)`` paired by seed over the seeds both completed (mean, 95% t
    interval, ``n`` pairs: :func:`~mapo_verl_cpu.experiments.statistics.paired_difference`), for every arm but the
    reference."""
    by_seed = {
        arm: {r["seed"]: v for r in _completed(runs, arm) if (v := value(r)) is not None}
        for arm in dict.fromkeys(arm_of(r) for r in runs)
    }
    ref = by_seed.get(reference, {})
    return {
        arm: {**paired_difference(mine, ref).as_dict(), "detectable": detectable_difference(paired_values(mine, ref))}
        for arm, mine in by_seed.items()
        if arm != reference
    }


def controls(runs: Sequence[dict], reference: str, negative: Sequence[str] | None, positive: str | None) -> dict | None:
    """``{"negative": [A, B], "positive": [C, reference]}`` with the paired difference of final held-out accuracy
    of each pair and whether its interval covers 0 (negative: it should) or excludes it (positive: it should); None
    when neither control is named. ``None`` for a verdict: no interval (fewer than two pairs, or no spread)."""
    if not negative and not positive:
        return None
    result: dict[str, Any] = {"negative": list(negative) if negative else None}
    result["positive"] = [positive, reference] if positive else None
    for kind, pair in (("negative", negative), ("positive", [positive, reference] if positive else None)):
        if pair:
            finals = [{r["seed"]: final_accuracy(r) for r in _completed(runs, arm)} for arm in pair]
            diff = paired_difference(finals[0], finals[1])
            covers = diff.covers_zero()
            result[f"{kind}_difference"] = {
                **diff.as_dict(),
                "detectable": detectable_difference(paired_values(finals[0], finals[1])),
            }
            if kind == "negative":
                result["negative_covers_zero"] = covers
            else:
                result["positive_excludes_zero"] = None if covers is None else not covers
    return result


def summarise(
    runs: Sequence[dict], target: float, reference: str, negative: Sequence[str] | None, positive: str | None
) -> dict:
    """The statistics of ``summary.json``: ``table`` (:func:`aggregate`), ``reference``, ``paired`` (final held-out
    accuracy) and ``paired_area`` (area under the held-out curve) against it (:func:`paired`), ``controls``."""
    return {
        "reference": reference,
        "table": aggregate(runs, target),
        "paired": paired(runs, reference, final_accuracy),
        "paired_area": paired(runs, reference, lambda r: curve_area(r["val_acc"])),
        "controls": controls(runs, reference, negative, positive),
    }


def _estimate(values: Mapping[str, Any], signed: bool = False) -> str:
    return Estimate(values["mean"], values["low"], values["high"], values["n"]).text(signed)


def _detectable(values: Mapping[str, Any]) -> str:
    found = values.get("detectable")
    return "n/a" if found is None else f"{found:.3f}"


def _failed_cell(row: Mapping[str, Any]) -> str:
    failed = row["failed"]
    return f"{len(failed)}: " + ", ".join(f"s{f['seed']} {f['status']}" for f in failed) if failed else "0"


def render_table(summary: Mapping[str, Any], target: float) -> str:
    """The Markdown tables of :func:`summarise`: per arm, then paired differences against the reference, then the
    controls' verdicts. ``n/a``: no interval (one seed, or seeds that all agree)."""
    lines = [
        "| arm | estimator | lambda | runs | failed (left out) | held-out acc at step 0 | final held-out acc (95% CI) "
        f"| area under held-out curve (95% CI) | rise (95% CI) | worst rise | steps to acc >= {target:g} |",
        "|" + " --- |" * 11,
    ]
    for row in summary["table"]:
        reached = ", ".join("never" if s is None else str(s) for s in row["steps_to_target"]) or "n/a"
        worst = "n/a" if row["min_rise"] is None else f"{row['min_rise']:+.3f}"
        lines.append(
            f"| {row['arm']} | {row['estimator']} | {row['lambda']} | {row['runs']} | {_failed_cell(row)} | "
            f"{_estimate(row['start'])} | {_estimate(row['final'])} | {_estimate(row['area'])} | "
            f"{_estimate(row['rise'], True)} | {worst} | {reached} |"
        )
    reference = summary["reference"]
    if summary["paired"]:
        lines += [
            "",
            f"Paired by seed against {reference} (arm - {reference}, over the seeds both completed):",
            "",
            "| arm | pairs | final held-out acc difference (95% CI) | smallest detectable | area difference (95% CI) "
            "| smallest detectable |",
            "| --- | --- | --- | --- | --- | --- |",
        ]
        for arm, diff in summary["paired"].items():
            area = summary["paired_area"][arm]
            lines.append(
                f"| {arm} | {diff['n']} | {_estimate(diff, True)} | {_detectable(diff)} | {_estimate(area, True)} | "
                f"{_detectable(area)} |"
            )
        lines += [
            "",
            "Smallest detectable: the paired interval's half-width, t_{0.975, n-1} s_d / sqrt(n); a mean difference "
            "at least that large excludes 0 at the spread seen.",
        ]
    checks = summary.get("controls")
    if checks:
        lines += ["", "Controls (final held-out accuracy, paired by seed):", ""]
        for kind, verdict, want in (
            ("negative", "negative_covers_zero", "covers 0"),
            ("positive", "positive_excludes_zero", "excludes 0"),
        ):
            if checks[kind]:
                a, b = checks[kind]
                said = {True: "yes", False: "NO", None: "n/a (fewer than 2 pairs or no spread)"}[checks[verdict]]
                diff = _estimate(checks[f"{kind}_difference"], True)
                found = _detectable(checks[f"{kind}_difference"])
                lines.append(
                    f"* {kind} control, {a} - {b}: {diff}; interval {want}: {said} (smallest detectable {found})"
                )
    return "\n".join(lines)


def render_runs(runs: Sequence[dict]) -> str:
    """Per run: status, final held-out accuracy and area under the held-out curve (runs not ``ok`` are flagged and
    left out of every mean; a rerun names the attempts it replaced, :func:`merge`)."""
    lines = ["| arm | seed | status | final held-out acc | area under held-out curve | seconds |"]
    lines.append("| --- | --- | --- | --- | --- | --- |")
    for r in runs:
        final = f"{final_accuracy(r):.3f}" if r["val_acc"] else "n/a"
        area = curve_area(r["val_acc"])
        status = run_status(r)
        flag = "" if status == "ok" else " (left out)"
        attempts = r.get("failed_attempts") or []
        if attempts:
            flag += f", rerun after {len(attempts)} failed attempt{'s' * (len(attempts) > 1)}: " + ", ".join(
                map(attempt_text, attempts)
            )
        lines.append(
            f"| {arm_of(r)} | {r['seed']} | {status}{flag} | {final} | {'n/a' if area is None else f'{area:.3f}'} | "
            f"{r.get('seconds', 'n/a')} |"
        )
    return "\n".join(lines)


def render_kinds(runs: Sequence[dict]) -> str:
    """Per arm and question kind: held-out accuracy at the first and the last validation (mean, 95% interval over
    completed seeds), from the validation dumps; what was learned, the picture read or one answer written."""
    lines = ["| arm | question kind | held-out acc at start | at the end |", "| --- | --- | --- | --- |"]
    for arm in dict.fromkeys(arm_of(r) for r in runs):
        mine = _completed(runs, arm)
        for kind in sorted({k for r in mine for k in r.get("kinds", {})}):
            curves = [r["kinds"][kind] for r in mine if r.get("kinds", {}).get(kind)]
            start = mean_interval([c[0][1] for c in curves], ACCURACY)
            end = mean_interval([c[-1][1] for c in curves], ACCURACY)
            lines.append(f"| {arm} | {kind} | {start.text()} | {end.text()} |")
    return "\n".join(lines) if len(lines) > 2 else "(no validation dumps: no accuracy per question kind)"


def render_certainty(runs: Sequence[dict]) -> str:
    """Per training step, per arm (pooled over its completed seeds): the share of groups at each p, and mean
    lambda(p) (each run's p and lambda(p) by its own MAPO settings, :func:`read_run`)."""
    arms = {arm: _completed(runs, arm) for arm in dict.fromkeys(arm_of(r) for r in runs)}
    levels = sorted({p for mine in arms.values() for r in mine for ps in r["p"].values() for p in ps})
    if not levels:
        return "(no rollout dumps: no per-step certainty)"
    head = ["step"] + [
        f"{a}: {h}" for a in arms for h in ("p hist " + "/".join(f"{v:g}" for v in levels), "mean lambda")
    ]
    lines = ["| " + " | ".join(head) + " |", "|" + " --- |" * len(head)]
    steps = sorted({s for mine in arms.values() for r in mine for s in r["p"]})
    for step in steps:
        cells = [str(step)]
        for mine in arms.values():
            ps = [p for r in mine for p in r["p"].get(step, [])]
            if not ps:
                cells += ["", ""]
                continue
            cells.append(" ".join(f"{sum(p == v for p in ps) / len(ps):.2f}" for v in levels))
            lams = [lam for r in mine for lam in r["lambdas"].get(step, [])]
            cells.append(f"{average(lams):.3f}")
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def _band(
    series_per_run: Sequence[Sequence[Sequence[float]]],
) -> tuple[list[int], list[float], list[float], list[float]]:
    """Per step: the mean over runs and its 95% interval clipped to [0, 1] (NaN where there is none)."""
    by_step: dict[int, list[float]] = {}
    for series in series_per_run:
        for step, value in series:
            by_step.setdefault(int(step), []).append(float(value))
    steps = sorted(by_step)
    stats = [mean_interval(by_step[s], ACCURACY) for s in steps]
    nan = math.nan
    return (
        steps,
        [e.mean for e in stats],
        [nan if e.low is None else e.low for e in stats],
        [nan if e.high is None else e.high for e in stats],
    )


def plot(runs: Sequence[dict], path: Path) -> bool:
    """Held-out accuracy, training score, mean lambda(p) and the share of mixed groups (0 < p < 1) per step, per arm
    the mean over its completed seeds with a 95% band clipped to [0, 1]; False (and nothing written) without
    matplotlib."""
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
        for arm in dict.fromkeys(arm_of(r) for r in runs):
            mine = [series(r) for r in _completed(runs, arm)]
            steps, mean, lo, hi = _band(mine)
            if steps:
                (line,) = ax.plot(steps, mean, marker="o", ms=3, label=f"{arm} ({len(mine)} seeds)")
                ax.fill_between(steps, lo, hi, color=line.get_color(), alpha=0.2)
        ax.set_title(title)
        ax.set_ylim(-0.02, 1.02)
        ax.set_xlabel("step")
        ax.grid(alpha=0.3)
    axes[0].legend()
    fig.tight_layout()
    atomic_write(path, lambda tmp: fig.savefig(tmp, format="png", dpi=110))
    plt.close(fig)
    return True


#: Ray's words when the node a run's ``ray.init`` starts misses its deadline (seen with four runs starting on 2
#: cores); nothing has trained yet, so such a run is started again, up to :data:`START_ATTEMPTS` times in all
RAY_START_TIMEOUT = "timed out during startup"
START_ATTEMPTS = 2


def failed_to_start(outcome: Outcome) -> bool:
    """Did the run end before its trainer came up because Ray's node did not start in time (a transient of load,
    not of the run's settings)? An exit that is not 0, no progress message shown, Ray's words in the log's tail."""
    return (
        outcome.returncode != 0
        and not outcome.timed_out
        and outcome.last_progress is None
        and any(RAY_START_TIMEOUT in line for line in outcome.tail)
    )


def run_until_started(
    attempt: Callable[[], Outcome], log_path: Path, report: Callable[[str], None], commit: str | None = None
) -> tuple[Outcome, list[dict[str, Any]]]:
    """``attempt()`` again while it :func:`failed_to_start`, :data:`START_ATTEMPTS` times at most; each failed
    attempt's log is kept beside ``log_path`` as ``<stem>.attempt<N>.log``. The last outcome, and the failed
    attempts as a run's ``failed_attempts`` records them (:func:`failed_attempt`, ``commit`` the code's)."""
    failed: list[dict[str, Any]] = []
    outcome = attempt()
    while len(failed) + 1 < START_ATTEMPTS and failed_to_start(outcome):
        kept = log_path.with_name(f"{log_path.stem}.attempt{len(failed) + 1}{log_path.suffix}")
        log_path.replace(kept)
        failed.append(failed_attempt(f"failed (exit {outcome.returncode}): Ray did not start", outcome.seconds, commit))
        report(f"Ray's node did not start in time (load); starting again (its log: {kept.name})")
        outcome = attempt()
    return outcome, failed


def failed_attempt(status: str, seconds: float | None, commit: str | None) -> dict[str, Any]:
    """One attempt of a run that did not complete, as the run's ``failed_attempts`` records it: its status, its
    seconds and the code's commit (a start :func:`run_until_started` repeated, or a run a merge replaced)."""
    return {"status": status, "seconds": None if seconds is None else round(float(seconds), 1), "commit": commit}


def attempt_text(attempt: Mapping[str, Any]) -> str:
    """A failed attempt in words: ``failed (exit 1) after 332 s``."""
    seconds = attempt.get("seconds")
    return attempt["status"] if seconds is None else f"{attempt['status']} after {float(seconds):.0f} s"


#: ``summary.json``'s format: 2 since arms (1: keyed by estimator, no ``arms``/``paired``; :func:`read_summary`)
SUMMARY_FORMAT = 2
#: the keys of each run's record in ``summary.json``
RUN_KEYS = (
    "arm", "estimator", "overrides", "seed", "status", "steps", "metrics", "val_acc", "final_acc", "area", "kinds",
    "returncode", "seconds", "score", "lambda", "p", "lambdas", "lambda_fn", "lambda_assignment", "commit",
    "failed_attempts",
)  # fmt: skip


def public_run(run: Mapping[str, Any]) -> dict:
    """A run's record as ``summary.json`` holds it (:data:`RUN_KEYS`)."""
    derived = {
        "arm": arm_of(run),
        "overrides": list(run.get("overrides", [])),
        "status": run_status(run),
        "final_acc": final_accuracy(run) if run["val_acc"] else None,
        "area": curve_area(run["val_acc"]),
        # JSON's keys are strings: the record is what summary.json holds (run_of_record turns them back)
        "p": {str(step): ps for step, ps in (run.get("p") or {}).items()},
        "lambdas": {str(step): lams for step, lams in (run.get("lambdas") or {}).items()},
        "score": [list(point) for point in run.get("score") or []],
        "lambda": [list(point) for point in run.get("lambda") or []],
        "failed_attempts": list(run.get("failed_attempts") or []),
    }
    return {k: derived[k] if k in derived else run.get(k) for k in RUN_KEYS}


def run_of_record(record: Mapping[str, Any]) -> dict:
    """A run as :func:`read_run` gives it, from its ``summary.json`` record (JSON's string step keys back to ints;
    fields a record of an older version lacks are empty)."""
    run = {**record, "overrides": list(record.get("overrides") or [])}
    for key in ("p", "lambdas"):
        run[key] = {int(step): values for step, values in (record.get(key) or {}).items()}
    for key in ("score", "lambda"):
        run[key] = record.get(key) or []
    run["kinds"] = record.get("kinds") or {}
    return run


def reread_runs(folder: Path, summary: Mapping[str, Any]) -> list[dict]:
    """The runs of the comparison in ``folder`` read again from their folders (``runs/<arm>-s<seed>``) with this
    version's readers, each run's p and lambda(p) by its arm's MAPO settings; a run whose folder is gone keeps its
    record. Status, seconds and commit stay as recorded."""
    settings = Settings(
        **{
            **{k: v for k, v in summary["settings"].items() if k in {f.name for f in fields(Settings)}},
            "arms": tuple(Arm(n, a["estimator"], tuple(a["overrides"])) for n, a in summary["arms"].items()),
            "seeds": tuple(summary["settings"]["seeds"]),
            "overrides": tuple(summary["settings"].get("overrides") or ()),
            "negative_control": None,
            "estimators": None,
        }
    )
    arms = {arm.name: arm for arm in settings.arms}
    runs = []
    for record in summary["runs"]:
        run_dir = folder / "runs" / f"{record['arm']}-s{record['seed']}"
        run = run_of_record(record)
        if run_dir.is_dir():
            spec = run_spec(settings, arms[record["arm"]], record["seed"], run_dir, Path("model"), Path("data"))
            run.update(read_run(run_dir, mapo_settings(spec)))
        runs.append(run)
    return runs


#: settings that choose what is read from the runs, not how they ran: a merge takes the first comparison's
MERGE_ANALYSIS_KEYS = frozenset(
    {"seeds", "arms", "estimators", "reference", "negative_control", "positive_control", "target"}
)


def _merge_run(merged: list[dict], run: dict, where: Path) -> None:
    """Add ``run`` to ``merged``; a run of an (arm, seed) already there replaces it if that one did not complete and
    this one did (a rerun after a crash), or is kept as one of its ``failed_attempts`` if it did not complete;
    ValueError for two completed runs of one arm and seed."""
    key = (run["arm"], run["seed"])
    at = next((i for i, r in enumerate(merged) if (r["arm"], r["seed"]) == key), None)
    if at is None:
        merged.append(run)
        return
    old = merged[at]
    old_ok, new_ok = run_status(old) == "ok", run_status(run) == "ok"
    if old_ok and new_ok:
        raise ValueError(f"--merge: {where}: runs already merged: {key[0]} seed {key[1]}")
    keep, drop = (old, run) if old_ok else (run, old)
    attempts = [
        *(old.get("failed_attempts") or []),
        *(run.get("failed_attempts") or []),
        failed_attempt(run_status(drop), drop.get("seconds"), drop.get("commit")),
    ]
    merged[at] = {**keep, "failed_attempts": attempts}


def merge(paths: Sequence[Path]) -> tuple[Settings, list[dict], dict[int, dict[str, Any]]]:
    """One comparison from several comparisons' ``summary.json`` files (format 2), or their folders (whose runs are
    then read again from their run folders, :func:`reread_runs`), of the same settings but other seeds (``--seeds
    1-7`` now, ``--seeds 8-8`` later) or reruns of runs that did not complete (``--arms grpo-twin --seeds 6-6`` after
    a crash): their settings with the seeds united, their runs (each keeps its ``commit``; a rerun keeps the
    attempts it replaced, :func:`_merge_run`), their warm-start records. The first names the arms and the analysis
    (:data:`MERGE_ANALYSIS_KEYS`); a later one may hold fewer arms, each defined as there. ValueError naming the
    file for another format, other settings, an arm defined otherwise, or two completed runs of one arm and seed."""
    merged: list[dict] = []
    models: dict[int, dict[str, Any]] = {}
    first: dict[str, Any] | None = None
    arms: dict[str, Any] | None = None
    analysis: dict[str, Any] = {}
    for path in paths:
        path = Path(path)
        summary = json.loads((path / "summary.json" if path.is_dir() else path).read_text())
        if summary.get("format") != SUMMARY_FORMAT:
            raise ValueError(f"--merge: {path}: summary format {summary.get('format')}, not {SUMMARY_FORMAT}")
        settings = {k: v for k, v in summary["settings"].items() if k not in MERGE_ANALYSIS_KEYS}
        if first is None:
            first, arms = settings, summary["arms"]
            analysis = {k: v for k, v in summary["settings"].items() if k in MERGE_ANALYSIS_KEYS}
        elif settings != first:
            differ = sorted(k for k in first.keys() | settings.keys() if first.get(k) != settings.get(k))
            raise ValueError(f"--merge: {path}: other settings than {paths[0]} ({', '.join(differ)})")
        assert arms is not None
        other = sorted(name for name, arm in summary["arms"].items() if arms.get(name) != arm)
        if other:
            raise ValueError(f"--merge: {path}: arms not defined as in {paths[0]}: {', '.join(other)}")
        runs = reread_runs(path, summary) if path.is_dir() else [run_of_record(r) for r in summary["runs"]]
        for run in runs:
            _merge_run(merged, run, path)
        models.update({int(seed): record for seed, record in (summary.get("warm_start") or {}).items()})
    assert first is not None
    seeds = tuple(sorted({r["seed"] for r in merged}))
    raw = {
        **first,
        **analysis,
        "seeds": seeds,
        "arms": tuple(Arm(n, a["estimator"], tuple(a["overrides"])) for n, a in arms.items()),
    }
    for key in ("estimators", "negative_control", "overrides"):
        if raw.get(key) is not None:
            raw[key] = tuple(raw[key])
    order = {arm: i for i, arm in enumerate(arms)}
    merged.sort(key=lambda r: (r["seed"], order[r["arm"]]))
    return Settings(**raw), merged, dict(sorted(models.items()))


def code_commit() -> str | None:
    """The checkout's git commit (with ``+changes`` when the tree differs from it), None outside a git checkout."""
    try:
        head = subprocess.run(
            ["git", "-C", str(REPO_ROOT), "rev-parse", "--short", "HEAD"], capture_output=True, text=True, check=True
        ).stdout.strip()
        dirty = subprocess.run(
            ["git", "-C", str(REPO_ROOT), "status", "--porcelain", "--untracked-files=no"],
            capture_output=True,
            text=True,
            check=True,
        ).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return None
    return head + ("+changes" if dirty else "")


def write_outputs(
    out: Path, settings: Settings, runs: Sequence[dict], models: Mapping[int, Mapping[str, Any]] | None = None
) -> dict:
    """``summary.json``, ``table.md`` and ``curves.png`` from the runs read so far (``models``: seed -> its tiny
    model's warm-start record, CPU only); returns the summary."""
    stats = summarise(
        runs, settings.target, reference_arm(settings), settings.negative_control, settings.positive_control
    )
    text = render_table(stats, settings.target) + "\n\nPer run:\n\n" + render_runs(runs)
    text += "\n\nHeld-out accuracy per question kind:\n\n" + render_kinds(runs)
    text += "\n\nPer-step certainty (training groups, completed seeds pooled):\n\n" + render_certainty(runs) + "\n"
    write_text(out / "table.md", text)
    summary = {
        "format": SUMMARY_FORMAT,
        "runs": [public_run(r) for r in runs],
        "settings": asdict(settings),
        "arms": {arm.name: {"estimator": arm.estimator, "overrides": list(arm.overrides)} for arm in settings.arms},
        **stats,
    }
    if models:
        summary["warm_start"] = {str(seed): dict(record) for seed, record in models.items()}
    write_text(out / "summary.json", json.dumps(summary, indent=2) + "\n")
    plot(runs, out / "curves.png")
    return summary


def read_summary(path: Path) -> dict:
    """A ``summary.json`` of ``compare``. One of format 1 (before arms: no ``"arms"``, e.g. the committed
    ``docs/learning/quick_summary.json``) is read with each run's arm its estimator and no overrides, and its
    statistics (``table``, ``reference``, ``paired``, ``controls``) recomputed by this version; ``"format": 1`` and
    ``"note"`` say so."""
    summary = json.loads(path.read_text())
    if "arms" in summary:
        return summary
    runs = [{**r, "arm": r["estimator"], "overrides": []} for r in summary["runs"]]
    names = list(dict.fromkeys(arm_of(r) for r in runs))
    reference = "grpo" if "grpo" in names else names[0]
    target = float(summary.get("settings", {}).get("target", 0.5))
    return {
        **summary,
        "format": 1,
        "note": "format 1 (before arms): arm = estimator, no overrides; statistics recomputed by this version",
        "runs": [public_run(r) for r in runs],
        "arms": {r["arm"]: {"estimator": r["estimator"], "overrides": []} for r in runs},
        **summarise(runs, target, reference, None, None),
    }


# ------------------------------------------------------------------------------------------------ CPU set-up
def prepare_shapes(out: Path, train_size: int, test_size: int, colours: int = 2) -> Path:
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
        "--colours",
        str(colours),
    ]
    result = subprocess.run(cmd, cwd=REPO_ROOT, capture_output=True, text=True, check=False)
    if result.returncode != 0:
        raise RuntimeError(f"data_prep.shapes failed ({result.returncode}):\n{result.stdout}\n{result.stderr}")
    return dest


#: the tiny model of the CPU comparison: weights drawn with std 0.1 (not 0.02), so that the picture reaches the
#: answer's logits at initialisation, and up to 224 x 224 pixels (64 image tokens, a third of the prompt)
COMPARE_MODEL_SPEC = TinyModelSpec(initializer_range=0.1, max_pixels=224 * 224)


def format_examples(train_parquet: Path, count: int = 64, colours: int = 2) -> list:
    """Warm-start examples that teach the answer *format* only: each of the first ``count`` training prompts once
    with every answer its question allows (``shapes.answers``: 1 to ``colours`` for colour, 1-4 for count), so that
    the answer carries no information about the picture (no test prompt is used); each knows its ``truth`` (not
    trained on) for :func:`~mapo_verl_cpu.fixtures.tiny_model.picture_to_answer`."""
    import pyarrow.parquet as pq

    from data_prep.shapes import answers
    from mapo_verl_cpu.fixtures.tiny_model import WarmStartExample

    rows = pq.read_table(train_parquet).to_pylist()[:count]
    return [
        WarmStartExample(
            question=row["prompt"][-1]["content"],
            answer=answer,
            images=tuple(img["bytes"] for img in row["images"]),
            truth=row["reward_model"]["ground_truth"],
        )
        for row in rows
        for answer in answers(question_kind(row["prompt"][-1]["content"]), colours)
    ]


def model_spec(seed: int) -> TinyModelSpec:
    """The tiny model of seed ``seed``: :data:`COMPARE_MODEL_SPEC` with its initial weights (and warm start) drawn
    from ``seed``."""
    return replace(COMPARE_MODEL_SPEC, seed=seed)


def build_models(
    settings: Settings, data_dir: Path, cache_dir: Path | None
) -> tuple[dict[int, Path], dict[int, dict[str, Any]]]:
    """Per seed, the tiny model (:func:`model_spec`) warm-started on :func:`format_examples` for
    ``--warm-epochs`` balanced epochs (cached), and its ``warm_start.json`` (loss, picture-to-answer shares)."""
    from mapo_verl_cpu.fixtures.tiny_model import build_tiny_model

    examples = format_examples(data_dir / "train.parquet", colours=settings.colours)
    dirs, records = {}, {}
    for seed in settings.seeds:
        dirs[seed] = build_tiny_model(
            cache_dir,
            examples=examples,
            warm_steps=settings.warm_epochs * len(examples),
            spec=model_spec(seed),
            warm_style="format",
        )
        records[seed] = json.loads((dirs[seed] / "warm_start.json").read_text())
    return dirs, records


def validation_overrides(samples: int) -> list[str]:
    """Held-out answers: ``samples`` draws per prompt at temperature 1 (``val-core/.../acc/mean@samples``, the
    policy's expected accuracy, which moves with every step of learning rather than when a greedy answer flips for
    a whole colour at once), or one greedy answer (0)."""
    kwargs = "actor_rollout_ref.rollout.val_kwargs"
    if samples <= 0:
        return [f"{kwargs}.temperature=0", f"{kwargs}.n=1", f"{kwargs}.do_sample=False"]
    return [f"{kwargs}.temperature=1.0", f"{kwargs}.n={samples}", f"{kwargs}.do_sample=True"]


def run_spec(
    settings: Settings, arm: Arm | str, seed: int, run_dir: Path, model_dir: Path | None, data_dir: Path | None
) -> RunSpec:
    """The ``main_ppo`` run of one arm (an estimator name: that estimator's bare arm) and seed; then the user's
    overrides for every run, and the arm's own last."""
    arm = Arm(arm, arm) if isinstance(arm, str) else arm
    estimator = arm.estimator
    common = [
        f"algorithm.adv_estimator={estimator}",
        f"data.seed={seed}",
        f"actor_rollout_ref.rollout.seed={seed}",
        f"trainer.total_training_steps={settings.steps}",
        f"trainer.test_freq={settings.test_freq}",
        "trainer.val_before_train=True",
        "trainer.logger=[console,file]",
        f"trainer.experiment_name=compare-{arm.name}-s{seed}",
        f"trainer.rollout_data_dir={run_dir / 'rollouts'}",
        f"trainer.validation_data_dir={run_dir / 'validation'}",
        f"trainer.default_local_dir={run_dir / 'checkpoints'}",
    ]
    if settings.backend == "gpu":
        env = {**os.environ, "VERL_FILE_LOGGER_PATH": str(run_dir / METRICS_FILE)}
        spec = RunSpec(out=run_dir, overrides=tuple(common), steps=settings.steps, config_name=settings.config, env=env)
        return spec.with_overrides(settings.overrides).with_overrides(arm.overrides_for(seed))
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
        *validation_overrides(settings.val_samples),
        # verl's length balancing reorders the rows before the PPO mini-batches are cut; which of a group's equal
        # requests got which sample depends on arrival order, so balancing would split the groups across mini-batches
        # by chance, and two runs of the same seed would take different first updates from the same rollouts. In
        # batch order every mini-batch holds whole groups (one actor rank: nothing to balance).
        "trainer.balance_batch=False",
    ]
    spec = cpu_run_spec(rollout, out=run_dir, overrides=base, steps=settings.steps, config_name=settings.config)
    return spec.with_overrides([*common, *cpu, *settings.overrides]).with_overrides(arm.overrides_for(seed))


def plan_runs(
    settings: Settings, out: Path, model_dir: Mapping[int, Path] | Path | None, data_dir: Path | None
) -> dict[tuple[str, int], RunSpec]:
    """(arm, seed) -> its run's spec in ``out/runs/<arm>-s<seed>``, seed by seed, every arm at each seed; every arm
    of seed k starts from seed k's model (``model_dir``: seed -> folder, or one folder for all)."""

    def model_of(seed: int) -> Path | None:
        return model_dir.get(seed) if isinstance(model_dir, Mapping) else model_dir

    return {
        (arm.name, seed): run_spec(settings, arm, seed, out / "runs" / f"{arm.name}-s{seed}", model_of(seed), data_dir)
        for seed in settings.seeds
        for arm in settings.arms
    }


# ---------------------------------------------------------------------------------------------------- main
def _add_option(parser: argparse.ArgumentParser, knob: Field) -> None:
    """The flag (or the positional argument) of one :func:`option`; left out, it parses as None (the default)."""
    meta = knob.metadata
    kw = dict(meta["argparse"])
    text = meta["help"]
    if meta["default"] not in (MISSING, None, ()):
        kw.setdefault("type", type(meta["default"]))
        text += f" ({meta['default']})"
    if meta["positional"]:
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
    quick_help = f"the CPU preset, also the defaults: {preset} (~14 min on 2 cores)"
    parser.add_argument("--quick", action="store_true", help=quick_help)
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
    if "estimators" in given:  # the shorthand: --estimators a,b is --arms a,b
        if "arms" in given:
            raise ValueError("--arms and --estimators: give one (--estimators a,b is --arms a,b)")
        given["arms"] = parse_arms(",".join(given.pop("estimators")))
    if args.quick:
        preset = _given(argparse.Namespace(**QUICK), [k for k in knobs if k.name in QUICK])
        given = {**preset, **given}
    settings = Settings(**given)
    if args.test_freq is None:  # left out: at most the step count, so that every run validates after training
        settings = replace(settings, test_freq=min(settings.test_freq, max(settings.steps, 1)))
    s = settings
    if not s.arms or not s.seeds or s.steps < 1 or s.test_freq < 1 or s.prompts < 1 or s.n < 2:
        raise ValueError("--arms must name one, --seeds/--steps/--test-freq/--prompts >= 1, --n >= 2")
    check_arms(s)
    if s.mini_batch < 1 or s.prompts % s.mini_batch:
        raise ValueError(f"--mini-batch must divide --prompts ({s.prompts}), got {s.mini_batch}")
    if s.train_size < 1 or s.test_size < 1 or s.val_samples < 0 or s.warm_epochs < 1:
        raise ValueError("--train-size/--test-size/--warm-epochs must be >= 1, --val-samples >= 0")
    bad = bad_overrides(s.overrides)
    if bad:
        raise ValueError(f"not a Hydra override (key=value): {' '.join(bad)}")
    if not (CONFIG_DIR / f"{s.config}.yaml").is_file() and s.backend == "cpu":
        raise ValueError(f"--config: {CONFIG_DIR / s.config}.yaml not found")
    return settings


def check_arms(settings: Settings) -> None:
    """ValueError naming the arm or flag: an arm's MAPO overrides the plug-in refuses (:func:`check_arm_overrides`),
    a CPU-only preset on the GPU backend, a ``--reference`` or control that is not an arm."""
    names = [arm.name for arm in settings.arms]
    for arm in settings.arms:
        check_arm_overrides(arm)
        cpu_only = [p for p in CPU_ONLY_PRESETS if set(parse_arm(p).overrides) & set(arm.overrides)]
        if settings.backend != "cpu" and cpu_only:
            raise ValueError(
                f"--arms: arm {arm.name} has the CPU preset {cpu_only[0]} ({ARM_PRESETS[cpu_only[0]]}); on --backend "
                f"{settings.backend} spell it with the config's own numbers, e.g. NAME=grpo:actor_rollout_ref.actor."
                "optim.lr=..."
            )
    reference = reference_arm(settings)
    if reference not in names:
        raise ValueError(f"--reference: {reference!r} is not an arm ({', '.join(names)})")
    negative = settings.negative_control
    if negative is not None and (len(negative) != 2 or negative[0] == negative[1] or not set(negative) <= set(names)):
        raise ValueError(f"--negative-control: two different arms A,B of {', '.join(names)}, got {','.join(negative)}")
    positive = settings.positive_control
    if positive is not None and (positive not in names or positive == reference):
        raise ValueError(f"--positive-control: an arm of {', '.join(names)} other than the reference {reference}")


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
    if args.merge:
        return merge_main(args)
    try:
        settings = settings_of(args)
        invocation = invocation_of(args, settings.backend)
    except ValueError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    start = time.monotonic()
    out = Path(invocation.out).resolve()
    out.mkdir(parents=True, exist_ok=True)
    commit = code_commit()
    model_dirs: dict[int, Path] | None = None
    models: dict[int, dict[str, Any]] = {}
    data_dir = None
    if settings.backend == "cpu":
        data_dir = prepare_shapes(out, settings.train_size, settings.test_size, settings.colours)
        log(f"data: {data_dir} (python -m data_prep.shapes --colours {settings.colours})")
        model_dirs, models = build_models(
            settings, data_dir, Path(invocation.cache_dir) if invocation.cache_dir else None
        )
        for seed, record in models.items():
            shares = ", ".join(
                f"{question_kind(q)} {v['share']:.3f} (chance {v['chance']:.3f})"
                for q, v in record.get("picture_to_answer", {}).items()
            )
            log(
                f"model of seed {seed}: {model_dirs[seed]} (format warm start, {record['steps']} steps; answer = "
                f"the picture's: {shares})"
            )
        log(f"models built ({time.monotonic() - start:.0f} s so far)")
    arms = {arm.name: arm for arm in settings.arms}
    specs = plan_runs(settings, out, model_dirs, data_dir)
    plan = list(specs)
    # each run's p and lambda(p) by its own algorithm.mapo settings (its arm's overrides too), before any run starts
    mapo = {key: mapo_settings(spec) for key, spec in specs.items()}
    for key, spec in specs.items():
        log(
            f"{key[0]} ({arms[key[0]].estimator}) seed {key[1]}: success_threshold={mapo[key].success_threshold:g}, "
            f"lambda_fn={mapo[key].lambda_fn}, lambda_assignment={mapo[key].lambda_assignment} (from "
            f"{spec.config_name} and its overrides)"
        )
    done: dict[tuple[str, int], dict] = {}
    lock = threading.Lock()

    def one_run(i: int, name: str, seed: int) -> None:
        spec = specs[(name, seed)]
        spec.metrics_path.unlink(missing_ok=True)
        log(f"run {i}/{len(plan)}: {name} seed {seed}, {settings.steps} steps -> {spec.out}")

        def report(msg: str) -> None:
            log(f"  [{name} s{seed}] {msg}")

        outcome, failed = run_until_started(
            lambda: run_with("local", spec, Placement(), invocation.timeout, report), spec.log_path, report, commit
        )
        result = read_run(spec.out, mapo[(name, seed)])
        curve = " ".join(f"{s}:{a:.2f}" for s, a in result["val_acc"])
        log(f"  {name} seed {seed}: held-out accuracy by step {curve or '(none)'} ({outcome.seconds:.0f} s)")
        with lock:
            done[(name, seed)] = {
                "arm": name,
                "estimator": arms[name].estimator,
                "overrides": list(arms[name].overrides),
                "seed": seed,
                "metrics": str(spec.metrics_path.relative_to(out)),
                "returncode": 124 if outcome.timed_out else outcome.returncode,
                "seconds": round(outcome.seconds, 1),
                "commit": commit,
                "failed_attempts": failed,
                **result,
            }
            write_outputs(out, settings, [done[key] for key in plan if key in done], models)

    # SIGTERM (kill, scancel) ends every run's process tree, whichever thread supervises it
    with ending_trees_on_sigterm(), ThreadPoolExecutor(max_workers=invocation.jobs) as pool:
        for future in [pool.submit(one_run, i, a, s) for i, (a, s) in enumerate(plan, 1)]:
            future.result()
    runs = [done[key] for key in plan]
    status = next((r["returncode"] for r in runs if r["returncode"]), 0)
    summary = write_outputs(out, settings, runs, models)
    print(render_table(summary, settings.target), flush=True)
    log(f"wrote {out / 'summary.json'}, {out / 'table.md'}, {out / 'curves.png'} ({time.monotonic() - start:.0f} s)")
    return status


def merge_main(args: argparse.Namespace) -> int:
    """``--merge A/summary.json B/summary.json --out DIR``: :func:`merge`, then the outputs of one comparison in
    ``DIR`` (no run starts; the per-step certainty comes from the runs' records)."""
    try:
        settings, runs, models = merge([Path(p) for p in args.merge])
    except (OSError, ValueError, KeyError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    out = Path(args.out).resolve()
    out.mkdir(parents=True, exist_ok=True)
    summary = write_outputs(out, settings, runs, models)
    print(render_table(summary, settings.target), flush=True)
    log(f"merged {len(runs)} runs of {len(args.merge)} comparisons into {out / 'summary.json'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
