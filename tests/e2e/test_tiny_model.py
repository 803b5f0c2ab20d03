"""The tiny Qwen2.5-VL: its processor loads the way verl loads it and its images match transformers' processor."""

from __future__ import annotations

import json

import pytest
import torch

pytestmark = pytest.mark.slow  # builds a model and imports transformers / verl (a few seconds)


def test_image_outputs_equal_transformers_qwen2vl_image_processor(tiny_model_dir, sample_images):
    from transformers import Qwen2VLImageProcessor

    from mapo_verl_cpu.fixtures.tiny_model import TinyModelSpec, load_processor

    spec = TinyModelSpec()
    ours = load_processor(tiny_model_dir)
    reference = Qwen2VLImageProcessor(patch_size=14, merge_size=2, temporal_patch_size=2)
    for kwargs in ({}, {"min_pixels": 3136, "max_pixels": 50176}):
        expected_kwargs = kwargs or {"min_pixels": spec.min_pixels, "max_pixels": spec.max_pixels}
        for image in sample_images():
            got = ours.image_processor(images=[image], return_tensors="pt", **kwargs)
            want = reference(images=[image], return_tensors="pt", **expected_kwargs)
            assert torch.equal(got["image_grid_thw"], want["image_grid_thw"]), image.size
            assert torch.equal(got["pixel_values"], want["pixel_values"]), image.size


def test_processor_expands_image_pads_and_returns_token_types(tiny_model_dir, sample_images):
    from mapo_verl_cpu.fixtures.tiny_model import load_processor

    processor = load_processor(tiny_model_dir)
    assert type(processor).__name__ == "Qwen2_5_VLProcessor"  # verl dispatches on this name
    assert processor.get_attributes() == ["image_processor", "tokenizer"]
    image = sample_images()[0]
    text = processor.apply_chat_template(
        [{"role": "user", "content": [{"type": "image"}, {"type": "text", "text": "Find x."}]}],
        add_generation_prompt=True,
    )
    assert text.endswith("<|im_start|>assistant\n") and "<|vision_start|><|image_pad|><|vision_end|>" in text
    out = processor(text=[text], images=[image], return_tensors="pt")
    n_image_tokens = int(out["image_grid_thw"].prod()) // processor.image_processor.merge_size**2
    assert int((out["input_ids"] == processor.image_token_id).sum()) == n_image_tokens
    assert torch.equal(out["mm_token_type_ids"][0] == 1, out["input_ids"][0] == processor.image_token_id)


def test_verl_loads_the_processor_and_binds_3d_rope(tiny_model_dir, sample_images):
    """verl's own loader: a processor (not None), Qwen2.5-VL's get_rope_index bound, 3-D positions for an image."""
    from verl.utils import hf_processor

    processor = hf_processor(str(tiny_model_dir), trust_remote_code=True)
    assert processor is not None and hasattr(processor, "get_rope_index")
    text = processor.apply_chat_template(
        [{"role": "user", "content": [{"type": "image"}, {"type": "text", "text": "Find x."}]}],
        add_generation_prompt=True,
    )
    out = processor(text=[text], images=[sample_images()[0]], return_tensors="pt")
    positions, _ = processor.get_rope_index(
        out["input_ids"],
        out["mm_token_type_ids"],
        image_grid_thw=out["image_grid_thw"],
        attention_mask=out["attention_mask"],
    )
    assert positions.shape == (3, 1, out["input_ids"].shape[1])
    image = out["input_ids"][0] == processor.image_token_id
    assert not torch.equal(positions[1, 0, image], positions[2, 0, image])  # height and width differ over the grid


def test_model_config_matches_the_tokenizer(tiny_model_dir):
    from transformers import AutoTokenizer

    config = json.loads((tiny_model_dir / "config.json").read_text())
    tokenizer = AutoTokenizer.from_pretrained(str(tiny_model_dir))
    for key, token in (
        ("image_token_id", "<|image_pad|>"),
        ("video_token_id", "<|video_pad|>"),
        ("vision_start_token_id", "<|vision_start|>"),
        ("vision_end_token_id", "<|vision_end|>"),
    ):
        assert config[key] == tokenizer.convert_tokens_to_ids(token), key
    assert config["text_config"]["vocab_size"] >= len(tokenizer)
    assert tokenizer.eos_token == "<|im_end|>"
