"""``data_prep.datasets_needed``: the data files come from the composed config (overrides included), not its name."""

from __future__ import annotations

from pathlib import Path

import pytest

from data_prep import datasets_needed

CONFIGS = Path(__file__).resolve().parents[2] / "trainer_configs"


@pytest.mark.slow
def test_eval_config_lists_its_sets_under_mapo_data_dir(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("MAPO_DATA_DIR", str(tmp_path))
    assert datasets_needed.main(["--config-path", str(CONFIGS), "--config-name", "eval_math_qwen2_5_vl_7b"]) == 0
    lines = [line.split("\t") for line in capsys.readouterr().out.splitlines()]
    assert {name for name, _, _, _ in lines} == {"geo3k", "mathvista", "mathvision", "mathverse"}
    assert all(Path(file).parent == Path(folder) == tmp_path / name for name, folder, file, _ in lines)


@pytest.mark.slow
def test_paper_eval_config_names_paper_folders(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("MAPO_DATA_DIR", str(tmp_path))
    argv = ["--config-path", str(CONFIGS), "--config-name", "eval_math_paper_qwen2_5_vl_7b"]
    assert datasets_needed.main(argv) == 0
    lines = [line.split("\t") for line in capsys.readouterr().out.splitlines()]
    paper = {(name, Path(folder).name, options) for name, folder, _, options in lines if options}
    assert paper == {
        (name, f"{name}_paper", "--prompt-style paper") for name in ("geo3k", "mathvista", "mathvision", "mathverse")
    }


@pytest.mark.slow
def test_overrides_change_the_sets(tmp_path, capsys):
    override = f"data.train_files=[{tmp_path}/emoset/train.parquet]"
    argv = ["--config-path", str(CONFIGS), "--config-name", "mapo_geo3k_qwen2_5_vl_7b", override]
    assert datasets_needed.main(argv) == 0
    lines = [line.split("\t") for line in capsys.readouterr().out.splitlines()]
    assert lines[0] == ["emoset", str(tmp_path / "emoset"), str(tmp_path / "emoset" / "train.parquet"), ""]


def test_unknown_folder_has_no_preparer():
    assert datasets_needed.preparer_of("/data/custom/train.parquet") == ("-", "")
    assert datasets_needed.preparer_of("/data/mathvista/test.parquet") == ("mathvista", "")
    assert datasets_needed.preparer_of("/data/webemo_paper/test.parquet") == ("webemo", "--prompt-style paper")
    assert datasets_needed.preparer_of("/data/custom_paper/test.parquet") == ("-", "")
