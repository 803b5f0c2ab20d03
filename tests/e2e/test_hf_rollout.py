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

    from mapo_verl_cpu.backend.hf_rollout import HFRolloutServer

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


def _teacher_forced(server, reference, prompt_ids: list[int], token_ids: list[int]) -> torch.Tensor:
    """log pi(y_t) of ``token_ids`` after the prompt, from one forward as the actor computes it."""
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
    return torch.log_softmax(server.mask_logits(logits), dim=-1).gather(-1, torch.tensor(token_ids)[:, None])[:, 0]


PARAMS = {"temperature": 1.0, "top_p": 1.0, "top_k": -1, "logprobs": True, "max_tokens": 12}


def test_sampled_tokens_and_log_probs_match_a_teacher_forced_forward(server, sample_images):
    image = sample_images()[0]
    reference = _prompt(server, image)
    prompt_ids = reference["input_ids"][0].tolist()
    torch.manual_seed(0)
    [(token_ids, log_probs)] = server._generate_many(prompt_ids, dict(PARAMS), [image], MM_KWARGS, 1)
    assert 1 <= len(token_ids) == len(log_probs) <= 12
    never = set(server._banned) | set(range(server._vocab_size, server.model.config.text_config.vocab_size))
    assert not never & set(token_ids), "sampled a padded-vocabulary or vision placeholder id"
    expected = _teacher_forced(server, reference, prompt_ids, token_ids)
    torch.testing.assert_close(torch.tensor(log_probs), expected, atol=1e-4, rtol=1e-4)


def test_a_batch_of_samples_each_matches_a_teacher_forced_forward(server, sample_images):
    """``num_return_sequences``: each row cut after its first stop token, its log-probs its own."""
    image = sample_images()[1]
    reference = _prompt(server, image)
    prompt_ids = reference["input_ids"][0].tolist()
    eos_ids = set(server.model.generation_config.eos_token_id)
    torch.manual_seed(1)
    samples = server._generate_many(prompt_ids, dict(PARAMS, max_tokens=40), [image], MM_KWARGS, 6)
    assert len(samples) == 6 and len({tuple(ids) for ids, _ in samples}) > 1
    for token_ids, log_probs in samples:
        assert 1 <= len(token_ids) == len(log_probs) <= 40
        assert not eos_ids & set(token_ids[:-1]), "a row goes on past its stop token"
        expected = _teacher_forced(server, reference, prompt_ids, token_ids)
        torch.testing.assert_close(torch.tensor(log_probs), expected, atol=1e-4, rtol=1e-4)


def test_waiting_samples_of_one_prompt_are_generated_as_one_batch(server, sample_images, monkeypatch):
    import asyncio

    images = sample_images()
    prompts = [(_prompt(server, image)["input_ids"][0].tolist(), image) for image in images[:2]]
    calls = []
    original = server._generate_many

    def counting(prompt_ids, sampling_params, image_data, mm_kwargs, count):
        calls.append(count)
        return original(prompt_ids, sampling_params, image_data, mm_kwargs, count)

    monkeypatch.setattr(server, "_generate_many", counting)

    async def main():
        requests = [(ids, image) for ids, image in prompts for _ in range(4)]
        return await asyncio.gather(
            *(
                server.generate(ids, dict(PARAMS), f"r{i}", image_data=[image], mm_processor_kwargs=MM_KWARGS)
                for i, (ids, image) in enumerate(requests)
            )
        )

    loop = asyncio.new_event_loop()  # not asyncio.run: it would unset the main thread's loop (tests/conftest.py)
    try:
        outputs = loop.run_until_complete(main())
    finally:
        loop.close()
    assert sorted(calls) == [4, 4]
    assert len(outputs) == 8 and all(1 <= len(o.token_ids) == len(o.log_probs) for o in outputs)


def _fresh_draws(server, seed: int = 0, version: int = 0) -> None:
    server.seed, server.weights_version = seed, version
    server._drawn.clear()


def _samples(server, prompt_ids, image, splits, params=None):
    out = []
    for count in splits:
        out += server._generate_locked(prompt_ids, dict(params or PARAMS), [image], MM_KWARGS, count)
    return [tuple(ids) for ids, _ in out]


def test_the_same_seed_and_weights_give_the_same_samples_however_they_are_batched(server, sample_images):
    """Reproducible sampling: each sample's noise comes from its own generator (seed, weights version, request,
    index), so one batch of 8, batches of 3 and 5, and the global RNG in any state give the same 8 samples."""
    image = sample_images()[0]
    prompt_ids = _prompt(server, image)["input_ids"][0].tolist()
    _fresh_draws(server)
    torch.manual_seed(0)
    whole = _samples(server, prompt_ids, image, [8])
    _fresh_draws(server)
    torch.manual_seed(123)
    split = _samples(server, prompt_ids, image, [3, 5])
    assert whole == split
    assert len(set(whole)) > 1, "eight identical samples: no sampling happened"
    _fresh_draws(server, seed=1)
    assert _samples(server, prompt_ids, image, [8]) != whole, "another seed drew the same samples"
    _fresh_draws(server, version=1)
    assert _samples(server, prompt_ids, image, [8]) != whole, "new weights drew the same samples"
    _fresh_draws(server)
