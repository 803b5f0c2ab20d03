"""reward_fns.paper_compat reproduces the MAPO authors' mathruler scoring exactly and never raises."""

from __future__ import annotations

import re

import pytest
from mathruler.grader import extract_boxed_content, grade_answer

from reward_fns import paper_compat

# (response, ground truth): answer forms models write, scored by the authors' rule in every case below.
ANSWER_TABLE = [
    ("<think>r</think> \\boxed{60}", "60"),
    ("<think>r</think> \\boxed{60^\\circ}", "60"),
    ("<think>r</think> \\boxed{60 degrees}", "60"),
    ("<think>r</think> \\boxed{\\frac{1}{2}}", "0.5"),
    ("<think>r</think> \\boxed{0.5}", "\\frac{1}{2}"),
    ("<think>r</think> \\boxed{1/2}", "\\frac{1}{2}"),
    ("<think>r</think> \\boxed{1 / 2}", "\\frac{1}{2}"),
    ("<think>r</think> \\boxed{B}", "B"),
    ("<think>r</think> \\boxed{(B)}", "B"),
    ("<think>r</think> \\boxed{B. 12}", "B"),
    ("<think>r</think> \\boxed{\\text{B}}", "B"),
    ("<think>r</think> \\boxed{12}", "B"),
    ("<think>r</think> \\boxed{5 cm}", "5"),
    ("<think>r</think> \\boxed{2\\sqrt{3}}", "2\\sqrt{3}"),
    ("<think>r</think> \\boxed{2 \\sqrt 3}", "2\\sqrt{3}"),
    ("<think>r</think> \\boxed{3.46}", "2\\sqrt{3}"),
    ("<think>r</think> \\boxed{1,000}", "1000"),
    ("<think>r</think> \\boxed{Happiness}", "happiness"),
    ("<think>r</think> \\boxed{\\boxed{7}}", "7"),
    ("no tags \\boxed{7} and later \\boxed{8}", "8"),
    ("no box at all", "None"),
    ("", "4"),
    ("\\boxed{", "4"),
    ("<think>r</think> \\boxed{x < 3}", "x<3"),
]


def _authors_eval(response: str, answer: str) -> float:
    """code/eval/utils/processing.py, as the authors wrote it."""
    return 1.0 if grade_answer(extract_boxed_content(response.strip()), answer) else 0.0


def _authors_training(response: str, answer: str, format_weight: float = 0.1) -> dict[str, float]:
    """code/examples/reward_function/math.py, as the authors wrote it."""
    response = re.sub(r"\s*(<|>|/)\s*", r"\1", response)
    fmt = 1.0 if re.fullmatch(re.compile(r"<think>.*</think>.*\\boxed\{.*\}.*", re.DOTALL), response) else 0.0
    acc = 1.0 if grade_answer(extract_boxed_content(response), answer) else 0.0
    return {"score": (1 - format_weight) * acc + format_weight * fmt, "format": fmt, "accuracy": acc}


@pytest.mark.parametrize(("response", "answer"), ANSWER_TABLE)
def test_matches_mathruler_on_the_answer_table(response, answer):
    assert paper_compat.paper_accuracy(response, answer) == _authors_eval(response, answer)
    theirs = _authors_training(response, answer)
    ours = paper_compat.paper_training_reward(response, answer)
    assert (ours["score"], ours["format"], ours["acc"]) == (theirs["score"], theirs["format"], theirs["accuracy"])
    mode = paper_compat.compute_score("AI4Math/MathVista", response, answer, scorer="paper")
    assert mode["acc"] == mode["paper_acc"] == _authors_eval(response, answer)
    assert mode["score"] == theirs["score"]


def test_the_table_exercises_both_outcomes_and_the_quirks():
    outcomes = [_authors_eval(r, a) for r, a in ANSWER_TABLE]
    assert 0 < sum(outcomes) < len(outcomes)
    # The authors' quirks, kept on purpose: no box reads as the string "None"; a letter box never matches option text.
    assert paper_compat.paper_accuracy("no box at all", "None") == 1.0
    assert paper_compat.paper_accuracy("\\boxed{12}", "B") == 0.0
    # Training normalises spaces around < > / before grading; evaluation does not.
    assert paper_compat.paper_training_reward("<think> a </think> \\boxed{x < 3}", "x<3")["format"] == 1.0


@pytest.mark.parametrize(
    "bad", [None, b"\xff\xfe\\boxed{1}", 3.5, ["\\boxed{1}"], "\\boxed{" * 200, "\\boxed{}" * 50, "\x00\\boxed{1}"]
)
def test_never_raises(bad):
    for scorer in ("both", "paper", "unknown-mode"):
        result = paper_compat.compute_score("hiyouga/geometry3k", bad, bad, extra_info=bad, scorer=scorer)
        assert {"score", "acc", "format", "paper_acc", "paper_score", "mathverse_version"} <= set(result)
        assert all(isinstance(v, float) for v in result.values())


def test_both_mode_keeps_our_reward_and_adds_the_papers():
    from reward_fns import router

    response = "<think>the option text</think> \\boxed{12}"
    ours = router.compute_score("AI4Math/MathVista", response, "B", {"options": ["10", "12"]})
    both = paper_compat.compute_score("AI4Math/MathVista", response, "B", {"options": ["10", "12"]})
    assert {k: both[k] for k in ours} == ours
    assert both["paper_acc"] == _authors_eval(response, "B") == 0.0
    assert both["scorer_error"] == 0.0


def test_unknown_source_is_flagged_not_raised():
    result = paper_compat.compute_score("somebody/else", "<think>x</think>\\boxed{3}", "3")
    assert result["scorer_error"] == 1.0 and result["acc"] == 0.0 and result["paper_acc"] == 1.0


def test_mathverse_version_is_logged_as_an_index():
    for i, version in enumerate(paper_compat.MATHVERSE_VERSIONS):
        result = paper_compat.compute_score("AI4Math/MathVerse", "\\boxed{A}", "A", {"problem_version": version})
        assert result["mathverse_version"] == float(i)
    assert paper_compat.mathverse_version_index({"problem_version": "Text Only"}) == -1.0
    assert paper_compat.mathverse_version_index(None) == -1.0


# ------------------------------------------------------------------------------- through verl's reward loop
VERL_CASES = [
    # (data_source, response, ground truth, extra_info, ours acc, paper acc, mathverse_version)
    ("AI4Math/MathVista", "<think>t</think> \\boxed{C. 145°}", "C", {"options": ["90°", "120°", "145°"]}, 1.0, 0.0, -1),
    ("AI4Math/MathVerse", "<think>t</think> \\boxed{B}", "B", {"problem_version": "Vision Only"}, 1.0, 1.0, 4),
    ("hiyouga/geometry3k", "<think>t</think> \\boxed{60^\\circ}", "60", {}, 1.0, 1.0, -1),
    ("emoset", "<think>t</think> \\boxed{Awe}", "awe", {}, 1.0, 1.0, -1),
]


@pytest.mark.slow
def test_both_scorers_through_verl_reward_loop_and_validation_metrics(qwen_processor):
    """The eval configs' reward in verl's RewardLoopWorker; its extra keys become verl's validation metrics."""
    import numpy as np
    import torch
    from omegaconf import OmegaConf
    from verl import DataProto
    from verl.experimental.reward_loop.reward_loop import RewardLoopWorker
    from verl.trainer.ppo.metric_utils import process_validation_metrics

    config = OmegaConf.create(
        {
            "actor_rollout_ref": {"model": {"path": qwen_processor.tokenizer_dir, "tokenizer_path": None}},
            "reward": {
                "reward_manager": {"source": "register", "name": "naive", "module": None},
                "custom_reward_function": {
                    "path": "pkg://reward_fns.paper_compat",
                    "name": "compute_score",
                    "reward_kwargs": {"format_weight": 0.1, "scorer": "both"},
                },
                "reward_model": {"enable": False},
                "sandbox_fusion": None,
            },
        }
    )
    worker = RewardLoopWorker(config)
    tok = worker.input_tokenizer
    prompts = [tok.encode("<|im_start|>user\nQ<|im_end|>\n<|im_start|>assistant\n") for _ in VERL_CASES]
    responses = [tok.encode(c[1] + "<|im_end|>", add_special_tokens=False) for c in VERL_CASES]
    p_len, r_len, pad = max(map(len, prompts)), max(map(len, responses)), tok.pad_token_id
    prompt_ids = torch.tensor([[pad] * (p_len - len(p)) + p for p in prompts])
    response_ids = torch.tensor([r + [pad] * (r_len - len(r)) for r in responses])
    mask = torch.cat(
        [
            torch.tensor([[0] * (p_len - len(p)) + [1] * len(p) for p in prompts]),
            torch.tensor([[1] * len(r) + [0] * (r_len - len(r)) for r in responses]),
        ],
        dim=1,
    )
    data = DataProto.from_dict(
        tensors={
            "prompts": prompt_ids,
            "responses": response_ids,
            "input_ids": torch.cat([prompt_ids, response_ids], dim=1),
            "attention_mask": mask,
        },
        non_tensors={
            "data_source": np.array([c[0] for c in VERL_CASES], dtype=object),
            "reward_model": np.array([{"style": "rule", "ground_truth": c[2]} for c in VERL_CASES], dtype=object),
            "extra_info": np.array([dict(c[3]) for c in VERL_CASES], dtype=object),
        },
    )
    outputs = worker.loop.run_until_complete(worker.compute_score_batch(data))
    infos = [out["reward_extra_info"] for out in outputs]
    assert all(set(info) == set(infos[0]) for info in infos)  # the same keys for every set, as verl needs
    assert [info["acc"] for info in infos] == [c[4] for c in VERL_CASES]
    assert [info["paper_acc"] for info in infos] == [c[5] for c in VERL_CASES]
    assert [info["mathverse_version"] for info in infos] == [c[6] for c in VERL_CASES]

    columns = {key: [info[key] for info in infos] for key in infos[0]}
    metrics = process_validation_metrics([c[0] for c in VERL_CASES], [str(i) for i in range(len(infos))], columns)
    assert metrics["AI4Math/MathVista"]["acc"]["mean@1"] == 1.0
    assert metrics["AI4Math/MathVista"]["paper_acc"]["mean@1"] == 0.0  # logged as val-aux/.../paper_acc/mean@1
