"""The tiny Qwen3-VL as verl loads it, and real Geometry3K prompts on their way to the rollout: the image tokens in
the prompt the agent loop sends, and in the ``hf`` rollout's model inputs, are the processor's count.

No trainer (the two-step runs are ``test_qwen3_vl_smoke.py``); builds the tiny Qwen3-VL (a few seconds).
"""

from __future__ import annotations

import asyncio
import json

import pytest
import torch

from mapo_verl_cpu.checkout import realdata_dir

pytestmark = pytest.mark.slow

CONFIG = "mapo_geo3k_qwen3_vl_8b"
#: the smoke's image budget (mapo_verl_cpu.runners.spec.tiny_overrides)
MM_KWARGS = {"min_pixels": 3136, "max_pixels": 12544}
REALDATA = realdata_dir()


@pytest.fixture(scope="module")
def qwen3_vl_dir(model_cache):
    from mapo_verl_cpu.fixtures.tiny_qwen3_vl import build_tiny_qwen3_vl

    return build_tiny_qwen3_vl(model_cache)


@pytest.fixture(scope="module")
def processor(qwen3_vl_dir):
    from verl.utils.tokenizer import hf_processor

    return hf_processor(str(qwen3_vl_dir), trust_remote_code=True)


def test_verl_loads_it_as_qwen3_vl_and_binds_its_rope_index(qwen3_vl_dir, processor):
    from transformers import AutoConfig, Qwen3VLForConditionalGeneration
    from transformers.models.qwen3_vl import Qwen3VLModel

    from mapo_verl.model_families import family_of_model_path

    config = AutoConfig.from_pretrained(str(qwen3_vl_dir))
    assert config.model_type == family_of_model_path(str(qwen3_vl_dir)) == "qwen3_vl"
    assert type(processor).__name__ == "Qwen3VLProcessor"
    assert processor.get_rope_index.__func__ is Qwen3VLModel.get_rope_index  # bound by verl's hf_processor
    image_processor = processor.image_processor
    assert (image_processor.patch_size, image_processor.merge_size) == (16, 2)  # 32 x 32 pixels per image token
    tokenizer = processor.tokenizer
    for key, token in [("image_token_id", "<|image_pad|>"), ("vision_start_token_id", "<|vision_start|>")]:
        assert getattr(config, key) == tokenizer.convert_tokens_to_ids(token), key
    assert config.vision_config.deepstack_visual_indexes == [0]
    assert config.text_config.rope_parameters["mrope_interleaved"]
    model = Qwen3VLForConditionalGeneration.from_pretrained(str(qwen3_vl_dir))
    assert sum(p.numel() for p in model.parameters()) < 1_000_000
    template = json.loads((qwen3_vl_dir / "processor_config.json").read_text())["auto_map"]["AutoProcessor"]
    assert template == "processing_tiny_qwen3_vl.Qwen3VLProcessor"


@pytest.mark.skipif(not REALDATA.is_dir(), reason=f"{REALDATA} is absent (CI has it)")
def test_real_geo3k_prompts_reach_the_rollout_with_the_processors_image_tokens(qwen3_vl_dir, processor, tmp_path):
    """The config's data prepared by ``python -m data_prep.geo3k`` from the real records, read by verl's RLHFDataset
    with the Qwen3-VL processor; verl's agent-loop tokenizer (its Continuous Token builder for ``qwen3_vl``) renders
    each prompt, and the ``hf`` rollout server turns it into model inputs: both carry grid_t * grid_h * grid_w / 4
    image tokens per image, the processor's count, and the server's grid is the processor's."""
    from omegaconf import OmegaConf
    from verl.utils.dataset.rl_dataset import RLHFDataset
    from verl.utils.tokenizer.continuous_token_wiring import create_continuous_token_builder
    from verl.workers.config import HFModelConfig, RolloutConfig

    from mapo_verl_cpu.backend.hf_rollout import HFRolloutServer
    from mapo_verl_cpu.backend.patches import PATCHES
    from mapo_verl_cpu.fixtures.config_data import prepare_config_data

    # verl reads a prompt's images with qwen_vl_utils, which imports torchvision for its video readers: the CPU
    # backend's fix, as every process of a CPU run applies it
    next(p for p in PATCHES if p.name == "qwen_vl_utils_without_torchvision").apply()
    data = prepare_config_data(CONFIG, tmp_path, "real")
    assert "real Geometry3K" in data.source
    data_config = OmegaConf.create(
        {
            "prompt_key": "prompt",
            "image_key": "images",
            "max_prompt_length": 4096,
            "filter_overlong_prompts": False,
            "mm_processor_kwargs": MM_KWARGS,
            "cache_dir": str(tmp_path / "verl_cache"),
        }
    )
    dataset = RLHFDataset(str(data.train_file), processor.tokenizer, data_config, processor)
    builder = create_continuous_token_builder(
        processor.tokenizer, hf_model_type="qwen3_vl", mm_processor_kwargs=MM_KWARGS, processor=processor
    )
    server = HFRolloutServer(
        config=RolloutConfig(name="hf", prompt_length=512, response_length=8),
        model_config=HFModelConfig(path=str(qwen3_vl_dir), trust_remote_code=True),
    )
    image_id = processor.image_token_id
    merge = processor.image_processor.merge_size
    checked = 0
    loop = asyncio.new_event_loop()  # not asyncio.run: it leaves the main thread without a current loop
    for index in range(min(len(dataset), 8)):
        messages = list(dataset[index]["raw_prompt"])
        images, _, _ = loop.run_until_complete(
            RLHFDataset.process_multi_modal_info(messages, image_patch_size=16, config=data_config)
        )
        assert images and len(images) == 1, "a Geometry3K prompt has one diagram"
        grid = processor.image_processor(images=images, return_tensors="pt", **MM_KWARGS)["image_grid_thw"]
        expected = int(grid.prod(dim=-1).sum()) // merge**2
        prompt_ids = builder.build_initial_tokens(messages, images=images)  # what the agent loop sends the server
        assert prompt_ids.count(image_id) == expected
        inputs = server.build_inputs(list(prompt_ids), images, dict(MM_KWARGS))  # what the hf rollout generates from
        assert int((inputs["input_ids"] == image_id).sum()) == expected
        assert torch.equal(inputs["image_grid_thw"], grid)
        assert torch.equal(inputs["mm_token_type_ids"][0] == 1, inputs["input_ids"][0] == image_id)
        checked += 1
    loop.close()
    assert checked == min(len(dataset), 8) and checked > 0
