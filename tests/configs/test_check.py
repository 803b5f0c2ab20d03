"""`python -m mapo_verl check`: a good config passes; each planted mistake is caught by name."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest

from mapo_verl.check import (
    all_wrong_group,
    reachable_scores,
    run_checks,
    verl_group_estimators,
    verl_placeholder_model_path,
)
from mapo_verl.compose import ComposeError, compose

# every check composes a config and runs verl's validate_config (about a second each): full tier only
pytestmark = pytest.mark.slow

CONFIG_DIR = str(Path(__file__).resolve().parents[2] / "trainer_configs")
NAME = "mapo_geo3k_qwen2_5_vl_7b"


@pytest.fixture
def good(data_root, reward_file) -> list[str]:
    """Overrides that make the 7B MAPO config pass on this machine (fixture data and reward file)."""
    return [f"mapo_data_dir={data_root}", f"reward.custom_reward_function.path={reward_file}"]


def _check(overrides: list[str], name: str = NAME, config_path: str | None = CONFIG_DIR):
    return run_checks(compose(config_path, name, overrides))


def _failed(report, *needles: str) -> None:
    text = "\n".join(report.problems)
    assert report.problems, report.render()
    for needle in needles:
        assert needle in text, f"{needle!r} not in problems:\n{report.render()}"


@pytest.mark.parametrize(
    "name",
    [
        "mapo_geo3k_qwen2_5_vl_7b",
        "dapo_emoset_qwen2_5_vl_7b",
        "mapo_geo3k_qwen2_5_vl_3b_small",
        "eval_math_qwen2_5_vl_7b",
    ],
)
def test_good_configs_pass(good, name):
    report = _check(good, name)
    assert not report.problems, report.render()
    assert "validate_config passes" in report.render()


def test_router_threshold_is_reachable(data_root):
    report = _check([f"mapo_data_dir={data_root}"])
    assert "success is reachable: router scores 0, 0.1, 0.9, 1" in report.render()
    assert not [p for p in report.problems if "success_threshold" in p]


def test_format_bonus_in_an_all_wrong_group_is_announced(data_root):
    report = _check([f"mapo_data_dir={data_root}"])
    warn = [m for lvl, m in report.lines if lvl == "warn" and "no answer is correct" in m]
    assert len(warn) == 1 and "+11.0 = G - 1 at G=12 (GRPO: +3.2)" in warn[0], report.render()
    assert all_wrong_group(12, 0.1) == pytest.approx((11.0, 11 / 12**0.5), rel=1e-3)
    quiet = _check([f"mapo_data_dir={data_root}", "reward.custom_reward_function.reward_kwargs.format_weight=0"])
    assert not [m for lvl, m in quiet.lines if "no answer is correct" in m]


def test_overlong_penalty_without_the_dapo_manager_is_not_flagged(data_root):
    report = _check([f"mapo_data_dir={data_root}", "+reward.reward_kwargs.overlong_buffer_cfg.enable=true"])
    assert not [p for p in report.problems if "overlong" in p], report.render()


def test_verl_facts_come_from_verl():
    from verl.trainer.ppo import core_algos

    groups = verl_group_estimators()
    assert {"mapo", "grpo", "grpo_vectorized", "rloo", "opo"} <= groups
    assert not {"gae", "remax", "reinforce_plus_plus"} & groups
    core_algos.ADV_ESTIMATOR_REGISTRY["probe_group_est"] = lambda token_level_rewards, response_mask, index: None
    try:
        assert "probe_group_est" in verl_group_estimators()  # follows verl's registry, not a copied list
    finally:
        del core_algos.ADV_ESTIMATOR_REGISTRY["probe_group_est"]
    default = compose(None, "ppo_trainer", [])
    assert verl_placeholder_model_path() == default.actor_rollout_ref.model.path


def test_reachable_scores():
    assert reachable_scores(0.1) == pytest.approx([0.0, 0.1, 0.9, 1.0])
    assert reachable_scores(0.0) == [0.0, 1.0]


@pytest.mark.parametrize(
    ("overrides", "needles"),
    [
        (["actor_rollout_ref.rollout.n=1"], ["actor_rollout_ref.rollout.n=1", "n >= 2"]),
        (["algorithm.mapo.success_threshold=1.5"], ["success_threshold=1.5 is never reached"]),
        (["algorithm.mapo.success_threshold=0", "algorithm.mapo.reward_min=-1"], ["reached by every response"]),
        (["algorithm.mapo.success_threshold=0"], ["success_threshold=0 must lie above algorithm.mapo.reward_min=0"]),
        (["algorithm.mapo.reward_min=0.05"], ["reward_min=0.05 lies above the router's lowest score 0"]),
        (
            ["algorithm.use_kl_in_reward=true"],
            ["algorithm.use_kl_in_reward=true", "actor_rollout_ref.actor.use_kl_loss=true"],
        ),
        (
            [
                "reward.reward_manager.name=dapo",
                "+reward.reward_kwargs.overlong_buffer_cfg.enable=true",
                "+reward.reward_kwargs.overlong_buffer_cfg.len=512",
                "+reward.reward_kwargs.max_resp_len=2048",
            ],
            ["reward.reward_kwargs.overlong_buffer_cfg.enable=true with reward.reward_manager.name=dapo", "=false"],
        ),
        (["reward.custom_reward_function.reward_kwargs.format_weight=1.5"], ["format_weight=1.5 must lie in [0, 1]"]),
        (["+algorithm.mapo.lamda_fn=tcr"], ["algorithm.mapo.lamda_fn"]),
        (["algorithm.mapo.lambda_fn=cosine"], ["lambda_fn='cosine'"]),
        (["algorithm.adv_estimator=mappo"], ["algorithm.adv_estimator=mappo is not a registered"]),
        (
            ["actor_rollout_ref.actor.use_dynamic_bsz=false", "data.train_batch_size=5"],
            ["validate_config for 1 node(s) x 8 GPU(s) = 8", "real_train_batch_size (60) must be divisible"],
        ),
        (["data.train_batch_size=5"], ["5 prompts x n=12 = 60 responses per step", "8 GPUs"]),
        (["trainer.n_gpus_per_node=1"], ["tensor_model_parallel_size=2", "does not divide the 1 GPUs"]),
        (["data.image_key=image"], ["lacks column(s) image", "data.image_key=image"]),
        (
            ["mapo_data_dir=/nonexistent/mapo"],
            [
                "/nonexistent/mapo/geo3k/train.parquet does not exist",
                "python -m data_prep.geo3k --local-save-dir /nonexistent/mapo/geo3k",
            ],
        ),
        (["actor_rollout_ref.model.path=/nonexistent/model"], ["model.path=/nonexistent/model: no such directory"]),
        (["actor_rollout_ref.model.path=not a model"], ["neither an existing directory nor a Hub id"]),
        (["reward.custom_reward_function.name=nope"], ["cannot load nope"]),
        (["actor_rollout_ref.rollout.name=???"], ["mandatory value(s) not set", "actor_rollout_ref.rollout.name"]),
    ],
)
def test_planted_mistakes(data_root, overrides, needles):
    # with the shipped reward (pkg://reward_fns.router): only the planted problem is asserted on
    _failed(_check([f"mapo_data_dir={data_root}", *overrides]), *needles)


def test_missing_paper_prompt_data_names_its_preparer(data_root):
    # the authors'-prompt folders (NAME_paper) are written by data_prep.NAME --prompt-style paper
    report = _check([f"mapo_data_dir={data_root}"], name="eval_math_paper_qwen2_5_vl_7b")
    _failed(report, "python -m data_prep.mathvista --prompt-style paper --local-save-dir")
    assert "data_prep.mathvista_paper" not in report.render()


def test_unresolvable_interpolation(good):
    _failed(_check([*good, "data.train_files=${oc.env:MAPO_TEST_SURELY_UNSET_VAR}"]), "does not resolve")


def test_local_model_dir(good, tmp_path):
    (tmp_path / "m").mkdir()
    _failed(_check([*good, f"actor_rollout_ref.model.path={tmp_path / 'm'}"]), "no config.json")
    (tmp_path / "m" / "config.json").write_text("{}")
    assert not _check([*good, f"actor_rollout_ref.model.path={tmp_path / 'm'}"]).problems


def test_verl_default_config_names_no_model(data_root, reward_file):
    files = f"{data_root}/geo3k"
    report = _check(
        [
            "algorithm.adv_estimator=mapo",
            "actor_rollout_ref.rollout.n=4",
            "actor_rollout_ref.rollout.name=vllm",
            f"data.train_files={files}/train.parquet",
            f"data.val_files={files}/test.parquet",
            "actor_rollout_ref.rollout.log_prob_micro_batch_size_per_gpu=1",
            "actor_rollout_ref.ref.log_prob_micro_batch_size_per_gpu=1",
            "actor_rollout_ref.actor.ppo_micro_batch_size_per_gpu=1",
            "actor_rollout_ref.actor.ppo_mini_batch_size=8",
        ],
        name="ppo_trainer",
        config_path=None,
    )
    _failed(report, "actor_rollout_ref.model.path is not set")


def test_missing_column_is_named(good, data_root, tmp_path):
    bad = tmp_path / "train.parquet"
    pd.read_parquet(data_root / "geo3k" / "train.parquet").drop(columns=["images"]).to_parquet(bad)
    _failed(_check([*good, f"data.train_files={bad}"]), f"{bad} lacks column(s) images")


def test_relative_config_path_is_refused_like_main_ppo(monkeypatch):
    monkeypatch.chdir(Path(CONFIG_DIR).parent)
    with pytest.raises(ComposeError, match=r"absolute path: --config-path /.*trainer_configs"):
        compose("trainer_configs", NAME, [])
    with pytest.raises(ComposeError, match="cannot compose"):
        compose(CONFIG_DIR, "no_such_config", [])


def test_cli_exit_status(good, subprocess_env, tmp_path):
    cmd = [sys.executable, "-m", "mapo_verl", "check", "--config-path", CONFIG_DIR, "--config-name", NAME, *good]
    ok = subprocess.run(cmd, capture_output=True, text=True, timeout=180, env=subprocess_env, cwd=tmp_path)
    assert ok.returncode == 0, ok.stdout + ok.stderr
    assert "pre-flight check passed" in ok.stdout
    # the plugin not loading is a problem too: entry points off, as on a node where mapo-verl is missing
    env = {**subprocess_env, "VERL_USE_EXTERNAL_PLUGINS": "none"}
    bad = subprocess.run(
        [*cmd, "actor_rollout_ref.rollout.n=1"], capture_output=True, text=True, timeout=180, env=env, cwd=tmp_path
    )
    assert bad.returncode == 1, bad.stdout + bad.stderr
    assert "mapo estimator is not registered after `import verl`" in bad.stdout
    assert "actor_rollout_ref.rollout.n=1" in bad.stdout


@pytest.mark.parametrize("nodes_gpus", [("1", "0"), ("0", "8")])
def test_zero_gpus_is_a_clear_failure_not_a_crash(good, nodes_gpus):
    """A CPU-only Slurm allocation gives trainer.n_gpus_per_node=0: the check names the keys, never crashes."""
    nnodes, per_node = nodes_gpus
    report = _check([*good, f"trainer.nnodes={nnodes}", f"trainer.n_gpus_per_node={per_node}"])
    _failed(report, f"trainer.nnodes={nnodes} x trainer.n_gpus_per_node={per_node} = 0 GPUs: nothing to train on")
    assert "crashed" not in report.render() and "ZeroDivisionError" not in report.render()


def test_a_success_key_lets_shaped_rewards_through(data_root):
    """With ``algorithm.mapo.success_key=acc`` p counts the reward's acc field: KL in the reward and DAPO's overlong
    penalty pass the check (without the key the same overrides fail, above)."""
    shaped = [
        f"mapo_data_dir={data_root}",
        "algorithm.mapo.success_key=acc",
        "algorithm.mapo.reward_min=-1",
        "algorithm.use_kl_in_reward=true",
        "reward.reward_manager.name=dapo",
        "+reward.reward_kwargs.overlong_buffer_cfg.enable=true",
        "+reward.reward_kwargs.overlong_buffer_cfg.len=512",
        "+reward.reward_kwargs.max_resp_len=2048",
    ]
    report = _check(shaped)
    text = report.render()
    assert not [p for p in report.problems if "overlong" in p or "use_kl_in_reward" in p], text
    assert "success_key=acc" in text and "p counts the reward's acc field" in text
