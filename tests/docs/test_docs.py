"""The README and docs/ pages: every `make` target they name exists, every relative link points at a file,
and the README stays short."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
PAGES = [REPO / "README.md", *sorted((REPO / "docs").glob("*.md"))]
LINK = re.compile(r"\]\(([^)#\s]+)(?:#[^)]*)?\)")


def _make_targets() -> set[str]:
    makefile = (REPO / "Makefile").read_text()
    return set(re.findall(r"^([A-Za-z][\w-]*)\s*:(?!=)", makefile, flags=re.MULTILINE))


@pytest.mark.parametrize("page", PAGES, ids=lambda p: str(p.relative_to(REPO)))
def test_make_targets_named_in_docs_exist(page: Path) -> None:
    named = set(re.findall(r"\bmake ([a-z][\w-]*)", page.read_text()))
    missing = sorted(named - _make_targets())
    assert not missing, f"{page.name} names make targets the Makefile lacks: {missing}"


@pytest.mark.parametrize("page", PAGES, ids=lambda p: str(p.relative_to(REPO)))
def test_relative_links_resolve(page: Path) -> None:
    targets = [t for t in LINK.findall(page.read_text()) if "://" not in t and not t.startswith("mailto:")]
    missing = [t for t in targets if not (page.parent / t).exists()]
    assert not missing, f"{page.name} links to missing files: {missing}"


def test_readme_is_short() -> None:
    lines = (REPO / "README.md").read_text().splitlines()
    assert len(lines) <= 250, f"README.md has {len(lines)} lines; move detail to docs/"


def _prose_paragraphs(text: str) -> list[str]:
    """Paragraphs outside code fences and tables, whitespace-normalised."""
    paragraphs, current, in_code = [], [], False
    for line in [*text.splitlines(), ""]:
        if line.lstrip().startswith("```"):
            in_code = not in_code
            continue
        if in_code or line.lstrip().startswith("|"):
            continue
        if line.strip():
            current.append(line.strip())
        elif current:
            paragraphs.append(" ".join(current))
            current = []
    return paragraphs


def test_no_passage_twice() -> None:
    """A passage of prose lives on one page only; the others link to it."""
    seen: dict[str, str] = {}
    repeated = []
    for page in PAGES:
        for paragraph in _prose_paragraphs(page.read_text()):
            if len(paragraph) < 100:
                continue
            where = str(page.relative_to(REPO))
            if paragraph in seen:
                repeated.append(f"{seen[paragraph]} and {where}: {paragraph[:80]}...")
            seen.setdefault(paragraph, where)
    assert not repeated, "\n".join(repeated)


def test_readme_explain_output_is_current(capsys: pytest.CaptureFixture[str]) -> None:
    """The README shows `python -m mapo_verl explain 0.9 1 1 1` verbatim; it must be what the command prints."""
    from mapo_verl.cli import main

    readme = (REPO / "README.md").read_text()
    shown = re.search(r"^\$ python -m mapo_verl explain 0\.9 1 1 1\n(.*?)^```", readme, re.MULTILINE | re.DOTALL)
    assert shown, "README.md no longer shows `$ python -m mapo_verl explain 0.9 1 1 1`"
    assert main(["explain", "0.9", "1", "1", "1"]) == 0
    assert capsys.readouterr().out == shown.group(1)


@pytest.mark.slow
def test_data_md_datasets_needed_sample_is_the_commands_output() -> None:
    """docs/data.md shows `python -m data_prep.datasets_needed` on the math eval config: the same lines, in order."""
    import os
    import shlex
    import subprocess
    import sys

    page = (REPO / "docs" / "data.md").read_text()
    sample = r"^\$ (MAPO_DATA_DIR=\S+) (python -m data_prep\.datasets_needed [^\n]*)\n(.*?)^```"
    shown = re.search(sample, page, re.M | re.S)
    assert shown, "docs/data.md no longer shows `$ MAPO_DATA_DIR=... python -m data_prep.datasets_needed ...`"
    data_dir = shown.group(1).split("=", 1)[1]
    args = [a.replace("$PWD", str(REPO)) for a in shlex.split(shown.group(2))[1:]]
    result = subprocess.run(
        [sys.executable, *args],
        cwd=REPO,
        env={**os.environ, "MAPO_DATA_DIR": data_dir},
        capture_output=True,
        text=True,
        check=True,
    )
    assert [line.split() for line in result.stdout.splitlines()] == [
        line.split() for line in shown.group(3).splitlines()
    ]
