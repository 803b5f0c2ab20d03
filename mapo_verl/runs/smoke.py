"""``python -m mapo_verl smoke``: verl's real trainer runs MAPO for a few steps on CPU, in about a minute.

1. data: a hub-layout copy of Geometry3K, prepared by ``python -m data_prep.geo3k`` as a user would
   (:mod:`mapo_verl.runs.smoke_data`);
2. model: a tiny Qwen2.5-VL built locally and warm-started on the reward's format, cached under
   ``~/.cache/mapo-verl`` (``$MAPO_VERL_CACHE``) (:mod:`mapo_verl.runs.tiny_model`);
3. a :class:`~mapo_verl.runs.spec.RunSpec`: the shipped ``mapo_geo3k_qwen2_5_vl_7b`` config shrunk to the tiny model
   on the CPU platform with the chosen rollout backend (:mod:`mapo_verl.runs.rollouts`), run by a runner
   (:mod:`mapo_verl.runs.local`); verl's file logger writes ``OUT/metrics.jsonl``, checkpoints go to
   ``OUT/checkpoints``, the trainer's output to ``OUT/main_ppo.log``;
4. a summary (:mod:`mapo_verl.runs.summary`): steps, seconds per step, each step's ``mapo/*`` metrics.

Trailing ``key=value`` arguments are Hydra overrides passed to verl (they replace the smoke's own for the same key).
"""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Sequence
from pathlib import Path

from mapo_verl.runs.local import run_local
from mapo_verl.runs.rollouts import ROLLOUTS, Rollout
from mapo_verl.runs.spec import CONFIG_DIR, DEFAULT_CONFIG, RunSpec, bad_overrides, tiny_overrides, trainer_env
from mapo_verl.runs.summary import summary


def log(msg: str) -> None:
    print(f"[smoke] {msg}", flush=True)


def smoke_overrides(
    model_dir: Path,
    data_dir: Path,
    out: Path,
    steps: int,
    estimator: str,
    prompts: int,
    n: int,
    rollout: Rollout = ROLLOUTS["hf"],
) -> list[str]:
    """The tiny shrink of the shipped config plus the rollout backend's overrides."""
    base = tiny_overrides(
        model_dir=model_dir, data_dir=data_dir, out=out, steps=steps, estimator=estimator, prompts=prompts, n=n
    )
    return base + list(rollout.overrides)


def build_spec(args: argparse.Namespace, model_dir: Path, data_dir: Path, out: Path) -> RunSpec:
    """The smoke's run description from its arguments, with the user's overrides last."""
    rollout = ROLLOUTS[args.rollout]
    overrides = smoke_overrides(model_dir, data_dir, out, args.steps, args.estimator, args.prompts, args.n, rollout)
    spec = RunSpec(
        out=out,
        overrides=tuple(overrides),
        steps=args.steps,
        config_name=args.config,
        env=trainer_env(out, rollout.env),
        python=rollout.python(),
        markers=(rollout.ready_marker,),
    )
    return spec.with_overrides(args.overrides)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m mapo_verl smoke",
        description=__doc__.splitlines()[0],
        epilog="Trailing key=value arguments are Hydra overrides for verl's main_ppo.",
    )
    parser.add_argument("--steps", type=int, default=2, help="training steps (2)")
    parser.add_argument("--out", default="out/smoke", help="output folder (out/smoke)")
    parser.add_argument("--estimator", default="mapo", help="algorithm.adv_estimator (mapo; grpo for the baseline)")
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
    reason = ROLLOUTS[args.rollout].unavailable()
    if reason:
        return f"--rollout {args.rollout}: {reason}"
    return None


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    problem = validate_args(args)
    if problem:
        print(f"error: {problem}", file=sys.stderr)
        return 2
    from mapo_verl.runs.smoke_data import prepare_data, warm_start_examples
    from mapo_verl.runs.tiny_model import build_tiny_model

    start = time.monotonic()
    out = Path(args.out).resolve()
    out.mkdir(parents=True, exist_ok=True)
    (out / "metrics.jsonl").unlink(missing_ok=True)

    log("preparing data with python -m data_prep.geo3k ...")
    data_dir, source = prepare_data(out, args.data)
    log(f"data: {data_dir} (from {source})")

    log("tiny Qwen2.5-VL (built and warm-started once, then cached) ...")
    examples = warm_start_examples(data_dir / "train.parquet")
    model_dir = build_tiny_model(
        Path(args.cache_dir) if args.cache_dir else None, examples=examples, warm_steps=args.warm_steps
    )
    log(f"model: {model_dir} ({time.monotonic() - start:.0f} s so far)")

    spec = build_spec(args, model_dir, data_dir, out)
    count = len(spec.overrides)
    log(f"python -m verl.trainer.main_ppo --config-name {spec.config_name} + {count} overrides (command.txt)")
    log("starting Ray and verl's workers (about a minute on 2 cores) ...")
    outcome = run_local(spec, args.timeout, log)
    print(summary(spec, outcome), flush=True)
    log(f"total {time.monotonic() - start:.0f} s")
    return outcome.returncode if not outcome.timed_out else 124


if __name__ == "__main__":
    sys.exit(main())
