"""The model families of the shipped configs (``mapo_verl.model_families``) and what ``doctor`` says of them."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from mapo_verl.model_families import (
    CONFIG_DIR,
    FAMILIES,
    ModelFamily,
    config_family,
    config_model_path,
    family_of_model_path,
    shipped_families,
    support_lines,
    transformers_support,
    verl_support,
)

REPO = Path(__file__).resolve().parents[2]
VLLM_PYTHON = REPO / ".venv-vllm" / "bin" / "python"


@pytest.mark.parametrize(
    ("path", "family"),
    [
        ("Qwen/Qwen2.5-VL-7B-Instruct", "qwen2_5_vl"),
        ("Qwen/Qwen2.5-VL-3B-Instruct", "qwen2_5_vl"),
        ("Qwen/Qwen3-VL-8B-Instruct", "qwen3_vl"),
        ("Qwen/Qwen3-VL-4B-Thinking", "qwen3_vl"),
        ("meta-llama/Llama-3.2-11B-Vision", None),
    ],
)
def test_hub_ids(path, family):
    assert family_of_model_path(path) == family


def test_a_local_folder_is_read_from_its_config(tmp_path):
    (tmp_path / "config.json").write_text(json.dumps({"model_type": "qwen3_vl"}))
    assert family_of_model_path(str(tmp_path)) == "qwen3_vl"
    (tmp_path / "config.json").write_text(json.dumps({"model_type": "llava"}))
    assert family_of_model_path(str(tmp_path)) == "llava"


def test_the_model_path_follows_hydras_order(tmp_path):
    """A later preset overrides an earlier one, the config's own value counts where ``_self_`` stands, and a preset
    added with ``+presets=NAME`` comes last."""
    (tmp_path / "presets").mkdir()
    for name, model in (("a", "Qwen/Qwen2.5-VL-7B-Instruct"), ("b", "Qwen/Qwen3-VL-8B-Instruct")):
        preset = {"actor_rollout_ref": {"model": {"path": model}}}
        (tmp_path / "presets" / f"{name}.yaml").write_text(yaml.safe_dump(preset))
    own = {"defaults": ["ppo_trainer", "presets/b", "presets/a", "_self_"]}
    (tmp_path / "c.yaml").write_text(yaml.safe_dump(own))
    assert config_family("c", tmp_path) == "qwen2_5_vl"
    assert config_family("c", tmp_path, ["+presets=b"]) == "qwen3_vl"
    own["actor_rollout_ref"] = {"model": {"path": "Qwen/Qwen3-VL-4B-Instruct"}}
    (tmp_path / "c.yaml").write_text(yaml.safe_dump(own))
    assert config_model_path("c", tmp_path) == "Qwen/Qwen3-VL-4B-Instruct"


def test_every_shipped_config_has_a_known_family():
    families = shipped_families()
    assert set(families) == {"qwen2_5_vl", "qwen3_vl"}, families
    assert sum(map(len, families.values())) == len(list(CONFIG_DIR.glob("*.yaml")))
    assert config_family("eval_math_qwen2_5_vl_7b", overrides=["+presets=qwen3_vl"]) == "qwen3_vl"


@pytest.mark.slow  # imports verl and transformers' model packages
def test_the_installed_verl_and_transformers_support_both_families():
    lines = support_lines()
    assert [ok for ok, _ in lines] == [True, True], lines
    text = "\n".join(line for _, line in lines)
    assert "model family qwen3_vl (Qwen3-VL, 7 config(s): " in text and "mapo_geo3k_qwen3_vl_8b" in text
    assert "Qwen3VLForConditionalGeneration and Qwen3VLProcessor" in text


@pytest.mark.slow
def test_a_family_the_libraries_lack_is_named():
    unknown = ModelFamily("qwen9_vl", "Qwen9-VL", r"qwen9-vl", "Qwen9VLForCG", "Qwen9VLProcessor", "qwen9_vl")
    ok, line = transformers_support(unknown)
    assert not ok and "transformers.models.qwen9_vl" in line
    ok, line = verl_support(unknown)
    assert not ok and "qwen9_vl" in line
    processor_only = ModelFamily(**{**FAMILIES["qwen3_vl"].__dict__, "processor_class": "Qwen9VLProcessor"})
    ok, line = verl_support(processor_only)
    assert not ok and "does not bind Qwen9VLProcessor" in line


@pytest.mark.slow
def test_doctor_lists_the_model_families():
    proc = subprocess.run(
        [sys.executable, "-m", "mapo_verl", "doctor", "--no-ray"], capture_output=True, text=True, timeout=300
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    lines = [line for line in proc.stdout.splitlines() if "model family" in line]
    assert [line.split(" (")[0] for line in lines] == ["[ok ] model family qwen2_5_vl", "[ok ] model family qwen3_vl"]
    assert all(": supported: " in line for line in lines)


@pytest.mark.slow
@pytest.mark.skipif(not VLLM_PYTHON.is_file(), reason=f"{VLLM_PYTHON} is absent: `make venv-vllm` builds it")
def test_doctor_in_the_vllm_venv_asks_vllm_too():
    proc = subprocess.run(
        [str(VLLM_PYTHON), "-m", "mapo_verl", "doctor", "--versions"], capture_output=True, text=True, timeout=300
    )
    line = next(line for line in proc.stdout.splitlines() if "model family qwen3_vl" in line)
    assert line.startswith("[ok ]") and "registers Qwen3VLForConditionalGeneration" in line, line
