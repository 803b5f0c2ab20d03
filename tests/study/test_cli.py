"""``python -m mapo_verl.study --quick``: runs within a test's budget and writes every output."""

from __future__ import annotations

import time
from pathlib import Path

import pandas as pd
import pytest

from mapo_verl.study.__main__ import main

EXPECTED = [
    "allocation.csv",
    "allocation_graded.csv",
    "allocation.png",
    "learning.png",
    "learning_vs_grpo.png",
    "learning_curves.csv",
    "learning_per_seed.csv",
    "learning_summary.csv",
    "summary.md",
    "config.json",
]


def test_quick_run_writes_everything(tmp_path: Path, capsys) -> None:
    start = time.perf_counter()
    assert main(["--quick", "--out", str(tmp_path), "--no-progress"]) == 0
    assert time.perf_counter() - start < 45  # after verl's import; plots take most of it
    for name in EXPECTED:
        assert (tmp_path / name).stat().st_size > 0, name
    for png in tmp_path.glob("*.png"):
        assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and png.stat().st_size < 300_000, png.name
    assert not list(tmp_path.glob(".*.tmp"))  # atomic writes leave no temporaries
    summary = pd.read_csv(tmp_path / "learning_summary.csv")
    assert set(summary["preset"]) == {"easy-heavy", "hard-heavy", "uniform"}
    assert set(summary["estimator"]) == {"grpo", "drgrpo", "apd", "mapo_tcr", "mapo_linear"}
    assert (summary.loc[summary["estimator"] == "grpo", "final_minus_grpo"] == 0).all()
    curves = pd.read_csv(tmp_path / "learning_curves.csv")
    assert curves["step"].max() == 20 and len(curves) == 3 * 5 * 21
    per_seed = pd.read_csv(tmp_path / "learning_per_seed.csv")
    assert len(per_seed) == 3 * 5 * 2 and per_seed["seed"].nunique() == 2
    merged = per_seed.groupby(["preset", "estimator"])["final_acc"].mean()
    for _, row in summary.iterrows():  # the summary's means are the per-seed values' means
        assert merged[(row["preset"], row["estimator"])] == pytest.approx(row["final_acc"], abs=1e-5)
    text = (tmp_path / "summary.md").read_text()
    assert "| MAPO tcr |" in text and "mirror ratio" in text
    out = capsys.readouterr().out
    assert "reversion" in out and "wall time" in out


def test_bad_arguments_exit_2(tmp_path: Path, capsys) -> None:
    assert main(["--presets", "medium", "--out", str(tmp_path)]) == 2
    assert "unknown preset" in capsys.readouterr().err
    assert main(["--estimators", "ppo", "--out", str(tmp_path)]) == 2
    assert not list(tmp_path.iterdir())  # nothing written on a usage error
