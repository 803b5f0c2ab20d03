"""The Qwen3-VL configs: each is its Qwen2.5-VL counterpart plus presets/qwen3_vl.yaml, and each passes ``check``.

The composition tests compare verl's whole composed tree (about a second per config): full tier. The family tests
read the YAML only (fast tier).
"""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml
from omegaconf import OmegaConf

from mapo_verl.check import run_checks
from mapo_verl.compose import compose
from mapo_verl.model_families import config_family, shipped_families

CONFIG_DIR = Path(__file__).resolve().parents[2] / "trainer_configs"
QWEN3_VL_8B = [f"{a}_{d}_qwen3_vl_8b" for a in ("mapo", "grpo", "dapo") for d in ("geo3k", "emoset")]
QWEN3_VL = [*QWEN3_VL_8B, "mapo_geo3k_qwen3_vl_4b"]
PRESET = yaml.safe_load((CONFIG_DIR / "presets" / "qwen3_vl.yaml").read_text())


def _flat(tree: dict, prefix: str = "") -> dict[str, object]:
    out: dict[str, object] = {}
    for key, value in tree.items():
        if isinstance(value, dict) and value:
            out.update(_flat(value, f"{prefix}{key}."))
        else:
            out[f"{prefix}{key}"] = value
    return out


def _differing(ours: dict[str, object], theirs: dict[str, object]) -> set[str]:
    """The keys whose values differ; a key on one side only counts, unless the other side has it as an empty table."""

    def absent(value: object) -> bool:
        return value is None or value == {}

    keys = set(ours) | set(theirs)
    return {k for k in keys if ours.get(k) != theirs.get(k) and not (absent(ours.get(k)) and absent(theirs.get(k)))}


#: the preset's keys, and those among them it states with the paper's own values (the pixel range, the KL loss)
_PRESET_KEYS = set(_flat(PRESET))
_SAME_AS_THE_PAPER = {
    "data.mm_processor_kwargs.min_pixels",
    "data.mm_processor_kwargs.max_pixels",
    "actor_rollout_ref.actor.use_kl_loss",
    "actor_rollout_ref.actor.kl_loss_type",
    "actor_rollout_ref.actor.kl_loss_coef",
}


def _composed(name: str, overrides: tuple[str, ...] = ("mapo_data_dir=/data",)) -> dict[str, object]:
    """The composed tree, interpolations unresolved (keys derived from the model or the experiment name stay equal)."""
    return _flat(OmegaConf.to_container(compose(str(CONFIG_DIR), name, list(overrides)), resolve=False))


def test_every_qwen3_vl_config_is_shipped_and_read_as_qwen3_vl():
    on_disk = sorted(p.stem for p in CONFIG_DIR.glob("*qwen3_vl*.yaml"))
    assert on_disk == sorted(QWEN3_VL)
    assert sorted(shipped_families(CONFIG_DIR)["qwen3_vl"]) == sorted(QWEN3_VL)
    assert all(config_family(p.stem, CONFIG_DIR) == "qwen2_5_vl" for p in CONFIG_DIR.glob("*qwen2_5_vl*.yaml"))


@pytest.mark.slow
@pytest.mark.parametrize("name", QWEN3_VL_8B)
def test_qwen3_vl_8b_is_its_qwen2_5_vl_counterpart_plus_the_family_preset(name):
    """Only the model and the family preset's keys differ: the algorithm (MAPO's math and knobs included), the reward,
    the data and the paper's hyperparameters are the Qwen2.5-VL config's."""
    ours = _composed(name)
    theirs = _composed(name.replace("qwen3_vl_8b", "qwen2_5_vl_7b"))
    assert _differing(ours, theirs) == (_PRESET_KEYS - _SAME_AS_THE_PAPER) | {"trainer.experiment_name"}
    assert ours["actor_rollout_ref.model.path"] == "Qwen/Qwen3-VL-8B-Instruct"
    assert ours["trainer.experiment_name"] == name
    assert {k: v for k, v in ours.items() if k.startswith("algorithm.")} == {
        k: v for k, v in theirs.items() if k.startswith("algorithm.")
    }
    assert ours["actor_rollout_ref.rollout.engine_kwargs.vllm.limit_mm_per_prompt.image"] == 1
    assert ours["actor_rollout_ref.rollout.engine_kwargs.vllm.limit_mm_per_prompt.video"] == 0
    # KL loss as verl's Qwen3-VL examples run it (verl issue #4818); DAPO keeps its own definition: no KL
    kl = (ours["actor_rollout_ref.actor.use_kl_loss"], ours["actor_rollout_ref.actor.kl_loss_coef"])
    assert kl == ((False, 0.01) if name.startswith("dapo_") else (True, 0.01))


@pytest.mark.slow
def test_qwen3_vl_4b_is_the_small_node_setup_on_qwen3_vl():
    ours = _composed("mapo_geo3k_qwen3_vl_4b")
    small = _composed("mapo_geo3k_qwen2_5_vl_3b_small")
    assert _differing(ours, small) == (_PRESET_KEYS - _SAME_AS_THE_PAPER) | {"trainer.experiment_name"}
    assert ours["actor_rollout_ref.model.path"] == "Qwen/Qwen3-VL-4B-Instruct"
    assert ours["actor_rollout_ref.actor.use_kl_loss"] and ours["algorithm.adv_estimator"] == "mapo"


@pytest.mark.slow
@pytest.mark.parametrize(
    ("name", "overrides"),
    [
        *((name, ()) for name in QWEN3_VL),
        ("mapo_geo3k_qwen3_vl_4b", ("trainer.n_gpus_per_node=1",)),
        ("mapo_geo3k_qwen3_vl_4b", ("trainer.n_gpus_per_node=2",)),
        ("mapo_geo3k_qwen3_vl_8b", ("trainer.nnodes=2",)),
        # the paper's evaluation with Qwen3-VL (docs/evaluation.md): the eval config with the preset appended
        ("eval_math_qwen2_5_vl_7b", ("+presets=qwen3_vl",)),
        ("eval_emotion_qwen2_5_vl_7b", ("+presets=qwen3_vl",)),
    ],
)
def test_check_passes_without_a_gpu(name, overrides, data_root, reward_file):
    """``python -m mapo_verl check``'s checks (verl's validate_config among them) on the config as shipped, with
    the fixture data and a stand-in reward file."""
    cfg = compose(
        str(CONFIG_DIR),
        name,
        [f"mapo_data_dir={data_root}", f"reward.custom_reward_function.path={reward_file}", *overrides],
    )
    report = run_checks(cfg)
    assert not report.problems, report.render()
    assert "validate_config passes" in report.render()
    assert cfg.actor_rollout_ref.model.path.startswith("Qwen/Qwen3-VL-")
    assert config_family(name, CONFIG_DIR, overrides) == "qwen3_vl"
