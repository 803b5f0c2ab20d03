"""Every shipped config through verl's real trainer on CPU: ``python -m mapo_verl smoke --config NAME``.

Each training config trains one step (no validation, no checkpoint: the default config's own smoke tests those,
``test_smoke_e2e.py``, and ``mapo_geo3k_qwen3_vl_8b``'s, ``test_qwen3_vl_smoke.py``; those two train there) on the
data it reads, built in each set's public layout and prepared by our preparers
(:mod:`mapo_verl_cpu.fixtures.config_data`), with its own estimator and the shipped reward. Each ``eval_*`` config
runs its ``trainer.val_only`` validation over a small set in each public layout, and ``python -m mapo_verl.report``
turns the logs into the paper's table rows: one per set, ours and the authors' scorer, MathVerse per problem version;
``eval_math`` runs with the Qwen3-VL preset appended (the paper's evaluation with Qwen3-VL, docs/evaluation.md).

Sixteen trainer jobs, two at a time (docs/cpu-smoke.md, "Every shipped config").
"""

from __future__ import annotations

import csv
import json
import math
import os
import shlex
import subprocess
import sys
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path

import pyarrow.parquet as pq
import pytest

from mapo_verl.data_sources import BY_NAME, MATHVERSE_VERSIONS, preparer_of
from mapo_verl_cpu.runners.spec import CONFIG_DIR, DEFAULT_CONFIG, override_key

REPO = Path(__file__).resolve().parents[2]
SHIPPED = sorted(p.stem for p in CONFIG_DIR.glob("*.yaml"))
EVAL = [name for name in SHIPPED if name.startswith("eval_")]
#: configs trained elsewhere in the suite, 2 steps with validation and a checkpoint, by the same smoke command
TRAINED_ELSEWHERE = {DEFAULT_CONFIG: "test_smoke_e2e.py", "mapo_geo3k_qwen3_vl_8b": "test_qwen3_vl_smoke.py"}
TRAINING = [name for name in SHIPPED if not name.startswith("eval_") and name not in TRAINED_ELSEWHERE]
#: eval configs validated with another model family's preset appended, as docs/evaluation.md tells users to
FAMILY_PRESET = {"eval_math_qwen2_5_vl_7b": "+presets=qwen3_vl"}
ONE_STEP = ("--steps", "1", "trainer.val_before_train=False", "trainer.test_freq=-1", "trainer.save_freq=-1")


def _command_overrides(out: Path) -> dict[str, str]:
    args = shlex.split((out / "command.txt").read_text())
    return {override_key(a): a.split("=", 1)[1] for a in args if "=" in a and not a.startswith("--")}


def _config_yaml(name: str):
    from mapo_verl.compose import compose

    return compose(str(CONFIG_DIR), name, ["mapo_data_dir=/nowhere"])


def test_the_lists_cover_every_shipped_config():
    assert set(TRAINED_ELSEWHERE) <= set(SHIPPED) and len(EVAL) == 4 and len(TRAINING) == 12


@pytest.mark.slow
@pytest.mark.parametrize("name", SHIPPED)
def test_config_data_prepares_every_file_the_config_reads(name, tmp_path):
    from mapo_verl_cpu.fixtures.config_data import prepare_config_data

    data = prepare_config_data(name, tmp_path, "generated")
    cfg = _config_yaml(name)
    named = [
        cfg.data.train_files,
        *([cfg.data.val_files] if isinstance(cfg.data.val_files, str) else cfg.data.val_files),
    ]
    assert [p.relative_to(data.root).as_posix() for p in (data.train_file, *data.val_files)] == [
        f.replace("/nowhere/", "") for f in dict.fromkeys(named)
    ]
    for path in (data.train_file, *data.val_files):
        rows = pq.read_table(path).to_pylist()
        source = BY_NAME[preparer_of(str(path))[0]].data_source
        assert rows and {r["data_source"] for r in rows} == {source}, path
        assert all(r["prompt"][-1]["content"].count("<image>") == len(r["images"]) == 1 for r in rows), path
    assert len(data.examples()) == len(pq.read_table(data.train_file))


# ------------------------------------------------------------------------------------------- the jobs
#: smoke jobs run side by side (docs/cpu-smoke.md has the measurement on 2 cores)
PARALLEL_JOBS = int(os.environ.get("MAPO_EVERY_CONFIG_JOBS", "2"))
JOB_TESTS = ("test_training_config_trains_a_step", "test_eval_config_gives_the_papers_table_rows")


@pytest.fixture(scope="module")
def jobs(request, tmp_path_factory, model_cache, smoke_runner, memory_claim):
    """name -> the future of its smoke run; every selected job is submitted at once, :data:`PARALLEL_JOBS` at a time."""
    selected = [
        item.callspec.params["name"]
        for item in request.session.items
        if getattr(item, "originalname", "") in JOB_TESTS and item.path == Path(__file__)
    ]
    pool = ThreadPoolExecutor(max_workers=PARALLEL_JOBS)

    def run(name: str):
        out = tmp_path_factory.mktemp(name) / "run"
        one_step = (*ONE_STEP, f"trainer.rollout_data_dir={out / 'rollouts'}")  # verl's dump of the trained batch
        extra = ([FAMILY_PRESET[name]] if name in FAMILY_PRESET else []) if name in EVAL else list(one_step)
        args = ("--config", name, *extra)
        memory = memory_claim("hf", f"smoke --config {name}")
        return smoke_runner(out, model_cache, *args, expect_success=False, memory=memory)

    futures: dict[str, Future] = {name: pool.submit(run, name) for name in selected}
    yield futures
    pool.shutdown(wait=True)


def _finished(jobs: dict[str, Future], name: str):
    run = jobs[name].result()
    if run.returncode != 0:
        log = run.out / "main_ppo.log"
        tail = "\n".join(log.read_text().splitlines()[-40:]) if log.is_file() else ""
        pytest.fail(f"smoke --config {name} failed ({run.returncode}):\n{run.console[-3000:]}\n--- log ---\n{tail}")
    return run


# ------------------------------------------------------------------------------------- training configs
@pytest.mark.e2e
@pytest.mark.slow
@pytest.mark.ray
@pytest.mark.parametrize("name", TRAINING)
def test_training_config_trains_a_step(name, jobs):
    run = _finished(jobs, name)
    cfg = _config_yaml(name)
    overrides = _command_overrides(run.out)
    # the config's own estimator, reward and data: the smoke overrides none of them
    assert "algorithm.adv_estimator" not in overrides and "reward.custom_reward_function.path" not in overrides
    train_file = Path(overrides["data.train_files"])
    assert train_file.relative_to(run.out / "data").as_posix() == cfg.data.train_files.replace("/nowhere/", "")
    source = BY_NAME[preparer_of(str(train_file))[0]].data_source
    assert {r["data_source"] for r in pq.read_table(train_file).to_pylist()} == {source}
    steps = run.training_steps()
    assert sorted(steps) == [1], steps
    data = steps[1]
    for key in ("actor/pg_loss", "actor/grad_norm", "critic/score/mean"):
        assert key in data and math.isfinite(data[key]), (key, data.get(key))
    mapo = sorted(k for k in data if k.startswith("mapo/"))
    if cfg.algorithm.adv_estimator == "mapo":
        assert mapo and data["mapo/num_groups"] == 4
    else:
        assert not mapo, f"{name} uses {cfg.algorithm.adv_estimator}, yet logged {mapo}"
    groups = _trained_groups(run.out / "rollouts" / "1.jsonl", cfg)
    assert len(groups) == 4 and all(len(g) == 4 for g in groups.values()), groups
    if cfg.algorithm.filter_groups.enable:
        # DAPO: a group whose acc is the same for every response is dropped and replaced by a fresh one (verl logs
        # training/filter_groups/evicted_samples when it dropped any), so every trained group has a right and a wrong
        assert all(set(g) == {0, 1} for g in groups.values()), groups
    assert not list(run.out.glob("checkpoints/global_step_*"))


def _trained_groups(dump: Path, cfg) -> dict[str, list[int]]:
    """uid -> the acc (0/1) of each response of the trained batch, from verl's rollout dump (score = (1 - w) * acc
    + w * format under the shipped reward, so acc = 1 exactly when score >= 1 - w)."""
    weight = cfg.reward.custom_reward_function.reward_kwargs.format_weight
    groups: dict[str, list[int]] = {}
    for line in dump.read_text().splitlines():
        record = json.loads(line)
        groups.setdefault(record["uid"].rsplit("_", 2)[0], []).append(int(record["score"] >= 1 - weight - 1e-6))
    return groups


# ------------------------------------------------------------------------------------------ eval configs
def _csv(path: Path) -> list[dict[str, str]]:
    with path.open(newline="") as f:
        return list(csv.DictReader(f))


@pytest.mark.e2e
@pytest.mark.slow
@pytest.mark.ray
@pytest.mark.parametrize("name", EVAL)
def test_eval_config_gives_the_papers_table_rows(name, jobs, tmp_path):
    run = _finished(jobs, name)
    assert run.training_steps() == {}, "a val_only run trained"
    if FAMILY_PRESET.get(name) == "+presets=qwen3_vl":  # the paper's evaluation with Qwen3-VL (docs/evaluation.md)
        assert "tiny Qwen3-VL (built and warm-started once, then cached)" in run.console
        assert "Qwen3VLForConditionalGeneration contains" in (run.out / "main_ppo.log").read_text()
    generations = run.out / "checkpoints" / "val_generations"
    assert list(generations.glob("*.jsonl")), "no validation dump"
    report = tmp_path / "report"
    out_args = ("--out", str(report), "--no-plot")
    proc = subprocess.run(
        [sys.executable, "-m", "mapo_verl.report", f"{name}={run.out / 'metrics.jsonl'},{generations}", *out_args],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr
    rows = {row["Run"]: row for row in _csv(report / "results.csv")}
    assert set(rows) == {name, f"{name} [paper]"}, rows  # our scorer and the authors'
    cfg = _config_yaml(name)
    sets = [BY_NAME[preparer_of(f)[0]] for f in cfg.data.val_files]
    for row in rows.values():
        for dataset in sets:
            assert 0.0 <= float(row[dataset.column]) <= 100.0, (dataset.column, row)
    if any(d.name == "mathverse" for d in sets):
        versions = {row["Run"]: row for row in _csv(report / "mathverse_versions.csv")}
        assert set(versions) == {name, f"{name} [paper]"}
        for row in versions.values():
            assert all(0.0 <= float(row[v]) <= 100.0 for v in (*MATHVERSE_VERSIONS, "All")), row
    else:
        assert not (report / "mathverse_versions.csv").exists()
