"""Throughput of the reward functions (scores per second, one CPU thread) and worst-case latency on 1 MB hostile
responses.

    python benchmarks/bench_rewards.py [--seconds 1.0] [--check]

Cases: realistic ~1.5 kB responses whose boxed answer matches by string (fast path), needs symbolic
equivalence (mathruler / math-verify; cached, as for the rollouts of one prompt, and cold, every answer new), is
an option letter, is wrong, or is an emotion label; and 1 MB
adversarial responses (unclosed braces, 150k ``\\boxed{``, 70k think tags, control characters); and answers that
would make sympy run for minutes (power towers, ``1000!``), scored off the main thread as verl does, where
math-verify's signal timeouts cannot work. ``--check`` exits 1 when a hostile response takes over 50 ms or a sympy
trap over 0.5 s (the bounds the tests used to assert; timing belongs here, not in the tests).
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path

from reward_fns import emotion, math_answer, router

REASONING = "Let the angle be x. By the exterior angle theorem, x + 40 = 3x - 20, so 2x = 60. " * 18


def response(answer: str) -> str:
    return f"<think>{REASONING}</think> Therefore the answer is \\boxed{{{answer}}}."


GEO, VISTA = "hiyouga/geometry3k", "AI4Math/MathVista"
CASES: list[tuple[str, Callable, tuple]] = [
    ("math: string match", math_answer.compute_score, (GEO, response("30"), "30")),
    ("math: symbolic, cached (\\frac{6}{2} vs 3)", math_answer.compute_score, (GEO, response("\\frac{6}{2}"), "3")),
    ("math: option letter (B)", math_answer.compute_score, (VISTA, response("(B)"), "B", {"options": ["1", "2"]})),
    ("emotion: label", emotion.compute_score, ("emoset", response("\\text{Fear}"), "fear")),
    ("router -> math (string match)", router.compute_score, (GEO, response("30"), "30")),
    ("router -> emotion", router.compute_score, ("emoset", response("awe"), "awe")),
]

MB = 1_000_000
HOSTILE = {
    "unclosed braces": "<think>" + "\\boxed{" + "{" * MB,
    "150k \\boxed{": "\\boxed{" * (MB // 7),
    "70k think tags": "<think></think>" * (MB // 15) + "\\boxed{3}",
    "control chars": "\x00\x1b\u202e" * (MB // 3) + "\\boxed{3}",
    "backslashes": "\\" * MB,
}


#: Distinct answers each call (no cache hits): the cost of a symbolic check that has not been seen before.
COLD_CASES: list[tuple[str, Callable[[int], tuple]]] = [
    (
        "math: symbolic, cold (2k\\sqrt{3} vs \\sqrt{12k^2})",
        lambda k: (GEO, response(f"{2 * k}\\sqrt{{3}}"), f"\\sqrt{{{12 * k * k}}}"),
    ),
    ("math: wrong, cold (k\\sqrt{3} vs 4)", lambda k: (GEO, response(f"{k}\\sqrt{{3}}"), "4")),
]


def cold_throughput(make_args: Callable[[int], tuple], seconds: float) -> float:
    math_answer.compute_score(*make_args(10**6))
    count, start = 0, time.perf_counter()
    while (elapsed := time.perf_counter() - start) < seconds:
        math_answer.compute_score(*make_args(count + 1))
        count += 1
    return count / elapsed


def throughput(fn: Callable, args: tuple, seconds: float) -> float:
    fn(*args)  # warm caches and lazy imports
    count, start = 0, time.perf_counter()
    while (elapsed := time.perf_counter() - start) < seconds:
        fn(*args)
        count += 1
    return count / elapsed


def worst_latency_ms(text: str, repeats: int = 5) -> float:
    times = []
    for fn, truth in ((math_answer.compute_score, "3"), (emotion.compute_score, "fear")):
        fn("x", text, truth)
        for _ in range(repeats):
            start = time.perf_counter()
            fn("x", text, truth)
            times.append(time.perf_counter() - start)
    return 1000 * statistics.median(times)


# the same inputs as the tests (tests/data/test_rewards.py), defined once
SYMPY_TRAPS = json.loads((Path(__file__).resolve().parents[1] / "tests/data/sympy_traps.json").read_text())["traps"]
HOSTILE_LIMIT_MS = 50.0
TRAP_LIMIT_S = 0.5


def trap_latencies() -> dict[str, float]:
    """Seconds per sympy trap (against ``3`` and ``x+1``), scored in a worker thread as verl's reward loop does."""
    timings: dict[str, float] = {}

    def run() -> None:
        math_answer.compute_score("x", response("\\frac{6}{2}"), "3")  # warm sympy and the LaTeX parsers
        for trap in SYMPY_TRAPS:
            for truth in ("3", "x+1"):
                start = time.perf_counter()
                math_answer.compute_score("x", response(trap), truth)
                timings[f"{trap} vs {truth}"] = time.perf_counter() - start

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    thread.join(600)
    return timings


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=1.0, help="time per throughput case")
    parser.add_argument("--check", action="store_true", help="exit 1 if a latency bound is exceeded")
    args = parser.parse_args()
    failures: list[str] = []
    print(f"{'case':40s} {'scores/s':>10s}")
    for name, fn, call in CASES:
        print(f"{name:40s} {throughput(fn, call, args.seconds):10.0f}")
    for name, make_args in COLD_CASES:
        print(f"{name:40s} {cold_throughput(make_args, args.seconds):10.0f}")
    print(f"\n{'1 MB hostile response':40s} {'median ms':>10s}")
    for name, text in HOSTILE.items():
        latency = worst_latency_ms(text)
        print(f"{name:40s} {latency:10.2f}")
        if latency > HOSTILE_LIMIT_MS:
            failures.append(f"hostile {name}: {latency:.1f} ms > {HOSTILE_LIMIT_MS} ms")
    timings = trap_latencies()
    print(f"\n{'sympy trap, off the main thread':40s} {'max s':>10s}")
    done = f"all {len(timings)} of {2 * len(SYMPY_TRAPS)}"
    print(f"{done:40s} {max(timings.values(), default=0):10.3f}")
    if len(timings) < 2 * len(SYMPY_TRAPS):
        failures.append("sympy traps: not finished within 600 s")
    failures += [f"sympy trap {k}: {v:.2f} s > {TRAP_LIMIT_S} s" for k, v in timings.items() if v > TRAP_LIMIT_S]
    for failure in failures:
        print(f"SLOW: {failure}", file=sys.stderr)
    return 1 if args.check and failures else 0


if __name__ == "__main__":
    sys.exit(main())
