"""MathVerse testmini (``AI4Math/MathVerse``, config ``testmini``) -> ``OUT/test.parquet``
(default ``$MAPO_DATA_DIR/mathverse``).

Source: the hub dataset, or ``--local-dataset-path SRC`` (a local copy in the hub layout, which declares the
configs ``testmini`` and ``testmini_text_only``: ``testmini`` is read unless ``--config`` names another; or one
parquet file). Columns used: ``sample_index``, ``problem_version``, ``question`` (multiple-choice questions carry
their ``Choices:`` lines in the text), ``answer``, ``question_type`` and ``image``. In the Vision-Only versions the
question is drawn inside the image; an empty ``question`` then gets the instruction to answer the question shown.
Text Only records have no image (``image`` empty) and become text-only prompts.

Options are the ``A:``/``A.``/``(A)`` lines after a ``Choices:`` header, or ``Choice:`` (testmini 339, 340, 429
and 430 in the Text Only version write it so); an option line with no text (``B:``, testmini 622) is an empty
option, so that each letter keeps its place.

Every legitimate record becomes a row whose ground truth a grader accepts (each repair counted in the summary):

* ``multi-choice`` with one letter (``B``): the letter;
* ``multi-choice`` whose answer is an option's text (``$45^{\\circ}$`` for ``B:45°``, ``053 ^\\circ T`` for
  ``A. 053 ^\\circ T``, ``False`` for ``B. False``): that option's letter, found by the text (folding spacing,
  ``$``, degree signs, case) or else by the one option of the same value (a bearing ``53° T`` for
  ``053 ^\\circ T``, ``0.5`` for ``\\frac{1}{2}``);
* ``multi-choice`` with several letters (``C`` newline ``D``): the multi-answer ground truth ``C, D``, and the
  prompt asks for the letters of all correct options;
* ``multi-choice`` whose answer is a value and no options are listed (a bearing ``090° T``, the choices drawn in
  the image): a free-form question with that value as ground truth; ``True``/``False`` the same, asked as true or
  false;
* ``free-form``: the (repaired) answer.

``extra_info["answer"]`` keeps the record's own answer (repaired), whatever the ground truth became.

A choice answer whose text matches none of the listed options, or several different ones, is kept as written
(a free-form ground truth: no letter is right) and counted as a warning in the summary, naming the records.
Only broken input is an error naming the record (``--skip-bad`` skips those): an unreadable image, a missing
image outside the Text Only version, a blank answer, an answer letter beyond the listed options.
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
    option_letter,
    question_text,
    several_letters,
    several_letters_truth,
    true_false,
)
from data_prep.rows import BadRecord
from reward_fns.answer_forms import forms_match, option_key

#: The header before the option lines: MathVerse writes ``Choices:``, and ``Choice:`` in four Text Only records.
_CHOICES_HEADER = re.compile(r"\bChoices?[ \t]*:")
#: One option line, ``A:30°``, ``A. 053 ^\circ T``, ``(A) 30``; its text may be empty (``B:``), never the next line.
_OPTION_LINE = re.compile(r"^[ \t]*\(?([A-H])\)?[ \t]*[:.)：][ \t]*(.*?)[ \t]*$", re.MULTILINE)
_ONE_LETTER = re.compile(r"(?i)\(?\s*([A-H])\s*\)?\.?")
TEXT_ONLY = "Text Only"

REPAIR_OPTION_VALUE = "choice answer given as an option's value (bearing, number): matched to its option"
WARN_NO_OPTION = "choice answer matches none of the listed options: kept as written (free-form)"
WARN_SEVERAL_OPTIONS = "choice answer matches several listed options: kept as written (free-form)"


def _options(question: str) -> list[str]:
    """The listed options, in letter order from ``A`` (lines after the header that break the order are not
    options); ``[]`` when the question lists none."""
    header = _CHOICES_HEADER.search(question)
    if header is None:
        return []
    options: list[str] = []
    for letter, text in _OPTION_LINE.findall(question[header.end() :]):
        if letter != chr(ord("A") + len(options)):
            break
        options.append(text)
    return options


def _option_of(answer: str, options: list[str]) -> tuple[str | None, list[str]]:
    """The letter of the option a text answer gives, and the repairs made to find it; ``(None, [warning])`` when
    the text matches none of the options or several different ones (no guess).

    The option's text first (:func:`data_prep.prompts.choice_answer`), then its value read as the reward reads it
    (:func:`reward_fns.answer_forms.forms_match`: bearings, numbers, units).
    """
    try:
        return choice_answer(answer, options)
    except BadRecord:
        pass
    key = option_key(answer)
    if sum(1 for option in options if option.strip() and option_key(option) == key) > 1:
        return None, [WARN_SEVERAL_OPTIONS]
    by_value = [i for i, option in enumerate(options) if option.strip() and forms_match(answer, option)]
    if len({options[i].strip() for i in by_value}) > 1:
        return None, [WARN_SEVERAL_OPTIONS]
    if not by_value:
        return None, [WARN_NO_OPTION]
    return option_letter(by_value[0]), [REPAIR_OPTION_VALUE]


def parse(rec: dict) -> Parsed:
    answer = answer_text(rec.get("answer"))
    question = question_text(rec.get("question"))
    said = answer.text  # the record's own answer, kept in extra_info
    if rec.get("question_type") != "multi-choice":
        return Parsed(question.text, [], said, "free_form", question.repairs + answer.repairs, source_answer=said)
    options = _options(question.text)
    letters = several_letters(said)
    one = _ONE_LETTER.fullmatch(said.strip())
    if letters is None and one is None and not options:  # a value under a choice label: ask for the value
        repairs = question.repairs + answer.repairs
        word = true_false(said)
        if word is not None:
            text = f"{question.text}\n{TRUE_FALSE_INSTRUCTION}"
            return Parsed(text, [], word, "free_form", [*repairs, REPAIR_TRUE_FALSE], source_answer=said)
        return Parsed(question.text, [], said, "free_form", [*repairs, REPAIR_VALUE_UNDER_CHOICE], source_answer=said)
    # an image-only question whose answer is a letter has its choices in the image
    question = question_text(rec.get("question"), has_choices_in_image=True)
    repairs = question.repairs + answer.repairs
    # The choices stay in the question text as MathVerse writes them; ``options`` only records them.
    if letters is not None:
        truth = several_letters_truth(letters, options)
        text = f"{question.text}\n{SEVERAL_LETTERS_INSTRUCTION}"
        return Parsed(text, options, truth, "multi_choice", [*repairs, REPAIR_SEVERAL_LETTERS], source_answer=said)
    if one is not None and (not options or ord(one.group(1).upper()) - ord("A") < len(options)):
        letter: str | None = one.group(1).upper()
    else:  # option text (or a letter that is an option's text, as in A:N B:E C:S D:W)
        letter, found = _option_of(said, options)
        if letter is None and one is not None:
            raise BadRecord("bad answer", f"answer letter {said.strip()!r} beyond the {len(options)} options")
        if letter is None:
            return Parsed(question.text, options, said, "free_form", repairs, warnings=found, source_answer=said)
        repairs += found
    return Parsed(
        f"{question.text}\n{ONE_LETTER_INSTRUCTION}", options, letter, "multi_choice", repairs, source_answer=said
    )


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
