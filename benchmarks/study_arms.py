"""The arms study: does each group's own certainty matter? ``compare`` with GRPO, MAPO, MAPO with lambda permuted
across groups, APD alone, and the two controls, 8 paired seeds, through verl's trainer on the CPU backend.

    flock /tmp/mapo-heavy.lock .venv/bin/python benchmarks/study_arms.py [--out out/study_arms] [--publish]
    .venv/bin/python benchmarks/study_arms.py --report docs/learning/study_summary.json [--update-docs]

Runs ``python -m mapo_verl compare`` with :data:`STUDY` (other arguments are passed on and win), times it, and
prints the tables. ``--publish`` copies ``table.md``, ``curves.png`` and ``summary.json`` into ``docs/learning/`` as
``study_*``, the result docs/learning.md reports. About 2.5 hours on 2 CPU cores (three runs at a time); never a
test. ``--report SUMMARY`` prints the study's section of docs/learning.md from a summary (every number and verdict
read from it), ``--update-docs`` writes it between that page's ``study results`` markers.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

import bench_compare  # the same folder: run as a script

from mapo_verl_cpu.experiments import compare
from mapo_verl_cpu.experiments.statistics import Estimate, curve_area

DOCS_PAGE = Path(__file__).resolve().parents[1] / "docs" / "learning.md"
START = "<!-- study results: generated from learning/study_summary.json -->\n"
END = "<!-- end of study results -->\n"
PLANNED_SEEDS = 8

#: the arms, the seeds and the controls (``grpo-twin`` is ``grpo`` with a sampling stream of its own: the negative
#: control; ``grpo-quarter-lr`` learns more slowly: the positive control)
STUDY = (
    "--arms", "grpo,mapo,mapo-permuted,apd,grpo-twin,grpo-quarter-lr",
    "--seeds", "8",
    "--negative-control", "grpo,grpo-twin",
    "--positive-control", "grpo-quarter-lr",
    # the published study's 10 steps (--quick: 8, to fit its 15 minutes)
    "--steps", "10",
    # 32 held-out prompts x 4 sampled answers (compare's default, spelled out): 48 runs take about 2.5 hours
    "--test-size", "32",
    "--jobs", "3",
)  # fmt: skip


def _estimate(d: dict[str, Any], signed: bool = False) -> str:
    return Estimate(d["mean"], d["low"], d["high"], d["n"]).text(signed)


def _detectable(d: dict[str, Any]) -> str:
    return "n/a" if d.get("detectable") is None else f"{d['detectable']:.3f}"


def _negated(d: dict[str, Any]) -> dict[str, Any]:
    """B - A from A - B."""
    flip = {"mean": None if d["mean"] is None else -d["mean"]}
    flip["low"], flip["high"] = (None, None) if d["low"] is None else (-d["high"], -d["low"])
    return {**d, **flip}


def _verdict(a: str, b: str, d: dict[str, Any], what: str) -> str:
    e = Estimate(d["mean"], d["low"], d["high"], d["n"])
    covers = e.covers_zero()
    head = f"{a} - {b} ({what}): {e.text(True)}"
    if covers is None:
        return f"{head}, no interval."
    if covers:
        found = _detectable(d)
        return f"{head}; the interval covers 0: no difference detected at {d['n']} seeds (smallest detectable {found})."
    return f"{head}; the interval excludes 0: {a} is {'higher' if d['mean'] > 0 else 'lower'}."


def _rerun(run: dict[str, Any]) -> str:
    """ "grpo-twin seed 6 (failed (exit 1) after 332 s)": a run that completed on a later attempt."""
    attempts = ", ".join(map(compare.attempt_text, run["failed_attempts"]))
    return f"{run['arm']} seed {run['seed']} ({attempts})"


def _settings_text(settings: dict[str, Any]) -> str:
    """What every run of the study did, from ``summary.json``'s settings."""
    return (
        f"{settings['steps']} steps of {settings['prompts']} prompts x {settings['n']}, "
        f"{settings['prompts'] // settings['mini_batch']} PPO updates a step, lr {settings['lr']:g}, the "
        f"{settings['colours']}-colour task, validation before training and every {settings['test_freq']} steps on "
        f"{settings['test_size']} held-out prompts x {settings['val_samples']} sampled answers"
    )


def _paired_rows(final: dict[str, Any], area: dict[str, Any], arms: list[str]) -> list[str]:
    rows = [
        "| arm | pairs | final acc difference (95% CI) | smallest detectable | area difference (95% CI) "
        "| smallest detectable |",
        "| --- | --- | --- | --- | --- | --- |",
    ]
    for arm in arms:
        f, a = final[arm], area[arm]
        rows.append(
            f"| {arm} | {f['n']} | {_estimate(f, True)} | {_detectable(f)} | {_estimate(a, True)} | {_detectable(a)} |"
        )
    return rows


def report(summary_path: Path) -> str:
    """The study's section of docs/learning.md from its ``summary.json``: what ran, the per-arm table, the paired
    differences against grpo and against mapo, the controls, the verdicts (each from its interval)."""
    s = json.loads(Path(summary_path).read_text())
    runs = [compare.run_of_record(r) for r in s["runs"]]
    ok = [r for r in runs if compare.run_status(r) == "ok"]
    seeds = sorted({r["seed"] for r in runs})
    seconds = [float(r["seconds"]) for r in runs if r.get("seconds") is not None]
    lines = []
    if len(seeds) < PLANNED_SEEDS:
        n = len(seeds)
        lines += [
            f"**Interim: {n} of the planned {PLANNED_SEEDS} seeds.** The 48 runs take about 2.5 hours of both cores;",
            f"the published files hold seeds 1-{n} of every arm, complete. The remaining seeds run on their own and",
            "merge:",
            "",
            "```bash",
            f".venv/bin/python benchmarks/study_arms.py --seeds {n + 1}-{PLANNED_SEEDS} --out out/study_more",
            "python -m mapo_verl compare --merge docs/learning/study_summary.json out/study_more --out out/study_all",
            "cp out/study_all/summary.json docs/learning/study_summary.json   # and table.md, curves.png alike",
            ".venv/bin/python benchmarks/study_arms.py --report docs/learning/study_summary.json --update-docs",
            "```",
            "",
        ]
    commits = sorted({str(r.get("commit")) for r in runs})
    reruns = [_rerun(r) for r in runs if r.get("failed_attempts")]
    lines += [
        "```bash",
        ".venv/bin/python benchmarks/study_arms.py --out out/study_arms --publish",
        f"# = python -m mapo_verl compare --quick {' '.join(STUDY[:2])} \\",
        f"#     {' '.join(STUDY[2:])}",
        "```",
        "",
        f"7 Dec 2026, 2 CPU cores: {len(runs)} runs ({len(ok)} completed) of {len(s['arms'])} arms x {len(seeds)} "
        f"seeds, three at a time, each {min(seconds):.0f}-{max(seconds):.0f} s beside two others (code at "
        f"{', '.join(commits)}). "
        + (f"Run again after a failed attempt (left out): {'; '.join(reruns)}. " if reruns else "")
        + f"Settings: {_settings_text(s['settings'])}. Files: "
        "[learning/study_table.md](learning/study_table.md) (per run, per question kind, per-step certainty), "
        "[learning/study_summary.json](learning/study_summary.json), "
        "[learning/study_curves.png](learning/study_curves.png).",
        "",
        "| arm | runs | held-out acc at step 0 | final held-out acc (95% CI) | area under held-out curve (95% CI) "
        "| rise (95% CI) |",
        "| --- | --- | --- | --- | --- | --- |",
    ]
    for row in s["table"]:
        lines.append(
            f"| {row['arm']} | {row['runs']} | {_estimate(row['start'])} | {_estimate(row['final'])} | "
            f"{_estimate(row['area'])} | {_estimate(row['rise'], True)} |"
        )
    reference = s["reference"]
    lines += [
        "",
        f"Paired by seed against {reference} (arm - {reference}; smallest detectable: the interval's half-width):",
        "",
    ]
    lines += _paired_rows(s["paired"], s["paired_area"], list(s["paired"]))
    final = compare.paired(runs, "mapo", compare.final_accuracy)
    area = compare.paired(runs, "mapo", lambda r: curve_area(r["val_acc"]))
    mine = [arm for arm in ("mapo-permuted", "apd") if arm in final]
    lines += ["", "Paired against mapo (the same runs, `compare.paired` with reference mapo):", ""]
    lines += _paired_rows(final, area, mine)
    c = s["controls"] or {}
    said = {True: "yes", False: "NO", None: "n/a"}
    if c.get("negative") and c.get("positive"):
        neg, pos = c["negative_difference"], c["positive_difference"]
        lines += [
            "",
            f"Controls (final held-out accuracy, paired by seed): negative, {c['negative'][0]} - {c['negative'][1]}: "
            f"{_estimate(neg, True)}, interval covers 0: {said[c['negative_covers_zero']]} (smallest detectable "
            f"{_detectable(neg)}); positive, {c['positive'][0]} - {c['positive'][1]}: {_estimate(pos, True)}, "
            f"interval excludes 0: {said[c['positive_excludes_zero']]} (smallest detectable {_detectable(pos)}).",
        ]
    lines += [
        "",
        f"No run is near the ceiling of 1.0: the highest final held-out accuracy of any run is "
        f"{max(compare.final_accuracy(r) for r in ok):.3f}.",
        "",
    ]
    if "mapo-permuted" in final:
        lines.append(
            "**The permuted-lambda question.** "
            + _verdict("mapo", "mapo-permuted", _negated(final["mapo-permuted"]), "final held-out accuracy")
            + " "
            + _verdict("mapo", "mapo-permuted", _negated(area["mapo-permuted"]), "area")
        )
        lines.append("")
    for arm in ("mapo", "mapo-permuted", "apd"):
        if arm in s["paired"]:
            lines.append(
                _verdict(arm, reference, s["paired"][arm], "final held-out accuracy")
                + " "
                + _verdict(arm, reference, s["paired_area"][arm], "area")
            )
            lines.append("")
    return "\n".join(lines)


def update_docs(section: str, page: Path = DOCS_PAGE) -> None:
    """Write ``section`` between the page's study markers."""
    from mapo_verl.atomic_io import write_text

    text = page.read_text()
    if START not in text or END not in text:
        raise SystemExit(f"error: {page} has no study markers ({START.strip()} ... {END.strip()})")
    head, rest = text.split(START, 1)
    _, tail = rest.split(END, 1)
    write_text(page, head + START + section.rstrip("\n") + "\n" + END + tail)


def run(argv: list[str]) -> int:
    if "--report" in argv:
        section = report(Path(argv[argv.index("--report") + 1]))
        if "--update-docs" in argv:
            update_docs(section)
            print(f"[study_arms] wrote the study section of {DOCS_PAGE}", flush=True)
        else:
            print(section)
        return 0
    given = {a for a in argv if a.startswith("--")}
    flags = [v for flag, arg in zip(STUDY[::2], STUDY[1::2], strict=True) if flag not in given for v in (flag, arg)]
    return bench_compare.run(
        argv, preset=["--quick", *flags], prefix="study_", default_out="out/study_arms", label="study_arms"
    )


if __name__ == "__main__":
    sys.exit(run(sys.argv[1:]))
