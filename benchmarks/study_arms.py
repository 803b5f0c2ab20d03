"""The arms study: does each group's own certainty matter? ``compare`` with GRPO, MAPO, MAPO with lambda permuted
across groups, APD alone, and the two controls, 8 paired seeds, through verl's trainer on the CPU backend.

    flock /tmp/mapo-heavy.lock .venv/bin/python benchmarks/study_arms.py [--out out/study_arms] [--publish]

Runs ``python -m mapo_verl compare`` with :data:`STUDY` (other arguments are passed on and win), times it, and
prints the tables. ``--publish`` copies ``table.md``, ``curves.png`` and ``summary.json`` into ``docs/learning/`` as
``study_*``, the result docs/learning.md reports. About 1.5 hours on 2 CPU cores (three runs at a time); never a test.
"""

from __future__ import annotations

import sys

import bench_compare  # the same folder: run as a script

#: the arms, the seeds and the controls (``grpo-twin`` is ``grpo`` with a sampling stream of its own: the negative
#: control; ``grpo-quarter-lr`` learns more slowly: the positive control)
STUDY = (
    "--arms", "grpo,mapo,mapo-permuted,apd,grpo-twin,grpo-quarter-lr",
    "--seeds", "8",
    "--negative-control", "grpo,grpo-twin",
    "--positive-control", "grpo-quarter-lr",
    # 32 held-out prompts x 4 sampled answers (--quick: 64 x 4): 48 runs fit in about 1.5 hours of 2 cores
    "--test-size", "32",
    "--jobs", "3",
)  # fmt: skip


def run(argv: list[str]) -> int:
    given = {a for a in argv if a.startswith("--")}
    flags = [v for flag, arg in zip(STUDY[::2], STUDY[1::2], strict=True) if flag not in given for v in (flag, arg)]
    return bench_compare.run(
        argv, preset=["--quick", *flags], prefix="study_", default_out="out/study_arms", label="study_arms"
    )


if __name__ == "__main__":
    sys.exit(run(sys.argv[1:]))
