"""``scripts/train.sh`` prepares the data files of the composed config, from ``$MAPO_SOURCE_DIR`` for the
hand-downloaded sets, into ``$MAPO_DATA_DIR``; where the source is missing it stops and says what to download."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]


def write_easyr1_emoset(root: Path, helpers) -> None:
    import datasets

    features = datasets.Features(
        {"images": datasets.List(datasets.Image()), "problem": datasets.Value("string"),
         "course_grained": datasets.Value("string"), "answer": datasets.Value("string")}
    )  # fmt: skip
    for split, n in (("train", 512), ("test", 8)):  # the check wants one batch (train_batch_size=512) of rows
        rows = [
            {"images": [{"bytes": helpers.image_bytes(32, 32, seed=i), "path": None}], "problem": "<image>Emotion?",
             "course_grained": "positive", "answer": helpers.EMOSET_LABELS[i % 8]}
            for i in range(n)
        ]  # fmt: skip
        helpers.write_hub_parquet(root, split, rows, features)


def run_train_sh(tmp_path: Path, *args: str) -> subprocess.CompletedProcess:
    env = {
        **os.environ,
        "PYTHON": sys.executable,
        "DRY_RUN": "1",
        "MAPO_DATA_DIR": str(tmp_path / "data"),
        "MAPO_SOURCE_DIR": str(tmp_path / "sources"),
        "HF_DATASETS_OFFLINE": "1",
        "HF_HUB_OFFLINE": "1",
        "RAY_AUTH_MODE": "disabled",
        "CUDA_VISIBLE_DEVICES": "",
    }
    return subprocess.run(
        [str(REPO / "scripts" / "train.sh"), "mapo_emoset_qwen2_5_vl_7b", *args],
        capture_output=True, text=True, timeout=300, env=env, cwd=tmp_path,
    )  # fmt: skip


@pytest.mark.slow
def test_train_sh_says_what_to_download(tmp_path):
    proc = run_train_sh(tmp_path)
    assert proc.returncode != 0
    assert "https://vcc.tech/EmoSet" in proc.stderr and str(tmp_path / "sources" / "emoset") in proc.stderr


@pytest.mark.slow
def test_train_sh_follows_overrides(tmp_path, helpers):
    """The data files come from the composed config (an override sends training to another folder), prepared from
    ``$MAPO_SOURCE_DIR/emoset`` before the pre-flight check and the training command."""
    write_easyr1_emoset(tmp_path / "sources" / "emoset", helpers)
    other = tmp_path / "elsewhere" / "emoset"
    proc = run_train_sh(tmp_path, f"data.train_files={other}/train.parquet", f"data.val_files={other}/test.parquet")
    assert f"preparing emoset -> {other}" in proc.stdout, proc.stdout + proc.stderr
    assert (other / "train.parquet").is_file() and (other / "test.parquet").is_file()
    assert not (tmp_path / "data" / "emoset").exists()
    assert "pre-flight check passed" in proc.stdout
    assert "-m verl.trainer.main_ppo" in proc.stdout.strip().splitlines()[-1]
