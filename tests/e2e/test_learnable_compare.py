"""The learnable task through verl's real trainer: a short ``compare`` (1 seed each) and the newcomer's smoke.

``python -m mapo_verl compare`` with MAPO and GRPO, one seed each, STEPS steps (the two runs at a time), on the
``shapes`` task, checked through its ``summary.json``, table and plot: each run's held-out accuracy must rise by at
least MIN_RISE (docs/learning.md); then the newcomer's ``smoke`` without ``../shared``, whose groups must succeed at
varied rates so that MAPO mixes (0 < mean lambda < 1 in some step) and whose output matches the README's sample.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from mapo_verl.verl_log import read_records, training_steps

pytestmark = [pytest.mark.e2e, pytest.mark.slow, pytest.mark.ray]

REPO = Path(__file__).resolve().parents[2]
#: shorter than --quick's 10 steps (docs/learning.md: held-out 0.44 -> 0.81 by step 4 in the calibration runs, 0.78-0.81
#: at step 5 in every --quick run)
STEPS, TEST_FREQ = 6, 3
MIN_RISE = 0.20
RUN_TIMEOUT_S = 900


def _run(memory, *args: str, env_extra: dict[str, str] | None = None) -> subprocess.CompletedProcess:
    """``python -m mapo_verl ARGS`` inside ``memory``, its claim on the run's memory budget (tests/conftest.py)."""
    env = {**os.environ, "RAY_AUTH_MODE": "disabled", **(env_extra or {})}
    env.pop("RAY_ADDRESS", None)
    cmd = [sys.executable, "-m", "mapo_verl", *args]
    with memory:
        proc = subprocess.run(cmd, cwd=REPO, env=env, capture_output=True, text=True, timeout=2 * RUN_TIMEOUT_S)
    if proc.returncode != 0:
        pytest.fail(f"{' '.join(args[:1])} failed ({proc.returncode}):\n{(proc.stdout + proc.stderr)[-4000:]}")
    return proc


@pytest.fixture(scope="module")
def comparison(tmp_path_factory, model_cache: Path, memory_claim) -> dict:
    out = tmp_path_factory.mktemp("compare")
    cmd = ["compare", "--out", str(out), "--cache-dir", str(model_cache), "--estimators", "mapo,grpo"]
    memory = memory_claim("hf", "compare (two runs at a time)", jobs=2)  # compare --jobs defaults to 2 on CPU
    proc = _run(memory, *cmd, "--seeds", "1", "--steps", str(STEPS), "--test-freq", str(TEST_FREQ))
    return {"out": out, "console": proc.stdout, "summary": json.loads((out / "summary.json").read_text())}


def test_compare_writes_summary_table_and_plot(comparison: dict) -> None:
    out, summary = comparison["out"], comparison["summary"]
    runs = summary["runs"]
    assert [(r["arm"], r["estimator"], r["seed"]) for r in runs] == [("mapo", "mapo", 1), ("grpo", "grpo", 1)]
    assert summary["arms"] == {
        "mapo": {"estimator": "mapo", "overrides": []},
        "grpo": {"estimator": "grpo", "overrides": []},
    }
    for run in runs:
        assert run["steps"] == STEPS and run["status"] == "ok"
        assert (out / run["metrics"]).is_file()
        assert [s for s, _ in run["val_acc"]] == list(range(0, STEPS + 1, TEST_FREQ))
        assert all(0.0 <= acc <= 1.0 for _, acc in run["val_acc"])
    assert "| mapo | mapo | tcr | 1 | 0 |" in (out / "table.md").read_text()
    assert "mean lambda" in (out / "table.md").read_text()
    if _has_matplotlib():
        assert (out / "curves.png").is_file()
    assert "held-out accuracy by step 0:" in comparison["console"]


def _has_matplotlib() -> bool:
    try:
        import matplotlib  # noqa: F401
    except ImportError:
        return False
    return True


def test_held_out_accuracy_rises_in_every_run(comparison: dict) -> None:
    for run in comparison["summary"]["runs"]:
        start, final = run["val_acc"][0][1], run["val_acc"][-1][1]
        assert final - start >= MIN_RISE, f"{run['estimator']} seed {run['seed']}: held-out {run['val_acc']}"
    rises = {row["arm"]: row["rise"]["mean"] for row in comparison["summary"]["table"]}
    assert all(rise >= MIN_RISE for rise in rises.values()), rises


def test_newcomer_smoke_mixes(tmp_path: Path, model_cache: Path, memory_claim, readme_smoke_sample) -> None:
    """`make smoke` as a newcomer's clone runs it, without ``../shared`` (``MAPO_SHARED_DIR`` names a folder that does
    not exist): generated diagrams, groups that mix, and the README's sample holds for this output too."""
    out = tmp_path / "smoke"
    memory = memory_claim("hf", "smoke without ../shared")
    hidden = {"MAPO_SHARED_DIR": str(tmp_path / "no-shared")}
    proc = _run(memory, "smoke", "--out", str(out), "--cache-dir", str(model_cache), env_extra=hidden)
    lambdas = [data["mapo/lambda_mean"] for data in training_steps(read_records(out / "metrics.jsonl")).values()]
    assert lambdas and any(0.0 < lam < 1.0 for lam in lambdas), lambdas
    assert "generated diagrams" in proc.stdout and "lambda_mean=" in proc.stdout
    readme_smoke_sample(proc.stdout)
