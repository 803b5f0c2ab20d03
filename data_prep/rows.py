"""Rows: the one Arrow schema every preparer writes, and the checks a row must pass.

Every row follows verl's RLHF schema (one fixed Arrow schema for all seven sets, so that verl can concatenate
parquet files of different sets in one validation run)::

    data_source: str
    prompt:      [{"role": "user", "content": "<image>..."}]   # exactly one <image> per image
    images:      [{"bytes": b"..."}]
    ability:     "math" | "emotion"
    reward_model: {"style": "rule", "ground_truth": str}
    extra_info:  {split, index, source_id, question, answer, question_type, options, labels, problem_version}
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import pyarrow as pa

IMAGE_TOKEN = "<image>"

SCHEMA = pa.schema(
    [
        ("data_source", pa.string()),
        ("prompt", pa.list_(pa.struct([("role", pa.string()), ("content", pa.string())]))),
        ("images", pa.list_(pa.struct([("bytes", pa.binary())]))),
        ("ability", pa.string()),
        ("reward_model", pa.struct([("style", pa.string()), ("ground_truth", pa.string())])),
        (
            "extra_info",
            pa.struct(
                [
                    ("split", pa.string()),
                    ("index", pa.int64()),
                    ("source_id", pa.string()),
                    ("question", pa.string()),
                    ("answer", pa.string()),
                    ("question_type", pa.string()),
                    ("options", pa.list_(pa.string())),
                    ("labels", pa.list_(pa.string())),
                    ("problem_version", pa.string()),
                ]
            ),
        ),
    ]
)


class BadRecord(Exception):
    """One input record cannot be used; ``reason`` is the short key counted in the summary."""

    def __init__(self, reason: str, detail: str = "") -> None:
        super().__init__(f"{reason}: {detail}" if detail else reason)
        self.reason = reason


def make_row(
    *,
    data_source: str,
    content: str,
    images: Sequence[dict],
    ability: str,
    ground_truth: str,
    split: str,
    index: int,
    source_id: str = "",
    question: str = "",
    answer: str = "",
    question_type: str = "",
    options: Sequence[str] = (),
    labels: Sequence[str] = (),
    problem_version: str = "",
) -> dict:
    """One row in verl's schema; checks the ``<image>`` count and a non-empty ground truth."""
    if content.count(IMAGE_TOKEN) != len(images):
        raise BadRecord("image placeholders", f"{content.count(IMAGE_TOKEN)} <image> for {len(images)} images")
    if not ground_truth.strip():
        raise BadRecord("empty answer")
    return {
        "data_source": data_source,
        "prompt": [{"role": "user", "content": content}],
        "images": list(images),
        "ability": ability,
        "reward_model": {"style": "rule", "ground_truth": ground_truth},
        "extra_info": {
            "split": split,
            "index": int(index),
            "source_id": source_id,
            "question": question,
            "answer": answer,
            "question_type": question_type,
            "options": [str(option) for option in options],
            "labels": list(labels),
            "problem_version": problem_version,
        },
    }


def row_nbytes(row: dict) -> int:
    """Approximate in-memory size of a row: its image bytes plus its text (what a row group buffers)."""
    size = sum(len(image["bytes"]) for image in row["images"])
    size += sum(len(turn["content"]) for turn in row["prompt"])
    extra = row["extra_info"]
    return size + len(extra["question"]) + len(extra["answer"]) + sum(len(o) for o in extra["options"]) + 256


def require_text(value: Any, what: str) -> str:
    """A non-blank string, else :class:`BadRecord` (``empty question`` / ``empty answer``)."""
    text = "" if value is None else str(value)
    if not text.strip():
        raise BadRecord(f"empty {what}")
    return text.strip()
