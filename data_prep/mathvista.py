"""MathVista testmini (``AI4Math/MathVista``) -> ``OUT/test.parquet``.

Source: the hub dataset, or ``--local-dataset-path SRC`` (a local copy in the hub layout, or one parquet file).
Columns used: ``pid``, ``question``, ``choices``, ``answer``, ``question_type`` (``multi_choice`` /
``free_form``), ``answer_type``, ``precision``, ``unit`` and the image in ``decoded_image``. A multiple-choice
answer (the text of one choice) becomes its option letter.
"""

from __future__ import annotations

import sys

from data_prep.common import BadRecord, choices_block, option_letter, require_text
from data_prep.hub_math import MathEvalSpec, eval_main, options_of


def parse(rec: dict) -> tuple[str, list[str], str, str]:
    question = require_text(rec.get("question"), "question")
    answer = require_text(rec.get("answer"), "answer")
    options = options_of(rec.get("choices"))
    if rec.get("question_type") == "multi_choice" or options:
        if answer not in options:
            raise BadRecord("bad answer", f"answer {answer!r} is not one of the choices")
        return f"{question}\n{choices_block(options)}", options, option_letter(options.index(answer)), "multi_choice"
    hints = []
    if rec.get("unit"):
        hints.append(f"Give the number without the unit ({rec['unit']}).")
    if rec.get("answer_type") == "integer":
        hints.append("The answer is an integer.")
    elif rec.get("answer_type") == "float" and rec.get("precision") is not None:
        hints.append(f"The answer is a number with {int(rec['precision'])} decimal place(s).")
    return " ".join([question, *hints]), [], answer, "free_form"


SPEC = MathEvalSpec(name="mathvista", hub_id="AI4Math/MathVista", split="testmini", parse=parse, id_column="pid")


def main(argv: list[str] | None = None) -> int:
    return eval_main(SPEC, __doc__, argv)


if __name__ == "__main__":
    sys.exit(main())
