"""MathVerse testmini (``AI4Math/MathVerse``, config ``testmini``) -> ``OUT/test.parquet``
(default ``$MAPO_DATA_DIR/mathverse``).

Source: the hub dataset, or ``--local-dataset-path SRC`` (a local copy in the hub layout, which declares the
configs ``testmini`` and ``testmini_text_only``: ``testmini`` is read unless ``--config`` names another; or one
parquet file). Columns used: ``sample_index``, ``problem_version``, ``question`` (multiple-choice questions carry
their ``Choices:`` lines in the text), ``answer`` (an option letter for ``multi-choice``, occasionally the
option's text, matched to its letter), ``question_type`` and ``image``. In the Vision-Only versions the question
is drawn inside the image; an empty ``question`` then gets the instruction to answer the question shown.
"""

from __future__ import annotations

import re
import sys

from data_prep.hub_math import MathEvalSpec, Parsed, eval_main
from data_prep.prompts import answer_text, choice_answer, question_text
from data_prep.rows import BadRecord

_OPTION_LINE = re.compile(r"^\s*\(?([A-H])\)?\s*[:.)：]\s*(.+?)\s*$", re.MULTILINE)


def parse(rec: dict) -> Parsed:
    choice = rec.get("question_type") == "multi-choice"
    question = question_text(rec.get("question"), has_choices_in_image=choice)
    answer = answer_text(rec.get("answer"))
    repairs = question.repairs + answer.repairs
    if not choice:
        return Parsed(question.text, [], answer.text, "free_form", repairs)
    tail = question.text.split("Choices:", 1)[1] if "Choices:" in question.text else ""
    options = [text for _, text in _OPTION_LINE.findall(tail)]
    letter = answer.text.strip("() .").upper()
    if not (len(letter) == 1 and "A" <= letter <= "H"):
        if not options:
            raise BadRecord("bad answer", f"choice answer {answer.text!r} is not a letter and no options are given")
        letter, found = choice_answer(answer.text, options)
        repairs += found
    # The choices stay in the question text as MathVerse writes them; ``options`` only records them.
    text = f"{question.text}\nAnswer with the option's letter."
    return Parsed(text, options, letter, "multi_choice", repairs)


SPEC = MathEvalSpec(
    name="mathverse",
    hub_id="AI4Math/MathVerse",
    split="testmini",
    config="testmini",
    parse=parse,
    id_column="sample_index",
    paper_item="mathverse_item",
    paper_keep="mathverse_is_vision_bearing",
)


def main(argv: list[str] | None = None) -> int:
    return eval_main(SPEC, __doc__, argv)


if __name__ == "__main__":
    sys.exit(main())
