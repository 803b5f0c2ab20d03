"""The ``hf`` rollout server outside Ray: prompt ids and images as the agent loop sends them, log-probs as the actor
computes them (teacher-forced forward over prompt + response, 3-D positions, masked vocabulary)."""

from __future__ import annotations

import pytest
import torch

pytestmark = pytest.mark.slow

MM_KWARGS = {"min_pixels": 3136, "max_pixels": 12544}


@pytest.fixture(scope="module")
def server(tiny_model_dir):
    from verl.workers.config import HFModelConfig, RolloutConfig

    from mapo_verl.runs.cpu_backend.hf_rollout import HFRolloutServer

    config = RolloutConfig(name="hf", prompt_length=256, response_length=12)
    return HFRolloutServer(config=config, model_config=HFModelConfig(path=str(tiny_model_dir), trust_remote_code=True))


def _prompt(server, image):
    text = server.processor.apply_chat_template(
        [{"role": "user", "content": [{"type": "image"}, {"type": "text", "text": "Find x."}]}],
        add_generation_prompt=True,
    )
    return server.processor(text=[text], images=[image], return_tensors="pt", **MM_KWARGS)


def test_collapse_and_expand_reproduce_the_processors_inputs(server, sample_images):
    for image in sample_images():
        reference = _prompt(server, image)
        expanded = reference["input_ids"][0].tolist()  # what the agent loop sends: pad runs already expanded
        inputs = server.build_inputs(expanded, [image], MM_KWARGS)
        for key in ("input_ids", "mm_token_type_ids", "pixel_values", "image_grid_thw"):
            assert torch.equal(inputs[key], reference[key]), key


def test_a_prompt_with_a_wrong_number_of_images_is_an_error(server, sample_images):
    expanded = _prompt(server, sample_images()[0])["input_ids"][0].tolist()
    with pytest.raises(ValueError, match="1 image placeholders but 2 images"):
        server.build_inputs(expanded, sample_images()[:2], MM_KWARGS)


def test_sampled_tokens_and_log_probs_match_a_teacher_forced_forward(server, sample_images):
    image = sample_images()[0]
    reference = _prompt(server, image)
    prompt_ids = reference["input_ids"][0].tolist()
    params = {"temperature": 1.0, "top_p": 1.0, "top_k": -1, "logprobs": True, "max_tokens": 12}
    torch.manual_seed(0)
    token_ids, log_probs = server._generate(prompt_ids, dict(params), [image], MM_KWARGS)
    assert 1 <= len(token_ids) == len(log_probs) <= 12
    never = set(server._banned) | set(range(server._vocab_size, server.model.config.text_config.vocab_size))
    assert not never & set(token_ids), "sampled a padded-vocabulary or vision placeholder id"

    full_ids = torch.tensor([prompt_ids + token_ids])
    types = torch.cat([reference["mm_token_type_ids"], torch.zeros(1, len(token_ids), dtype=torch.long)], dim=1)
    with torch.no_grad():
        logits = server.model(
            input_ids=full_ids,
            attention_mask=torch.ones_like(full_ids),
            mm_token_type_ids=types,
            pixel_values=reference["pixel_values"],
            image_grid_thw=reference["image_grid_thw"],
        ).logits[0, len(prompt_ids) - 1 : -1]
    expected = torch.log_softmax(server.mask_logits(logits), dim=-1).gather(-1, torch.tensor(token_ids)[:, None])
    torch.testing.assert_close(torch.tensor(log_probs), expected.squeeze(-1), atol=1e-4, rtol=1e-4)
