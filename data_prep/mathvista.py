"""MathVista testmini (``AI4Math/MathVista``) -> ``OUT/test.parquet`` (default ``$MAPO_DATA_DIR/mathvista``).

Source: the hub dataset, or ``--local-dataset-path SRC`` (a local copy in the hub layout, or one parquet file).
Columns used: ``pid``, ``question``, ``choices``, ``answer``, ``question_type`` (``multi_choice`` /
``free_form``), ``answer_type``, ``precision``, ``unit`` and the image in ``decoded_image``. A multiple-choice
answer (the text of one choice, matched after folding spacing, ``$`` and degree signs) becomes its option letter.
"""

from __future__ import annotations

import sys

from data_prep.math_eval_driver import MathEvalSpec, Parsed, eval_main, options_of
from data_prep.prompts import REPAIR_OPTION_TEXT, answer_text, choice_answer, choices_block, question_text


def parse(rec: dict) -> Parsed:
    question = question_text(rec.get("question"))
    answer = answer_text(rec.get("answer"))
    options = options_of(rec.get("choices"))
    repairs = question.repairs + answer.repairs
    if rec.get("question_type") == "multi_choice" or options:
        letter, found = choice_answer(answer.text, options, prefer_text=True)
        # MathVista's answers are the choices' text by design: only a fuzzy match is a repair.
        found = [kind for kind in found if kind != REPAIR_OPTION_TEXT or answer.text not in options]
        return Parsed(f"{question.text}\n{choices_block(options)}", options, letter, "multi_choice", repairs + found)
    hints = []
    if rec.get("unit"):
        hints.append(f"Give the number without the unit ({rec['unit']}).")
    if rec.get("answer_type") == "integer":
        hints.append("The answer is an integer.")
    elif rec.get("answer_type") == "float" and rec.get("precision") is not None:
        hints.append(f"The answer is a number with {int(rec['precision'])} decimal place(s).")
    elif rec.get("answer_type") == "list":
        hints.append("The answer is a Python list, e.g. [1, 2].")
    return Parsed(" ".join([question.text, *hints]), [], answer.text, "free_form", repairs)


SPEC = MathEvalSpec(
    name="mathvista",
    split="testmini",
    parse=parse,
    id_column="pid",
    paper_item="mathvista_item",
)


def main(argv: list[str] | None = None) -> int:
    return eval_main(SPEC, __doc__, argv)


if __name__ == "__main__":
    sys.exit(main())
