"""Every shipped config composes, carries the paper's setup, and passes verl's validate_config.

Each test composes verl's full config tree (about a second each on two cores): the full tier. The fast tier
checks the configs against docs/fidelity.md from their YAML (tests/configs/test_fidelity.py).
"""

from __future__ import annotations

import subprocess
import sys
import warnings
from pathlib import Path

import pytest
import yaml
from omegaconf import OmegaConf
from verl.trainer.ppo.utils import need_critic, need_reference_policy
from verl.utils.config import validate_config

from mapo_verl.mixed_advantage import DEFAULTS
from mapo_verl.verl_plugin import MAPO_KEYS, settings_from_config

CONFIG_DIR = Path(__file__).resolve().parents[2] / "trainer_configs"
PYTHON = sys.executable
#: Every shipped training/eval config and the GPUs it declares (trainer.nnodes x n_gpus_per_node).
SHIPPED = {
    **{f"{a}_{d}_qwen2_5_vl_7b": 8 for a in ("mapo", "grpo", "dapo") for d in ("geo3k", "emoset")},
    "mapo_geo3k_qwen2_5_vl_3b_small": 4,
    **{f"{a}_{d}_qwen3_vl_8b": 8 for a in ("mapo", "grpo", "dapo") for d in ("geo3k", "emoset")},
    "mapo_geo3k_qwen3_vl_4b": 4,
    "eval_math_qwen2_5_vl_7b": 8,
    "eval_emotion_qwen2_5_vl_7b": 8,
    "eval_math_paper_qwen2_5_vl_7b": 8,
    "eval_emotion_paper_qwen2_5_vl_7b": 8,
}
EVAL = {name for name in SHIPPED if name.startswith("eval_")}
pytestmark = pytest.mark.slow


def _validate(cfg) -> None:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        validate_config(cfg, use_reference_policy=need_reference_policy(cfg), use_critic=need_critic(cfg))


def test_shipped_set_is_complete():
    on_disk = {p.stem for p in CONFIG_DIR.glob("*.yaml")}
    assert on_disk == set(SHIPPED), f"update SHIPPED in conftest.py: {on_disk ^ set(SHIPPED)}"


@pytest.mark.parametrize("name", sorted(SHIPPED))
def test_composes_and_validates_for_declared_gpus(composer, name):
    cfg = composer(name)
    assert cfg.trainer.nnodes * cfg.trainer.n_gpus_per_node == SHIPPED[name]
    OmegaConf.to_container(cfg, resolve=True)  # every interpolation resolves
    _validate(cfg)
    assert set(cfg.algorithm.mapo.keys()) == set(MAPO_KEYS)
    # the YAML preset spells out the settings dataclass's defaults, no value of its own
    assert dict(cfg.algorithm.mapo) == {key: getattr(DEFAULTS, key) for key in MAPO_KEYS}
    reward = cfg.reward.custom_reward_function
    # Training scores with our reward; evaluation with both scorers (ours as acc, the authors' as paper_acc).
    assert reward.path == ("pkg://reward_fns.paper_compat" if name in EVAL else "pkg://reward_fns.router")
    assert reward.name == "compute_score"
    assert reward.reward_kwargs.format_weight == 0.1
    assert reward.reward_kwargs.get("scorer") == ("both" if name in EVAL else None)
    assert not cfg.algorithm.use_kl_in_reward


@pytest.mark.parametrize(
    ("name", "overrides"),
    [
        ("mapo_geo3k_qwen2_5_vl_3b_small", ["trainer.n_gpus_per_node=1"]),
        ("mapo_geo3k_qwen2_5_vl_3b_small", ["trainer.n_gpus_per_node=2"]),
        ("mapo_geo3k_qwen2_5_vl_7b", ["trainer.nnodes=2"]),
        ("grpo_emoset_qwen2_5_vl_7b", ["trainer.nnodes=4"]),
        ("dapo_geo3k_qwen2_5_vl_7b", ["trainer.nnodes=2"]),
    ],
)
def test_documented_gpu_overrides_validate(composer, name, overrides):
    _validate(composer(name, overrides))


def test_paper_setup(composer):
    cfg = composer("mapo_geo3k_qwen2_5_vl_7b")
    arr = cfg.actor_rollout_ref
    assert arr.model.path == "Qwen/Qwen2.5-VL-7B-Instruct"
    assert arr.rollout.n == 12 and cfg.data.train_batch_size == 512 and arr.actor.ppo_mini_batch_size == 128
    assert arr.actor.optim.lr == 1e-6 and arr.actor.optim.weight_decay == 1e-2
    assert arr.actor.use_kl_loss and arr.actor.kl_loss_type == "low_var_kl" and arr.actor.kl_loss_coef == 1e-2
    assert not cfg.algorithm.use_kl_in_reward
    assert cfg.data.max_prompt_length == 2048 and cfg.data.max_response_length == 2048
    assert dict(cfg.data.mm_processor_kwargs) == {"min_pixels": 262144, "max_pixels": 4194304}
    assert arr.rollout.temperature == 1.0 and arr.rollout.top_p == 0.99
    assert arr.rollout.val_kwargs.temperature == 0.5 and arr.rollout.val_kwargs.do_sample
    assert arr.rollout.val_kwargs.top_p == 0.95 and arr.rollout.val_kwargs.n == 1
    # The authors' EasyR1 actor defaults (the full table is checked by test_fidelity.py).
    assert (arr.actor.clip_ratio_low, arr.actor.clip_ratio_high, arr.actor.clip_ratio_c) == (0.2, 0.3, 3.0)
    assert (arr.actor.ppo_epochs, arr.actor.grad_clip, arr.actor.loss_agg_mode) == (1, 1.0, "token-mean")
    assert arr.rollout.tensor_model_parallel_size == 2 and arr.rollout.name == "vllm"
    assert cfg.trainer.n_gpus_per_node == 8 and cfg.trainer.nnodes == 1
    assert cfg.trainer.total_epochs == 20
    assert composer("mapo_emoset_qwen2_5_vl_7b").trainer.total_epochs == 15
    assert cfg.data.image_key == "images" and cfg.data.prompt_key == "prompt"


@pytest.mark.parametrize("dataset", ["geo3k", "emoset"])
def test_grpo_differs_from_mapo_only_in_estimator(composer, dataset):
    mapo = OmegaConf.to_container(composer(f"mapo_{dataset}_qwen2_5_vl_7b"), resolve=True)
    grpo = OmegaConf.to_container(composer(f"grpo_{dataset}_qwen2_5_vl_7b"), resolve=True)
    assert mapo["algorithm"].pop("adv_estimator") == "mapo"
    assert grpo["algorithm"].pop("adv_estimator") == "grpo"
    for run in (mapo, grpo):
        run["trainer"].pop("experiment_name")
        run["trainer"].pop("default_local_dir")
        run["actor_rollout_ref"]["rollout"].pop("trace")  # carries the experiment name
    assert mapo == grpo


@pytest.mark.parametrize("dataset", ["geo3k", "emoset"])
def test_dapo_is_verl_native_dapo(composer, dataset):
    cfg = composer(f"dapo_{dataset}_qwen2_5_vl_7b")
    actor = cfg.actor_rollout_ref.actor
    assert cfg.algorithm.adv_estimator == "grpo"
    assert (actor.clip_ratio_low, actor.clip_ratio_high, actor.loss_agg_mode) == (0.2, 0.28, "token-mean")
    assert cfg.algorithm.filter_groups.enable and cfg.algorithm.filter_groups.metric == "acc"
    assert not actor.use_kl_loss and not cfg.algorithm.use_kl_in_reward
    assert not need_reference_policy(cfg)


def test_small_variant(composer):
    cfg = composer("mapo_geo3k_qwen2_5_vl_3b_small")
    assert cfg.actor_rollout_ref.model.path == "Qwen/Qwen2.5-VL-3B-Instruct"
    assert cfg.actor_rollout_ref.rollout.tensor_model_parallel_size == 1
    assert cfg.actor_rollout_ref.actor.fsdp_config.param_offload
    assert cfg.actor_rollout_ref.actor.fsdp_config.optimizer_offload
    assert cfg.actor_rollout_ref.rollout.n == 12


@pytest.mark.parametrize(
    ("name", "sets"),
    [
        ("eval_math_qwen2_5_vl_7b", ["geo3k", "mathvista", "mathvision", "mathverse"]),
        ("eval_emotion_qwen2_5_vl_7b", ["emoset", "webemo", "emotion6"]),
        ("eval_math_paper_qwen2_5_vl_7b", ["geo3k_paper", "mathvista_paper", "mathvision_paper", "mathverse_paper"]),
        ("eval_emotion_paper_qwen2_5_vl_7b", ["emoset_paper", "webemo_paper", "emotion6_paper"]),
    ],
)
def test_eval_configs_cover_the_test_sets(composer, paper_data_root, name, sets):
    cfg = composer(name, [f"mapo_data_dir={paper_data_root}"])
    assert cfg.trainer.val_only and cfg.trainer.val_before_train
    assert cfg.actor_rollout_ref.rollout.val_kwargs.temperature == 0.5
    assert cfg.actor_rollout_ref.rollout.val_kwargs.top_p == 0.95
    assert [Path(f).parent.name for f in cfg.data.val_files] == sets
    assert all(Path(f).is_file() for f in cfg.data.val_files)
    assert cfg.reward.custom_reward_function.path == "pkg://reward_fns.paper_compat"
    assert not need_reference_policy(cfg)


@pytest.fixture(scope="module")
def paper_data_root(data_root, tmp_path_factory) -> Path:
    """The fixture data root plus the ``<name>_paper`` folders that ``--prompt-style paper`` writes."""
    import shutil

    root = tmp_path_factory.mktemp("paper_data")
    for folder in data_root.iterdir():
        shutil.copytree(folder, root / folder.name)
        shutil.copytree(folder, root / f"{folder.name}_paper")
    return root


@pytest.mark.parametrize("scorer", ["paper", "both"])
def test_eval_reward_loads_and_scores_as_configured(composer, scorer):
    """The eval configs' reward, loaded the way verl loads it, with the configured kwargs."""
    from verl.trainer.ppo.reward import get_custom_reward_fn

    cfg = composer("eval_math_qwen2_5_vl_7b", [f"reward.custom_reward_function.reward_kwargs.scorer={scorer}"])
    fn = get_custom_reward_fn(cfg)  # binds reward_kwargs (format_weight, scorer) as verl does
    right = fn(data_source="AI4Math/MathVista", solution_str="<think>a</think> \\boxed{B}", ground_truth="B")
    assert right["acc"] == right["paper_acc"] == 1.0 and right["score"] == 1.0
    # The authors' rule reads a box holding the option text as wrong; ours accepts it (extra_info carries options).
    text = fn(
        data_source="AI4Math/MathVista",
        solution_str="<think>a</think> \\boxed{12}",
        ground_truth="B",
        extra_info={"options": ["10", "12"]},
    )
    assert text["paper_acc"] == 0.0
    assert text["acc"] == (0.0 if scorer == "paper" else 1.0)


def test_data_root_convention(composer, monkeypatch, tmp_path):
    monkeypatch.setenv("MAPO_DATA_DIR", str(tmp_path))
    cfg = composer("mapo_emoset_qwen2_5_vl_7b")
    assert cfg.data.train_files == f"{tmp_path}/emoset/train.parquet"
    monkeypatch.delenv("MAPO_DATA_DIR")
    assert composer("mapo_emoset_qwen2_5_vl_7b").data.train_files == str(Path.home() / "data/mapo/emoset/train.parquet")


def test_plain_override_of_mapo_knob(composer):
    cfg = composer("mapo_geo3k_qwen2_5_vl_7b", ["algorithm.mapo.lambda_fn=linear"])
    assert settings_from_config(cfg.algorithm).lambda_fn == "linear"


def test_literal_usage_on_verl_default_config():
    from hydra import compose, initialize_config_module
    from hydra.core.global_hydra import GlobalHydra

    GlobalHydra.instance().clear()
    try:
        with initialize_config_module("verl.trainer.config", version_base=None):
            cfg = compose("ppo_trainer", ["algorithm.adv_estimator=mapo", "+algorithm.mapo.lambda_fn=linear"])
    finally:
        GlobalHydra.instance().clear()
    settings = settings_from_config(cfg.algorithm)
    assert (settings.lambda_fn, settings.success_threshold) == ("linear", 1.0)


def _cfg_job(args: list[str], env: dict[str, str], cwd: Path) -> dict:
    proc = subprocess.run(
        [PYTHON, "-m", "verl.trainer.main_ppo", *args, "--cfg", "job"],
        capture_output=True,
        text=True,
        timeout=180,
        env=env,
        cwd=cwd,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    return yaml.safe_load(proc.stdout)


def test_main_ppo_cfg_job_with_shipped_config(subprocess_env, tmp_path):
    job = _cfg_job(
        [
            "--config-path",
            str(CONFIG_DIR),
            "--config-name",
            "mapo_geo3k_qwen2_5_vl_7b",
            "algorithm.mapo.lambda_fn=linear",
        ],
        subprocess_env,
        tmp_path,  # any working directory: the config path is absolute
    )
    assert job["algorithm"]["adv_estimator"] == "mapo"
    assert job["algorithm"]["mapo"] == {**{key: getattr(DEFAULTS, key) for key in MAPO_KEYS}, "lambda_fn": "linear"}
    assert job["actor_rollout_ref"]["rollout"]["n"] == 12
    assert job["trainer"]["experiment_name"] == "mapo_geo3k_qwen2_5_vl_7b"


def test_main_ppo_cfg_job_literal_default_config(subprocess_env, tmp_path):
    job = _cfg_job(["algorithm.adv_estimator=mapo", "+algorithm.mapo.lambda_fn=linear"], subprocess_env, tmp_path)
    assert job["algorithm"]["adv_estimator"] == "mapo"
    assert job["algorithm"]["mapo"] == {"lambda_fn": "linear"}
