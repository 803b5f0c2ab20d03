"""Throughput of the reward functions (scores per second, one CPU thread), worst-case latency on 1 MB hostile
responses, the worst time per reward call over the sympy traps and over the real records' answers, and the
throughput on the real records' answers against the committed code's (``--against-head``).

    python benchmarks/bench_rewards.py [--seconds 1.0] [--check] [--against-head] [--rounds 3]

Cases: realistic ~1.5 kB responses whose boxed answer matches by string (fast path), needs symbolic
equivalence (mathruler / math-verify; cached, as for the rollouts of one prompt, and cold, every answer new), is
an option letter, is wrong, or is an emotion label; and 1 MB
adversarial responses (unclosed braces, 150k ``\\boxed{``, 70k think tags, control characters); and answers that
would make sympy run for minutes (power towers, ``1000!``, ``1e999999``, ``\\Gamma(9999999)``), scored on four
threads as verl's reward executor does, where math-verify's signal timeouts cannot work: our reward with its guard
(the default), our reward with the guard off (the time limit alone), and the authors' scorer (``paper_compat``,
mathruler unguarded: the time limit alone). Real answers: for every record in ``../shared/realdata`` (MathVision,
MathVista, Geometry3K) a correct answer as models write it and a wrong one, scored once each (no verdict cached
before). ``--against-head`` scores the same answers with ``git show HEAD:reward_fns/...`` in a subprocess,
alternating rounds. ``--check`` exits 1 when a hostile response takes over 50 ms, a reward call of ours on a trap
or a real answer over the time limit, or the real-answer throughput falls more than 10% below HEAD's (timing
belongs here, not in the tests).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from reward_fns import emotion, math_answer, router

ROOT = Path(__file__).resolve().parents[1]

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


# the same inputs as the tests (tests/data/test_rewards.py, test_reward_time_limit.py), defined once
SYMPY_TRAPS = json.loads((ROOT / "tests/data/sympy_traps.json").read_text())["traps"]
TRAP_TRUTHS = ("3", "x+1", "2\\sqrt{3}", "5")
HOSTILE_LIMIT_MS = 50.0
THROUGHPUT_FLOOR = 0.9  # the real-answer throughput may fall at most 10% below HEAD's


def timed_in_pool(calls: list[tuple[Callable, tuple]]) -> list[tuple[dict, float]]:
    """Each call's result and seconds, on four threads as verl's reward executor runs them."""

    def one(fn: Callable, args: tuple) -> tuple[dict, float]:
        start = time.perf_counter()
        result = fn(*args)
        return result, time.perf_counter() - start

    with ThreadPoolExecutor(4) as pool:
        return list(pool.map(lambda call: one(*call), calls))


def trap_runs() -> dict[str, list[tuple[dict, float]]]:
    """The traps on four threads: ours (guard, then the limit), ours with the guard off, and the authors'."""
    from reward_fns import paper_compat

    math_answer.compute_score(GEO, response("\\frac{6}{2}"), "3")  # a warm worker (start-up is not a call's time)
    ours = [(router.compute_score, (GEO, response(t), truth)) for t in SYMPY_TRAPS for truth in TRAP_TRUTHS]
    paper = [(paper_compat.compute_score, (GEO, response(t), truth)) for t in SYMPY_TRAPS for truth in TRAP_TRUTHS[2:]]
    runs = {"ours (guard, then the limit)": timed_in_pool(ours)}
    guard, math_answer._symbolic_safe = math_answer._symbolic_safe, lambda answer: True
    try:
        unguarded = [(router.compute_score, (GEO, response(t), "2\\sqrt{3}")) for t in SYMPY_TRAPS]
        runs["ours, guard off (the limit alone)"] = timed_in_pool(unguarded)
    finally:
        math_answer._symbolic_safe = guard
    runs["authors' paper_compat (the limit alone)"] = timed_in_pool(paper)
    return runs


# ----------------------------------------------------------------------------------------- the real records


def real_cases() -> list[tuple[str, str, str, dict]]:
    """``(data_source, response, ground truth, extra_info)``: a correct and a wrong answer for every real record."""
    from mapo_verl_cpu.checkout import realdata_dir

    realdata = realdata_dir()
    records: list[tuple[str, str, list[str]]] = []  # (data_source, ground truth as prepared, options)
    for split in ("test", "testmini"):
        for line in (realdata / "mathvision" / f"{split}.jsonl").read_text().splitlines():
            rec = json.loads(line)
            records.append(("MathLLMs/MathVision", rec["answer"], list(rec["options"])))
    for rec in json.loads((realdata / "mathvista" / "testmini.json").read_text()).values():
        choices = rec["choices"] if isinstance(rec["choices"], list) else []
        if rec["question_type"] == "multi_choice" and rec["answer"] in choices:
            records.append(("AI4Math/MathVista", chr(ord("A") + choices.index(rec["answer"])), choices))
        else:
            records.append(("AI4Math/MathVista", rec["answer"], []))
    for folder in sorted((realdata / "geo3k").iterdir()):
        data = json.loads((folder / "data.json").read_text())
        records.append(("hiyouga/geometry3k", data["choices"][ord(data["answer"]) - ord("A")], []))
    cases = []
    for i, (source, truth, options) in enumerate(records):
        letter = len(truth) == 1 and truth.isupper()
        if letter:
            text = options[ord(truth) - ord("A")] if options else truth
            right = [truth, f"({truth})", f"Option {truth}", text][i % 4]
            wrong = chr(ord("A") + (ord(truth) - ord("A") + 1) % max(len(options), 2))
        else:
            right = [truth, f"${truth}$", f"{truth}^\\circ", f"x = {truth}"][i % 4]
            wrong = f"{truth}+1" if i % 2 else f"2\\sqrt{{{i + 2}}}"  # the second needs a symbolic check
        extra = {"options": options}
        cases += [(source, response(right), truth, extra), (source, response(wrong), truth, extra)]
    return cases


def real_pass() -> dict[str, float]:
    """In a fresh process: one warm-up call (imports; a reward worker where there is one), then one pass over the
    real answers on one thread, every verdict new: scores/s and the slowest call (``--real-pass`` prints it)."""
    cases = real_cases()
    math_answer.compute_score(GEO, response("\\sqrt{12}"), "2\\sqrt{3}")
    verdicts = getattr(math_answer, "_VERDICTS", None)  # this checkout's cache of symbolic verdicts
    if verdicts is not None:
        verdicts.clear()
    else:  # HEAD's: an lru_cache on _symbolic_equal
        math_answer._symbolic_equal.cache_clear()
    worst, start = 0.0, time.perf_counter()
    for case in cases:
        call = time.perf_counter()
        router.compute_score(*case)
        worst = max(worst, time.perf_counter() - call)
    return {"scores_per_s": len(cases) / (time.perf_counter() - start), "worst_s": worst}


def head_copy(folder: Path) -> Path:
    """``reward_fns`` as committed (``git show HEAD:reward_fns/...``) in ``folder``, to be put first on the path."""
    (folder / "reward_fns").mkdir()
    names = subprocess.run(
        ["git", "ls-tree", "--name-only", "HEAD", "reward_fns/"], cwd=ROOT, capture_output=True, text=True, check=True
    ).stdout.split()
    for name in names:
        if name.endswith(".py"):
            text = subprocess.run(["git", "show", f"HEAD:{name}"], cwd=ROOT, capture_output=True, check=True).stdout
            (folder / name).write_bytes(text)
    return folder


def fresh_pass(code: Path) -> dict[str, float]:
    """:func:`real_pass` in a new interpreter whose ``reward_fns`` comes from ``code``."""
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(code), os.environ.get("PYTHONPATH", "")])}
    out = subprocess.run(
        [sys.executable, __file__, "--real-pass"], env=env, capture_output=True, text=True, check=True, cwd=code
    ).stdout
    return json.loads(out.strip().splitlines()[-1])


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=1.0, help="time per throughput case")
    parser.add_argument("--check", action="store_true", help="exit 1 if a latency bound is exceeded")
    parser.add_argument("--against-head", action="store_true", help="the real answers with HEAD's reward_fns too")
    parser.add_argument("--rounds", type=int, default=3, help="alternating rounds of the real-answer passes")
    parser.add_argument("--real-pass", action="store_true", help=argparse.SUPPRESS)  # one pass, JSON (for HEAD)
    args = parser.parse_args()
    if args.real_pass:
        print(json.dumps(real_pass()))
        return 0
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
    from reward_fns.time_limit import time_limit

    limit = time_limit()
    title = f"{len(SYMPY_TRAPS)} sympy traps, 4 threads, limit {limit:g} s"
    print(f"\n{title:45s} {'calls':>6s} {'timed out':>9s} {'max s':>7s}")
    for name, results in trap_runs().items():
        worst = max(seconds for _, seconds in results)
        overruns = sum(result.get("scorer_timeout", 0.0) for result, _ in results)
        print(f"{name:45s} {len(results):6d} {overruns:9.0f} {worst:7.3f}")
        if name.startswith("ours (guard") and worst > limit:
            failures.append(f"sympy traps: a reward call took {worst:.2f} s > the {limit:g} s limit")
    answers = len(real_cases())
    print(f"\n{f'{answers} real answers, 1 thread, fresh process':45s} {'scores/s':>9s} {'max ms':>8s}")
    rounds: dict[str, list[dict[str, float]]] = {"this checkout": [], "HEAD": []}
    with tempfile.TemporaryDirectory() as tmp:
        head = head_copy(Path(tmp)) if args.against_head else None
        for _ in range(args.rounds):  # alternating, so that a change in the machine's load hits both
            rounds["this checkout"].append(fresh_pass(ROOT))
            if head is not None:
                rounds["HEAD"].append(fresh_pass(head))
    medians = {}
    for name, passes in rounds.items():
        if passes:
            medians[name] = statistics.median(p["scores_per_s"] for p in passes)
            worst = max(p["worst_s"] for p in passes)
            print(f"{name + f' (median of {len(passes)})':45s} {medians[name]:9.0f} {1000 * worst:8.1f}")
            if name == "this checkout" and worst > limit:
                failures.append(f"real answers: a reward call took {worst:.2f} s > the {limit:g} s limit")
    if "HEAD" in medians:
        ratio = medians["this checkout"] / medians["HEAD"]
        print(f"{'throughput, this checkout / HEAD':45s} {ratio:9.2f}")
        if ratio < THROUGHPUT_FLOOR:
            failures.append(f"real answers: throughput {ratio:.2f} of HEAD's < {THROUGHPUT_FLOOR}")
    for failure in failures:
        print(f"SLOW: {failure}", file=sys.stderr)
    return 1 if args.check and failures else 0


if __name__ == "__main__":
    sys.exit(main())
