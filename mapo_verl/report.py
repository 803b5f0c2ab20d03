"""The paper's table and training curves from verl's logged metrics.

    python -m mapo_verl.report [NAME=]LOG[,LOG...] ... [--out DIR] [--step last|best|N]

Each argument is one run: any mix of verl's console output (``step:N - key:value - ...`` lines, as printed by
``trainer.logger=[console]``: a raw TaskRunner log with Ray's ``(TaskRunnerV1 pid=...)`` prefixes, verl's printed
config and other processes' lines in between is fine), its file logger's JSONL (``{"step": N, "data": {...}}`` per
line), and its validation dumps (``trainer.validation_data_dir``: ``<step>.jsonl`` files, or their folder), joined
by commas. The run name defaults to the first file's stem. A line that cannot be read is skipped and counted
(reported on stderr), never fatal; a file with no metrics at all is an error.

Validation accuracy is ``val-core/<data_source>/acc/mean@<n>`` (``reward`` when the reward has no ``acc``); when
the MAPO authors' accuracy was logged too (``val-aux/<data_source>/paper_acc/mean@<n>``, from
``reward_fns.paper_compat``) each run gets a second row, ``NAME [paper]``. Averages per task: all sets (``Avg``),
the in-domain set and the out-of-domain sets, each the plain mean of the per-set accuracies. With validation dumps
from ``reward_fns.paper_compat`` the MathVerse accuracy per problem version is tabled as well. Writes
``results.md``, ``results.csv`` (``mathverse_versions.csv`` when there are dumps) and ``training_curves.png`` into
``--out`` (atomic writes) and prints the Markdown.
"""

from __future__ import annotations

import argparse
import math
import os
import re
import sys
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from mapo_verl.atomic_io import atomic_write, unwritable_dir, write_text
from mapo_verl.data_sources import DATA_SOURCES, MATHVERSE_VERSIONS
from mapo_verl.verl_log import TRAINING_STEP_KEY, as_record, load_json

#: (data_source, column name, task, in-domain) in the paper's column order.
DATASETS: tuple[tuple[str, str, str, bool], ...] = tuple(
    (d.data_source, d.column, d.task, d.in_domain) for d in DATA_SOURCES
)
#: Training curves plotted when present: (metric key or regex, title).
CURVES: tuple[tuple[str, str], ...] = (
    ("critic/score/mean", "train reward (mean)"),
    (r"re:^val-core/.+/(acc|reward)/mean@\d+$", "validation accuracy"),
    ("mapo/lambda_mean", "MAPO mean lambda"),
    ("mapo/p_mean", "MAPO mean p"),
    ("mapo/groups_p0_frac", "groups with p = 0"),
    ("mapo/groups_p1_frac", "groups with p = 1"),
    ("response_length/mean", "response length (mean)"),
    (TRAINING_STEP_KEY, "policy loss"),
)
_VAL = re.compile(r"^val-core/(?P<source>.+)/(?P<var>acc|reward)/mean@(?P<n>\d+)$")
_PAPER_VAL = re.compile(r"^val-aux/(?P<source>.+)/(?P<var>paper_acc)/mean@(?P<n>\d+)$")
PAPER_SUFFIX = " [paper]"
_CONSOLE = re.compile(r"step:(?P<step>\d+) - (?P<body>.*)$")
_NUMBER = re.compile(
    # 0.5, np.float64(0.5), tensor(0.5000), torch.tensor(0.5), -1e-05, nan, inf
    r"^(?:[A-Za-z_][\w.]*\()?\s*(?P<num>[-+]?(?:\d+\.?\d*(?:[eE][-+]?\d+)?|\.\d+(?:[eE][-+]?\d+)?|nan|inf))\)?$"
)


class ReportError(Exception):
    """A log that cannot be read, named with its path and line."""


@dataclass
class Run:
    """One run: name and metrics by step (later values for a step win)."""

    name: str
    steps: dict[int, dict[str, float]] = field(default_factory=dict)
    #: Validation dump rows by step: (mathverse_version index, acc, paper_acc or None).
    samples: dict[int, list[tuple[int, float, float | None]]] = field(default_factory=dict)
    #: path -> (lines skipped, first skipped line number).
    skipped: dict[str, tuple[int, int]] = field(default_factory=dict)

    def add(self, step: int, data: dict[str, float]) -> None:
        self.steps.setdefault(step, {}).update(data)

    def series(self, key: str) -> list[tuple[int, float]]:
        return [(s, d[key]) for s, d in sorted(self.steps.items()) if key in d and math.isfinite(d[key])]

    def metric_keys(self) -> set[str]:
        return {k for d in self.steps.values() for k in d}


# -------------------------------------------------------------------------------------- parsing
def _number(text: str) -> float | None:
    m = _NUMBER.match(text.strip())
    return float(m.group("num")) if m else None


def parse_console_line(line: str) -> tuple[int, dict[str, float]] | None:
    """``step:3 - a/b:0.5 - c:np.float64(1.0)`` -> (3, {...}); None for other lines."""
    m = _CONSOLE.search(line.rstrip("\n"))
    if not m:
        return None
    data: dict[str, float] = {}
    for item in m.group("body").split(" - "):
        key, sep, value = item.rpartition(":")
        if not sep or not key:
            continue
        num = _number(value)
        if num is not None:
            data[key.strip()] = num
    return int(m.group("step")), data


def _finite_numbers(data: dict) -> dict[str, float]:
    return {k: float(v) for k, v in data.items() if isinstance(v, int | float) and not isinstance(v, bool)}


def _dump_row(record: dict) -> tuple[int, int, float, float | None] | None:
    """A verl validation-dump row -> (step, mathverse_version, acc, paper_acc); None when it is not one."""
    if not {"output", "score", "step"} <= record.keys():
        return None
    acc = record.get("acc", record.get("score"))
    paper = record.get("paper_acc")
    version = record.get("mathverse_version", -1)
    numbers = (record["step"], version, acc) + (() if paper is None else (paper,))
    if not all(isinstance(v, int | float) and not isinstance(v, bool) for v in numbers):
        return None
    return int(record["step"]), int(version), float(acc), None if paper is None else float(paper)


def _read_record(stripped: str, run: Run) -> bool:
    """One JSON line: a file-logger record or a validation-dump row. False when it is neither (or not JSON, e.g.
    verl's printed config, which is a Python dict)."""
    record = load_json(stripped)
    if not isinstance(record, dict):
        return False
    logged = as_record(record)
    if logged is not None:
        run.add(logged[0], _finite_numbers(logged[1]))
        return True
    row = _dump_row(record)
    if row is None:
        return False
    step, version, acc, paper = row
    run.samples.setdefault(step, []).append((version, acc, paper))
    return True


def read_log(path: Path, run: Run) -> None:
    """Add a console log, a file-logger JSONL or a validation dump to ``run``; skip and count unreadable lines."""
    try:
        text = path.read_text(errors="replace")
    except OSError as err:
        raise ReportError(f"cannot read {path}: {err}") from None
    found = skipped = first_skipped = 0
    for lineno, line in enumerate(text.splitlines(), 1):
        stripped = line.strip()
        if stripped.startswith("{"):
            if _read_record(stripped, run):
                found += 1
                continue
            skipped += 1
            first_skipped = first_skipped or lineno
            continue
        parsed = parse_console_line(line)
        if parsed is not None:
            run.add(*parsed)
            found += 1
    if skipped:
        run.skipped[str(path)] = (skipped, first_skipped)
    if not found:
        raise ReportError(
            f"{path}: no verl metrics found (no `step:N - key:value` lines, file-logger JSONL or validation dump)"
        )


def _log_files(paths: str) -> list[Path]:
    files: list[Path] = []
    for p in (Path(x) for x in paths.split(",") if x):
        files.extend(sorted(p.glob("*.jsonl"), key=lambda f: (len(f.stem), f.stem)) if p.is_dir() else [p])
    return files


def load_run(spec: str) -> Run:
    """``[NAME=]PATH[,PATH...]`` -> Run."""
    name, sep, paths = spec.partition("=")
    if not sep or os.path.exists(spec):
        name, paths = "", spec
    files = _log_files(paths)
    if not files:
        raise ReportError(f"run {spec!r} names no file (a folder must hold *.jsonl validation dumps)")
    run = Run(name=name or files[0].stem)
    for f in files:
        read_log(f, run)
    return run


# --------------------------------------------------------------------------------------- table
def validation_accuracy(run: Run, step: str = "last", scorer: str = "ours") -> dict[str, float]:
    """data_source -> accuracy (0..1) at the chosen validation step: last, best (per set) or a number.

    ``scorer="ours"`` reads ``val-core/<source>/acc`` (or ``reward``), ``"paper"`` the authors' ``paper_acc``.
    """
    pattern = _PAPER_VAL if scorer == "paper" else _VAL
    per_source: dict[str, list[tuple[int, float]]] = {}
    for s, data in sorted(run.steps.items()):
        chosen: dict[str, tuple[int, str, float]] = {}
        for key, value in data.items():
            m = pattern.match(key)
            if not m or not math.isfinite(value):
                continue
            rank = (0 if m.group("var") == "reward" else 1, int(m.group("n")))
            src = m.group("source")
            if src not in chosen or rank > chosen[src][:2]:
                chosen[src] = (*rank, value)
        for src, (*_, value) in chosen.items():
            per_source.setdefault(src, []).append((s, value))
    out: dict[str, float] = {}
    for src, series in per_source.items():
        if step == "last":
            out[src] = series[-1][1]
        elif step == "best":
            out[src] = max(v for _, v in series)
        else:
            at = [v for s, v in series if s == int(step)]
            if at:
                out[src] = at[-1]
    return out


def _mean(values: Iterable[float]) -> float | None:
    vals = list(values)
    return sum(vals) / len(vals) if vals else None


def build_table(runs: Sequence[Run], step: str = "last") -> tuple[list[str], list[list[str]]]:
    """Header and rows (accuracy in %, one decimal): datasets, then per task the averages over all sets (Avg),
    the in-domain set(s) and the out-of-domain sets. A run with the authors' ``paper_acc`` gets a second row."""
    named: list[tuple[str, dict[str, float]]] = []
    for run in runs:
        named.append((run.name, validation_accuracy(run, step)))
        paper = validation_accuracy(run, step, scorer="paper")
        if paper:
            named.append((run.name + PAPER_SUFFIX, paper))
    present = {src for _, a in named for src in a}
    known = {d[0] for d in DATASETS}
    columns: list[tuple[str, Callable[[dict[str, float]], float | None]]] = []
    for task in dict.fromkeys(t for _, _, t, _ in DATASETS):
        sets = [d for d in DATASETS if d[2] == task and d[0] in present]
        if not sets:
            continue
        for src, label, _, _ in sets:
            columns.append((label, lambda a, s=src: a.get(s)))
        ind = [d[0] for d in sets if d[3]]
        ood = [d[0] for d in sets if not d[3]]
        if len(sets) > 1:
            columns.append((f"{task} Avg", lambda a, ss=[d[0] for d in sets]: _mean(a[s] for s in ss if s in a)))
        if ind:
            columns.append((f"{task} ID avg", lambda a, ss=ind: _mean(a[s] for s in ss if s in a)))
        if ood:
            columns.append((f"{task} OOD avg", lambda a, ss=ood: _mean(a[s] for s in ss if s in a)))
    for src in sorted(present - known):
        columns.append((src, lambda a, s=src: a.get(s)))
    header = ["Run", *(c[0] for c in columns)]
    rows = []
    for name, acc in named:
        cells = [fn(acc) for _, fn in columns]
        rows.append([name, *("-" if v is None else f"{100 * v:.1f}" for v in cells)])
    return header, rows


def mathverse_table(runs: Sequence[Run], step: str = "last") -> tuple[list[str], list[list[str]]]:
    """MathVerse accuracy (%) per problem version from the validation dumps, ours and the authors' scorer.

    Rows whose ``mathverse_version`` is -1 (other sets) are left out; ``All`` is over every MathVerse row, as the
    authors' ``calculate_metrics`` computes it. Empty when no run has MathVerse dump rows.
    """
    header = ["Run", *MATHVERSE_VERSIONS, "All"]
    rows: list[list[str]] = []
    for run in runs:
        steps = sorted(s for s, rows_ in run.samples.items() if any(v >= 0 for v, _, _ in rows_))
        if not steps:
            continue
        if step == "last" or step == "best":  # "best" is per metric for the table; here the last dump is used
            chosen = steps[-1]
        elif int(step) in steps:
            chosen = int(step)
        else:
            continue
        samples = [r for r in run.samples[chosen] if 0 <= r[0] < len(MATHVERSE_VERSIONS)]
        scorers = [("", 1)] + ([(PAPER_SUFFIX, 2)] if all(r[2] is not None for r in samples) else [])
        for suffix, col in scorers:
            by_version = [[r[col] for r in samples if r[0] == i] for i in range(len(MATHVERSE_VERSIONS))]
            cells = [_mean(v) for v in by_version] + [_mean(r[col] for r in samples)]
            rows.append([run.name + suffix, *("-" if v is None else f"{100 * v:.1f}" for v in cells)])
    return header, rows


def to_markdown(header: list[str], rows: list[list[str]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join(["---"] + ["---:"] * (len(header) - 1)) + "|"]
    lines += ["| " + " | ".join(r) + " |" for r in rows]
    return "\n".join(lines) + "\n"


def to_csv(header: list[str], rows: list[list[str]]) -> str:
    import csv
    import io

    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\n")
    writer.writerow(header)
    writer.writerows(rows)
    return buf.getvalue()


# -------------------------------------------------------------------------------------- output
def plot_curves(runs: Sequence[Run], path: Path) -> list[str]:
    """One panel per curve present in any run, every run on it; returns the panel titles."""
    try:
        import matplotlib
    except ImportError:
        raise ReportError(
            "the training curves need matplotlib, the optional extra: pip install 'mapo-verl[plots]' (or --no-plot)"
        ) from None

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    panels: list[tuple[str, dict[str, list[tuple[int, float]]]]] = []
    for key, title in CURVES:
        lines: dict[str, list[tuple[int, float]]] = {}
        for run in runs:
            keys = [key] if not key.startswith("re:") else sorted(k for k in run.metric_keys() if re.match(key[3:], k))
            for k in keys:
                series = run.series(k)
                if len(series) >= 1:
                    label = run.name if not key.startswith("re:") else f"{run.name}: {_VAL.match(k).group('source')}"
                    lines[label] = series
        if lines:
            panels.append((title, lines))
    if not panels:
        raise ReportError("no training curves to plot: none of " + ", ".join(k for k, _ in CURVES) + " was logged")
    cols = min(2, len(panels))
    rows = math.ceil(len(panels) / cols)
    fig, axes = plt.subplots(rows, cols, figsize=(6 * cols, 3.6 * rows), squeeze=False)
    for ax, (title, lines) in zip(axes.flat, panels, strict=False):
        for label, series in lines.items():
            xs, ys = zip(*series, strict=True)
            ax.plot(xs, ys, marker="o" if len(xs) < 20 else None, markersize=3, label=label)
        ax.set_title(title)
        ax.set_xlabel("step")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7)
    for ax in list(axes.flat)[len(panels) :]:
        ax.set_visible(False)
    fig.tight_layout()
    atomic_write(path, lambda tmp: fig.savefig(tmp, dpi=110, format="png"))
    plt.close(fig)
    return [t for t, _ in panels]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m mapo_verl.report", description=__doc__.splitlines()[0])
    parser.add_argument("runs", nargs="+", metavar="[NAME=]LOG[,LOG...]", help="one run per argument")
    parser.add_argument("--out", type=Path, default=Path("mapo_report"), help="output directory (mapo_report)")
    parser.add_argument("--step", default="last", help="validation step to report: last (default), best, or N")
    parser.add_argument("--no-plot", action="store_true", help="skip training_curves.png")
    args = parser.parse_args(argv)
    if args.step not in ("last", "best") and not args.step.isdigit():
        parser.error(f"--step must be last, best or a step number, not {args.step!r}")
    problem = unwritable_dir(args.out)
    if problem:
        print(f"error: --out: {problem}", file=sys.stderr)
        return 2
    try:
        runs = [load_run(spec) for spec in args.runs]
        header, rows = build_table(runs, args.step)
        mv_header, mv_rows = mathverse_table(runs, args.step)
        if len(header) == 1 and not mv_rows:
            raise ReportError("no validation metrics (val-core/<data_source>/acc/mean@N) in the given logs")
        markdown = to_markdown(header, rows) if len(header) > 1 else ""
        written = [args.out / "results.md"]
        if len(header) > 1:
            write_text(args.out / "results.csv", to_csv(header, rows))
            written.append(args.out / "results.csv")
        if mv_rows:
            markdown += (
                ("\n" if markdown else "") + "MathVerse by problem version:\n\n" + to_markdown(mv_header, mv_rows)
            )
            write_text(args.out / "mathverse_versions.csv", to_csv(mv_header, mv_rows))
            written.append(args.out / "mathverse_versions.csv")
        write_text(args.out / "results.md", markdown)
        if not args.no_plot:
            try:
                plot_curves(runs, args.out / "training_curves.png")
                written.append(args.out / "training_curves.png")
            except ReportError as err:
                print(f"mapo_verl.report: {err}; no plot written", file=sys.stderr)
    except ReportError as err:
        print(f"mapo_verl.report: {err}", file=sys.stderr)
        return 1
    for run in runs:
        for path, (count, first) in run.skipped.items():
            print(
                f"mapo_verl.report: {path}: skipped {count} unreadable line(s), the first at line {first}",
                file=sys.stderr,
            )
    print(markdown, end="")
    print("\nwritten: " + ", ".join(str(p) for p in written))
    return 0


if __name__ == "__main__":
    sys.exit(main())
