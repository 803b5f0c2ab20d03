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
    colored = "\x1b[36m(TaskRunnerV1 pid=9)\x1b[0m step:2 - a:tensor(0.5000) - b:oops - c:1"
    step, data = report.parse_console_line(colored)
    assert step == 2 and data == {"a": 0.5, "c": 1.0}


def test_table_from_recorded_runs(file_logger_run, console_run, emotion_eval, tmp_path):
    runs = [report.load_run(f"GRPO={console_run}"), report.load_run(f"MAPO={file_logger_run},{emotion_eval}")]
    header, rows = report.build_table(runs)
    assert header == [
        "Run",
        "Geo3K",
        "MathVista",
        "MathVision",
        "MathVerse",
        "Math Avg",
        "Math ID avg",
        "Math OOD avg",
        "EmoSet",
        "WEBEmo",
        "Emotion6",
        "Emotion Avg",
        "Emotion ID avg",
        "Emotion OOD avg",
    ]
    grpo, mapo = (dict(zip(header, r, strict=True)) for r in rows)
    assert grpo["Geo3K"] == "42.0" and mapo["Geo3K"] == "45.0"  # the last validation step
    assert mapo["Math OOD avg"] == f"{100 * (0.65 + 0.25 + 0.35) / 3:.1f}"
    assert mapo["Math Avg"] == f"{100 * (0.45 + 0.65 + 0.25 + 0.35) / 4:.1f}"  # plain mean of the four sets
    assert mapo["Emotion OOD avg"] == "55.0" and grpo["EmoSet"] == "-"
    _, best = report.build_table(runs, step="0")
    assert dict(zip(header, best[1], strict=True))["Geo3K"] == "40.0"


@pytest.mark.slow
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


@pytest.mark.slow
def test_plot_panels(file_logger_run, tmp_path):
    titles = report.plot_curves([report.load_run(str(file_logger_run))], tmp_path / "c.png")
    assert {"train reward (mean)", "validation accuracy", "MAPO mean lambda", "MAPO mean p"} <= set(titles)


def test_plot_without_matplotlib_names_the_extra(file_logger_run, tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "matplotlib", None)  # as if the `plots` extra were not installed
    with pytest.raises(report.ReportError, match=r"mapo-verl\[plots\]"):
        report.plot_curves([report.load_run(str(file_logger_run))], tmp_path / "c.png")
    assert not (tmp_path / "c.png").exists()


def test_errors_name_the_file(tmp_path):
    empty = tmp_path / "empty.log"
    empty.write_text("nothing\n")
    with pytest.raises(report.ReportError, match=r"empty\.log: no verl metrics"):
        report.load_run(str(empty))
    missing = tmp_path / "missing.log"
    with pytest.raises(report.ReportError, match=r"cannot read .*missing\.log"):
        report.load_run(str(missing))
    assert report.main([str(empty), "--out", str(tmp_path / "o")]) == 1


def test_malformed_json_lines_are_skipped_and_counted(tmp_path):
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"step": 1, "data": {"a": 1}}\n{"oops": 2}\n{"step": 2, "data": {"a": 2\n[1, 2]\n{not json\n')
    run = report.load_run(str(bad))
    assert run.steps == {1: {"a": 1.0}}
    assert run.skipped == {str(bad): (3, 2)}


def _printed_config() -> list[str]:
    """verl's main_ppo prints the resolved config with pprint: a Python dict over many lines, starting with ``{``."""
    import pprint

    config = {
        "actor_rollout_ref": {"actor": {"clip_ratio_high": 0.3, "optim": {"lr": 1e-06}}, "rollout": {"n": 12}},
        "algorithm": {"adv_estimator": "mapo", "mapo": {"lambda_fn": "tcr", "success_threshold": 1.0}},
        "data": {"val_files": [f"/data/{s}/test.parquet" for s in ("geo3k", "mathvista", "mathvision", "mathverse")]},
        "trainer": {"experiment_name": "eval_math", "logger": ["console", "file"], "total_epochs": 20},
    }
    return pprint.pformat(config, width=80).splitlines()


def test_raw_taskrunner_console_log(tmp_path):
    """A raw log as users have it: Ray prefixes, verl's printed config, other actors' lines in between."""
    metrics = concat_dict_to_str(_val(MATH) | _paper(MATH, -0.1), step=0)
    cut = len(metrics) // 2
    lines = [
        "2026-11-28 10:00:00,000 INFO worker.py:1 -- Started a local Ray instance.",
        "ray init kwargs: {'num_cpus': None, 'runtime_env': {'env_vars': {'TOKENIZERS_PARALLELISM': 'true'}}}",
        *(f"(TaskRunnerV1 pid=4242) {line}" for line in _printed_config()),
        *_printed_config(),  # and once without the prefix, as a driver-side print shows it
        "(TaskRunnerV1 pid=4242) [validate_config] All configuration checks passed successfully!",
        "(WorkerDict pid=99, ip=10.0.0.2) {'loading': 'weights'} 50%|#####     | 5/10",
        "(TaskRunnerV1 pid=4242) " + metrics[:cut],  # the metrics line arrives split by another actor's output
        "(vLLMHttpServer pid=77) INFO: 127.0.0.1 - GET /health 200",
        metrics[cut:],
        "(TaskRunnerV1 pid=4242) " + metrics,
        "{",
        "{'half a dict",
        '{"step": "x", "data": 1}',
    ]
    path = tmp_path / "taskrunner.log"
    path.write_text("\n".join(lines) + "\n")
    run = report.load_run(f"MAPO={path}")
    header, rows = report.build_table([run])
    table = {r[0]: dict(zip(header, r, strict=True)) for r in rows}
    assert table["MAPO"]["Geo3K"] == "40.0" and table["MAPO"]["MathVerse"] == "30.0"
    assert table["MAPO [paper]"]["Geo3K"] == "30.0" and table["MAPO [paper]"]["MathVista"] == "50.0"
    # Skipped and counted: the unprefixed config's opening line, "{", "{'half a dict" and the JSON that is no record.
    # (Prefixed lines and the config's continuation lines do not look like records: they are plain text.)
    assert run.skipped[str(path)] == (4, 3 + len(_printed_config()))


def _paper(acc: dict[str, float], shift: float) -> dict[str, float]:
    return {f"val-aux/{src}/paper_acc/mean@1": np.float64(a + shift) for src, a in acc.items()}


@pytest.mark.slow
def test_both_scorers_give_two_rows_and_the_cli_says_what_it_skipped(file_logger_run, tmp_path):
    paper_log = tmp_path / "paper.log"
    paper_log.write_text(concat_dict_to_str(_val(MATH) | _paper(MATH, -0.05), step=0) + "\n{broken\n")
    out = tmp_path / "r"
    proc = subprocess.run(
        [sys.executable, "-m", "mapo_verl.report", f"MAPO={paper_log}", "--out", str(out), "--no-plot"],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 0, proc.stderr
    assert "| MAPO | 40.0 | 60.0 | 20.0 | 30.0 |" in proc.stdout
    assert "| MAPO [paper] | 35.0 | 55.0 | 15.0 | 25.0 |" in proc.stdout
    assert "skipped 1 unreadable line(s), the first at line 2" in proc.stderr


@pytest.mark.slow
def test_mathverse_per_version_from_verl_validation_dumps(tmp_path):
    """Dumps written by verl's own writer, with the extra keys reward_fns.paper_compat returns."""
    from verl.trainer.ppo.v1.trainer_base import PPOTrainer

    from reward_fns.paper_compat import MATHVERSE_VERSIONS, compute_score

    dump_dir = tmp_path / "val_generations"
    outputs, gts, infos = [], [], {}
    cases = []  # (version, response, truth): version i gets i + 1 right of 5, the paper scorer one fewer
    for i, version in enumerate(MATHVERSE_VERSIONS):
        for k in range(5):
            if k < i:
                cases.append((version, "<think>t</think> \\boxed{B}", "B"))  # both right
            elif k == i:
                cases.append((version, "<think>t</think> \\boxed{(B) 12}", "B"))  # ours only
            else:
                cases.append((version, "<think>t</think> \\boxed{C}", "B"))  # both wrong
    cases.append(("", "<think>t</think> \\boxed{3}", "3"))  # a Geo3K row in the same dump: not MathVerse
    for version, response, truth in cases:
        source = "AI4Math/MathVerse" if version else "hiyouga/geometry3k"
        result = compute_score(source, response, truth, {"problem_version": version})
        outputs.append(response)
        gts.append(truth)
        for key, value in result.items():
            infos.setdefault(key, []).append(value)
    scores = infos["score"]
    PPOTrainer._write_generations(["prompt"] * len(cases), outputs, gts, scores, infos, str(dump_dir), 0)
    run = report.load_run(f"MAPO={dump_dir}")
    header, rows = report.mathverse_table([run])
    assert header == ["Run", *MATHVERSE_VERSIONS, "All"]
    ours, paper = rows
    assert ours == ["MAPO", "20.0", "40.0", "60.0", "80.0", "100.0", "60.0"]
    assert paper == ["MAPO [paper]", "0.0", "20.0", "40.0", "60.0", "80.0", "40.0"]
    out = tmp_path / "r"
    assert report.main([f"MAPO={dump_dir}", "--out", str(out)]) == 0
    assert "MathVerse by problem version" in (out / "results.md").read_text()
    assert (out / "mathverse_versions.csv").read_text().startswith("Run,Text Dominant,")
