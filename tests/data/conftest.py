"""Fixtures for the data-preparation and reward tests: generated images, small sources in each public layout, a
Qwen2.5-VL processor built without the hub, and a runner for ``python -m data_prep.NAME``."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from mapo_verl_cpu.fixtures.public_layouts import EMOSET_LABELS, hub_features, image_bytes, write_hub_parquet

REPO = Path(__file__).resolve().parents[2]


def run_module(name: str, *args: str) -> subprocess.CompletedProcess:
    """``python -m data_prep.NAME ARGS`` as a user runs it."""
    env = {**os.environ, "PYTHONPATH": str(REPO), "HF_DATASETS_OFFLINE": "1", "HF_HUB_OFFLINE": "1"}
    return subprocess.run(
        [sys.executable, "-m", f"data_prep.{name}", "--no-progress", *args],
        capture_output=True,
        text=True,
        cwd=REPO,
        env=env,
        timeout=120,
    )


@pytest.fixture(autouse=True)
def _offline(monkeypatch):
    monkeypatch.setenv("HF_DATASETS_OFFLINE", "1")
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")


@pytest.fixture(scope="session")
def geo3k_src(tmp_path_factory) -> Path:
    """A local copy of hiyouga/geometry3k in the hub layout: 3 splits; validation has one corrupt image."""
    import datasets

    root = tmp_path_factory.mktemp("geo3k_src")
    features = datasets.Features(
        {
            "images": datasets.List(datasets.Image()),
            "problem": datasets.Value("string"),
            "answer": datasets.Value("string"),
        }
    )
    sizes = {"train": [(64, 48), (100, 60), (30, 200)], "validation": [(56, 56), (90, 40)], "test": [(120, 80)]}
    answers = ["3", "\\frac{1}{2}", "2\\sqrt{3}"]
    for split, dims in sizes.items():
        rows = []
        for i, (w, h) in enumerate(dims):
            data = image_bytes(w, h, seed=i)
            if split == "validation" and i == 1:
                data = data[:40]  # truncated JPEG
            rows.append(
                {
                    "images": [{"bytes": data, "path": None}],
                    "problem": f"<image>Find x in figure {split}-{i}.",
                    "answer": answers[i % len(answers)],
                }
            )
        write_hub_parquet(root, split, rows, features)
    return root


@pytest.fixture(scope="session")
def emoset_src(tmp_path_factory) -> Path:
    """EmoSet-118K's official layout: image/<emotion>/*.jpg, annotation/<emotion>/*.json, {train,val,test}.json.

    train: 3 images per class (one a palette PNG, one RGBA, one CMYK JPEG); val: 1 per class; test: 2 per class
    plus a record with an unknown label and one whose image file is missing.
    """
    root = tmp_path_factory.mktemp("emoset_src")
    splits: dict[str, list[list[str]]] = {"train": [], "val": [], "test": []}
    counts = {"train": 3, "val": 1, "test": 2}
    modes = [("P", "PNG", ".png"), ("RGBA", "PNG", ".png"), ("CMYK", "JPEG", ".jpg")]
    n = 0
    for label in EMOSET_LABELS:
        (root / "image" / label).mkdir(parents=True)
        (root / "annotation" / label).mkdir(parents=True)
        for split, count in counts.items():
            for k in range(count):
                mode, fmt, ext = modes[k] if split == "train" else ("RGB", "JPEG", ".jpg")
                name = f"{label}_{n:05d}"
                n += 1
                (root / "image" / label / f"{name}{ext}").write_bytes(image_bytes(40 + k * 8, 32, mode, fmt, seed=n))
                (root / "annotation" / label / f"{name}.json").write_text(json.dumps({"emotion": label}))
                splits[split].append([label, f"image/{label}/{name}{ext}", f"annotation/{label}/{name}.json"])
    splits["test"].append(["joy", splits["test"][0][1], splits["test"][0][2]])
    splits["test"].append(["fear", "image/fear/does_not_exist.jpg", "annotation/fear/x.json"])
    for split, entries in splits.items():
        (root / f"{split}.json").write_text(json.dumps(entries))
    return root


@pytest.fixture(scope="session")
def folder_tree(tmp_path_factory) -> Path:
    """``SRC/<label>/*.jpg`` with three classes of 4, 2 and 2 images, a stray text file and a corrupt image."""
    root = tmp_path_factory.mktemp("folder_tree")
    for label, count in (("Joy", 4), ("sadness", 2), ("fear", 2)):
        (root / label).mkdir()
        for k in range(count):
            (root / label / f"{k}.jpg").write_bytes(image_bytes(50, 30 + k, seed=k))
    (root / "Joy" / "notes.txt").write_text("not an image")
    (root / "fear" / "broken.jpg").write_bytes(b"\xff\xd8\xff\xe0 broken")
    return root


@pytest.fixture(scope="session")
def qwen_processor(tmp_path_factory):
    """A Qwen2.5-VL tokenizer and processor built without the hub (the CPU backend's tiny-model folder, without the
    model) with the paper's ``max_pixels``, loaded as verl loads them; ``tokenizer_dir`` is the folder."""
    from mapo_verl_cpu.fixtures.tiny_model import TinyModelSpec, load_processor, write_tokenizer_and_processor

    folder = tmp_path_factory.mktemp("qwen_processor")
    write_tokenizer_and_processor(TinyModelSpec(min_pixels=56 * 56, max_pixels=4194304), folder)
    processor = load_processor(folder)
    processor.tokenizer_dir = str(folder)
    return processor


@pytest.fixture(scope="session")
def helpers():
    """The module-level helpers, for test files (which cannot import this conftest by name)."""
    import types

    return types.SimpleNamespace(
        EMOSET_LABELS=EMOSET_LABELS,
        hub_features=hub_features,
        image_bytes=image_bytes,
        run_module=run_module,
        write_hub_parquet=write_hub_parquet,
    )
