"""MAPO's metrics as TensorBoard shows them, drawn to a PNG from a run's TensorBoard event files.

    .venv/bin/python benchmarks/plot_tensorboard.py LOGDIR [--out PNG] [--keys mapo/p_mean,...] [--smoothing 0.6]

LOGDIR is a run's ``$TENSORBOARD_DIR`` (verl's default: ``tensorboard_log/<project>/<experiment>``) or a folder
above several runs: TensorBoard's own ``EventMultiplexer`` loads it, one run per folder that holds event files, as
``tensorboard --logdir LOGDIR`` would. Each panel is one ``mapo/*`` scalar against the training step: the logged
values faint, TensorBoard's smoothed curve (its debiased exponential moving average, the slider's default 0.6) on
top. docs/metrics.md ("Dashboards") shows the picture this made from a CPU run.
"""

from __future__ import annotations

import argparse
import math
import sys
from collections.abc import Sequence
from pathlib import Path

from mapo_verl.atomic_io import atomic_write, unwritable_dir

#: the panels, in order: certainty, success, the two extreme group kinds, the advantage each side gets
DEFAULT_KEYS = (
    "mapo/lambda_mean",
    "mapo/p_mean",
    "mapo/groups_p0_frac",
    "mapo/groups_p1_frac",
    "mapo/adv_success_mean",
    "mapo/adv_failure_mean",
)
DEFAULT_OUT = Path("docs/metrics/tensorboard_mapo.png")
#: run -> tag -> [(step, value)]
Scalars = dict[str, dict[str, list[tuple[int, float]]]]


class PlotError(Exception):
    """Bad input: the message is the one ``error:`` line."""


def read_scalars(logdir: Path) -> Scalars:
    """Every run's ``mapo/*`` scalars under ``logdir``, loaded by TensorBoard's EventMultiplexer."""
    from tensorboard.backend.event_processing.event_multiplexer import EventMultiplexer

    if not logdir.is_dir():
        raise PlotError(f"{logdir}: no such folder")
    if not any(logdir.rglob("*tfevents*")):
        raise PlotError(f"{logdir}: no TensorBoard event files (events.out.tfevents.*) in it or below")
    multiplexer = EventMultiplexer(size_guidance={"scalars": 0})  # 0: every point, none sampled away
    multiplexer.AddRunsFromDirectory(str(logdir))
    multiplexer.Reload()
    scalars: Scalars = {}
    for run, tags in sorted(multiplexer.Runs().items()):
        for tag in tags.get("scalars", []):
            if tag.startswith("mapo/"):
                points = [(event.step, event.value) for event in multiplexer.Scalars(run, tag)]
                scalars.setdefault(run, {})[tag] = sorted(points)
    if not scalars:
        raise PlotError(
            f"{logdir}: its event files have no mapo/* scalars (a run with algorithm.adv_estimator=mapo and "
            "tensorboard in trainer.logger writes them)"
        )
    return scalars


def smoothed(values: Sequence[float], weight: float) -> list[float]:
    """TensorBoard's scalar smoothing, ``weight`` in [0, 1): an exponential moving average debiased for its start
    (weight 0: the values themselves); a value that is not finite is passed through."""
    out, last, count = [], 0.0, 0
    for value in values:
        if not math.isfinite(value):
            out.append(value)
            continue
        count += 1
        last = last * weight + (1 - weight) * value
        out.append(last / (1 - weight**count))
    return out


def plot(scalars: Scalars, keys: Sequence[str], smoothing: float, title: str, path: Path) -> None:
    """A grid of panels, one per key, every run a colour; written atomically to ``path``."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    columns = min(3, len(keys))
    rows = math.ceil(len(keys) / columns)
    fig, axes = plt.subplots(rows, columns, figsize=(4.2 * columns, 2.9 * rows), squeeze=False)
    colours = plt.rcParams["axes.prop_cycle"].by_key()["color"]
    for ax, key in zip(axes.flat, keys, strict=False):
        for i, (run, tags) in enumerate(scalars.items()):
            if key not in tags:
                continue
            steps, values = zip(*tags[key], strict=True)
            colour = colours[i % len(colours)]
            several = len(scalars) > 1
            ax.plot(steps, values, color=colour, alpha=0.3, linewidth=1, label=None if several else "logged")
            label = run if several else f"smoothed ({smoothing:g})"
            ax.plot(steps, smoothed(values, smoothing), color=colour, linewidth=1.8, marker=".", label=label)
        ax.set_title(key, fontsize=10, loc="left")
        ax.set_xlabel("step", fontsize=8)
        ax.tick_params(labelsize=8)
        ax.grid(alpha=0.3)
    for ax in list(axes.flat)[len(keys) :]:
        ax.set_visible(False)
    axes.flat[0].legend(fontsize=7)
    fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    atomic_write(path, lambda tmp: fig.savefig(tmp, format="png", dpi=110))
    plt.close(fig)


def chosen_keys(scalars: Scalars, requested: list[str] | None) -> list[str]:
    """The panels: the requested keys (each must be in the event files), else the defaults the runs have."""
    present = {tag for tags in scalars.values() for tag in tags}
    if requested is None:
        keys = [k for k in DEFAULT_KEYS if k in present]
        return keys or sorted(present)
    missing = [k for k in requested if k not in present]
    if missing:
        raise PlotError(f"--keys: {', '.join(missing)} not in the event files (they have {', '.join(sorted(present))})")
    return requested


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("logdir", type=Path, help="TensorBoard log folder of a run, or a folder above several runs")
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT, help=f"PNG to write ({DEFAULT_OUT})")
    parser.add_argument("--keys", help="comma-separated mapo/* keys, one panel each (default: the six of the docs)")
    parser.add_argument("--smoothing", type=float, default=0.6, help="TensorBoard's smoothing weight, 0 to <1 (0.6)")
    parser.add_argument("--title", default=None, help="the figure's title (default: the log folder)")
    args = parser.parse_args(argv)
    try:
        if not 0 <= args.smoothing < 1:
            raise PlotError(f"--smoothing: {args.smoothing} is not in [0, 1)")
        if args.out.suffix.lower() != ".png":
            raise PlotError(f"--out: {args.out} does not end in .png")
        requested = [k.strip() for k in args.keys.split(",") if k.strip()] if args.keys is not None else None
        if requested is not None and not requested:
            raise PlotError("--keys: empty")
        why = unwritable_dir(args.out.parent)
        if why:
            raise PlotError(f"--out: {why}")
        scalars = read_scalars(args.logdir)
        keys = chosen_keys(scalars, requested)
    except PlotError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    title = args.title or f"TensorBoard scalars of {args.logdir} (smoothing {args.smoothing:g})"
    plot(scalars, keys, args.smoothing, title, args.out)
    points = sum(len(tags[k]) for tags in scalars.values() for k in keys if k in tags)
    print(f"{args.out}: {len(keys)} panel(s), {len(scalars)} run(s), {points} point(s)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
