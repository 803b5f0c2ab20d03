"""MathVerse testmini (``AI4Math/MathVerse``, config ``testmini``) -> ``OUT/test.parquet``
(default ``$MAPO_DATA_DIR/mathverse``).

Source: the hub dataset, or ``--local-dataset-path SRC`` (a local copy in the hub layout, which declares the
configs ``testmini`` and ``testmini_text_only``: ``testmini`` is read unless ``--config`` names another; or one
parquet file). Columns used: ``sample_index``, ``problem_version``, ``question`` (multiple-choice questions carry
their ``Choices:`` lines in the text), ``answer``, ``question_type`` and ``image``. In the Vision-Only versions the
question is drawn inside the image; an empty ``question`` then gets the instruction to answer the question shown.
Text Only records have no image (``image`` empty) and become text-only prompts.

Every legitimate record becomes a row whose ground truth a grader accepts (each repair counted in the summary):

* ``multi-choice`` with one letter (``B``), or the option's text matched to its letter: the letter;
* ``multi-choice`` with several letters (``C`` newline ``D``): the multi-answer ground truth ``C, D``, and the
  prompt asks for the letters of all correct options;
* ``multi-choice`` whose answer is a value and no options are listed (a bearing ``090° T``): a free-form question
  with that value as ground truth; ``True``/``False`` the same, asked as true or false;
* ``free-form``: the (repaired) answer.

Only broken input is an error naming the record (``--skip-bad`` skips those): an unreadable image, a missing
image outside the Text Only version, a blank answer, an answer naming none of its listed options.
"""

from __future__ import annotations

import re
import sys

from data_prep.math_eval_driver import MathEvalSpec, Parsed, eval_main
from data_prep.prompts import (
    ONE_LETTER_INSTRUCTION,
    REPAIR_SEVERAL_LETTERS,
    REPAIR_TRUE_FALSE,
    REPAIR_VALUE_UNDER_CHOICE,
    SEVERAL_LETTERS_INSTRUCTION,
    TRUE_FALSE_INSTRUCTION,
    answer_text,
    choice_answer,
    question_text,
    several_letters,
    several_letters_truth,
    true_false,
)

_OPTION_LINE = re.compile(r"^\s*\(?([A-H])\)?\s*[:.)：]\s*(.+?)\s*$", re.MULTILINE)
_ONE_LETTER = re.compile(r"(?i)\(?\s*([A-H])\s*\)?\.?")
TEXT_ONLY = "Text Only"


def _options(question: str) -> list[str]:
    tail = question.split("Choices:", 1)[1] if "Choices:" in question else ""
    return [text for _, text in _OPTION_LINE.findall(tail)]


def parse(rec: dict) -> Parsed:
    answer = answer_text(rec.get("answer"))
    question = question_text(rec.get("question"))
    if rec.get("question_type") != "multi-choice":
        return Parsed(question.text, [], answer.text, "free_form", question.repairs + answer.repairs)
    options = _options(question.text)
    letters = several_letters(answer.text)
    one = _ONE_LETTER.fullmatch(answer.text.strip())
    if letters is None and one is None and not options:  # a value under a choice label: ask for the value
        repairs = question.repairs + answer.repairs
        word = true_false(answer.text)
        if word is not None:
            text = f"{question.text}\n{TRUE_FALSE_INSTRUCTION}"
            return Parsed(text, [], word, "free_form", [*repairs, REPAIR_TRUE_FALSE])
        return Parsed(question.text, [], answer.text, "free_form", [*repairs, REPAIR_VALUE_UNDER_CHOICE])
    # an image-only question whose answer is a letter has its choices in the image
    question = question_text(rec.get("question"), has_choices_in_image=True)
    repairs = question.repairs + answer.repairs
    # The choices stay in the question text as MathVerse writes them; ``options`` only records them.
    if letters is not None:
        truth = several_letters_truth(letters, options)
        text = f"{question.text}\n{SEVERAL_LETTERS_INSTRUCTION}"
        return Parsed(text, options, truth, "multi_choice", [*repairs, REPAIR_SEVERAL_LETTERS])
    if one is not None:
        letter = one.group(1).upper()
    else:
        letter, found = choice_answer(answer.text, options)
        repairs += found
    return Parsed(f"{question.text}\n{ONE_LETTER_INSTRUCTION}", options, letter, "multi_choice", repairs)


def is_text_only(rec: dict) -> bool:
    """MathVerse's Text Only version has no diagram: no image is what the record should have."""
    return str(rec.get("problem_version") or "").strip() == TEXT_ONLY


SPEC = MathEvalSpec(
    name="mathverse",
    split="testmini",
    config="testmini",
    parse=parse,
    id_column="sample_index",
    paper_item="mathverse_item",
    paper_keep="mathverse_is_vision_bearing",
    imageless=is_text_only,
)


def main(argv: list[str] | None = None) -> int:
    return eval_main(SPEC, __doc__, argv)


if __name__ == "__main__":
    sys.exit(main())
