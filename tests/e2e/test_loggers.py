"""MAPO's metrics in the dashboards users open: one real CPU run of verl's trainer (``adv_estimator=mapo``) logs to
TensorBoard, W&B (offline) and MLflow (a local SQLite store) at once, beside verl's file logger. Each backend is
read back with its library's own reader, and each must hold every ``mapo/*`` key of the file logger's JSONL, with
the same values at the same training steps (docs/metrics.md, "Dashboards"). The picture script of that page
(benchmarks/plot_tensorboard.py) draws the run's event files; its input checks run in the fast tier."""

from __future__ import annotations

import importlib.util
import json
import subprocess
import sys
from pathlib import Path

import pytest

from mapo_verl.metrics import PREFIX

REPO = Path(__file__).resolve().parents[2]
PLOT_SCRIPT = REPO / "benchmarks" / "plot_tensorboard.py"
PROJECT, EXPERIMENT = "mapo_verl", "smoke"  # the shipped configs' trainer.project_name, the smoke's experiment_name
STEPS = 2
#: TensorBoard stores scalars as float32; W&B (JSON) and MLflow (SQLite REAL) keep the float64 verl logged
REL_TOLERANCE = {"tensorboard": 1e-6, "wandb": 1e-12, "mlflow": 1e-12}

Series = dict[int, dict[str, float]]  # step -> {mapo/* key: value}


def mlflow_uri(out: Path) -> str:
    return f"sqlite:///{out / 'mlflow.db'}"  # where tests/e2e/conftest.py's dashboard_env puts MLflow's store


@pytest.fixture(scope="module")
def logged_run(smoke_qwen3_vl):
    """The Qwen3-VL smoke of tests/e2e/conftest.py: its trainer logged to every dashboard backend at once."""
    return smoke_qwen3_vl


@pytest.fixture(scope="module")
def jsonl_series(logged_run) -> Series:
    """What verl's file logger has: the ``mapo/*`` metrics of each training step."""
    steps = logged_run.training_steps()
    assert sorted(steps) == list(range(1, STEPS + 1)), sorted(steps)
    series = {step: {k: v for k, v in data.items() if k.startswith(PREFIX)} for step, data in steps.items()}
    for step, metrics in series.items():
        # the keys every step has (adv_success_mean / adv_failure_mean are absent when a step has none)
        assert {"mapo/lambda_mean", "mapo/p_mean", "mapo/num_groups", "mapo/groups_p0_frac"} <= metrics.keys(), step
    return series


def tensorboard_series(logdir: Path) -> Series:
    """The ``mapo/*`` scalars of the event files in ``logdir``, read with TensorBoard's EventAccumulator."""
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    events = EventAccumulator(str(logdir), size_guidance={"scalars": 0})  # 0: keep every point
    events.Reload()
    series: Series = {}
    for tag in events.Tags()["scalars"]:
        if tag.startswith(PREFIX):
            for point in events.Scalars(tag):
                series.setdefault(point.step, {})[tag] = point.value
    return series


def wandb_records(run_dir: Path) -> list[dict]:
    """The records of an offline run's ``.wandb`` log, decoded by wandb's own reader (``wandb leet inspect``)."""
    proc = subprocess.run(
        [sys.executable, "-m", "wandb", "leet", "inspect", "--json", str(run_dir)],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-2000:]
    return [json.loads(line) for line in proc.stdout.splitlines() if line.strip()]


def wandb_series(records: list[dict]) -> Series:
    series: Series = {}
    for record in records:
        if record["type"] == "history":
            items = record["history"]["item"]
            step = series.setdefault(record["history"]["step"]["num"], {})
            step.update({k: v for k, v in items.items() if k.startswith(PREFIX)})
    return {step: metrics for step, metrics in series.items() if metrics}


def assert_same(found: Series, expected: Series, backend: str) -> None:
    assert sorted(found) == sorted(expected), f"{backend}: steps {sorted(found)}, the JSONL has {sorted(expected)}"
    for step, metrics in expected.items():
        assert sorted(found[step]) == sorted(metrics), f"{backend}, step {step}"
        assert found[step] == pytest.approx(metrics, rel=REL_TOLERANCE[backend], abs=1e-12), f"{backend}, step {step}"


@pytest.mark.e2e
@pytest.mark.slow
@pytest.mark.ray
def test_tensorboard_event_files_hold_the_mapo_metrics(logged_run, jsonl_series):
    logdir = logged_run.out / "tensorboard"
    assert list(logdir.glob("events.out.tfevents.*")), f"no TensorBoard event file in {logdir}"
    assert_same(tensorboard_series(logdir), jsonl_series, "tensorboard")


@pytest.mark.e2e
@pytest.mark.slow
@pytest.mark.ray
def test_wandb_offline_run_holds_the_mapo_metrics(logged_run, jsonl_series):
    runs = sorted((logged_run.out / "wandb_files" / "wandb").glob("offline-run-*"))
    assert len(runs) == 1, f"expected one offline W&B run, found {runs}"
    records = wandb_records(runs[0])
    run = next(r["run"] for r in records if r["type"] == "run")
    assert (run["project"], run["display_name"]) == (PROJECT, EXPERIMENT)
    assert run["telemetry"]["feature"].get("offline") is True
    assert run["config"]["update"]["algorithm"]["adv_estimator"] == "mapo"  # the run's config reached W&B
    assert [r["exit"].get("exit_code", 0) for r in records if r["type"] == "exit"] == [0], "the run did not finish"
    assert_same(wandb_series(records), jsonl_series, "wandb")


@pytest.mark.e2e
@pytest.mark.slow
@pytest.mark.ray
def test_mlflow_store_holds_the_mapo_metrics(logged_run, jsonl_series):
    from mlflow.tracking import MlflowClient

    client = MlflowClient(tracking_uri=mlflow_uri(logged_run.out))
    experiment = client.get_experiment_by_name(PROJECT)  # verl: MLflow's experiment is trainer.project_name
    assert experiment is not None, f"no MLflow experiment {PROJECT!r}"
    runs = client.search_runs([experiment.experiment_id])
    assert [(r.info.run_name, r.info.status) for r in runs] == [(EXPERIMENT, "FINISHED")]
    run = runs[0]
    assert run.data.params["algorithm/adv_estimator"] == "mapo"  # verl logs the flattened config as params
    keys = sorted({key for metrics in jsonl_series.values() for key in metrics})
    assert sorted(k for k in run.data.metrics if k.startswith(PREFIX)) == keys
    found: Series = {}
    for key in keys:
        for point in client.get_metric_history(run.info.run_id, key):
            found.setdefault(point.step, {})[key] = point.value
    assert_same(found, jsonl_series, "mlflow")


# ------------------------------------------------------------------------------- the picture of docs/metrics.md
def plot_script():
    spec = importlib.util.spec_from_file_location("plot_tensorboard", PLOT_SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.mark.e2e
@pytest.mark.slow
@pytest.mark.ray
def test_the_picture_script_draws_the_runs_event_files(logged_run, jsonl_series, tmp_path):
    png = tmp_path / "tensorboard_mapo.png"
    proc = subprocess.run(
        [sys.executable, str(PLOT_SCRIPT), str(logged_run.out / "tensorboard"), "--out", str(png)],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr
    panels = [k for k in plot_script().DEFAULT_KEYS if any(k in metrics for metrics in jsonl_series.values())]
    points = sum(k in metrics for metrics in jsonl_series.values() for k in panels)
    assert proc.stdout.strip() == f"{png}: {len(panels)} panel(s), 1 run(s), {points} point(s)"
    assert png.read_bytes().startswith(b"\x89PNG")


def test_the_picture_script_smooths_as_tensorboard_does():
    smoothed = plot_script().smoothed
    assert smoothed([1.0, 2.0, 3.0], 0.0) == [1.0, 2.0, 3.0]
    # debiased EMA, weight 0.6: last = 0.6 last + 0.4 v (0.4, 1.04, 1.824), over 1 - 0.6^k (0.4, 0.64, 0.784)
    assert smoothed([1.0, 2.0, 3.0], 0.6) == pytest.approx([1.0, 1.04 / 0.64, 1.824 / 0.784])
    assert smoothed([5.0, 5.0], 0.9) == pytest.approx([5.0, 5.0])


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["{missing}"], "error: {missing}: no such folder"),
        (["{empty}"], "error: {empty}: no TensorBoard event files (events.out.tfevents.*) in it or below"),
        (["{grpo}"], "error: {grpo}: its event files have no mapo/* scalars"),
        (["{mapo}", "--keys", "mapo/p_mean,mapo/nope"], "error: --keys: mapo/nope not in the event files"),
        (["{mapo}", "--smoothing", "1"], "error: --smoothing: 1.0 is not in [0, 1)"),
        (["{mapo}", "--out", "{tmp}/picture.jpg"], "error: --out: {tmp}/picture.jpg does not end in .png"),
        (["{mapo}", "--out", "{empty}/file/picture.png"], "error: --out: {empty}/file is a file, not a folder"),
    ],
    ids=["missing", "no-events", "no-mapo", "unknown-key", "smoothing", "not-png", "out-under-a-file"],
)
def test_the_picture_script_names_bad_input_in_one_line(tmp_path, capsys, args, message):
    from torch.utils.tensorboard import SummaryWriter  # what verl's tensorboard logger writes with

    dirs = {name: tmp_path / name for name in ("missing", "empty", "grpo", "mapo")}
    for name in ("empty", "grpo", "mapo"):
        dirs[name].mkdir()
    (dirs["empty"] / "file").write_text("not a folder")
    for name, key in (("grpo", "critic/score/mean"), ("mapo", "mapo/p_mean")):
        with SummaryWriter(str(dirs[name])) as writer:
            writer.add_scalar(key, 0.5, 1)
    fill = {**{k: str(v) for k, v in dirs.items()}, "tmp": str(tmp_path)}
    out = [] if "--out" in args else ["--out", str(tmp_path / "picture.png")]  # never the docs' picture
    assert plot_script().main([a.format(**fill) for a in args] + out) == 2
    captured = capsys.readouterr()
    assert captured.out == ""
    lines = captured.err.splitlines()
    assert len(lines) == 1 and lines[0].startswith(message.format(**fill)), captured.err
    assert not list(tmp_path.rglob("*.png")), "nothing is written on bad input"
