"""MATH-Vision test (``MathLLMs/MathVision``) -> ``OUT/test.parquet`` (default ``$MAPO_DATA_DIR/mathvision``).

Source: the hub dataset, or ``--local-dataset-path SRC`` (a local copy in the hub layout, or one parquet file).
Columns used: ``id``, ``question`` (its ``<image1>`` markers are dropped; the image goes first), ``options``
(empty for free-form questions), ``answer`` (an option letter for choice questions, or the option's text) and
``decoded_image``. ``--split testmini`` selects the 304-question subset.

Real records handled: a question that is only ``<image1>`` (the question is drawn in the image: the prompt asks
to answer the question shown), LaTeX escapes eaten by JSON (``\\x0crac{36}{13}`` -> ``\\frac{36}{13}``), literal
``\\n`` in question text; each repair is counted in the summary. A repeated ``id`` is a bad record (``duplicate id``:
an error, or with ``--skip-bad`` a counted skip).
"""

from __future__ import annotations

import sys

from data_prep.math_eval_driver import MathEvalSpec, Parsed, eval_main, options_of
from data_prep.prompts import answer_text, choice_answer, choices_block, question_text


def parse(rec: dict) -> Parsed:
    options = options_of(rec.get("options"))
    question = question_text(rec.get("question"), drop_image_marks=True, has_choices_in_image=False)
    answer = answer_text(rec.get("answer"))
    repairs = question.repairs + answer.repairs
    if not options:
        return Parsed(question.text, [], answer.text, "free_form", repairs)
    letter, found = choice_answer(answer.text, options)
    return Parsed(f"{question.text}\n{choices_block(options)}", options, letter, "multi_choice", repairs + found)


SPEC = MathEvalSpec(
    name="mathvision",
    split="test",
    parse=parse,
    id_column="id",
    paper_item="mathvision_item",
    unique_ids=True,
)


def main(argv: list[str] | None = None) -> int:
    return eval_main(SPEC, __doc__, argv)


if __name__ == "__main__":
    sys.exit(main())
