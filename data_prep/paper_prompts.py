"""The MAPO authors' evaluation prompts, answers and splits, as pure functions of a raw record.

Read off the authors' evaluation code (github WenkeHuang/MAPO, ``code/eval/``, in the mirror ARGROB2023/MAPO at
commit ``ccea871``): ``utils/data_loaders.py`` picks each set's question and answer, ``utils/processing.py``
builds the prompt ``<image>{question} {instruction}`` (system prompt "You are a helpful assistant.") and grades
with mathruler (:mod:`reward_fns.paper_compat`). The preparers call these with ``--prompt-style paper``.

Functions (``rec`` is one record as ``datasets.load_dataset`` yields it, or as the named file stores it):

* ``paper_user_text(question: str) -> str`` -- ``f"{question} {PAPER_INSTRUCTION}"``, the user turn after the image.
* ``paper_content(question: str, n_images: int = 1) -> str`` -- the same with verl's ``<image>`` markers in front.
* ``mathvista_item(rec, query: str | None = None) -> PaperItem`` -- ``AI4Math/MathVista`` testmini: the official
  ``query`` (or ``query_testmini.json``'s entry), a choice answer as its letter A-H (the loader's mapping).
* ``mathverse_item(rec) -> PaperItem`` -- ``AI4Math/MathVerse`` testmini: ``query_cot``, ``answer``;
  ``extra["problem_version"]`` kept for the per-version report.
* ``mathverse_is_vision_bearing(rec) -> bool`` -- the authors' ``testmini.json``: every version but Text Only.
* ``mathvision_item(rec) -> PaperItem`` -- ``MathLLMs/MathVision`` **test** (all 3040): question and answer.
* ``geo3k_item(rec) -> PaperItem`` -- Geometry3K test (601): InterGPS ``data.json`` (``annotat_text``, the
  answer letter mapped to its choice text) or a ``hiyouga/geometry3k`` record (``problem``, ``answer``).
* ``emotion_item(question: str, label: str) -> PaperItem`` -- EmoSet / WEBEmo / Emotion6.
* ``paper_subset_indices(labels: Sequence[str], size: int) -> list[int]`` -- a deterministic class-stratified
  subset (WEBEmo: ``PAPER_SUBSET_SIZES["webemo"]`` = 2000).

Every function raises ``ValueError`` naming the field when a record cannot give the authors' item.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from mapo_verl.data_sources import MATHVERSE_VERSIONS

#: The instruction appended to every question (``code/eval/main.py --system-prompt`` default; EasyR1's
#: ``examples/format_prompt/math.jinja`` appends the same sentence to training prompts).
PAPER_INSTRUCTION = (
    "You FIRST think about the reasoning process as an internal monologue and then provide the final answer. "
    "The reasoning process MUST BE enclosed within <think> </think> tags. The final answer MUST BE put in \\boxed{}."
)
#: Sets the authors evaluated on a subset of, and its size (their file is not published; see paper_subset_indices).
PAPER_SUBSET_SIZES = {"webemo": 2000}

_LETTERS = "ABCDEFGH"
_IMAGE_MARK = re.compile(r"<image\d*>")
# LaTeX escapes that a JSON round trip turned into control characters (MathVision's ``\frac`` as form feed + "rac").
# The authors read MathVision from VLMEvalKit's TSV, which has the backslashes: restore them.
_EATEN_ESCAPES = (
    (re.compile("\x0c(?=[a-z])"), "\\f"),
    (re.compile("\x08(?=[a-z])"), "\\b"),
    (re.compile("\x0b(?=[a-z])"), "\\v"),
    (re.compile("\x07(?=[a-z])"), "\\a"),
    (re.compile("\r(?=ight|ho\\b|m\\b)"), "\\r"),
    (re.compile("\t(?=imes|ext|heta|an\\b|riangle|ilde|op\\b|au\\b)"), "\\t"),
    (re.compile("\n(?=eq\\b|abla|eg\\b|ewline|u\\b|ot\\b|i\\b)"), "\\n"),
)


def restore_latex_escapes(text: str) -> str:
    """``\\x0crac{1}{2}`` -> ``\\frac{1}{2}``: backslash escapes a JSON round trip ate, put back."""
    for pattern, escape in _EATEN_ESCAPES:
        text = pattern.sub(escape.replace("\\", "\\\\"), text)
    return text


@dataclass(frozen=True)
class PaperItem:
    """One evaluation item as the authors built it."""

    question: str  #: the question text their loader reads
    ground_truth: str  #: the answer their grader compares with
    extra: dict[str, str] = field(default_factory=dict)  #: reporting fields (problem_version, task, subject)

    @property
    def user_text(self) -> str:
        return paper_user_text(self.question)


def _field(rec: Mapping[str, Any], name: str) -> str:
    value = rec.get(name) if isinstance(rec, Mapping) else None
    if value is None or (isinstance(value, str) and not value.strip()):
        raise ValueError(f"record has no {name!r}")
    return str(value)


def paper_user_text(question: str) -> str:
    """The user turn after the image: the question, one space, the instruction (``utils/processing.py``)."""
    return f"{question} {PAPER_INSTRUCTION}"


def paper_content(question: str, n_images: int = 1) -> str:
    """:func:`paper_user_text` with one verl ``<image>`` marker per image in front (image first, as theirs)."""
    return "<image>" * n_images + paper_user_text(question)


def mathvista_item(rec: Mapping[str, Any], query: str | None = None) -> PaperItem:
    """MathVista testmini: question = the official ``query``; a multi_choice answer becomes its letter."""
    question = query if query is not None else _field(rec, "query")
    answer = _field(rec, "answer")
    if rec.get("question_type") == "multi_choice":
        choices = [str(c) for c in (rec.get("choices") or [])]
        if answer not in choices:
            raise ValueError(f"'answer' {answer!r} is not one of the 'choices'")
        index = choices.index(answer)
        if index >= len(_LETTERS):
            raise ValueError(f"'choices' has {len(choices)} options; the authors' mapping stops at H")
        answer = _LETTERS[index]
    metadata = rec.get("metadata") if isinstance(rec.get("metadata"), Mapping) else {}
    return PaperItem(question, answer, {"task": str(metadata.get("task", ""))})


def mathverse_is_vision_bearing(rec: Mapping[str, Any]) -> bool:
    """True for the versions in the authors' ``testmini.json`` (all but Text Only)."""
    return str(rec.get("problem_version", "")).strip() in MATHVERSE_VERSIONS


def mathverse_item(rec: Mapping[str, Any]) -> PaperItem:
    """MathVerse testmini: question = ``query_cot``; the problem version is kept for the per-version report."""
    version = _field(rec, "problem_version").strip()
    if version not in MATHVERSE_VERSIONS:
        raise ValueError(f"'problem_version' {version!r} is not a vision-bearing version")
    return PaperItem(_field(rec, "query_cot"), _field(rec, "answer"), {"problem_version": version})


def mathvision_item(rec: Mapping[str, Any]) -> PaperItem:
    """MathVision test: the question (``<imageN>`` markers dropped: the image goes first) and the answer.

    The authors read VLMEvalKit's ``MathVision.tsv``, whose question text the fork does not include; for choice
    questions whose options are text (not just their letters, not images) we append them as ``Choices:`` lines
    ``(A) ...``, the layout of the MathVista and MathVerse queries.
    """
    # Restore before stripping: strip() would drop the form feed of an eaten "\\f" at the start.
    question = _IMAGE_MARK.sub("", restore_latex_escapes(_field(rec, "question"))).strip()
    options = [_IMAGE_MARK.sub("", restore_latex_escapes(str(o))).strip() for o in (rec.get("options") or [])]
    # Options that are only their letters, or images (``<image2>``...), are read off the figure: nothing to list.
    if all(options) and [o.upper() for o in options] != list(_LETTERS[: len(options)]):
        question += "\nChoices:\n" + "\n".join(f"({_LETTERS[i]}) {o}" for i, o in enumerate(options))
    answer = restore_latex_escapes(_field(rec, "answer")).strip()
    return PaperItem(question, answer, {"subject": str(rec.get("subject", ""))})


def geo3k_item(rec: Mapping[str, Any]) -> PaperItem:
    """Geometry3K: InterGPS ``annotat_text`` with the answer letter mapped to its choice text, or a hub record."""
    if "annotat_text" in rec:
        choices = [str(c) for c in (rec.get("choices") or [])]
        letter = _field(rec, "answer").strip()
        index = _LETTERS.find(letter) if len(letter) == 1 else -1
        if not 0 <= index < min(4, len(choices)):
            raise ValueError(f"'answer' {letter!r} names none of the {len(choices)} 'choices' (A-D)")
        return PaperItem(_field(rec, "annotat_text"), choices[index])
    question = _IMAGE_MARK.sub("", _field(rec, "problem")).strip()
    return PaperItem(question, _field(rec, "answer").strip())


def emotion_item(question: str, label: str) -> PaperItem:
    """EmoSet / WEBEmo / Emotion6: the question and the label the authors' JSON files pair with each image."""
    if not str(label).strip():
        raise ValueError("emotion record has an empty label")
    return PaperItem(str(question), str(label).strip())


def paper_subset_indices(labels: Sequence[str], size: int) -> list[int]:
    """A class-stratified subset of ``size`` indices, the same on every machine (no RNG).

    Each class gets its share by largest remainder; inside a class the records are ranked by the SHA-256 of
    ``"<label>:<index>"``. The authors' own 2000-image WEBEmo file is not published, so this is a stand-in of
    the same size and class mix, not their exact selection. Returned in ascending index order.
    """
    if size < 0:
        raise ValueError(f"subset size must be >= 0, not {size}")
    if size >= len(labels):
        return list(range(len(labels)))
    by_class: dict[str, list[int]] = {}
    for i, label in enumerate(labels):
        by_class.setdefault(str(label), []).append(i)
    quotas = {c: size * len(ix) / len(labels) for c, ix in by_class.items()}
    counts = {c: int(q) for c, q in quotas.items()}
    for c in sorted(quotas, key=lambda c: (-(quotas[c] - counts[c]), c))[: size - sum(counts.values())]:
        counts[c] += 1

    def rank(i: int) -> str:
        return hashlib.sha256(f"{labels[i]}:{i}".encode()).hexdigest()

    chosen = [i for c, ix in by_class.items() for i in sorted(ix, key=rank)[: counts[c]]]
    return sorted(chosen)
