"""``compare``'s honest set-up: held-out pictures disjoint from training by content, a warm start that teaches the
format only (balanced epochs, the picture's answer exactly as often as chance), and seed k's model and data for
every arm of seed k (the rollout's reproducible sampling: tests/runs/test_seeded_sampling.py and
tests/e2e/test_hf_rollout.py)."""

from __future__ import annotations

import importlib.util
import shlex
import sys
from collections import Counter
from pathlib import Path

import pyarrow.parquet as pq
import pytest

from data_prep import shapes
from mapo_verl_cpu.experiments import compare
from mapo_verl_cpu.fixtures.tiny_model import WarmStartExample, balanced_order, picture_to_answer


def _hashes(parquet: Path) -> set[str]:
    return {shapes.picture_hash(img["bytes"]) for row in pq.read_table(parquet).to_pylist() for img in row["images"]}


def test_held_out_pictures_are_disjoint_from_training_pictures_by_content(tmp_path: Path) -> None:
    # without the exclusion the two seeds' draws do collide (a shape at the largest size has one position)
    train = shapes.generate(512, seed=0, colour_count=4)
    plain = shapes.generate(64, seed=1, colour_count=4)
    train_hashes = {shapes.picture_hash(i.image) for i in train}
    assert {shapes.picture_hash(i.image) for i in plain} & train_hashes, "no collision to guard against any more"
    fixed = shapes.generate(64, seed=1, colour_count=4, exclude=frozenset(train_hashes))
    assert not {shapes.picture_hash(i.image) for i in fixed} & train_hashes
    assert Counter((i.kind, i.answer) for i in fixed) == Counter((i.kind, i.answer) for i in plain)  # still balanced
    # the preparer as compare runs it: the written splits share no picture
    args = ["--train-size", "512", "--test-size", "64", "--colours", "4", "--no-progress"]
    assert shapes.main(["--local-save-dir", str(tmp_path), *args]) == 0
    assert not _hashes(tmp_path / "train.parquet") & _hashes(tmp_path / "test.parquet")


def test_four_colours_are_balanced_and_named_in_the_question() -> None:
    items = shapes.generate(64, seed=0, colour_count=4)
    assert Counter((i.kind, i.answer) for i in items) == {
        **{("count", a): 4 for a in "1234"},
        **{("colour", a): 12 for a in "1234"},
    }
    question = shapes.colour_question(4)
    assert question == "What colour is the shape? Answer 1 for red, 2 for green, 3 for blue, 4 for yellow."
    assert shapes.question_kind(question) == "colour" and shapes.colour_question(2) == shapes.COLOUR_QUESTION
    with pytest.raises(ValueError, match="colours must be 2 to 4"):
        shapes.colours(5)
    with pytest.raises(SystemExit):
        shapes.main(["--local-save-dir", "unused", "--colours", "5"])


def test_the_format_warm_start_sees_every_pair_equally_and_the_pictures_answer_at_chance(tmp_path: Path) -> None:
    args = ["--local-save-dir", str(tmp_path), "--train-size", "64", "--colours", "4", "--no-progress"]
    assert shapes.main(args) == 0
    examples = compare.format_examples(tmp_path / "train.parquet", count=64, colours=4)
    assert len(examples) == 64 * 4
    order = balanced_order(len(examples), 2 * len(examples), seed=3)
    assert Counter(order) == {k: 2 for k in range(len(examples))}  # two whole epochs
    assert order != balanced_order(len(examples), 2 * len(examples), seed=4)
    shares = picture_to_answer(examples, order)
    assert {shapes.question_kind(q) for q in shares} == {"colour", "count"}
    for share in shares.values():
        assert share["share"] == share["chance"] == 0.25
    # the old way (draws with replacement) is what this guards against: a share away from chance
    biased = [WarmStartExample("q", a, truth="1") for a in "12"]
    assert picture_to_answer(biased, [0, 0, 0, 1]) == {"q": {"steps": 4, "share": 0.75, "chance": 0.5}}


def test_seed_k_of_every_arm_starts_from_seed_ks_model_and_draws(tmp_path: Path) -> None:
    settings = compare.Settings(arms=compare.parse_arms("grpo,mapo,apd"), seeds=(1, 2, 3), steps=4, test_freq=2)
    models = {seed: tmp_path / f"model-{seed}" for seed in settings.seeds}
    specs = compare.plan_runs(settings, tmp_path, models, tmp_path / "data")
    for (arm, seed), spec in specs.items():
        args = spec.main_ppo_args()
        assert f"actor_rollout_ref.model.path={models[seed]}" in args, (arm, seed)
        assert f"data.seed={seed}" in args and f"actor_rollout_ref.rollout.seed={seed}" in args
        assert "trainer.balance_batch=False" in args  # whole groups per PPO mini-batch, whatever the arrival order
    assert [compare.model_spec(s).seed for s in (1, 2)] == [1, 2]
    assert compare.model_spec(1).initializer_range == compare.COMPARE_MODEL_SPEC.initializer_range


def test_held_out_answers_are_sampled_by_default_and_greedy_on_request(tmp_path: Path) -> None:
    def val_kwargs(**kw) -> dict[str, str]:
        settings = compare.Settings(arms=compare.parse_arms("grpo"), seeds=(1,), steps=2, test_freq=1, **kw)
        args = compare.run_spec(settings, "grpo", 1, tmp_path / "r", tmp_path / "m", tmp_path / "d").main_ppo_args()
        prefix = "actor_rollout_ref.rollout.val_kwargs."
        return dict(a.removeprefix(prefix).split("=", 1) for a in args if a.startswith(prefix))

    assert val_kwargs() == {"temperature": "1.0", "n": "4", "do_sample": "True"}
    assert val_kwargs(val_samples=0) == {"temperature": "0", "n": "1", "do_sample": "False"}
    with pytest.raises(ValueError, match="--val-samples"):
        compare.settings_of(compare.build_parser().parse_args(["--out", "x", "--val-samples", "-1"]))


def test_the_twin_arm_keeps_grpos_settings_with_a_sampling_stream_per_seed_of_its_own(tmp_path: Path) -> None:
    settings = compare.Settings(arms=compare.parse_arms("grpo,grpo-twin"), seeds=(1, 2), steps=2, test_freq=1)
    specs = compare.plan_runs(settings, tmp_path, tmp_path / "m", tmp_path / "d")

    def rollout_seed(arm: str, seed: int) -> str:
        args = specs[(arm, seed)].main_ppo_args()
        return [a for a in args if a.startswith("actor_rollout_ref.rollout.seed=")][-1].split("=")[1]

    assert [rollout_seed("grpo", s) for s in (1, 2)] == ["1", "2"]
    assert [rollout_seed("grpo-twin", s) for s in (1, 2)] == ["10001", "10002"]
    # every other argument is grpo's (the run's own folder and name aside)
    for seed in (1, 2):
        grpo, twin = (
            {a for a in specs[(arm, seed)].main_ppo_args() if "runs/" not in a and "experiment_name" not in a}
            for arm in ("grpo", "grpo-twin")
        )
        assert grpo ^ twin == {f"actor_rollout_ref.rollout.seed={seed}", f"actor_rollout_ref.rollout.seed=1000{seed}"}


def test_every_compare_command_in_the_docs_parses() -> None:
    """docs/learning.md's ``python -m mapo_verl compare`` commands (continuation lines joined) and the study script's
    preset: each one a valid setting, before anything runs."""
    repo = Path(__file__).resolve().parents[2]
    text = (repo / "docs" / "learning.md").read_text().replace("\\\n", " ")
    commands = [line.split("#")[0] for line in text.splitlines() if line.startswith("python -m mapo_verl compare")]
    assert len(commands) >= 4, commands
    for command in commands:
        argv = shlex.split(command)[4:]
        compare.settings_of(compare.build_parser().parse_args(argv))
    spec = importlib.util.spec_from_file_location("study_arms", repo / "benchmarks" / "study_arms.py")
    assert spec is not None and spec.loader is not None
    sys.path.insert(0, str(repo / "benchmarks"))
    try:
        study = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(study)
    finally:
        sys.path.remove(str(repo / "benchmarks"))
    settings = compare.settings_of(compare.build_parser().parse_args(["--quick", *study.STUDY, "--out", "x"]))
    assert [arm.name for arm in settings.arms] == [
        "grpo",
        "mapo",
        "mapo-permuted",
        "apd",
        "grpo-twin",
        "grpo-quarter-lr",
    ]
    assert settings.seeds == tuple(range(1, 9)) and settings.negative_control == ("grpo", "grpo-twin")
