"""geo3k and emoset preparers, run as users run them and read back through verl's RLHFDataset."""

from __future__ import annotations

import io
import json

import pyarrow.parquet as pq
import pytest
from PIL import Image

from data_prep import emoset, geo3k


def rlhf_dataset(path, processor, tmp_path):
    from omegaconf import OmegaConf
    from verl.utils.dataset.rl_dataset import RLHFDataset

    config = OmegaConf.create(
        {
            "prompt_key": "prompt",
            "image_key": "images",
            "max_prompt_length": 8192,
            # verl's length filter needs qwen_vl_utils (torchvision); token counts are checked below instead.
            "filter_overlong_prompts": False,
            "cache_dir": str(tmp_path / "verl_cache"),
        }
    )
    return RLHFDataset(str(path), processor.tokenizer, config, processor)


def check_image_tokens(item: dict, processor) -> list[tuple[int, int]]:
    """Run verl's raw_prompt through the processor; image pad tokens must match each image's smart_resize grid."""
    from transformers.models.qwen2_vl.image_processing_pil_qwen2_vl import smart_resize

    messages = item["raw_prompt"]
    images = [c["image"] for m in messages for c in m["content"] if isinstance(c, dict) and c["type"] == "image"]
    assert images, "no image in raw_prompt"
    text = processor.apply_chat_template(messages, add_generation_prompt=True, tokenize=False)
    out = processor(text=[text], images=[img.convert("RGB") for img in images], return_tensors="pt")
    pad_id = processor.tokenizer.convert_tokens_to_ids("<|image_pad|>")
    merge = processor.image_processor.merge_size
    expected = 0
    for image, grid in zip(images, out["image_grid_thw"].tolist(), strict=True):
        height, width = smart_resize(image.height, image.width, factor=28, min_pixels=56 * 56, max_pixels=4194304)
        assert grid == [1, height // 14, width // 14]
        expected += grid[1] * grid[2] // (merge * merge)
    assert int((out["input_ids"] == pad_id).sum()) == expected
    return [img.size for img in images]


@pytest.mark.slow  # runs the module in a fresh interpreter, as users do
def test_geo3k_cli_writes_three_splits_readable_by_rlhfdataset(geo3k_src, qwen_processor, tmp_path, helpers):
    out = tmp_path / "out"
    proc = helpers.run_module(
        "geo3k", "--local-save-dir", str(out), "--local-dataset-path", str(geo3k_src), "--skip-bad"
    )
    assert proc.returncode == 0, proc.stderr
    assert "validation.parquet: 1 rows; skipped 1 (corrupt image: 1)" in proc.stdout
    assert sorted(p.name for p in out.iterdir()) == ["test.parquet", "train.parquet", "validation.parquet"]

    table = pq.read_table(out / "train.parquet").to_pylist()
    assert [r["reward_model"] for r in table] == [
        {"style": "rule", "ground_truth": a} for a in ["3", "\\frac{1}{2}", "2\\sqrt{3}"]
    ]
    row = table[0]
    assert row["data_source"] == "hiyouga/geometry3k" and row["ability"] == "math"
    assert row["prompt"][0]["role"] == "user" and row["prompt"][0]["content"].count("<image>") == 1
    assert "<think>" in row["prompt"][0]["content"] and "\\boxed{}" in row["prompt"][0]["content"]
    assert row["extra_info"]["split"] == "train" and row["extra_info"]["index"] == 0

    ds = rlhf_dataset(out / "train.parquet", qwen_processor, tmp_path)
    assert len(ds) == 3
    sizes = [check_image_tokens(ds[i], qwen_processor)[0] for i in range(len(ds))]
    assert sizes == [(64, 48), (100, 60), (30, 200)]  # original bytes kept: small RGB JPEGs
    assert ds[1]["reward_model"]["ground_truth"] == "\\frac{1}{2}"


def test_geo3k_bad_record_stops_and_leaves_no_split(geo3k_src, tmp_path, capsys):
    out = tmp_path / "out"
    code = geo3k.main(["--local-save-dir", str(out), "--local-dataset-path", str(geo3k_src), "--no-progress"])
    assert code == 1
    err = capsys.readouterr().err
    assert "split 'validation', record index 1: corrupt image" in err
    assert (out / "train.parquet").exists()
    assert not (out / "validation.parquet").exists() and not (out / "test.parquet").exists()
    assert [p.name for p in out.iterdir() if p.name.startswith(".")] == []  # no temp file left


@pytest.mark.slow  # runs the module in a fresh interpreter, as users do
def test_emoset_official_layout_stratified_and_converted(emoset_src, qwen_processor, tmp_path, helpers):
    out = tmp_path / "out"
    args = ["--local-save-dir", str(out), "--local-dataset-path", str(emoset_src), "--skip-bad"]
    proc = helpers.run_module("emoset", *args, "--train-size", "16", "--test-size", "all", "--val-size", "all")
    assert proc.returncode == 0, proc.stderr
    assert "test.parquet: 16 rows; skipped 2 (missing image: 1, unknown label: 1)" in proc.stdout
    assert sorted(p.name for p in out.iterdir()) == ["test.parquet", "train.parquet", "validation.parquet"]

    train = pq.read_table(out / "train.parquet").to_pylist()
    truths = [r["reward_model"]["ground_truth"] for r in train]
    assert sorted(truths) == sorted(helpers.EMOSET_LABELS * 2)  # 16 of 24, stratified: 2 per class
    for row in train:
        assert row["data_source"] == "emoset" and row["ability"] == "emotion"
        assert list(row["extra_info"]["labels"]) == list(helpers.EMOSET_LABELS)
        assert all(label in row["prompt"][0]["content"] for label in helpers.EMOSET_LABELS)
        image = Image.open(io.BytesIO(row["images"][0]["bytes"]))
        assert image.mode == "RGB"  # palette, RGBA and CMYK sources all converted
    ds = rlhf_dataset(out / "train.parquet", qwen_processor, tmp_path)
    assert len(ds) == 16
    for i in range(0, 16, 5):
        check_image_tokens(ds[i], qwen_processor)


def test_emoset_sampling_is_seeded(emoset_src, tmp_path):
    def picks(seed: int, name: str) -> list[str]:
        out = tmp_path / name
        argv = ["--local-save-dir", str(out), "--local-dataset-path", str(emoset_src), "--no-progress", "--skip-bad"]
        assert emoset.main([*argv, "--train-size", "8", "--test-size", "8", "--seed", str(seed)]) == 0
        return [r["source_id"] for r in pq.read_table(out / "train.parquet").column("extra_info").to_pylist()]

    first, again, other = picks(1, "a"), picks(1, "b"), picks(2, "c")
    assert first == again and first != other and len(first) == 8
    assert not (tmp_path / "a" / "validation.parquet").exists()  # --val-size defaults to none


def test_emoset_unknown_label_stops_naming_the_record(emoset_src, tmp_path, capsys):
    out = tmp_path / "out"
    argv = ["--local-save-dir", str(out), "--local-dataset-path", str(emoset_src), "--no-progress"]
    assert emoset.main([*argv, "--test-size", "all"]) == 1
    err = capsys.readouterr().err
    entries = json.loads((emoset_src / "test.json").read_text())
    assert f"split 'test', record {entries[-2][1]}" in err and "unknown label" in err
    assert (out / "train.parquet").exists() and not (out / "test.parquet").exists()


def test_emoset_hub_mirror_with_classlabel(tmp_path, helpers):
    import datasets

    src = tmp_path / "mirror"
    features = datasets.Features(
        {"image": datasets.Image(), "label": datasets.ClassLabel(names=list(helpers.EMOSET_LABELS))}
    )
    for split, n in (("train", 16), ("test", 8)):
        rows = [
            {"image": {"bytes": helpers.image_bytes(32, 32, seed=i), "path": None}, "label": i % 8} for i in range(n)
        ]
        helpers.write_hub_parquet(src, split, rows, features)
    out = tmp_path / "out"
    argv = ["--local-save-dir", str(out), "--local-dataset-path", str(src), "--no-progress"]
    assert emoset.main([*argv, "--train-size", "8", "--test-size", "all"]) == 0
    test = pq.read_table(out / "test.parquet").to_pylist()
    assert [r["reward_model"]["ground_truth"] for r in test] == list(helpers.EMOSET_LABELS)
    assert len(pq.read_table(out / "train.parquet")) == 8


def test_emoset_requires_a_source(tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("MAPO_SOURCE_DIR", str(tmp_path / "sources"))
    assert emoset.main(["--local-save-dir", str(tmp_path)]) == 1
    err = capsys.readouterr().err
    assert "https://vcc.tech/EmoSet" in err and str(tmp_path / "sources" / "emoset") in err


@pytest.mark.parametrize("value", ["0", "-3", "many"])
def test_sizes_are_validated(value, tmp_path):
    with pytest.raises(SystemExit):
        emoset.main(["--local-save-dir", str(tmp_path), "--train-size", value])
