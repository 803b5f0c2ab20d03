"""data_prep.paper_prompts builds the authors' evaluation items from the real public records."""

from __future__ import annotations

import json
from collections import Counter

import pytest

from data_prep import paper_prompts as pp
from mapo_verl_cpu.checkout import realdata_dir

REALDATA = realdata_dir()
needs_realdata = pytest.mark.skipif(not REALDATA.is_dir(), reason=f"real records not found at {REALDATA}")
#: Test-set sizes of the authors' files: MathVista testmini, MathVision test.
PAPER_SET_SIZES = {"mathvista": 1000, "mathvision": 3040}


def test_user_text_is_question_space_instruction():
    assert pp.paper_user_text("Find x.") == "Find x. " + pp.PAPER_INSTRUCTION
    assert pp.paper_content("Find x.", 2) == "<image><image>Find x. " + pp.PAPER_INSTRUCTION
    assert pp.PAPER_INSTRUCTION.endswith("The final answer MUST BE put in \\boxed{}.")


@needs_realdata
def test_mathvista_uses_the_official_query_and_letters():
    records = json.loads((REALDATA / "mathvista/testmini.json").read_text())
    queries = json.loads((REALDATA / "mathvista/query_testmini.json").read_text())
    assert len(records) == PAPER_SET_SIZES["mathvista"]
    kinds = Counter()
    for pid, rec in records.items():
        item = pp.mathvista_item(rec, query=queries[pid])
        assert item.question == queries[pid]
        if rec["question_type"] == "multi_choice":
            assert item.ground_truth == "ABCDEFGH"[rec["choices"].index(rec["answer"])]
        else:
            assert item.ground_truth == rec["answer"]
        kinds[rec["question_type"]] += 1
    assert kinds["multi_choice"] > 0 and kinds["free_form"] > 0
    with pytest.raises(ValueError, match="query"):
        pp.mathvista_item(next(iter(records.values())))


@needs_realdata
def test_mathvision_full_test_set():
    lines = (REALDATA / "mathvision/test.jsonl").read_text().splitlines()
    assert len(lines) == PAPER_SET_SIZES["mathvision"]
    items = [pp.mathvision_item(json.loads(line)) for line in lines]
    assert not any("<image" in it.question for it in items)
    letters_only = json.loads(lines[1])  # options A-E that are just their letters: nothing appended
    assert letters_only["options"] == ["A", "B", "C", "D", "E"] and "Choices" not in items[1].question
    assert any("Choices:\n(A) " in it.question for it in items)


@needs_realdata
def test_geo3k_maps_the_letter_to_the_choice_text():
    for folder in sorted(p for p in (REALDATA / "geo3k").iterdir() if p.is_dir()):
        rec = json.loads((folder / "data.json").read_text())
        item = pp.geo3k_item(rec)
        assert item.question == rec["annotat_text"]
        assert item.ground_truth == rec["choices"]["ABCD".index(rec["answer"])]
    hub = pp.geo3k_item({"problem": "<image>Find x.", "answer": "3"})
    assert (hub.question, hub.ground_truth) == ("Find x.", "3")


def test_mathverse_versions_and_errors():
    rec = {"query_cot": "Q?", "answer": "B", "problem_version": "Vision Only"}
    item = pp.mathverse_item(rec)
    assert (item.question, item.ground_truth, item.extra) == ("Q?", "B", {"problem_version": "Vision Only"})
    assert pp.mathverse_is_vision_bearing(rec)
    assert not pp.mathverse_is_vision_bearing({"problem_version": "Text Only"})
    with pytest.raises(ValueError, match="vision-bearing"):
        pp.mathverse_item({**rec, "problem_version": "Text Only"})
    with pytest.raises(ValueError, match="query_cot"):
        pp.mathverse_item({"answer": "B", "problem_version": "Text Lite"})


def test_subset_is_stratified_deterministic_and_sized():
    labels = ["joy"] * 600 + ["fear"] * 300 + ["anger"] * 100
    chosen = pp.paper_subset_indices(labels, 200)
    assert len(chosen) == 200 and chosen == sorted(set(chosen))
    assert Counter(labels[i] for i in chosen) == {"joy": 120, "fear": 60, "anger": 20}
    assert chosen == pp.paper_subset_indices(list(labels), 200)
    assert pp.paper_subset_indices(labels[:5], 2000) == list(range(5))
    with pytest.raises(ValueError):
        pp.paper_subset_indices(labels, -1)


def test_eaten_latex_escapes_are_restored():
    assert pp.restore_latex_escapes("\x0crac{36}{13}") == "\\frac{36}{13}"
    assert pp.restore_latex_escapes("a\times b, x \neq 3, \x08eta") == "a\\times b, x \\neq 3, \\beta"
    assert pp.restore_latex_escapes("line one\nline two\tend") == "line one\nline two\tend"
    item = pp.mathvision_item({"question": "Find x.<image1>", "options": [], "answer": "\x0crac{36}{13}"})
    assert item.ground_truth == "\\frac{36}{13}"
