"""Reward tables, score composition, and property tests: the rewards never raise and stay fast on hostile input."""

from __future__ import annotations

import json
import threading
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from reward_fns import emotion, math_answer, router
from reward_fns.common import compose_score, extract_last_boxed, has_think_then_boxed

GOOD = "<think>{}</think> The answer is \\boxed{{{}}}."


def wrap(answer: str, reasoning: str = "work it out") -> str:
    return GOOD.format(reasoning, answer)


# ------------------------------------------------------------------------------------------- extraction/format


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("\\boxed{3}", "3"),
        ("a \\boxed{1} then \\boxed{2}", "2"),
        ("\\boxed{\\frac{1}{2}}", "\\frac{1}{2}"),
        ("\\boxed{ {a}{b{c}} }", "{a}{b{c}}"),
        ("\\boxed {7}", "7"),
        ("\\boxed{\\{1, 2\\}}", "\\{1, 2\\}"),
        ("\\boxed{1} and \\boxed{2", None),  # the last box is unclosed: no answer
        ("\\boxed{}", ""),
        ("no box", None),
        ("\\boxed", None),
        ("\\boxed{" + "x" * 5000 + "}", None),  # longer than MAX_ANSWER_CHARS
        ("", None),
    ],
)
def test_extract_last_boxed(text, expected):
    assert extract_last_boxed(text) == expected


@pytest.mark.parametrize(
    ("text", "ok"),
    [
        ("<think>r</think>\\boxed{1}", True),
        ("  \n<think>\nr\n</think>\n\nSo \\boxed{1}.", True),
        ("<think></think>\\boxed{1}", False),  # blank reasoning
        ("<think>r</think>", False),
        ("\\boxed{1}<think>r</think>", False),
        ("<think>r \\boxed{1}</think>", False),  # the box must follow </think>
        ("x<think>r</think>\\boxed{1}", False),
        ("<think>a</think><think>b</think>\\boxed{1}", False),
        ("<think>r</think>\\boxed{1", False),
    ],
)
def test_format(text, ok):
    assert has_think_then_boxed(text) is ok


# ------------------------------------------------------------------------------------------------ math table

MATH_TABLE = [
    # (response, ground truth, extra_info, acc)
    (wrap("3"), "3", None, 1.0),
    (wrap("\\frac{6}{2}"), "3", None, 1.0),
    (wrap("\\frac{1}{2}"), "0.5", None, 1.0),
    (wrap("0.5"), "\\frac{1}{2}", None, 1.0),
    (wrap("2\\sqrt{3}"), "2\\sqrt{3}", None, 1.0),
    (wrap("\\sqrt{12}"), "2\\sqrt{3}", None, 1.0),
    (wrap("\\dfrac{40}{3}"), "\\frac{40}{3}", None, 1.0),
    (wrap("x = 5"), "5", None, 1.0),
    (wrap("\\text{5}"), "5", None, 1.0),
    (wrap("4"), "3", None, 0.0),
    (wrap("0.49"), "0.5", None, 0.0),
    (wrap(""), "3", None, 0.0),
    ("<think>r</think> the answer is 3", "3", None, 0.0),  # no box
    (wrap("9^{9^{9^{9}}}"), "3", None, 0.0),  # power tower: no sympy, just wrong
    (wrap("1000!"), "3", None, 0.0),
    # choice tasks
    (wrap("B"), "B", {"options": ["1", "2", "3"]}, 1.0),
    (wrap("(B)"), "B", {"options": ["1", "2", "3"]}, 1.0),
    (wrap("B."), "B", {"options": ["1", "2", "3"]}, 1.0),
    (wrap("(B) 2"), "B", {"options": ["1", "2", "3"]}, 1.0),
    (wrap("\\text{B}"), "B", {"options": ["1", "2", "3"]}, 1.0),
    (wrap("2"), "B", {"options": ["1", "2", "3"]}, 1.0),  # the correct option's text
    (wrap("C"), "B", {"options": ["1", "2", "3"]}, 0.0),
    (wrap("3"), "B", {"options": ["1", "2", "3"]}, 0.0),
    (wrap("b"), "B", {"options": ["1", "2", "3"]}, 0.0),  # letters are capitals
    (wrap("A"), "A", None, 1.0),  # letter ground truth without options
    (wrap("(A)"), "A", {"options": None}, 1.0),
]


@pytest.mark.parametrize(("response", "truth", "extra", "acc"), MATH_TABLE)
def test_math_table(response, truth, extra, acc):
    result = math_answer.compute_score("hiyouga/geometry3k", response, truth, extra)
    assert result["acc"] == acc
    assert result["format"] == (1.0 if "\\boxed{" in response else 0.0)
    assert result["score"] == pytest.approx(0.9 * acc + 0.1 * result["format"])
    assert set(result) == {"score", "acc", "format", "scorer_timeout"} and result["scorer_timeout"] == 0.0


def test_math_options_from_numpy_after_parquet():
    np = pytest.importorskip("numpy")
    extra = {"options": np.array(["1", "2", "3"], dtype=object)}
    assert math_answer.compute_score("AI4Math/MathVista", wrap("2"), "B", extra)["acc"] == 1.0


# ---------------------------------------------------------------------------------------------- emotion table

EMOTION_TABLE = [
    (wrap("fear"), "fear", 1.0),
    (wrap("Fear"), "fear", 1.0),
    (wrap("  FEAR.  "), "fear", 1.0),
    (wrap("\\text{Fear}"), "fear", 1.0),
    (wrap("\\text{ sadness }!"), "sadness", 1.0),
    (wrap("'awe'"), "awe", 1.0),
    (wrap("scared"), "fear", 0.0),  # no synonyms
    (wrap("happy"), "amusement", 0.0),
    (wrap("fear, sadness"), "fear", 0.0),
    (wrap("anger"), "fear", 0.0),
    ("<think>r</think> fear", "fear", 0.0),
    (wrap(""), "fear", 0.0),
]


@pytest.mark.parametrize(("response", "truth", "acc"), EMOTION_TABLE)
def test_emotion_table(response, truth, acc):
    assert emotion.compute_score("emoset", response, truth)["acc"] == acc


# --------------------------------------------------------------------------------------------- composition


@pytest.mark.parametrize("weight", [0.0, 0.1, 0.2, 0.3, 1 / 3, 0.7, 1.0])
def test_correct_and_well_formatted_scores_exactly_one(weight):
    result = math_answer.compute_score("x", wrap("3"), "3", format_weight=weight)
    assert type(result["score"]) is float and result["score"] == 1.0
    np = pytest.importorskip("numpy")
    assert np.float32(result["score"]) >= np.float32(1.0)  # MAPO's float32 threshold check


def test_score_composition_default_weight():
    assert compose_score(1, 1) == {"score": 1.0, "acc": 1.0, "format": 1.0}
    assert compose_score(1, 0)["score"] == pytest.approx(0.9)
    assert compose_score(0, 1)["score"] == pytest.approx(0.1)
    assert compose_score(0, 0)["score"] == 0.0
    # correct but unformatted is below MAPO's default threshold of 1.0
    assert math_answer.compute_score("x", "\\boxed{3}", "3")["score"] < 1.0
    assert emotion.compute_score("emoset", "\\boxed{fear}", "fear")["score"] < 1.0


def test_zero_format_weight_is_binary():
    assert math_answer.compute_score("x", "\\boxed{3}", "3", format_weight=0)["score"] == 1.0
    assert math_answer.compute_score("x", wrap("4"), "3", format_weight=0)["score"] == 0.0


@pytest.mark.parametrize("weight", [-0.1, 1.5, float("nan"), "heavy", None])
def test_bad_format_weight_is_a_config_error(weight):
    with pytest.raises(ValueError, match="format_weight"):
        math_answer.compute_score("x", wrap("3"), "3", format_weight=weight)


# ------------------------------------------------------------------------------------------------------ router


@pytest.mark.parametrize(
    ("source", "response", "truth", "acc"),
    [
        ("hiyouga/geometry3k", wrap("\\frac{6}{2}"), "3", 1.0),
        ("AI4Math/MathVista", wrap("(C)"), "C", 1.0),
        ("MathLLMs/MathVision", wrap("B"), "A", 0.0),
        ("AI4Math/MathVerse", wrap("0.5"), "\\frac{1}{2}", 1.0),
        ("AI4Math/MathVerse", wrap("90^{\\circ} T"), "090° T", 1.0),
        ("AI4Math/MathVerse", wrap("270° T"), "090° T", 0.0),
        ("AI4Math/MathVerse", wrap("D and C"), "C, D", 1.0),
        ("AI4Math/MathVerse", wrap("C"), "C, D", 0.0),
        ("emoset", wrap("Awe"), "awe", 1.0),
        ("webemo", wrap("joy"), "sadness", 0.0),
        ("emotion6", wrap("\\text{Joy}"), "joy", 1.0),
    ],
)
def test_router_dispatch(source, response, truth, acc):
    result = router.compute_score(source, response, truth, {"split": "test"}, format_weight=0.1, unused_kwarg=1)
    assert result["acc"] == acc and result["format"] == 1.0


def test_router_unknown_source_names_it():
    with pytest.raises(ValueError, match="'my/dataset'"):
        router.compute_score("my/dataset", wrap("3"), "3")


# ----------------------------------------------------------------------------------------- never raise, fast

ANY_TEXT = st.one_of(
    st.text(),
    st.text(alphabet=st.sampled_from(list("{}\\boxed<think>/ ()ABx^0123!.\x00\x1b\n")), max_size=300),
    st.builds(
        lambda pre, mid, post: pre + "\\boxed{" + mid + "}" + post,
        st.text(max_size=50),
        st.text(max_size=50),
        st.text(max_size=50),
    ),
)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(response=ANY_TEXT, truth=st.one_of(st.text(max_size=30), st.none(), st.integers()), weight=st.floats(0, 1))
def test_never_raises(response, truth, weight):
    for fn, source in ((math_answer.compute_score, "AI4Math/MathVista"), (emotion.compute_score, "emoset")):
        result = fn(source, response, truth, {"options": ["1", "2"]}, format_weight=weight)
        assert result["acc"] in (0.0, 1.0) and result["format"] in (0.0, 1.0)
        assert 0.0 <= result["score"] <= 1.0


@settings(max_examples=100, deadline=None)
@given(answer=st.text(max_size=40).filter(lambda s: "}" not in s and "{" not in s and "\\" not in s))
def test_boxed_roundtrip(answer):
    assert extract_last_boxed(f"<think>r</think>\\boxed{{{answer}}}") == answer.strip()


HOSTILE = {
    "open braces": "<think>" + "\\boxed{" + "{" * 1_000_000,
    "many boxes": "\\boxed{" * 150_000,
    "many think tags": "<think></think>" * 70_000 + "\\boxed{3}",
    "nested closed": "<think>x</think>" + "\\boxed{" + "{}" * 500_000 + "}",
    "control chars": "\x00\x1b\u202e\ud7ff" * 250_000 + "\\boxed{3}",
    "backslashes": "\\" * 1_000_000,
    "text wrappers": "\\boxed{" + "\\text{" * 300 + "3" + "}" * 301,
}


@pytest.mark.parametrize("name", sorted(HOSTILE))
def test_one_megabyte_hostile_response_scores_without_raising(name):
    """Scored, not raised; their latency is measured in benchmarks/bench_rewards.py (no timing asserts here)."""
    text = HOSTILE[name]
    assert len(text) >= 1000
    for fn, source, truth in ((math_answer.compute_score, "x", "3"), (emotion.compute_score, "emoset", "fear")):
        result = fn(source, text, truth)
        assert result["acc"] in (0.0, 1.0) and set(result) == {"score", "acc", "format", "scorer_timeout"}


def test_symbolic_check_off_the_main_thread():
    """verl calls rewards from executor threads, where math-verify cannot use signal timeouts."""
    results = []
    thread = threading.Thread(
        target=lambda: results.append(
            [math_answer.compute_score("x", wrap(a), t)["acc"] for a, t in (("\\frac{6}{2}", "3"), ("0.5", "1/2"))]
        )
    )
    thread.start()
    thread.join(30)
    assert results == [[1.0, 1.0]]


SYMPY_TRAPS = json.loads((Path(__file__).with_name("sympy_traps.json")).read_text())["traps"]


@pytest.mark.parametrize("trap", SYMPY_TRAPS)
def test_sympy_traps_never_reach_sympy(trap):
    """No signal timeouts in verl's executor threads: the guard keeps sympy away from these (their latency off
    the main thread is measured in benchmarks/bench_rewards.py)."""
    assert not math_answer._symbolic_safe(trap)
    for truth in ("3", "x+1", "2\\sqrt{3}"):
        result = math_answer.compute_score("x", wrap(trap), truth)
        assert result["acc"] == 0.0 and result["scorer_timeout"] == 0.0  # refused by the guard, not timed out
