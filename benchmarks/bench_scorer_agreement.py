"""How often our math reward and the MAPO authors' scorer disagree, on the real records, with model-written answers.

    python benchmarks/bench_scorer_agreement.py [--realdata ../shared/realdata] [--limit N] [--out FILE.md]

For every real record in ``realdata`` (MathVision test: 3040, MathVista testmini: 1000, Geometry3K examples: 10) it
writes the answer forms a model plausibly gives for the *correct* answer (option letter bare or wrapped, letter with
the option text, the option text alone, degrees, units, fractions vs decimals, thousands separators, ``x = ...``,
``\\text{}``), plus a wrong option / wrong number and a response without ``\\boxed{}``, each as
``<think>...</think> ... \\boxed{FORM}``. Each response is scored by

* ours: ``reward_fns.router.compute_score`` with the ground truth and options as ``data_prep`` writes them, and
* the authors': ``reward_fns.paper_compat.paper_accuracy`` with the ground truth as their loaders read it
  (MathVista ``query`` letters, MathVision's answer, Geo3K's choice text),

and the table counts, per answer form, how often each accepts it and how often they disagree. Disagreement on a
correct-intent form means our accuracy is higher than the paper's would be for a model that writes that form; on a
wrong form, that one scorer accepts a wrong answer. Prints a Markdown table (and writes it to ``--out``).
"""

from __future__ import annotations

import argparse
import json
import re
import subprocess
import sys
import time
from collections import defaultdict
from collections.abc import Iterator
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path

from tqdm import tqdm

from data_prep import paper_prompts
from mapo_verl_cpu.checkout import realdata_dir
from reward_fns import paper_compat, router

REPO = Path(__file__).resolve().parents[1]
REASONING = "<think>Reading the figure and the question, I work it out step by step.</think> "
LETTERS = "ABCDEFGH"


@dataclass(frozen=True)
class Case:
    dataset: str
    data_source: str
    form: str  #: the answer form's name (a table row)
    intent: str  #: "correct" or "wrong": what a model writing this form means
    response: str
    our_truth: str
    our_extra: dict
    paper_truth: str


def boxed(text: str) -> str:
    return f"{REASONING}The answer is \\boxed{{{text}}}."


_WRAPPED = re.compile(r"^\$?\\boxed\{(.*)\}\$?$", re.DOTALL)


def plain(answer: str) -> str:
    """The answer as a model writes it inside its box: a ground truth stored as ``$\\boxed{x}$`` becomes ``x``."""
    m = _WRAPPED.match(answer.strip())
    return m.group(1).strip() if m else answer.strip()


# ------------------------------------------------------------------------------------------ answer forms
def choice_forms(letter: str, option: str) -> Iterator[tuple[str, str]]:
    """Correct-intent forms for a choice question whose answer is ``letter`` with text ``option``."""
    yield "choice: bare letter", letter
    yield "choice: (letter)", f"({letter})"
    yield "choice: \\text{letter}", f"\\text{{{letter}}}"
    if option.strip().upper() != letter:  # options that are just their letters (MathVision) have no text form
        yield "choice: letter. text", f"{letter}. {option}"
        yield "choice: option text only", option


def _as_fraction(value: float) -> str | None:
    frac = Fraction(value).limit_denominator(64)
    if frac.denominator == 1 or abs(float(frac) - value) > 1e-9:
        return None
    return f"\\frac{{{frac.numerator}}}{{{frac.denominator}}}"


def number_forms(answer: str, unit: str = "", degrees: bool = False) -> Iterator[tuple[str, str]]:
    """Correct-intent forms for a free-form answer (numbers get the numeric variants)."""
    yield "free: exact", answer
    yield "free: x = answer", f"x = {answer}"
    yield "free: \\text{answer}", f"\\text{{{answer}}}"
    try:
        value = float(answer.replace(",", ""))
    except ValueError:
        frac = re.fullmatch(r"\\frac\{(-?\d+)\}\{(\d+)\}", answer.strip())
        if frac and int(frac.group(2)):
            yield "free: fraction -> decimal", f"{int(frac.group(1)) / int(frac.group(2)):.4g}"
        return
    if unit:
        yield "free: with unit", f"{answer} {unit}"
    if degrees:
        yield "free: degrees ^\\circ", f"{answer}^\\circ"
        yield "free: degrees word", f"{answer} degrees"
    fraction = _as_fraction(value)
    if fraction and "." in answer:
        yield "free: decimal -> fraction", fraction
    if "." in answer:
        yield "free: trailing zero", answer + "0"
    elif abs(value) >= 1000 and value == int(value):
        yield "free: thousands separator", f"{int(value):,}"
    else:
        yield "free: integer as 1 decimal", f"{value:.1f}"


def wrong_forms(letter: str | None, options: list[str], answer: str) -> Iterator[tuple[str, str]]:
    if letter:
        other = LETTERS[(LETTERS.index(letter) + 1) % max(2, len(options) or 2)]
        yield "wrong: other letter", other
        return
    try:
        value = float(answer.replace(",", ""))
        yield "wrong: answer + 1", str(int(value) + 1) if value == int(value) else f"{value + 1:.6g}"
    except (ValueError, OverflowError):
        yield "wrong: other text", answer + " and more"


# ------------------------------------------------------------------------------------------ records
def _ours(module: str, rec: dict):
    """data_prep's own parse of a record (ours), None when it rejects the record."""
    import importlib

    try:
        return importlib.import_module(f"data_prep.{module}").parse(rec)
    except Exception:  # a record our preparer refuses is reported, not scored
        return None


def mathvision_cases(root: Path, limit: int = 0) -> Iterator[Case]:
    for line in (root / "mathvision/test.jsonl").read_text().splitlines()[: limit or None]:
        rec = json.loads(line)
        parsed, item = _ours("mathvision", rec), paper_prompts.mathvision_item(rec)
        if parsed is None:
            continue
        extra = {"options": list(parsed.options)}
        if parsed.question_type == "multi_choice":
            letter = parsed.ground_truth
            option = parsed.options[LETTERS.index(letter)] if parsed.options else letter
            forms = [(f, t, "correct") for f, t in choice_forms(letter, option)]
            forms += [(f, t, "wrong") for f, t in wrong_forms(letter, parsed.options, "")]
        else:
            forms = [(f, t, "correct") for f, t in number_forms(plain(parsed.ground_truth))]
            forms += [(f, t, "wrong") for f, t in wrong_forms(None, [], plain(parsed.ground_truth))]
        forms.append(("no box", "", "correct"))
        for form, text, intent in forms:
            response = boxed(text) if form != "no box" else f"{REASONING}The answer is {plain(parsed.ground_truth)}."
            yield Case(
                "MathVision",
                "MathLLMs/MathVision",
                form,
                intent,
                response,
                parsed.ground_truth,
                extra,
                item.ground_truth,
            )


def mathvista_cases(root: Path, limit: int = 0) -> Iterator[Case]:
    records = json.loads((root / "mathvista/testmini.json").read_text())
    queries = json.loads((root / "mathvista/query_testmini.json").read_text())
    for pid, rec in list(records.items())[: limit or None]:
        parsed = _ours("mathvista", rec)
        try:
            item = paper_prompts.mathvista_item(rec, query=queries[pid])
        except ValueError:
            item = None
        if parsed is None or item is None:
            continue
        extra = {"options": list(parsed.options)}
        if parsed.question_type == "multi_choice":
            letter = parsed.ground_truth
            forms = [(f, t, "correct") for f, t in choice_forms(letter, str(rec["answer"]))]
            forms += [(f, t, "wrong") for f, t in wrong_forms(letter, parsed.options, "")]
        else:
            unit = str(rec.get("unit") or "")
            forms = [(f, t, "correct") for f, t in number_forms(str(rec["answer"]), unit=unit)]
            forms += [(f, t, "wrong") for f, t in wrong_forms(None, [], str(rec["answer"]))]
        forms.append(("no box", "", "correct"))
        for form, text, intent in forms:
            response = boxed(text) if form != "no box" else f"{REASONING}The answer is {rec['answer']}."
            yield Case(
                "MathVista", "AI4Math/MathVista", form, intent, response, parsed.ground_truth, extra, item.ground_truth
            )


def geo3k_cases(root: Path, limit: int = 0) -> Iterator[Case]:
    for folder in sorted(p for p in (root / "geo3k").iterdir() if p.is_dir())[: limit or None]:
        rec = json.loads((folder / "data.json").read_text())
        item = paper_prompts.geo3k_item(rec)
        letter = rec["answer"]
        truth = item.ground_truth  # both: the choice value, as hiyouga/geometry3k and the authors' loader hold it
        degrees = "angle" in " ".join(rec.get("problem_type_goal", [])).lower()
        forms = [(f, t, "correct") for f, t in number_forms(truth, degrees=degrees)]
        forms += [(f"choice-style: {f}", t, "correct") for f, t in choice_forms(letter, truth) if "letter" in f]
        forms += [(f, t, "wrong") for f, t in wrong_forms(None, [], truth)]
        forms.append(("no box", "", "correct"))
        for form, text, intent in forms:
            response = boxed(text) if form != "no box" else f"{REASONING}The answer is {truth}."
            yield Case("Geo3K", "hiyouga/geometry3k", form, intent, response, truth, {}, truth)


# ------------------------------------------------------------------------------------------ scoring
def score(case: Case) -> tuple[float, float]:
    ours = router.compute_score(case.data_source, case.response, case.our_truth, case.our_extra)["acc"]
    return float(ours), paper_compat.paper_accuracy(case.response, case.paper_truth)


def _reward_version() -> str:
    try:
        head = subprocess.run(
            ["git", "log", "-1", "--format=%h %cs", "--", "reward_fns"], capture_output=True, text=True, cwd=REPO
        ).stdout.strip()
        dirty = subprocess.run(
            ["git", "status", "--porcelain", "--", "reward_fns"], capture_output=True, text=True, cwd=REPO
        ).stdout.strip()
    except OSError:
        return "unknown"
    return head + (" + uncommitted changes" if dirty else "")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--realdata", type=Path, default=realdata_dir())
    parser.add_argument("--limit", type=int, default=0, help="records per dataset (0 = all)")
    parser.add_argument("--out", type=Path, default=None, help="also write the Markdown here")
    args = parser.parse_args(argv)
    if not args.realdata.is_dir():
        print(f"no real records at {args.realdata} (see ../shared/realdata/README.md)", file=sys.stderr)
        return 1
    cases = [
        case for make in (mathvision_cases, mathvista_cases, geo3k_cases) for case in make(args.realdata, args.limit)
    ]
    # (dataset, form, intent) -> [n, ours, paper, ours only, paper only]
    table: dict[tuple[str, str, str], list[int]] = defaultdict(lambda: [0, 0, 0, 0, 0])
    examples: dict[tuple[str, str, str], str] = {}
    start = time.perf_counter()
    for case in tqdm(cases, desc="scoring", unit="response", mininterval=2.0):
        ours, paper = score(case)
        row = table[(case.dataset, case.form, case.intent)]
        row[0] += 1
        row[1] += ours == 1.0
        row[2] += paper == 1.0
        row[3] += ours == 1.0 and paper != 1.0
        row[4] += paper == 1.0 and ours != 1.0
        if (ours == 1.0) != (paper == 1.0):
            examples.setdefault(
                (case.dataset, case.form, case.intent),
                f"`{case.response.split('is ', 1)[-1][:60]}` vs ours `{case.our_truth}` / theirs `{case.paper_truth}`",
            )
    seconds = time.perf_counter() - start

    def pct(k: int, n: int) -> str:
        return f"{100 * k / n:.1f}" if n else "-"

    lines = [
        f"Scorers: ours = reward_fns.router at {_reward_version()}; theirs = mathruler "
        "`grade_answer(extract_boxed_content(response), answer)`.",
        f"{len(cases)} responses, scored in {seconds:.0f} s.",
        "",
        "| set | answer form | intent | n | ours accepts % | theirs accepts % | ours only | theirs only | example |",
        "|---|---|---|---:|---:|---:|---:|---:|---|",
    ]
    totals: dict[tuple[str, str], list[int]] = defaultdict(lambda: [0, 0, 0, 0, 0])
    for (dataset, form, intent), (n, o, p, oo, po) in sorted(table.items()):
        ex = examples.get((dataset, form, intent), "")
        lines.append(f"| {dataset} | {form} | {intent} | {n} | {pct(o, n)} | {pct(p, n)} | {oo} | {po} | {ex} |")
        for key in ((dataset, intent), ("all", intent)):
            totals[key] = [a + b for a, b in zip(totals[key], (n, o, p, oo, po), strict=True)]
    lines += [
        "",
        "| set | intent | n | ours accepts % | theirs accepts % | disagree % |",
        "|---|---|---:|---:|---:|---:|",
    ]
    for (dataset, intent), (n, o, p, oo, po) in sorted(totals.items()):
        lines.append(f"| {dataset} | {intent} | {n} | {pct(o, n)} | {pct(p, n)} | {pct(oo + po, n)} |")
    text = "\n".join(lines) + "\n"
    print(text, end="")
    if args.out:
        from mapo_verl.atomic_io import write_text

        write_text(args.out, text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
