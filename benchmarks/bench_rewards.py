"""Throughput of the reward functions (scores per second, one CPU thread) and worst-case latency on 1 MB hostile
responses.

    python benchmarks/bench_rewards.py [--seconds 1.0]

Cases: realistic ~1.5 kB responses whose boxed answer matches by string (fast path), needs symbolic
equivalence (mathruler / math-verify; cached, as for the rollouts of one prompt, and cold, every answer new), is
an option letter, is wrong, or is an emotion label; and 1 MB
adversarial responses (unclosed braces, 150k ``\\boxed{``, 70k think tags, control characters).
"""

from __future__ import annotations

import argparse
import statistics
import time
from collections.abc import Callable

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
    ("math: symbolic, cold (\\frac{2k}{2} vs k)", lambda k: (GEO, response(f"\\frac{{{2 * k}}}{{2}}"), str(k))),
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


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=1.0, help="time per throughput case")
    args = parser.parse_args()
    print(f"{'case':40s} {'scores/s':>10s}")
    for name, fn, call in CASES:
        print(f"{name:40s} {throughput(fn, call, args.seconds):10.0f}")
    for name, make_args in COLD_CASES:
        print(f"{name:40s} {cold_throughput(make_args, args.seconds):10.0f}")
    print(f"\n{'1 MB hostile response':40s} {'median ms':>10s}")
    for name, text in HOSTILE.items():
        print(f"{name:40s} {worst_latency_ms(text):10.2f}")


if __name__ == "__main__":
    main()
