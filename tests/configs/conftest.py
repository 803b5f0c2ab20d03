"""Fixtures for the config, check, metrics, report and launcher tests (no GPU, no network)."""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path

import pandas as pd
import pytest

REPO = Path(__file__).resolve().parents[2]
CONFIG_DIR = REPO / "trainer_configs"

#: data_prep's layout: <root>/<name>/<split>.parquet and each set's data_source.
DATASETS = {
    "geo3k": ("hiyouga/geometry3k", ("train", "validation", "test")),
    "emoset": ("emoset", ("train", "test")),
    "mathvista": ("AI4Math/MathVista", ("test",)),
    "mathvision": ("MathLLMs/MathVision", ("test",)),
    "mathverse": ("AI4Math/MathVerse", ("test",)),
    "webemo": ("webemo", ("test",)),
    "emotion6": ("emotion6", ("test",)),
}


def _rows(data_source: str, n: int = 2) -> pd.DataFrame:
    return pd.DataFrame(
        {
            "data_source": [data_source] * n,
            "prompt": [[{"role": "user", "content": "<image>What is x?"}]] * n,
            "images": [[{"bytes": b"\x89PNG"}]] * n,
            "ability": ["math"] * n,
            "reward_model": [{"style": "rule", "ground_truth": "3"}] * n,
            "extra_info": [{"split": "test", "index": i} for i in range(n)],
        }
    )


@pytest.fixture(scope="session")
def data_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Small parquet files in data_prep's layout for all seven datasets."""
    root = tmp_path_factory.mktemp("mapo_data")
    for name, (source, splits) in DATASETS.items():
        (root / name).mkdir()
        for split in splits:  # a training file holds one batch of the paper's preset (512), as the check asks
            _rows(source, 512 if split == "train" else 2).to_parquet(root / name / f"{split}.parquet")
    return root


@pytest.fixture(scope="session")
def reward_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A stand-in custom reward function file (the check loads it as verl would)."""
    path = tmp_path_factory.mktemp("reward") / "reward.py"
    path.write_text(
        "def compute_score(data_source, solution_str, ground_truth, extra_info=None, format_weight=0.1, **kw):\n"
        "    acc = float(solution_str.strip() == ground_truth)\n"
        "    return {'score': (1 - format_weight) * acc + format_weight, 'acc': acc, 'format': 1.0}\n"
    )
    return path


@pytest.fixture(scope="session")
def composer() -> Callable[..., object]:
    """compose(name, overrides) for trainer_configs/ (in-process Hydra, as main_ppo composes).

    Each call initialises Hydra afresh (``mapo_verl.compose``): a session-long Hydra context would be cleared
    under it by any other test that composes a config.
    """
    from mapo_verl.compose import compose

    return lambda name, overrides=(): compose(str(CONFIG_DIR), name, list(overrides))


@pytest.fixture
def subprocess_env(data_root: Path) -> dict[str, str]:
    """Environment for subprocesses: the fixture data root, Ray without auth, no accidental GPU."""
    env = dict(os.environ)
    env.update(MAPO_DATA_DIR=str(data_root), RAY_AUTH_MODE="disabled", CUDA_VISIBLE_DEVICES="", PYTHONUNBUFFERED="1")
    return env
