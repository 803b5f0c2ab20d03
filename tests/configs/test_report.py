"""`python -m mapo_verl.report` on metric files written by verl's own console and file loggers."""

from __future__ import annotations

import csv
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from verl.utils.logger.aggregate_logger import concat_dict_to_str
from verl.utils.tracking import FileLogger

from mapo_verl import report

MATH = {"hiyouga/geometry3k": 0.40, "AI4Math/MathVista": 0.60, "MathLLMs/MathVision": 0.20, "AI4Math/MathVerse": 0.30}


def _val(acc: dict[str, float], bump: float = 0.0) -> dict[str, float]:
    out = {}
    for src, a in acc.items():
        out[f"val-core/{src}/acc/mean@1"] = np.float64(a + bump)
        out[f"val-aux/{src}/reward/mean@1"] = np.float64(a + bump - 0.05)
    return out


def _train(step: int, offset: float) -> dict[str, float]:
    return {
        "critic/score/mean": np.float64(0.3 + 0.01 * step + offset),
        "mapo/lambda_mean": 0.5 - 0.01 * step,
        "mapo/p_mean": 0.3 + 0.01 * step,
        "mapo/groups_p0_frac": 0.2,
        "response_length/mean": 400.0 + step,
        "training/global_step": step,
    }


@pytest.fixture
def file_logger_run(tmp_path, monkeypatch) -> Path:
    """A MAPO run as verl's FileLogger writes it (trainer.logger=[file])."""
    path = tmp_path / "mapo_geo3k.jsonl"
    monkeypatch.setenv("VERL_FILE_LOGGER_PATH", str(path))
    log = FileLogger("mapo_verl", "mapo_geo3k")
    log.log(_val(MATH), step=0)
    for step in range(1, 11):
        log.log(_train(step, 0.05) | (_val(MATH, 0.05) if step % 5 == 0 else {}), step=step)
    log.finish()
    return path


@pytest.fixture
def console_run(tmp_path) -> Path:
    """A GRPO run as verl's console logger prints it, with Ray's actor prefix and unrelated lines."""
    path = tmp_path / "grpo_geo3k.log"
    lines = ["ray init kwargs: {...}", "(TaskRunnerV1 pid=123) [validate_config] All configuration checks passed"]
    lines.append("(TaskRunnerV1 pid=123) " + concat_dict_to_str(_val(MATH), step=0))
    for step in range(1, 11):
        lines.append(concat_dict_to_str(_train(step, 0.0) | (_val(MATH, 0.02) if step % 5 == 0 else {}), step=step))
    path.write_text("\n".join(lines) + "\n")
    return path


@pytest.fixture
def emotion_eval(tmp_path) -> Path:
    path = tmp_path / "eval_emotion.log"
    acc = {"emoset": 0.7, "webemo": 0.5, "emotion6": 0.6}
    path.write_text(concat_dict_to_str(_val(acc), step=0) + "\n")
    return path


def test_console_line_parsing():
    step, data = report.parse_console_line(
        "(TaskRunnerV1 pid=9) step:7 - val-core/AI4Math/MathVista/acc/mean@1:np.float64(0.25) - a/b:3 - c:-1e-05"
    )
    assert step == 7 and data == {"val-core/AI4Math/MathVista/acc/mean@1": 0.25, "a/b": 3.0, "c": -1e-05}
    assert report.parse_console_line("no metrics here") is None


def test_table_from_recorded_runs(file_logger_run, console_run, emotion_eval, tmp_path):
    runs = [report.load_run(f"GRPO={console_run}"), report.load_run(f"MAPO={file_logger_run},{emotion_eval}")]
    header, rows = report.build_table(runs)
    assert header == [
        "Run",
        "Geo3K",
        "MathVista",
        "MathVision",
        "MathVerse",
        "Math ID avg",
        "Math OOD avg",
        "EmoSet",
        "WEBEmo",
        "Emotion6",
        "Emotion ID avg",
        "Emotion OOD avg",
    ]
    grpo, mapo = (dict(zip(header, r, strict=True)) for r in rows)
    assert grpo["Geo3K"] == "42.0" and mapo["Geo3K"] == "45.0"  # the last validation step
    assert mapo["Math OOD avg"] == f"{100 * (0.65 + 0.25 + 0.35) / 3:.1f}"
    assert mapo["Emotion OOD avg"] == "55.0" and grpo["EmoSet"] == "-"
    _, best = report.build_table(runs, step="0")
    assert dict(zip(header, best[1], strict=True))["Geo3K"] == "40.0"


def test_cli_writes_markdown_csv_and_plot(file_logger_run, console_run, tmp_path):
    out = tmp_path / "report"
    proc = subprocess.run(
        [sys.executable, "-m", "mapo_verl.report", f"GRPO={console_run}", f"MAPO={file_logger_run}", "--out", str(out)],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 0, proc.stderr
    assert "| MAPO | 45.0 |" in proc.stdout
    assert (out / "results.md").read_text().startswith("| Run | Geo3K |")
    with (out / "results.csv").open() as fh:
        table = list(csv.DictReader(fh))
    assert [r["Run"] for r in table] == ["GRPO", "MAPO"] and table[0]["Geo3K"] == "42.0"
    png = (out / "training_curves.png").read_bytes()
    assert png.startswith(b"\x89PNG") and len(png) > 10_000
    assert not [p for p in out.iterdir() if p.name.startswith(".")]  # no temporary files left


def test_plot_panels(file_logger_run, tmp_path):
    titles = report.plot_curves([report.load_run(str(file_logger_run))], tmp_path / "c.png")
    assert {"train reward (mean)", "validation accuracy", "MAPO mean lambda", "MAPO mean p"} <= set(titles)


def test_errors_name_the_file(tmp_path):
    empty = tmp_path / "empty.log"
    empty.write_text("nothing\n")
    with pytest.raises(report.ReportError, match=r"empty\.log: no verl metrics"):
        report.load_run(str(empty))
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"step": 1, "data": {"a": 1}}\n{"oops": 2}\n')
    with pytest.raises(report.ReportError, match=r"bad\.jsonl:2"):
        report.load_run(str(bad))
    assert report.main([str(empty), "--out", str(tmp_path / "o")]) == 1
