"""``python -m mapo_verl compare``'s pieces without a trainer: statistics, log reading, outputs, run specs, the task."""

from __future__ import annotations

import argparse
import json
import sys
import types
from collections import Counter
from dataclasses import fields
from pathlib import Path

import pyarrow.parquet as pq
import pytest
import torch

from data_prep import shapes
from mapo_verl.cli import main as cli_main
from mapo_verl.compose import ComposeError
from mapo_verl.mixed_advantage import MapoSettings, compute_mixed_advantage, group_ids_from_index
from mapo_verl_cpu.experiments import compare
from mapo_verl_cpu.runners.spec import CONFIG_DIR
from reward_fns.router import compute_score


def _settings(**kw) -> compare.Settings:
    base = dict(arms=compare.parse_arms("mapo,grpo"), seeds=(1, 2), steps=4, test_freq=2)
    return compare.Settings(**{**base, **kw})


def _write_run(run_dir: Path, val: list[tuple[int, float]], scores: dict[int, list[list[float]]]) -> None:
    """A verl file-logger JSONL and rollout dumps (``uid`` = ``<group>_<rollout>_<output>``) as verl writes them."""
    run_dir.mkdir(parents=True)
    lines = []
    for step, acc in val:
        lines.append({"step": step, "data": {"val-core/mapo/shapes/acc/mean@1": acc}})
        if step:
            lines.append({"step": step, "data": {"actor/pg_loss": 0.1, "critic/score/mean": acc}})
    (run_dir / "metrics.jsonl").write_text("\n".join(json.dumps(x) for x in lines) + "\n")
    (run_dir / "rollouts").mkdir()
    for step, groups in scores.items():
        rows = [
            {"uid": f"g{g}_{r}_0", "score": s, "output": "", "input": "", "step": step}
            for g, group in enumerate(groups)
            for r, s in enumerate(group)
        ]
        (run_dir / "rollouts" / f"{step}.jsonl").write_text("\n".join(json.dumps(r) for r in rows) + "\n")
    (run_dir / "validation").mkdir()
    for step, acc in val:  # 4 held-out rows per step: colour right at rate acc * 2 (capped), count never
        colour_hits = round(min(2 * acc, 1.0) * 2)
        rows = [
            {"input": f"<image>{shapes.QUESTIONS[kind]}", "acc": float(kind == "colour" and i < colour_hits)}
            for kind in ("colour", "count")
            for i in range(2)
        ]
        (run_dir / "validation" / f"{step}.jsonl").write_text("\n".join(json.dumps(r) for r in rows) + "\n")


def test_steps_to_target_and_lambda() -> None:
    assert compare.steps_to_target([[0, 0.1], [4, 0.6], [8, 0.7]], 0.5) == 4
    assert compare.steps_to_target([[0, 0.1]], 0.5) is None
    assert compare.lambdas([0.5, 0.0, 0.25, 1.0], "tcr") == pytest.approx([0.0, 1.0, 0.25, 1.0])
    assert compare.lambdas([0.5, 0.0, 0.25, 1.0], "linear") == pytest.approx([0.0, 1.0, 0.5, 1.0])
    assert compare.average(compare.lambdas([0.0, 0.5], "tcr")) == pytest.approx(0.5)


def test_reads_runs_and_writes_summary_table(tmp_path: Path) -> None:
    _write_run(tmp_path / "runs" / "mapo-s1", [(0, 0.1), (2, 0.3), (4, 0.5)], {1: [[1.0, 0, 0.1, 0], [0, 0, 0, 0]]})
    _write_run(tmp_path / "runs" / "grpo-s1", [(0, 0.2), (2, 0.2), (4, 0.4)], {1: [[1.0, 1.0, 1.0, 1.0]]})
    runs = []
    for est in ("mapo", "grpo"):
        run_dir = tmp_path / "runs" / f"{est}-s1"
        entry = {"estimator": est, "seed": 1, "metrics": f"runs/{est}-s1/metrics.jsonl", "returncode": 0, "seconds": 1}
        runs.append({**entry, **compare.read_run(run_dir)})
    assert runs[0]["val_acc"] == [[0, 0.1], [2, 0.3], [4, 0.5]] and runs[0]["steps"] == 4
    assert sorted(runs[0]["p"][1]) == [0.0, 0.25]
    summary = compare.write_outputs(tmp_path, _settings(seeds=(1,)), runs)
    on_disk = json.loads((tmp_path / "summary.json").read_text())
    assert on_disk["runs"] == summary["runs"]
    first = on_disk["runs"][0]
    assert {"arm", "estimator", "overrides", "seed", "steps", "metrics", "val_acc"} <= first.keys()
    assert (tmp_path / first["metrics"]).is_file()  # relative to DIR
    mapo_row = next(r for r in on_disk["table"] if r["arm"] == "mapo")
    assert mapo_row["rise"]["mean"] == pytest.approx(0.4) and mapo_row["steps_to_target"] == [4]
    table = (tmp_path / "table.md").read_text()
    assert "| mapo | mapo | tcr | 1 |" in table and "| grpo | grpo | - | 1 |" in table
    # certainty side by side: mapo's step-1 groups p=0.25 and p=0 -> mean lambda (0.25 + 1) / 2; grpo's p=1 -> 1
    assert "0.625" in table and "1.000" in table
    # per question kind, from the validation dumps: mapo's colour 0 -> 1, count 0 throughout
    assert runs[0]["kinds"] == {"colour": [[0, 0.0], [2, 0.5], [4, 1.0]], "count": [[0, 0.0], [2, 0.0], [4, 0.0]]}
    assert "| mapo | colour | 0.000 (n/a: 1 seed) | 1.000 (n/a: 1 seed) |" in table
    assert compare.question_kind("<image>Find x.") == "other"
    pytest.importorskip("matplotlib")
    assert (tmp_path / "curves.png").stat().st_size > 1000


#: two groups of four scores: p = 1/4 and 0 at MAPO's default threshold 1.0, p = 1/2 and 3/4 at 0.5
MIXED_SCORES = [[1.0, 0.6, 0.2, 0.0], [0.5, 0.5, 0.5, 0.4]]


def test_certainty_follows_each_runs_mapo_settings(tmp_path: Path) -> None:
    val = [(0, 0.1), (1, 0.2)]
    for est in ("mapo", "grpo"):
        _write_run(tmp_path / "runs" / f"{est}-s1", val, {1: MIXED_SCORES})
    half_linear = MapoSettings(success_threshold=0.5, lambda_fn="linear")
    mapo = compare.read_run(tmp_path / "runs" / "mapo-s1", half_linear)
    assert mapo["p"] == {1: [0.5, 0.75]} and mapo["lambdas"][1] == pytest.approx([0.0, 0.5])  # |2p - 1|
    # the estimator's own p and lambda(p) for these scores at these settings
    flat = torch.tensor([s for group in MIXED_SCORES for s in group], dtype=torch.float64)
    ids = group_ids_from_index([g for g, group in enumerate(MIXED_SCORES) for _ in group])
    trained = compute_mixed_advantage(flat, ids, success_threshold=0.5, lambda_fn="linear")
    assert mapo["p"][1] == pytest.approx(trained.success_ratio[::4].tolist())
    assert mapo["lambdas"][1] == pytest.approx(trained.certainty_weight[::4].tolist())
    # without settings: the settings dataclass's defaults (threshold 1.0, tcr), as a run that sets none
    grpo = compare.read_run(tmp_path / "runs" / "grpo-s1")
    assert grpo == compare.read_run(tmp_path / "runs" / "grpo-s1", MapoSettings())
    assert grpo["p"] == {1: [0.25, 0.0]} and grpo["lambdas"][1] == pytest.approx([0.25, 1.0])  # 1 - 4p(1 - p)
    runs = [
        {"estimator": est, "seed": 1, "metrics": f"runs/{est}-s1/metrics.jsonl", "returncode": 0, "seconds": 1, **r}
        for est, r in (("mapo", mapo), ("grpo", grpo))
    ]
    summary = compare.write_outputs(tmp_path, _settings(seeds=(1,)), runs)
    table = (tmp_path / "table.md").read_text().splitlines()
    head = (
        "| step | mapo: p hist 0/0.25/0.5/0.75 | mapo: mean lambda | grpo: p hist 0/0.25/0.5/0.75 | grpo: mean lambda |"
    )
    assert head in table
    assert "| 1 | 0.00 0.00 0.50 0.50 | 0.250 | 0.50 0.50 0.00 0.00 | 0.625 |" in table
    # summary.json's run records: compare.RUN_KEYS, the estimator kept beside the arm
    assert all(list(r) == list(compare.RUN_KEYS) for r in summary["runs"])
    assert [(r["arm"], r["estimator"], r["overrides"]) for r in summary["runs"]] == [
        ("mapo", "mapo", []),
        ("grpo", "grpo", []),
    ]


def test_mapo_settings_compose_each_run_once(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Each run's config composed as main_ppo composes it (config dir, name, overrides), once; settings_from_config
    reads it; the defaults where it refuses (KL in the reward) or nothing composes. (Fakes: no Hydra, no verl.)"""
    composed = []

    def fake_compose(config_path: str, config_name: str, overrides) -> dict:
        overrides = tuple(overrides)
        composed.append((config_path, config_name, overrides))
        if config_name == "broken":
            raise ComposeError("cannot compose broken")
        mapo = dict(o.removeprefix("algorithm.mapo.").split("=") for o in overrides if o.startswith("algorithm.mapo."))
        return {"algorithm": {"use_kl_in_reward": "algorithm.use_kl_in_reward=true" in overrides, "mapo": mapo}}

    def settings_from_config(algorithm: dict) -> MapoSettings:
        if algorithm["use_kl_in_reward"]:
            raise ValueError("KL in the reward")
        mapo = algorithm["mapo"]
        return MapoSettings(success_threshold=float(mapo.get("success_threshold", 1.0)), lambda_fn=mapo["lambda_fn"])

    plugin = types.ModuleType("mapo_verl.verl_plugin")
    plugin.settings_from_config = settings_from_config
    monkeypatch.setitem(sys.modules, "mapo_verl.verl_plugin", plugin)
    monkeypatch.setattr("mapo_verl.compose.compose", fake_compose)
    compare._mapo_settings.cache_clear()
    try:
        mine = ("algorithm.mapo.success_threshold=0.5", "algorithm.mapo.lambda_fn=linear")

        def spec(seed: int, *overrides: str, config: str = compare.Settings.config):
            settings = _settings(overrides=(*mine, *overrides), config=config)
            return compare.run_spec(settings, "mapo", seed, tmp_path / f"s{seed}", tmp_path / "m", tmp_path / "d")

        first = spec(1)
        assert compare.mapo_settings(first) == MapoSettings(success_threshold=0.5, lambda_fn="linear")
        assert compare.mapo_settings(first) == compare.mapo_settings(spec(1))
        assert composed == [(str(CONFIG_DIR), first.config_name, first.overrides)]  # once, as main_ppo's
        assert compare.mapo_settings(spec(2)).lambda_fn == "linear" and len(composed) == 2
        assert compare.mapo_settings(spec(3, "algorithm.use_kl_in_reward=true")) == MapoSettings()
        assert compare.mapo_settings(spec(4, config="broken")) == MapoSettings()
    finally:
        compare._mapo_settings.cache_clear()


def test_missing_log_reads_as_empty_run(tmp_path: Path) -> None:
    result = compare.read_run(tmp_path / "absent")
    assert result["val_acc"] == [] and result["steps"] == 0


def _args(*argv: str) -> argparse.Namespace:
    return compare.build_parser().parse_args(["--out", "x", *argv])


def test_settings_quick_defaults_and_errors() -> None:
    s = compare.settings_of(_args("--quick"))
    assert [a.name for a in s.arms] == ["mapo", "grpo"] and s.seeds == (1, 2) and s.steps == compare.QUICK["steps"]
    with pytest.raises(ValueError, match="not a Hydra override"):
        compare.settings_of(_args("oops"))
    with pytest.raises(ValueError, match="--seeds"):
        compare.settings_of(_args("--seeds", "0"))
    with pytest.raises(ValueError, match="--mini-batch must divide --prompts"):
        compare.settings_of(_args("--prompts", "16", "--mini-batch", "5"))
    assert cli_main(["compare", "--out", "x", "--steps", "0"]) == 2
    assert compare.main(["--out", "x", "--jobs", "0"]) == 2


def test_parser_and_quick_preset_come_from_one_declaration() -> None:
    parser = compare.build_parser()
    actions = {a.dest: a for a in parser._actions}
    knobs = [*fields(compare.Invocation), *fields(compare.Settings)]
    assert set(actions) == {k.name for k in knobs} | {"help", "quick"}  # every field has its flag, nothing else
    for knob in knobs:  # the flag is the field's name with dashes (the positional: the overrides)
        flag = knob.name.replace("_", "-")
        assert actions[knob.name].option_strings == ([] if knob.name == "overrides" else [f"--{flag}"])
        assert knob.metadata["help"] in actions[knob.name].help
    old_flags = "out estimators seeds steps test-freq quick backend config prompts n mini-batch lr warm-epochs target"
    old_flags += " colours val-samples arms reference negative-control positive-control"
    assert {f"--{f}" for f in (*old_flags.split(), "cache-dir", "timeout", "jobs")} <= set(
        parser._option_string_actions
    )
    # no flag: the fields' defaults, which are the declared command-line defaults through each knob's converter
    defaults = compare.settings_of(_args())
    assert defaults == compare.Settings()
    for knob in fields(compare.Settings):
        text = knob.metadata["default"]
        if knob.name != "overrides" and text is not None:  # each flag given its declared default changes nothing
            assert compare.settings_of(_args(f"--{knob.name.replace('_', '-')}", str(text))) == defaults
    assert (defaults.arms, defaults.seeds) == ((compare.Arm("mapo", "mapo"), compare.Arm("grpo", "grpo")), (1, 2))
    # --quick: exactly the preset (the knobs marked quick), as if each of its flags were given
    assert compare.QUICK == {"arms": "mapo,grpo", "seeds": "2", "steps": 8, "test_freq": 2}
    assert {k.name: k.metadata["default"] for k in fields(compare.Settings) if k.metadata["quick"]} == compare.QUICK
    spelled = [a for name, value in compare.QUICK.items() for a in (f"--{name.replace('_', '-')}", str(value))]
    quick = compare.settings_of(_args("--quick"))
    assert quick == compare.settings_of(_args(*spelled)) == defaults
    # given flags win over the preset; --test-freq left out stays within --steps
    s = compare.settings_of(_args("--quick", "--steps", "3", "--seeds", "1", "--estimators", "grpo"))
    assert (s.arms, s.seeds, s.steps, s.test_freq) == ((compare.Arm("grpo", "grpo"),), (1,), 3, 2)
    assert compare.settings_of(_args("--quick", "--steps", "1")).test_freq == 1
    assert compare.settings_of(_args("--estimators", "")).arms == defaults.arms  # empty: left out
    assert compare.settings_of(_args("--arms", "")).arms == defaults.arms
    every = compare.settings_of(
        _args(
            *("--backend", "gpu", "--config", "c", "--prompts", "4", "--n", "2", "--mini-batch", "2", "--lr", "0.5"),
            *("--train-size", "9", "--test-size", "3", "--warm-epochs", "1", "--target", "0.9", "--test-freq", "7"),
            *("--colours", "3"),
            "a.b=1",
        )
    )
    assert every == compare.Settings(
        backend="gpu", config="c", prompts=4, n=2, mini_batch=2, lr=0.5, train_size=9, test_size=3, warm_epochs=1,
        target=0.9, test_freq=7, colours=3, overrides=("a.b=1",),
    )  # fmt: skip
    run = compare.invocation_of(_args("--cache-dir", "d", "--timeout", "5", "--jobs", "3"), "cpu")
    assert run == compare.Invocation(out="x", cache_dir="d", timeout=5.0, jobs=3)
    assert [compare.invocation_of(_args(), b).jobs for b in ("cpu", "gpu")] == [
        compare.JOBS["cpu"],
        compare.JOBS["gpu"],
    ]


def test_run_specs_share_seeds_and_pass_user_overrides(tmp_path: Path) -> None:
    s = _settings(overrides=("actor_rollout_ref.actor.optim.lr=1e-5",))
    specs = {
        e: compare.run_spec(s, e, 2, tmp_path / "run", tmp_path / "model", tmp_path / "data") for e in ("mapo", "grpo")
    }
    for est, spec in specs.items():
        args = spec.main_ppo_args()
        assert f"algorithm.adv_estimator={est}" in args
        assert "data.seed=2" in args and "actor_rollout_ref.rollout.seed=2" in args
        assert f"actor_rollout_ref.actor.ppo_mini_batch_size={s.mini_batch}" in args
        assert [a for a in args if a.startswith("actor_rollout_ref.actor.optim.lr=")] == [
            "actor_rollout_ref.actor.optim.lr=1e-5"
        ]
        assert spec.env["VERL_PLATFORM"] == "cpu"
    differ = set(specs["mapo"].main_ppo_args()) ^ set(specs["grpo"].main_ppo_args())
    assert {a.split("=")[0] for a in differ} == {"algorithm.adv_estimator", "trainer.experiment_name"}
    gpu = compare.run_spec(
        _settings(backend="gpu", config="mapo_geo3k_qwen2_5_vl_7b", overrides=("trainer.nnodes=4",)),
        "grpo",
        1,
        tmp_path / "g",
        None,
        None,
    )
    assert "trainer.nnodes=4" in gpu.main_ppo_args() and "VERL_PLATFORM" not in {
        k for k, v in gpu.env.items() if v == "cpu"
    }
    assert not any(a.startswith("actor_rollout_ref.model.path=") for a in gpu.main_ppo_args())
    assert gpu.env["VERL_FILE_LOGGER_PATH"] == str(tmp_path / "g" / "metrics.jsonl")


def test_shapes_task_is_balanced_deterministic_and_scored(tmp_path: Path) -> None:
    items = shapes.generate(64, seed=0)
    assert [i.image for i in items] == [i.image for i in shapes.generate(64, seed=0)]
    assert Counter((i.kind, i.answer) for i in items) == {
        **{("count", a): 4 for a in "1234"},  # shapes.COUNT_SHARE = 1/4 of the questions
        **{("colour", a): 24 for a in "12"},
    }
    assert Counter(i.kind for i in shapes.generate(8, seed=0, count_share=0.5)) == {"count": 4, "colour": 4}
    with pytest.raises(ValueError, match="count_share"):
        shapes.generate(8, seed=0, count_share=1.5)
    with pytest.raises(SystemExit):  # argparse's usage error, before anything is written
        shapes.main(["--local-save-dir", str(tmp_path / "bad"), "--count-share", "1.5", "--no-progress"])
    assert not (tmp_path / "bad").exists()
    assert (
        shapes.main(["--local-save-dir", str(tmp_path), "--train-size", "8", "--test-size", "4", "--no-progress"]) == 0
    )
    rows = pq.read_table(tmp_path / "train.parquet").to_pylist()
    assert len(rows) == 8 and pq.read_table(tmp_path / "test.parquet").num_rows == 4
    row = rows[0]
    assert row["data_source"] == shapes.DATA_SOURCE and row["prompt"][0]["content"].startswith("<image>")
    truth = row["reward_model"]["ground_truth"]
    assert compute_score(row["data_source"], f"<think> a </think> \\boxed{{{truth}}}", truth)["score"] == 1.0
    assert compute_score(row["data_source"], "<think> a </think> \\boxed{9}", truth)["acc"] == 0.0


def test_format_examples_never_carry_the_answers(tmp_path: Path) -> None:
    shapes.main(["--local-save-dir", str(tmp_path), "--train-size", "64", "--test-size", "4", "--no-progress"])
    examples = compare.format_examples(tmp_path / "train.parquet", count=64)
    rows = pq.read_table(tmp_path / "train.parquet").to_pylist()
    kinds = [compare.question_kind(row["prompt"][-1]["content"]) for row in rows]
    assert len(examples) == sum(len(shapes.answers(kind)) for kind in kinds)
    start = 0
    for row, kind in zip(rows, kinds, strict=True):  # each prompt with every answer its question allows, once
        mine = examples[start : start + len(shapes.answers(kind))]
        start += len(mine)
        assert {e.images for e in mine} == {tuple(img["bytes"] for img in row["images"])}
        assert sorted(e.answer for e in mine) == sorted(shapes.answers(kind))
        assert {e.truth for e in mine} == {row["reward_model"]["ground_truth"]}
