"""The ``--quick`` comparison as a benchmark: MAPO and GRPO, 2 seeds each, through verl's trainer on the CPU backend.

    flock /tmp/mapo-heavy.lock .venv/bin/python benchmarks/bench_compare.py [--out out/bench_compare] [--publish]

Runs ``python -m mapo_verl compare --quick`` (other arguments are passed on), times it, and prints the table.
``--publish`` copies ``table.md``, ``curves.png`` and ``summary.json`` into ``docs/learning/`` (as ``quick_*``), the
measured result that ``docs/learning.md`` shows. Never a timed test: two busy cores make time limits flaky.
"""

from __future__ import annotations

import shutil
import sys
import time
from collections.abc import Sequence
from pathlib import Path

from mapo_verl_cpu.experiments.compare import main

DOCS = Path(__file__).resolve().parents[1] / "docs" / "learning"
PUBLISHED = ("table.md", "curves.png", "summary.json")


def publish(out: Path, dest: Path = DOCS, prefix: str = "quick_") -> list[Path]:
    """Copy the comparison's table, plot and summary into ``dest`` as ``<prefix><name>``; returns the copies."""
    from mapo_verl.atomic_io import atomic_write

    dest.mkdir(parents=True, exist_ok=True)
    copies = []
    for name in PUBLISHED:
        if (out / name).is_file():
            target = dest / f"{prefix}{name}"
            atomic_write(target, lambda tmp, src=out / name: shutil.copyfile(src, tmp))
            copies.append(target)
    return copies


def run(
    argv: list[str],
    preset: Sequence[str] = ("--quick",),
    prefix: str = "quick_",
    default_out: str = "out/bench_compare",
    label: str = "bench_compare",
) -> int:
    """``compare`` with ``preset`` then ``argv`` (``--out`` defaults to ``default_out``), timed; ``--publish`` in
    ``argv`` copies the outputs into docs/learning/ as ``<prefix><name>``."""
    argv = list(argv)
    do_publish = "--publish" in argv
    argv = [a for a in argv if a != "--publish"]
    if "--out" not in argv:
        argv = ["--out", default_out, *argv]
    out = Path(argv[argv.index("--out") + 1])
    start = time.monotonic()
    status = main([*preset, *argv])
    print(f"[{label}] compare: {time.monotonic() - start:.0f} s wall, exit status {status}", flush=True)
    if do_publish:
        for path in publish(out, prefix=prefix):
            print(f"[{label}] published {path}", flush=True)
    return status


if __name__ == "__main__":
    sys.exit(run(sys.argv[1:]))
