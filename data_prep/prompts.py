"""Prompts and question text: our instructions, choices, image-only questions, repaired LaTeX, and matching an
answer given as option text to its letter.

Text repairs are returned with the question so that the summary can name and count them (``Cleaned.repairs``).
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass, field

from data_prep.rows import IMAGE_TOKEN, BadRecord, require_text
from reward_fns.answer_forms import option_key, option_letters, restore_latex_escapes

MATH_INSTRUCTION = (
    "First reason step by step inside <think> </think> tags, "
    "then give the final answer inside \\boxed{} after the closing </think> tag."
)
#: The question of a record whose text is only an image placeholder: the question is drawn in the image.
IMAGE_ONLY_QUESTION = "Answer the question shown in the image."
IMAGE_ONLY_CHOICE_QUESTION = "Answer the question shown in the image; its choices are shown in the image too."
#: The instruction after a choice question's text, for one correct option and for several.
ONE_LETTER_INSTRUCTION = "Answer with the option's letter."
SEVERAL_LETTERS_INSTRUCTION = "Several options are correct: answer with the letters of all correct options."
TRUE_FALSE_INSTRUCTION = "Answer True or False."

_IMAGE_MARK = re.compile(r"<image\d*>")
#: A literal backslash-n (``\n`` written out by a double escape) between words, not a LaTeX command.
_LABELLED_ANSWER = re.compile(r"\(?([A-H])\)?\s*[:.)：]\s*(.+)", re.DOTALL)
_LITERAL_NEWLINE = re.compile(r"\\n(?![a-zA-Z])")

REPAIR_LATEX = "LaTeX escape restored"
REPAIR_IMAGE_ONLY = "image-only question"
REPAIR_OPTION_TEXT = "choice answer given as option text"
REPAIR_DUPLICATE_OPTION = "answer text repeated in several options (first taken)"
REPAIR_LITERAL_NEWLINE = "literal \\n made a newline"
REPAIR_VALUE_UNDER_CHOICE = "choice type without options, answer a value: asked as free-form"
REPAIR_TRUE_FALSE = "choice type without options, answer True/False: asked as true/false"
REPAIR_SEVERAL_LETTERS = "several correct letters: multi-answer ground truth"
REPAIR_NO_IMAGE = "text-only record (no image)"


@dataclass
class Cleaned:
    """A text after repairs, and the repairs by kind (for the summary)."""

    text: str
    repairs: list[str] = field(default_factory=list)


def clean_text(value: object, *, math_only: bool = True) -> Cleaned:
    """``value`` as text with damaged LaTeX escapes restored (inside ``$...$`` for prose) and literal ``\\n``s."""
    text = "" if value is None else str(value)
    text, restored = restore_latex_escapes(text, math_only=math_only)
    repairs = [REPAIR_LATEX] * restored
    text, newlines = _LITERAL_NEWLINE.subn("\n", text)
    repairs += [REPAIR_LITERAL_NEWLINE] * newlines
    return Cleaned(text.strip(), repairs)


def answer_text(value: object) -> Cleaned:
    """A record's answer, repaired (the whole answer is math); a blank one is a :class:`BadRecord`.

    Repairs come before any stripping: ``\\x0crac{1}{2}`` starts with a form feed, which is whitespace.
    """
    cleaned = clean_text(value, math_only=False)
    cleaned.text = require_text(cleaned.text, "answer")
    return cleaned


def question_text(value: object, *, drop_image_marks: bool = False, has_choices_in_image: bool = False) -> Cleaned:
    """A record's question, repaired; one that is only image placeholders asks to answer the question shown."""
    cleaned = clean_text(value)
    text = _IMAGE_MARK.sub("", cleaned.text).strip() if drop_image_marks else cleaned.text
    if not _IMAGE_MARK.sub("", text).strip():
        text = IMAGE_ONLY_CHOICE_QUESTION if has_choices_in_image else IMAGE_ONLY_QUESTION
        cleaned.repairs.append(REPAIR_IMAGE_ONLY)
    cleaned.text = text
    return cleaned


def math_prompt(question: str, n_images: int = 1) -> str:
    """The user turn for a math question: images first unless the question already places ``<image>``."""
    question = question.strip()
    if IMAGE_TOKEN not in question:
        question = IMAGE_TOKEN * n_images + question
    return f"{question}\n\n{MATH_INSTRUCTION}"


def emotion_question(labels: Sequence[str]) -> str:
    """The emotion question, naming the allowed labels."""
    return f"Which emotion does this image evoke? Choose exactly one of: {', '.join(labels)}."


def emotion_prompt(labels: Sequence[str], prompt_style: str = "ours") -> str:
    """The user turn for emotion classification; ``paper``: the same question with the MAPO authors' instruction
    (their emotion question texts are not published)."""
    if prompt_style == "paper":
        return paper_module().paper_content(emotion_question(labels), 1)
    return (
        f"{IMAGE_TOKEN}{emotion_question(labels)}\n\n"
        "First reason step by step inside <think> </think> tags, then give exactly one label from that list "
        "inside \\boxed{} after the closing </think> tag."
    )


def paper_module():
    """:mod:`data_prep.paper_prompts` (the MAPO authors' prompts), imported only for ``--prompt-style paper``."""
    from data_prep import paper_prompts

    return paper_prompts


def choices_block(options: Sequence[str]) -> str:
    """``(A) ...`` lines and the instruction to answer with the letter."""
    lines = [f"({chr(ord('A') + i)}) {option}" for i, option in enumerate(options)]
    return "Choices:\n" + "\n".join(lines) + "\n" + ONE_LETTER_INSTRUCTION


def option_letter(index: int) -> str:
    if not 0 <= index < 26:
        raise BadRecord("bad answer", f"option index {index} out of range")
    return chr(ord("A") + index)


def _first_of(exact: list[int]) -> tuple[str, list[str]]:
    """Options repeated verbatim (MathVista 781: 9, 12, 18, 18) are one answer: the first is taken."""
    return option_letter(exact[0]), [REPAIR_OPTION_TEXT] + [REPAIR_DUPLICATE_OPTION] * (len(exact) > 1)


def choice_answer(answer: str, options: Sequence[str], *, prefer_text: bool = False) -> tuple[str, list[str]]:
    """The option letter of a choice answer, and the repairs made to find it.

    A capital letter (``B``, ``(B)``, ``B.``) naming an option is taken as is, unless ``prefer_text`` and the
    answer is verbatim one option's text (MathVista, whose answers are option text and whose options may be
    ``(a)``...``(e)`` in any order); otherwise the answer is option text,
    matched to the one option whose text equals it after folding whitespace, LaTeX spacing, ``$``, degree
    signs and case. Options that are themselves letters (``A``...``E``) match as letters. Verbatim repeats of the
    answer's option take the first; no match, or several different options, is a :class:`BadRecord`.
    """
    exact = [i for i, option in enumerate(options) if option.strip() == answer.strip()]
    if exact and prefer_text:
        return _first_of(exact)
    letter = answer.strip().strip("()").rstrip(".").strip()
    if len(letter) == 1 and "A" <= letter <= "Z" and ord(letter) - ord("A") < len(options):
        return letter, []
    labelled = _LABELLED_ANSWER.fullmatch(answer.strip())
    if labelled is not None:  # "B: 30°", "(B) 30°": the letter, if the text agrees with that option
        index = ord(labelled.group(1)) - ord("A")
        if index < len(options) and option_key(labelled.group(2)) == option_key(options[index]):
            return labelled.group(1), [REPAIR_OPTION_TEXT]
    if exact:
        return _first_of(exact)
    key = option_key(answer)
    matches = [i for i, option in enumerate(options) if option_key(option) == key]
    if len(matches) == 1:
        return option_letter(matches[0]), [REPAIR_OPTION_TEXT]
    what = "several" if matches else "none"
    raise BadRecord("bad answer", f"choice answer {answer!r} names {what} of the {len(options)} options")


def several_letters(answer: str) -> list[str] | None:
    """The distinct option letters of an answer naming two or more (``C`` newline ``D``, ``C, D``, ``(C) (D)``),
    in order; ``None`` for one letter or anything else."""
    letters = option_letters(answer)
    if letters is None or not all("A" <= letter <= "H" for letter in letters):
        return None
    distinct = sorted(set(letters))
    return distinct if len(distinct) >= 2 else None


def several_letters_truth(letters: Sequence[str], options: Sequence[str]) -> str:
    """The multi-answer ground truth ``C, D`` (what :func:`reward_fns.answer_forms.multi_letter_truth` reads);
    a letter beyond the listed options is a :class:`BadRecord`."""
    if options and any(ord(letter) - ord("A") >= len(options) for letter in letters):
        raise BadRecord("bad answer", f"answer letters {', '.join(letters)} beyond the {len(options)} options")
    return ", ".join(sorted(set(letters)))


def true_false(answer: str) -> str | None:
    """``True`` / ``False`` for an answer that is one of them (any case, a trailing full stop), else ``None``."""
    word = answer.strip().rstrip(".").strip().casefold()
    return {"true": "True", "false": "False"}.get(word)
