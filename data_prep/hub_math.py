"""Shared driver for the hub-hosted math evaluation sets (MathVista, MathVision, MathVerse).

Each set's module supplies a :class:`MathEvalSpec`: its hub id, default split and config, and a function that
turns one source record into ``(question text with any choices, options, ground truth, question_type)``.
Multiple-choice ground truths are option letters (``A``, ``B``...), as :mod:`reward_fns.math_answer` reads them.
"""

from __future__ import annotations

import argparse
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from data_prep.common import (
    BadRecord,
    Summary,
    base_dir_of,
    base_parser,
    load_hub_split,
    make_row,
    math_prompt,
    normalize_image,
    out_dir_of,
    run_main,
    write_split,
)

IMAGE_COLUMNS = ("decoded_image", "image", "images")


@dataclass(frozen=True)
class MathEvalSpec:
    name: str
    hub_id: str
    split: str
    #: record -> (question text including any choices, options, ground_truth, question_type)
    parse: Callable[[dict], tuple[str, list[str], str, str]]
    config: str | None = None
    id_column: str | None = None


def options_of(value: Any) -> list[str]:
    """A clean list of option strings (``None``/empty -> ``[]``)."""
    if value is None:
        return []
    return [str(option).strip() for option in value]


def record_images(rec: dict, max_pixels: int, base_dir) -> list[dict]:
    """The record's image(s): the first non-empty of ``decoded_image``/``image``/``images``."""
    for column in IMAGE_COLUMNS:
        value = rec.get(column)
        if value is None or value == "" or value == []:
            continue
        values = value if isinstance(value, list) else [value]
        return [normalize_image(v, max_pixels, base_dir) for v in values]
    raise BadRecord("missing image", "no image column")


def prepare_eval(spec: MathEvalSpec, args: argparse.Namespace) -> Summary:
    summary = Summary(spec.name, out_dir_of(args))
    base_dir = base_dir_of(args.local_dataset_path)
    # The hub config applies to the hub; a local copy is read as laid out unless --config is given.
    config = args.config or (None if args.local_dataset_path else spec.config)
    ds = load_hub_split(spec.hub_id, args.local_dataset_path, args.split, config)

    def convert(i: int, rec: dict) -> dict:
        question, options, truth, qtype = spec.parse(rec)
        images = record_images(rec, args.max_pixels, base_dir)
        return make_row(
            data_source=spec.hub_id,
            content=math_prompt(question, len(images)),
            images=images,
            ability="math",
            ground_truth=truth,
            split="test",
            index=i,
            source_id=str(rec.get(spec.id_column, i)) if spec.id_column else str(i),
            question=question,
            answer=truth,
            question_type=qtype,
            options=options,
        )

    def record_id(i: int, rec: dict) -> str:
        if spec.id_column and rec.get(spec.id_column) is not None:
            return f"index {i} ({spec.id_column}={rec[spec.id_column]})"
        return f"index {i}"

    write_split(
        summary=summary,
        split=args.split,
        records=ds,
        convert=convert,
        record_id=record_id,
        args=args,
        total=len(ds),
        file_name="test",
    )
    return summary


def eval_main(spec: MathEvalSpec, doc: str, argv: list[str] | None) -> int:
    parser = base_parser(spec.name, doc)
    parser.add_argument("--split", default=spec.split, help=f"source split (default {spec.split})")
    parser.add_argument("--config", default=None, help=f"dataset config (hub default: {spec.config})")
    return run_main(lambda args: prepare_eval(spec, args), parser, argv)
