"""The router through verl 0.9.1's own reward path, on CPU and without a trainer or Ray.

verl's ``RewardLoopManager`` runs ``RewardLoopWorker`` actors; the worker loads the custom reward from
``reward.custom_reward_function`` (``pkg://reward_fns.router``) via ``load_reward_manager`` and scores each
sample with the registered ``naive`` reward manager. Here the worker class runs in-process on a batch built with
the test tokenizer, and the results are assembled as the manager does (``assemble_rm_scores``).
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

RESPONSES = [
    # (data_source, response, ground truth, extra_info, expected score)
    ("hiyouga/geometry3k", "<think>6/2</think> \\boxed{\\frac{6}{2}}", "3", {}, 1.0),
    ("hiyouga/geometry3k", "\\boxed{3}", "3", {}, 0.9),
    ("AI4Math/MathVista", "<think>second</think> \\boxed{(B)}", "B", {"options": np.array(["4", "5"])}, 1.0),
    ("MathLLMs/MathVision", "<think>r</think> \\boxed{0.5}", "\\frac{1}{2}", {"options": []}, 1.0),
    ("emoset", "<think>dark sky</think> \\boxed{\\text{Sadness}}", "sadness", {}, 1.0),
    ("webemo", "<think>r</think> \\boxed{joy}", "anger", {}, 0.1),
    ("emotion6", "<think>r</think> \\boxed{" + "{" * 5000, "fear", {}, 0.0),
]


def make_batch(tokenizer):
    from verl import DataProto

    prompts, responses = [], []
    for _ in RESPONSES:
        prompts.append(tokenizer.encode("<|im_start|>user\nQ<|im_end|>\n<|im_start|>assistant\n"))
    for _, text, *_ in RESPONSES:
        responses.append(tokenizer.encode(text + "<|im_end|>", add_special_tokens=False))
    p_len, r_len = max(map(len, prompts)), max(map(len, responses))
    pad = tokenizer.pad_token_id
    prompt_ids = torch.tensor([[pad] * (p_len - len(p)) + p for p in prompts])  # left padded
    response_ids = torch.tensor([r + [pad] * (r_len - len(r)) for r in responses])  # right padded
    prompt_mask = torch.tensor([[0] * (p_len - len(p)) + [1] * len(p) for p in prompts])
    response_mask = torch.tensor([[1] * len(r) + [0] * (r_len - len(r)) for r in responses])
    return DataProto.from_dict(
        tensors={
            "prompts": prompt_ids,
            "responses": response_ids,
            "input_ids": torch.cat([prompt_ids, response_ids], dim=1),
            "attention_mask": torch.cat([prompt_mask, response_mask], dim=1),
        },
        non_tensors={
            "data_source": np.array([r[0] for r in RESPONSES], dtype=object),
            "reward_model": np.array([{"style": "rule", "ground_truth": r[2]} for r in RESPONSES], dtype=object),
            "extra_info": np.array([dict(r[3]) for r in RESPONSES], dtype=object),
        },
    )


def reward_config(tokenizer_dir: str, **reward_kwargs):
    from omegaconf import OmegaConf

    return OmegaConf.create(
        {
            "actor_rollout_ref": {"model": {"path": tokenizer_dir, "tokenizer_path": None}},
            "reward": {
                "reward_manager": {"source": "register", "name": "naive", "module": None},
                "custom_reward_function": {
                    "path": "pkg://reward_fns.router",
                    "name": "compute_score",
                    "reward_kwargs": reward_kwargs,
                },
                "reward_model": {"enable": False},
                "sandbox_fusion": None,
            },
        }
    )


@pytest.mark.parametrize("weight", [0.1, 0.0])
def test_router_batch_through_verl_reward_loop_worker(qwen_processor, weight):
    from verl.experimental.reward_loop.reward_loop import RewardLoopWorker

    worker = RewardLoopWorker(reward_config(qwen_processor.tokenizer_dir, format_weight=weight))
    data = make_batch(worker.input_tokenizer)
    outputs = worker.loop.run_until_complete(worker.compute_score_batch(data))

    expected = [r[4] if weight else float(r[4] >= 0.9) for r in RESPONSES]
    scores = [out["reward_score"] for out in outputs]
    assert scores == pytest.approx(expected)
    assert scores[0] == 1.0  # exactly: MAPO's success threshold
    infos = [out["reward_extra_info"] for out in outputs]
    assert all(set(info) == {"score", "acc", "format", "scorer_timeout"} for info in infos)  # same keys, any task
    assert [info["acc"] for info in infos] == [1.0, 1.0, 1.0, 1.0, 1.0, 0.0, 0.0]

    rm_scores = worker.reward_manager.assemble_rm_scores(data, scores)
    response_lengths = data.batch["attention_mask"][:, data.batch["prompts"].shape[1] :].sum(-1)
    assert rm_scores.sum(-1).tolist() == pytest.approx(expected)
    for row, length in zip(rm_scores, response_lengths.tolist(), strict=True):
        assert row[length - 1] == row.sum()  # the score sits on the last response token


def test_unknown_data_source_fails_loudly_in_verl(qwen_processor):
    from verl.experimental.reward_loop.reward_loop import RewardLoopWorker

    worker = RewardLoopWorker(reward_config(qwen_processor.tokenizer_dir))
    data = make_batch(worker.input_tokenizer)
    data.non_tensor_batch["data_source"][2] = "someone/else"
    with pytest.raises(ValueError, match="someone/else"):
        worker.loop.run_until_complete(worker.compute_score_batch(data))
