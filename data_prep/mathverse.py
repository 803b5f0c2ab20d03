"""MathVerse testmini (``AI4Math/MathVerse``, config ``testmini``) -> ``OUT/test.parquet``.

Source: the hub dataset, or ``--local-dataset-path SRC`` (a local copy in the hub layout, or one parquet file).
Columns used: ``sample_index``, ``problem_version``, ``question`` (multiple-choice questions carry their
``Choices:`` lines in the text), ``answer`` (an option letter for ``multi-choice``), ``question_type`` and
``image``. In the Vision-Only versions the question is drawn inside the image; an empty ``question`` then gets
the instruction to read it from the image.
"""

from __future__ import annotations

import re
import sys

from data_prep.common import BadRecord, require_text
from data_prep.hub_math import MathEvalSpec, eval_main

_OPTION_LINE = re.compile(r"^\s*\(?([A-H])\)?\s*[:.)：]\s*(.+?)\s*$", re.MULTILINE)
_IN_IMAGE = "The question and any choices are shown in the image."


def parse(rec: dict) -> tuple[str, list[str], str, str]:
    question = str(rec.get("question") or "").strip() or _IN_IMAGE
    answer = require_text(rec.get("answer"), "answer")
    if rec.get("question_type") != "multi-choice":
        return question, [], answer, "free_form"
    letter = answer.strip("() .").upper()
    if len(letter) != 1 or not "A" <= letter <= "H":
        raise BadRecord("bad answer", f"multi-choice answer {answer!r} is not an option letter")
    tail = question.split("Choices:", 1)[1] if "Choices:" in question else ""
    options = [text for _, text in _OPTION_LINE.findall(tail)]
    # The choices stay in the question text as MathVerse writes them; ``options`` only records them.
    text = f"{question}\nAnswer with the option's letter."
    return text, options, letter, "multi_choice"


SPEC = MathEvalSpec(
    name="mathverse",
    hub_id="AI4Math/MathVerse",
    split="testmini",
    config="testmini",
    parse=parse,
    id_column="sample_index",
)


def main(argv: list[str] | None = None) -> int:
    return eval_main(SPEC, __doc__, argv)


if __name__ == "__main__":
    sys.exit(main())
