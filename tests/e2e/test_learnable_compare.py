"""The learnable task through verl's real trainer: a short ``compare`` (two arms, 1 seed) and the newcomer's smoke.

``python -m mapo_verl compare --arms grpo,mapo-permuted``, one seed, STEPS steps (the two runs at a time), on the
``shapes`` task, checked through its ``summary.json``, table and plot: both runs complete and validate, the files
are written, and the two arms' first-step rollouts are identical (seed 1's model, data and sampling for both: the
pairing). No rise is asserted (this run has 2 steps): even over 4 steps the sampled held-out accuracy moved by less
than its noise in the calibration runs (docs/learning.md). Then the newcomer's ``smoke`` without ``../shared``,
whose groups must succeed at varied rates so that MAPO mixes (0 < mean lambda < 1 in some step) and whose output
matches the README's sample.
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
#: shorter than --quick's 8 steps: the pairing is checked at step 1, and a validation after training
STEPS, TEST_FREQ = 2, 2
#: held-out prompts (--quick: 32): each validation answers every one 4 times, one generate call a prompt
TEST_SIZE = 8
ARMS = ("grpo", "mapo-permuted")
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
    cmd = ["compare", "--out", str(out), "--cache-dir", str(model_cache), "--arms", ",".join(ARMS)]
    memory = memory_claim("hf", "compare (two runs at a time)", jobs=2)  # compare --jobs defaults to 2 on CPU
    sizes = ("--seeds", "1", "--steps", str(STEPS), "--test-freq", str(TEST_FREQ), "--test-size", str(TEST_SIZE))
    proc = _run(memory, *cmd, *sizes)
    return {"out": out, "console": proc.stdout, "summary": json.loads((out / "summary.json").read_text())}


def test_compare_writes_summary_table_and_plot(comparison: dict) -> None:
    out, summary = comparison["out"], comparison["summary"]
    runs = summary["runs"]
    assert [(r["arm"], r["estimator"], r["seed"]) for r in runs] == [
        ("grpo", "grpo", 1),
        ("mapo-permuted", "mapo", 1),
    ]
    assert summary["arms"] == {
        "grpo": {"estimator": "grpo", "overrides": []},
        "mapo-permuted": {"estimator": "mapo", "overrides": ["algorithm.mapo.lambda_assignment=permuted"]},
    }
    assert summary["reference"] == "grpo" and summary["paired"]["mapo-permuted"]["n"] == 1
    shares = summary["warm_start"]["1"]["picture_to_answer"]
    assert shares and all(v["share"] == v["chance"] for v in shares.values()), shares
    for run in runs:
        assert run["steps"] == STEPS and run["status"] == "ok"
        assert (out / run["metrics"]).is_file()
        assert [s for s, _ in run["val_acc"]] == list(range(0, STEPS + 1, TEST_FREQ))
        assert all(0.0 <= acc <= 1.0 for _, acc in run["val_acc"])
    assert "| mapo-permuted | mapo | tcr, permuted | 1 | 0 |" in (out / "table.md").read_text()
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


def test_the_arms_first_step_rollouts_are_identical(comparison: dict) -> None:
    """Seed 1 of both arms: the same weights, data order and sampling stream, so the same step-1 groups, response
    for response (the estimators differ only from the first update on)."""
    dumps = [comparison["out"] / "runs" / f"{arm}-s1" / "rollouts" / "1.jsonl" for arm in ARMS]

    def rows(dump: Path) -> list[tuple[str, str, float]]:
        records = [json.loads(line) for line in dump.read_text().splitlines() if line.strip()]
        return sorted((r["input"], r["output"], float(r["score"])) for r in records)

    first, second = (rows(d) for d in dumps)
    assert len(first) == 16 * 8 and first == second
    # each group's 8 answers vary (sampling, not greedy): in the calibration runs every group of step 1 held 3-5
    # distinct responses; a row's uid is "<group's uid>_<session>_<index>" (verl's batch keys)
    groups: dict[str, set[str]] = {}
    for line in dumps[0].read_text().splitlines():
        if line.strip():
            record = json.loads(line)
            groups.setdefault(record["uid"].rsplit("_", 2)[0], set()).add(record["output"])
    assert len(groups) == 16 and all(len(outputs) > 1 for outputs in groups.values()), groups


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
