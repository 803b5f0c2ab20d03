"""MathVerse choice records whose options are listed and whose answer is an option's text.

The ground truth becomes that option's letter (the record's own answer stays in ``extra_info["answer"]``), and
the reward, called as verl calls a custom reward (``reward_fns.router.compute_score(data_source, solution_str,
ground_truth, extra_info)`` with the row's ``extra_info``), accepts the letter and the option's text (bearings
read as bearings) and nothing else: another option's letter or text, and text that is no option, score less. An
answer text that matches no listed option, or several, is kept as written and counted as a warning.

MathVerse is not in ``../shared/realdata``: the five records below are verbatim (question and answer) from the
MathVerse authors' repository, ZrrSkywalker/MathVerse ``data/testmini_text_only.json`` at commit
937b090597aeafb8e82b35d310a4bc5b9e2ea29d (MIT licence). Four of them list their options under ``Choice:``
(not ``Choices:``) and answer with an option's text; 622 has empty option lines (``B:``). The real options of
MathVista's testmini (``../shared/realdata``, skipped with a reason where absent) are run through the MathVerse
preparer in that ``Choice:`` layout too.
"""

from __future__ import annotations

import io
import json
from contextlib import redirect_stderr, redirect_stdout
from pathlib import Path

import pyarrow.parquet as pq
import pytest

from data_prep import mathverse
from data_prep.prompts import ONE_LETTER_INSTRUCTION
from mapo_verl_cpu.checkout import realdata_dir
from mapo_verl_cpu.fixtures.public_layouts import image_bytes, write_mathverse_configs
from reward_fns import router
from reward_fns.answer_forms import option_key

MATHVERSE = "AI4Math/MathVerse"
_622 = (
    "The logarithm function and a line are graphed. Logarithm function $f$ is graphed in blue and it goes through "
    "(30,4), (5,2), (55,5). Line $y=4$ is graphed in red and parallel to x-axis. A pharmaceutical scientist making "
    "a new medication wonders how much of the active ingredient to include in a dose. They are curious how long "
    "different amounts of the active ingredient will stay in someone's bloodstream.\n\nThe amount of time (in hours) "
    "the active ingredient remains in the bloodstream can be modeled by $f(x)=-1.25 \\cdot \\ln \\left(\\frac{1}{x}"
    "\\right)$, where $x$ is the initial amount of the active ingredient (in milligrams). Here is the graph of $f$ "
    "and the graph of the line $y=4$.\n\nWhich statements represent the meaning of the intersection point of the "
    "graphs?\n\nChoose all answers that apply:\nChoices:\nA:It describes the amount of time the active ingredient "
    "stays in the bloodstream if the initial amount of the active ingredient is $4 \\mathrm{mg}$.\nB:\nC:It gives "
    "the solution to the equation $-1.25 \\cdot \\ln \\left(\\frac{1}{x}\\right)=4$.\nD:It describes the situation "
    "where the initial amount of the active ingredient is equal to how long it stays in the bloodstream.\nE:\nF:It "
    "gives the initial amount of the active ingredient such that the last of the active ingredient leaves the "
    "bloodstream after 4 hours."
)
_622_C = "It gives the solution to the equation $-1.25 \\cdot \\ln \\left(\\frac{1}{x}\\right)=4$."
#: (sample_index, question, answer, ground truth, answers a model writes that are right, ones that are wrong)
VERBATIM = [
    ("339", "In the figure below, point B is due East of point A. Triangle ABC formed by the dashed line, angle A is "
     "49° and angle B is 41°. Find the true bearing of point B from point A.\nChoice:\nA. 090^\\circ T\n"
     "B. 180^\\circ T\nC. 049^\\circ T\nD. 041^\\circ T", "090^\\circ T", "A",
     ["A", "(A)", "\\text{A}", "A. 090^\\circ T", "090^\\circ T", "90° T", "090°", "N 90° E"],
     ["B", "C", "180^\\circ T", "049° T", "270° T", "N 90° W"]),
    ("340", "Consider the following diagram. Triangle ABC formed by the dashed line, angle A is 49° and angle B is "
     "41°.\n\nFind the true bearing of point B from point C.\nChoice:\nA. 053 ^\\circ T\nB. 082 ^\\circ T\n"
     "C. 045 ^\\circ T\nD. 037 ^\\circ T", "053 ^\\circ T", "A",
     ["A", "Option A", "053 ^\\circ T", "53°T", "053°", "53^\\circ \\text{T}", "N 53° E"],
     ["B", "D", "082 ^\\circ T", "037° T", "127° T", "S 53° E"]),
    ("429", "A driver glances up at the top of a building.\n\nTrue or false: According to the angle A, the distance "
     "from the driver to the building would be the opposite side.\nChoice:\nA. True\nB. False", "False", "B",
     ["B", "(B) False", "False", "false", "\\text{False}"], ["A", "True", "F"]),
    ("430", "Sally needs to walk from the school to the bus stop.\n\nTrue or False : The quickest way to get there "
     "will be through the playground.\nChoice:\nA. False\nB. True", "False", "A",
     ["A", "A.", "False", "\\text{false}"], ["B", "True"]),
    ("622", _622, "C", "C", ["C", _622_C], ["A", "B", "F", "It gives the initial amount of the active ingredient"]),
]  # fmt: skip

BEARINGS = (
    "Find the true bearing of the ship from the port.\nChoices:\nA:053 ^\\circ T\nB:127 ^\\circ T\nC:233 ^\\circ T"
)
TRUE_FALSE = "True or false: the two triangles are congruent.\nChoice:\nA. True\nB. False"
LENGTHS = "Find the length of AB.\nChoice:\nA. 3 cm\nB. 4 cm\nC. 5 cm\nD. 6 cm"
ANGLES = "Find angle ABC.\nChoices:\nA:30°\nB:45°\nC:60°\nD:90°"
HALVES = "Find the ratio of the areas.\nChoices:\nA:0.5\nB:\\frac{1}{2}\nC:2\nD:4"
DIRECTIONS = "In which direction does the ship sail?\nChoices:\nA:N\nB:E\nC:S\nD:W"
#: Crafted records of each kind in the vision-bearing versions that list their options (the default config):
#: (sample_index, version, question, answer, ground truth, right answers, wrong answers)
CRAFTED = [
    ("31", "Text Dominant", BEARINGS, "53° T", "A", ["A", "053^\\circ T", "53° T", "N 53° E"],
     ["B", "127° T", "S 53° E", "090° T"]),
    ("32", "Text Lite", TRUE_FALSE, "False", "B", ["B", "False", "\\text{False}"], ["A", "True"]),
    ("33", "Vision Intensive", LENGTHS, "5 cm", "C", ["C", "(C) 5 cm", "5 cm", "5", "5\\text{ cm}"],
     ["D", "6 cm", "7 cm", "5 m"]),
    ("34", "Vision Dominant", ANGLES, "75°", "75°", ["75°", "75^{\\circ}"], ["A", "D", "45°"]),
    ("35", "Text Lite", HALVES, "1/2", "1/2", ["1/2", "0.5"], ["A", "B", "C", "2"]),
    ("36", "Text Dominant", DIRECTIONS, "E", "B", ["B", "E", "(B) E"], ["A", "D", "N", "W"]),
]  # fmt: skip


def think(answer: str) -> str:
    return f"<think>I read the figure.</think> The answer is \\boxed{{{answer}}}."


def score(row: dict, answer: str) -> float:
    """verl's custom-reward call on one prepared row."""
    truth, extra_info = row["reward_model"]["ground_truth"], row["extra_info"]
    return router.compute_score(row["data_source"], think(answer), truth, extra_info)["score"]


def source_row(sample: str, version: str, question: str, answer: str) -> dict:
    """One record in the hub's columns (``image`` added by :func:`write_copy`)."""
    return dict(sample_index=sample, problem_index=sample, problem_version=version, question=question, answer=answer,
                question_type="multi-choice", query_cot=question)  # fmt: skip


def crafted_rows(records: list[tuple] = CRAFTED) -> list[dict]:
    return [source_row(sample, version, question, answer) for sample, version, question, answer, *_ in records]


def verbatim_rows() -> list[dict]:
    return [source_row(sample, "Text Only", question, answer) for sample, question, answer, *_ in VERBATIM]


def write_copy(src: Path, vision: list[dict], text_only: list[dict]) -> None:
    """MathVerse's public layout: the vision-bearing versions (with a diagram) and the Text Only version."""
    image = {"bytes": image_bytes(40, 30), "path": None}
    write_mathverse_configs(
        src, [{**row, "image": image} for row in vision], [{**row, "image": ""} for row in text_only]
    )


def prepare(src: Path, out: Path, *extra: str) -> tuple[int, list[dict], str, str]:
    """The preparer as a user runs it: exit status, rows, stdout, stderr."""
    stdout, stderr = io.StringIO(), io.StringIO()
    argv = ["--local-dataset-path", str(src), "--local-save-dir", str(out), "--no-progress", *extra]
    with redirect_stdout(stdout), redirect_stderr(stderr):
        status = mathverse.main(argv)
    rows = pq.read_table(out / "test.parquet").to_pylist() if status == 0 else []
    return status, rows, stdout.getvalue(), stderr.getvalue()


TEXT_ONLY = ("--config", "testmini_text_only", "--split", "testmini_text_only")


def assert_graded(rows: list[dict], records: list[tuple]) -> None:
    """The ground truths, and every right answer scores 1.0 and every wrong one less."""
    for row, (sample, *_, truth, right, wrong) in zip(rows, records, strict=True):
        assert row["extra_info"]["source_id"] == sample
        assert row["reward_model"]["ground_truth"] == truth, sample
        for answer in right:
            assert score(row, answer) == 1.0, (sample, answer)
        for answer in wrong:
            assert score(row, answer) < 1.0, (sample, answer)


def test_verbatim_records_with_options_as_text_get_the_letter(tmp_path):
    """MathVerse 339, 340 (bearings), 429, 430 (True/False) under ``Choice:``, and 622's empty option lines."""
    src = tmp_path / "MathVerse"
    write_copy(src, crafted_rows(CRAFTED[:1]), verbatim_rows())
    status, rows, out, err = prepare(src, tmp_path / "out", *TEXT_ONLY)
    assert status == 0, err
    assert_graded(rows, VERBATIM)
    for row, (_, _, answer, *_) in zip(rows, VERBATIM, strict=True):
        assert row["extra_info"]["answer"] == answer  # what the record said is kept
        assert row["extra_info"]["question_type"] == "multi_choice"
        assert ONE_LETTER_INSTRUCTION in row["prompt"][0]["content"]
    assert rows[0]["extra_info"]["options"] == ["090^\\circ T", "180^\\circ T", "049^\\circ T", "041^\\circ T"]
    assert rows[3]["extra_info"]["options"] == ["False", "True"]
    options_622 = rows[4]["extra_info"]["options"]  # each letter in its place, B and E empty
    assert len(options_622) == 6 and options_622[1] == options_622[4] == "" and options_622[2] == _622_C
    assert "choice answer given as option text: 4" in out and "warning" not in out


def test_crafted_records_of_each_kind(tmp_path):
    """Bearing options (the answer a bearing in another spelling), True/False, ordinary text, a letter that is an
    option's text; an answer matching no option, and one matching two: kept as written, with a counted warning."""
    src = tmp_path / "MathVerse"
    write_copy(src, crafted_rows(), verbatim_rows())
    status, rows, out, err = prepare(src, tmp_path / "out")
    assert status == 0, err
    assert_graded(rows, CRAFTED)
    by_id = {row["extra_info"]["source_id"]: row for row in rows}
    assert [by_id[s]["extra_info"]["answer"] for s in ("31", "33", "34", "36")] == ["53° T", "5 cm", "75°", "E"]
    for sample in ("34", "35"):  # no letter is right: the prompt does not ask for one
        assert by_id[sample]["extra_info"]["question_type"] == "free_form"
        assert ONE_LETTER_INSTRUCTION not in by_id[sample]["prompt"][0]["content"]
        assert by_id[sample]["extra_info"]["options"]  # the listed options are still recorded
    assert ONE_LETTER_INSTRUCTION in by_id["31"]["prompt"][0]["content"]
    assert "skipped 0 (none)" in out
    assert "choice answer given as option text: 3" in out
    assert "choice answer given as an option's value (bearing, number): matched to its option: 1" in out
    kept = "kept as written (free-form): 1 (sample_index"
    assert f"warning: choice answer matches none of the listed options: {kept} 34)" in out
    assert f"warning: choice answer matches several listed options: {kept} 35)" in out


def test_letter_beyond_the_listed_options_is_an_error(tmp_path):
    """``F`` among four listed options names no option and is no option's text: an error naming the record."""
    src = tmp_path / "MathVerse"
    vision = [source_row("36", "Text Lite", ANGLES, "B"), source_row("37", "Text Lite", ANGLES, "F")]
    write_copy(src, vision, verbatim_rows())
    status, _, _, err = prepare(src, tmp_path / "out")
    assert status == 1
    assert "sample_index=37" in err and "answer letter 'F' beyond the 4 options" in err
    assert not (tmp_path / "out" / "test.parquet").exists()


REALDATA = realdata_dir()


@pytest.mark.skipif(not REALDATA.is_dir(), reason=f"{REALDATA} is absent (CI has it)")
def test_real_mathvista_options_in_mathverse_choice_layout(tmp_path):
    """Every MathVista testmini choice record whose answer is an option's text (522 of 540: not the 18 whose answer
    reads as a letter, ``D`` or ``(b)`` among options that are letters), written as a MathVerse Text Only record under
    ``Choice:``: the ground truth is the first option with the answer's text (781 repeats ``18``), and each option's
    letter and text score 1.0 exactly when that option's text is the answer's; text that is no option scores less."""
    annotations = json.loads((REALDATA / "mathvista" / "testmini.json").read_text())
    records = []
    for pid, rec in annotations.items():
        options = [str(option) for option in rec.get("choices") or []]
        if rec["question_type"] != "multi_choice" or mathverse._ONE_LETTER.fullmatch(rec["answer"].strip()):
            continue
        assert all(option.strip() and "\n" not in option for option in options) and len(options) <= 8, pid
        lines = "\n".join(f"{chr(ord('A') + i)}. {option}" for i, option in enumerate(options))
        records.append((pid, f"{rec['question']}\nChoice:\n{lines}", rec["answer"], options))
    assert len(records) == 522
    src = tmp_path / "MathVerse"
    text_only = [source_row(pid, "Text Only", question, answer) for pid, question, answer, _ in records]
    write_copy(src, crafted_rows(CRAFTED[:1]), text_only)
    status, rows, out, err = prepare(src, tmp_path / "out", *TEXT_ONLY)
    assert status == 0, err
    assert "skipped 0 (none)" in out and "warning" not in out
    nothing = "\\text{none of these}"
    for row, (pid, _, answer, options) in zip(rows, records, strict=True):
        assert row["extra_info"]["source_id"] == pid and row["extra_info"]["answer"] == answer
        assert row["reward_model"]["ground_truth"] == chr(ord("A") + options.index(answer)), pid
        for i, option in enumerate(options):
            expected = 1.0 if option.strip() == answer.strip() else 0.1
            assert score(row, chr(ord("A") + i)) == expected, (pid, i)
            assert score(row, option) == expected, (pid, option)
        if all(option_key(option) != option_key(nothing) for option in options):
            assert score(row, nothing) < 1.0, pid
