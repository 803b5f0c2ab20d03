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
