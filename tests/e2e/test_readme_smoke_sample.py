"""The README's `make smoke` sample is the command's real output: the same lines, in order, up to numbers and paths."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

pytestmark = [pytest.mark.e2e, pytest.mark.slow, pytest.mark.ray]

REPO = Path(__file__).resolve().parents[2]
_PATH = re.compile(r"(?<![\w/])(/[\w.@+-]+)+/?")
_DATA_SOURCE = re.compile(r" \(from .*\)$")
_NUMBER = re.compile(r"[-+]?\d+(\.\d+)?(e[-+]?\d+)?")


def shape(line: str) -> str:
    """A line with paths and numbers masked (they differ between runs and machines); the lines of a step's
    ``mapo/*`` metrics become one marker (a step with no success has no ``adv_success_mean``, so their count varies).
    """
    if line.lstrip().startswith("mapo/"):
        return "MAPO-METRICS"
    if line.startswith("[smoke] data: "):  # the real Geometry3K records of ../shared, or generated diagrams without it
        return _DATA_SOURCE.sub(" (from SOURCE)", _PATH.sub("PATH", line.rstrip()))
    return _NUMBER.sub("N", _PATH.sub("PATH", line.rstrip()))


def shapes(lines: list[str]) -> list[str]:
    out: list[str] = []
    for line in lines:
        if line.strip() and not (shape(line) == "MAPO-METRICS" and out and out[-1] == "MAPO-METRICS"):
            out.append(shape(line))
    return out


def readme_sample() -> list[str]:
    text = (REPO / "README.md").read_text()
    block = re.search(r"^\$ make smoke\n(.*?)^```", text, re.MULTILINE | re.DOTALL)
    assert block, "README.md no longer shows `$ make smoke` followed by its output"
    return block.group(1).splitlines()


def own_lines(lines: list[str]) -> list[str]:
    """The smoke command's own lines: its [smoke] progress and the indented summary (not make's echo of the
    command, nor libraries' warnings on stderr)."""
    return [line for line in lines if line.startswith(("[smoke]", "  "))]


def test_readme_make_smoke_sample_matches_the_real_output(smoke_mapo):
    shown = shapes(own_lines(readme_sample()))
    real = shapes(own_lines(smoke_mapo.console.splitlines()))
    assert shown == real, "\n".join(["README:", *shown, "real output:", *real])
