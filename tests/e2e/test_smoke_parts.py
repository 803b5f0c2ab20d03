"""The smoke command's parts that run without the trainer: overrides, data preparation, warm-start examples."""

from __future__ import annotations

import pyarrow.parquet as pq
import pytest

from mapo_verl_cpu.experiments import smoke
from mapo_verl_cpu.fixtures import smoke_data
from mapo_verl_cpu.runners import spec
from mapo_verl_cpu.runners.local import progress_message
from mapo_verl_cpu.runners.rollouts import ROLLOUTS


def test_user_overrides_replace_the_smokes_own_for_the_same_key():
    base = ["trainer.resume_mode=disable", "+ray_kwargs.ray_init.num_gpus=1", "data.train_batch_size=4"]
    merged = spec.merge_overrides(base, ["trainer.resume_mode=auto", "ray_kwargs.ray_init.num_gpus=2", "x.y=1"])
    assert merged == ["data.train_batch_size=4", "trainer.resume_mode=auto", "ray_kwargs.ray_init.num_gpus=2", "x.y=1"]


def test_overrides_keep_the_shipped_config_and_select_the_cpu_backend(tmp_path):
    overrides = smoke.smoke_overrides(
        model_dir=tmp_path / "m", data_dir=tmp_path / "d", out=tmp_path / "o", steps=2, estimator="mapo", prompts=4, n=4
    )
    keys = {spec.override_key(o): o.split("=", 1)[1] for o in overrides}
    assert keys["actor_rollout_ref.rollout.name"] == "hf"
    assert keys["algorithm.adv_estimator"] == "mapo"
    assert keys["trainer.total_training_steps"] == "2"
    assert "reward.custom_reward_function.path" not in keys  # the shipped config's router reward is kept
    assert spec.CONFIG_DIR.joinpath(f"{spec.DEFAULT_CONFIG}.yaml").is_file()


def test_bad_arguments_are_rejected_before_any_work(capsys):
    assert smoke.main(["--n", "1"]) == 2
    assert smoke.main(["not-an-override"]) == 2
    assert "key=value" in capsys.readouterr().err


@pytest.mark.slow
@pytest.mark.parametrize("kind", ["generated", "real"])
def test_data_prep_geo3k_prepares_the_smoke_data(tmp_path, kind):
    if kind == "real" and not smoke_data.realdata_geo3k().is_dir():
        pytest.skip(f"{smoke_data.realdata_geo3k()} not present")
    prepared, _ = smoke_data.prepare_data(tmp_path, kind)
    train = pq.read_table(prepared / "train.parquet").to_pylist()
    test = pq.read_table(prepared / "test.parquet").to_pylist()
    assert (len(train), len(test)) == (8, 2)
    for row in train + test:
        assert row["data_source"] == "hiyouga/geometry3k"
        assert row["prompt"][-1]["content"].count("<image>") == len(row["images"]) == 1
        assert row["reward_model"]["ground_truth"].strip()
    examples = smoke_data.warm_start_examples(prepared / "train.parquet")
    assert len(examples) == 8 and all(len(ex.images) == 1 for ex in examples)


def test_progress_lines_from_the_trainers_ray_output():
    lines = {
        "\x1b[36m(TaskRunnerV1 pid=1566)\x1b[0m step:0 - val-aux/x:0.1": None,  # validation, not a training step
        "\x1b[36m(TaskRunnerV1 pid=1566)\x1b[0m step:2 - global_seqlen/min:2320.0 - x:1": "step 2/3 done",
        "(TaskRunnerV1 pid=7, ip=10.0.0.1) LLMServerManager: ['hf://hf_server_0_0']": (
            "workers and the hf rollout server are up"
        ),
        "Training Progress:  50%|#####     | 1/2": None,
    }
    for line, expected in lines.items():
        assert progress_message(line, 3, (ROLLOUTS["hf"].ready_marker,)) == expected, line
