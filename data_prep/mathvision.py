"""MATH-Vision test (``MathLLMs/MathVision``) -> ``OUT/test.parquet``.

Source: the hub dataset, or ``--local-dataset-path SRC`` (a local copy in the hub layout, or one parquet file).
Columns used: ``id``, ``question`` (its ``<image1>`` markers are dropped; the image goes first), ``options``
(empty for free-form questions), ``answer`` (an option letter for choice questions) and ``decoded_image``.
``--split testmini`` selects the 304-question subset.
"""

from __future__ import annotations

import re
import sys

from data_prep.common import BadRecord, choices_block, option_letter, require_text
from data_prep.hub_math import MathEvalSpec, eval_main, options_of

_IMAGE_MARK = re.compile(r"<image\d*>")


def parse(rec: dict) -> tuple[str, list[str], str, str]:
    question = _IMAGE_MARK.sub("", str(rec.get("question") or "")).strip()
    question = require_text(question, "question")
    answer = require_text(rec.get("answer"), "answer")
    options = options_of(rec.get("options"))
    if not options:
        return question, [], answer, "free_form"
    letter = answer.strip("() .").upper()
    if len(letter) == 1 and 0 <= ord(letter) - ord("A") < len(options):
        return f"{question}\n{choices_block(options)}", options, letter, "multi_choice"
    if answer in options:
        return f"{question}\n{choices_block(options)}", options, option_letter(options.index(answer)), "multi_choice"
    raise BadRecord("bad answer", f"answer {answer!r} names none of {len(options)} options")


SPEC = MathEvalSpec(name="mathvision", hub_id="MathLLMs/MathVision", split="test", parse=parse, id_column="id")


def main(argv: list[str] | None = None) -> int:
    return eval_main(SPEC, __doc__, argv)


if __name__ == "__main__":
    sys.exit(main())
