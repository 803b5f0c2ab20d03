"""Flags of ``python -m mapo_verl report`` and of the harness's ``smoke`` are checked before any work starts: one
``error:`` line naming the flag, exit status 2, nothing written."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from mapo_verl import report
from mapo_verl_cpu.experiments import smoke


def _error_line(capsys) -> str:
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: ") and "\n" not in err, err
    return err


@pytest.fixture
def metrics_log(tmp_path) -> Path:
    """One validation step as verl's file logger writes it."""
    path = tmp_path / "metrics.jsonl"
    path.write_text(json.dumps({"step": 1, "data": {"val-core/hiyouga/geometry3k/acc/mean@1": 0.5}}) + "\n")
    return path


@pytest.mark.parametrize("where", ["the file", "under the file"])
def test_report_out_pointing_at_a_file(tmp_path, metrics_log, capsys, where):
    a_file = tmp_path / "results"
    a_file.write_text("not a folder")
    out = a_file if where == "the file" else a_file / "sub"
    assert report.main([f"MAPO={metrics_log}", "--out", str(out), "--no-plot"]) == 2
    assert _error_line(capsys).startswith(f"error: --out: {a_file} ")
    assert a_file.read_text() == "not a folder"


@pytest.fixture
def no_work(monkeypatch):
    """The smoke's first piece of work (preparing the data), replaced by a failure: an argument error must come
    before it."""
    from mapo_verl_cpu.fixtures import config_data

    def started(*args, **kwargs):
        raise AssertionError("the smoke started work before checking its arguments")

    monkeypatch.setattr(config_data, "prepare_config_data", started)


@pytest.mark.parametrize(
    ("flags", "needle"),
    [
        (["--timeout", "nan"], "--timeout must be a positive number of seconds, got nan"),
        (["--timeout", "-5"], "--timeout must be a positive number of seconds, got -5.0"),
        (["--timeout", "0"], "--timeout must be a positive number of seconds, got 0.0"),
        (["--warm-steps", "-1"], "--warm-steps must be >= 0, got -1"),
        (["--gpus-per-node", "0"], "--gpus-per-node (0) and --cpus-per-node (8) must be >= 1"),
        (["--launcher", "slurm", "--gpus-per-node", "-2"], "--gpus-per-node (-2)"),
    ],
)
def test_smoke_flags_are_checked_before_any_work(tmp_path, capsys, no_work, flags, needle):
    out = tmp_path / "smoke"
    assert smoke.main(["--out", str(out), *flags]) == 2
    assert needle in _error_line(capsys)
    assert not out.exists()


@pytest.mark.slow  # imports verl (its estimator registry), about 10 s
def test_smoke_unknown_estimator_is_refused_before_any_work(tmp_path, capsys, no_work):
    out = tmp_path / "smoke"
    assert smoke.main(["--out", str(out), "--estimator", "mapoo"]) == 2
    assert "--estimator mapoo: not an advantage estimator of verl (known: " in _error_line(capsys)
    assert not out.exists()


@pytest.mark.slow  # imports verl
def test_smoke_known_estimator_passes_the_check(tmp_path):
    """``grpo`` and ``mapo`` are verl's (the plug-in's ``mapo`` included): the check does not refuse them."""
    args = smoke.build_parser().parse_args(["--out", str(tmp_path / "o"), "--estimator", "mapo"])
    problem = smoke.validate_args(args)
    assert problem is None or "--estimator" not in problem
    assert {"grpo", "mapo"} <= set(smoke.verl_estimators())


def test_smoke_out_pointing_at_a_file(tmp_path, capsys, no_work):
    a_file = tmp_path / "out"
    a_file.write_text("x")
    assert smoke.main(["--out", str(a_file)]) == 2
    assert _error_line(capsys) == f"error: --out: {a_file} is a file, not a folder"
