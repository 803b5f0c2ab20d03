"""``python -m mapo_verl study``: the quick run writes every output; usage errors and a missing
plotting extra stop before any work; the plug-in and the study's tables never import matplotlib."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest

from mapo_verl_cpu.experiments.study.__main__ import main

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


@pytest.mark.slow
def test_quick_run_writes_everything(tmp_path: Path, capsys) -> None:
    assert main(["--quick", "--out", str(tmp_path), "--no-progress"]) == 0
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


@pytest.fixture
def without_matplotlib(monkeypatch: pytest.MonkeyPatch) -> None:
    """Make ``import matplotlib`` fail in this process, as on an install without the ``plots`` extra."""
    for name in [m for m in sys.modules if m == "matplotlib" or m.startswith("matplotlib.")]:
        monkeypatch.delitem(sys.modules, name)
    monkeypatch.setitem(sys.modules, "matplotlib", None)


def test_missing_plots_extra_is_named_before_any_work(tmp_path: Path, capsys, without_matplotlib) -> None:
    assert main(["--quick", "--out", str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert "pip install 'mapo-verl[plots]'" in err and "--no-plots" in err
    assert not list(tmp_path.iterdir())  # nothing written


@pytest.mark.slow
def test_tables_need_no_matplotlib(tmp_path: Path, without_matplotlib) -> None:
    args = ["--no-plots", "--presets", "uniform", "--estimators", "grpo,mapo_tcr", "--steps", "3", "--seeds", "2",
            "--num-prompts", "32", "--batch-prompts", "8"]  # fmt: skip
    assert main([*args, "--out", str(tmp_path), "--no-progress"]) == 0
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(n for n in EXPECTED if not n.endswith(".png"))


@pytest.mark.slow
def test_plugin_and_study_import_without_matplotlib() -> None:
    """A Ray worker's `import verl` loads the plug-in; neither it nor the study's modules may pull matplotlib."""
    probe = (
        "import sys; import verl; from verl.trainer.ppo.core_algos import ADV_ESTIMATOR_REGISTRY; "
        "import mapo_verl_cpu.experiments.study.__main__, mapo_verl_cpu.experiments.study.plots; "
        "assert 'mapo' in ADV_ESTIMATOR_REGISTRY; print(sorted(m for m in sys.modules if m.startswith('matplotlib')))"
    )
    proc = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip().splitlines()[-1] == "[]"
