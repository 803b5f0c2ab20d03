"""``python -m mapo_verl smoke``: verl's real trainer runs MAPO for a few steps on CPU, in about a minute.

1. data: a hub-layout copy of Geometry3K, prepared by ``python -m data_prep.geo3k`` as a user would
   (:mod:`mapo_verl_cpu.fixtures.smoke_data`);
2. model: a tiny Qwen2.5-VL (Qwen3-VL for a Qwen3-VL config) built locally and warm-started on the reward's format,
   cached under ``~/.cache/mapo-verl`` (``$MAPO_VERL_CACHE``) (:mod:`mapo_verl_cpu.fixtures.tiny_families`);
3. a :class:`~mapo_verl_cpu.runners.spec.RunSpec`: the shipped ``mapo_geo3k_qwen2_5_vl_7b`` config shrunk to the tiny
   model on the CPU platform with the chosen rollout backend (:mod:`mapo_verl_cpu.runners.rollouts`), run by a runner
   (:mod:`mapo_verl_cpu.runners.local`); verl's file logger writes ``OUT/metrics.jsonl``, checkpoints go to
   ``OUT/checkpoints``, the trainer's output to ``OUT/main_ppo.log``;
4. a summary (:mod:`mapo_verl_cpu.runners.summary`): steps, seconds per step, each step's ``mapo/*`` metrics.

Trailing ``key=value`` arguments are Hydra overrides passed to verl (they replace the smoke's own for the same key).

``--launcher slurm`` submits the same run through the shipped ``scripts/slurm_train.sbatch``
(:mod:`mapo_verl_cpu.runners.slurm`) on ``--nodes`` nodes, ``--launcher ray`` through ``scripts/ray_cluster.sh submit``
(:mod:`mapo_verl_cpu.runners.ray_job`): a pre-flight of the launcher on a user's cluster.
"""

from __future__ import annotations

import argparse
import math
import sys
import time
from collections.abc import Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any

from mapo_verl.atomic_io import unwritable_dir
from mapo_verl.verl_log import METRICS_FILE
from mapo_verl_cpu.runners import RUNNERS, Placement, RunnerError
from mapo_verl_cpu.runners import run as run_with
from mapo_verl_cpu.runners.rollouts import ROLLOUTS, Rollout, cpu_run_spec
from mapo_verl_cpu.runners.spec import (
    CONFIG_DIR,
    DEFAULT_CONFIG,
    RunSpec,
    bad_overrides,
    for_cluster,
    tiny_overrides,
)
from mapo_verl_cpu.runners.summary import summary

LAUNCHERS = tuple(RUNNERS)
CLUSTER_TIMEOUT = 900.0


def log(msg: str) -> None:
    print(f"[smoke] {msg}", flush=True)


def smoke_overrides(rollout: Rollout = ROLLOUTS["hf"], **tiny: Any) -> list[str]:
    """The tiny shrink of the shipped config (:func:`~mapo_verl_cpu.runners.spec.tiny_overrides`'s keywords) plus the
    rollout backend's overrides."""
    return [*tiny_overrides(**tiny), *rollout.overrides]


def build_spec(
    args: argparse.Namespace, model_dir: Path, data_dir: Path, out: Path, data_overrides: Sequence[str] = ()
) -> RunSpec:
    """The smoke's run description from its arguments, then the config's data files, then the user's overrides."""
    rollout = ROLLOUTS[args.rollout]
    overrides = smoke_overrides(
        rollout,
        model_dir=model_dir,
        data_dir=data_dir,
        out=out,
        steps=args.steps,
        estimator=args.estimator,
        prompts=args.prompts,
        n=args.n,
    )
    spec = cpu_run_spec(rollout, out=out, overrides=overrides, steps=args.steps, config_name=args.config)
    return spec.with_overrides(data_overrides).with_overrides(args.overrides)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m mapo_verl smoke",
        description=__doc__.splitlines()[0],
        epilog="Trailing key=value arguments are Hydra overrides for verl's main_ppo.",
    )
    parser.add_argument("--steps", type=int, default=2, help="training steps (2)")
    parser.add_argument("--out", default="out/smoke", help="output folder (out/smoke)")
    parser.add_argument(
        "--estimator", default=None, help="algorithm.adv_estimator (default: the config's own; grpo for the baseline)"
    )
    parser.add_argument("--config", default=DEFAULT_CONFIG, help=f"shipped training config ({DEFAULT_CONFIG})")
    parser.add_argument("--rollout", choices=sorted(ROLLOUTS), default="hf", help="rollout backend (hf)")
    parser.add_argument("--prompts", type=int, default=4, help="prompts per step (4)")
    parser.add_argument("--n", type=int, default=4, help="responses per prompt (4)")
    parser.add_argument(
        "--warm-steps", type=int, default=1000, help="supervised warm-start steps of the tiny model (1000)"
    )
    parser.add_argument("--cache-dir", default=None, help="where the tiny model is cached (~/.cache/mapo-verl)")
    parser.add_argument(
        "--data",
        choices=("auto", "real", "generated"),
        default="auto",
        help="Geometry3K problems from ../shared/realdata (real), generated diagrams, or real where present (auto)",
    )
    parser.add_argument(
        "--timeout", type=float, default=None, help="end the trainer's whole process tree after this many seconds"
    )
    parser.add_argument(
        "--launcher", choices=LAUNCHERS, default="local", help="local (this machine), slurm (sbatch) or ray (submit)"
    )
    parser.add_argument("--nodes", type=int, default=None, help="nodes for --launcher slurm/ray (2)")
    parser.add_argument("--gpus-per-node", type=int, default=1, help="GPUs asked per node under Slurm (1)")
    parser.add_argument("--cpus-per-node", type=int, default=8, help="CPUs asked per node under Slurm (8)")
    parser.add_argument("overrides", nargs="*", help="Hydra overrides passed to main_ppo")
    return parser


def validate_args(args: argparse.Namespace) -> str | None:
    """A message naming what is wrong with the arguments, or None."""
    if args.steps < 1 or args.prompts < 1 or args.n < 2:
        return "--steps and --prompts must be >= 1 and --n >= 2 (groups need two responses)"
    bad = bad_overrides(args.overrides)
    if bad:
        return f"not a Hydra override (key=value): {' '.join(bad)}"
    if not (CONFIG_DIR / f"{args.config}.yaml").is_file():
        return f"{CONFIG_DIR / args.config}.yaml not found: run the smoke from a checkout of mapo-verl"
    if args.launcher == "local" and args.nodes not in (None, 1):
        return "--nodes needs --launcher slurm or ray (the local launcher runs one node)"
    if args.nodes is not None and args.nodes < 1:
        return "--nodes must be >= 1"
    if args.gpus_per_node < 1 or args.cpus_per_node < 1:
        return f"--gpus-per-node ({args.gpus_per_node}) and --cpus-per-node ({args.cpus_per_node}) must be >= 1"
    if args.warm_steps < 0:
        return f"--warm-steps must be >= 0, got {args.warm_steps}"
    if args.timeout is not None and not (math.isfinite(args.timeout) and args.timeout > 0):
        return f"--timeout must be a positive number of seconds, got {args.timeout}"
    problem = unwritable_dir(Path(args.out))
    if problem:
        return f"--out: {problem}"
    reason = ROLLOUTS[args.rollout].unavailable()
    if reason:
        return f"--rollout {args.rollout}: {reason}"
    if args.estimator is not None:
        known = verl_estimators()
        if args.estimator not in known:
            return f"--estimator {args.estimator}: not an advantage estimator of verl (known: {', '.join(known)})"
    return None


def verl_estimators() -> list[str]:
    """The advantage estimators verl knows after ``import verl`` (its registry, plug-ins included)."""
    import verl  # noqa: F401  (loads the verl.plugins entry points: mapo)
    from verl.trainer.ppo import core_algos

    return sorted(set(core_algos.ADV_ESTIMATOR_REGISTRY) | {e.value for e in core_algos.AdvantageEstimator})


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    problem = validate_args(args)
    if problem:
        print(f"error: {problem}", file=sys.stderr)
        return 2
    from mapo_verl_cpu.fixtures.config_data import prepare_config_data
    from mapo_verl_cpu.fixtures.tiny_families import tiny_family_for

    try:
        tiny = tiny_family_for(args.config, args.overrides)  # the config's model family: Qwen2.5-VL or Qwen3-VL
    except ValueError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2

    start = time.monotonic()
    out = Path(args.out).resolve()
    out.mkdir(parents=True, exist_ok=True)
    (out / METRICS_FILE).unlink(missing_ok=True)

    log(f"preparing the data {args.config} reads with data_prep ...")
    data = prepare_config_data(args.config, out, args.data)  # every file the config reads (config_data.py)
    data_dir, source = data.data_dir, data.source
    log(f"data: {data_dir} (from {source})")

    log(f"tiny {tiny.label} (built and warm-started once, then cached) ...")
    examples = data.examples()
    model_dir = tiny.build(
        Path(args.cache_dir) if args.cache_dir else None, examples=examples, warm_steps=args.warm_steps
    )
    log(f"model: {model_dir} ({time.monotonic() - start:.0f} s so far)")

    spec = build_spec(args, model_dir, data_dir, out, data.overrides())
    count = len(spec.overrides)
    log(f"python -m verl.trainer.main_ppo --config-name {spec.config_name} + {count} overrides (command.txt)")
    placement = Placement(1)
    if args.launcher == "local":
        log("starting Ray and verl's workers (about a minute on 2 cores) ...")
    else:  # the launcher's Ray, nodes and GPUs
        spec = replace(spec, overrides=tuple(for_cluster(spec.overrides)))
        placement = Placement(args.nodes or 2, args.gpus_per_node, args.cpus_per_node)
    timeout = args.timeout or (None if args.launcher == "local" else CLUSTER_TIMEOUT)
    try:
        outcome = run_with(args.launcher, spec, placement, timeout, log)
    except RunnerError as err:
        print(f"error: {err}", file=sys.stderr)
        return 1
    if outcome.job:
        log(outcome.job)
    if args.launcher != "local" and outcome.returncode != 0 and not outcome.timed_out:
        log(f"the job failed; last lines of {spec.log_path}:")
        print("\n".join(outcome.tail[-30:]), flush=True)
    print(summary(spec, outcome), flush=True)
    log(f"total {time.monotonic() - start:.0f} s")
    return outcome.returncode if not outcome.timed_out else 124


if __name__ == "__main__":
    sys.exit(main())
