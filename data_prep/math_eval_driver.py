"""Shared driver for the hub-hosted math evaluation sets (MathVista, MathVision, MathVerse).

Each set's module supplies a :class:`MathEvalSpec`: its name (its hub id is its ``data_source`` in
:mod:`mapo_verl.data_sources`), default split and config, and a function that turns one source record into a
:class:`Parsed` question (text with any choices, options, ground truth, question type, and the repairs made on the
way). Multiple-choice ground truths are option letters (``A``, ``B``...), as
:mod:`reward_fns.math_answer` reads them.
"""

from __future__ import annotations

import argparse
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from data_prep.arguments import add_prompt_style, base_parser, out_dir_of, run_main
from data_prep.hub_reader import base_dir_of, load_split
from data_prep.images import image_list, image_options, normalize_image
from data_prep.prompts import REPAIR_NO_IMAGE, math_prompt, paper_module
from data_prep.rows import BadRecord, make_row
from data_prep.writer import Summary, write_split
from mapo_verl.data_sources import BY_NAME

IMAGE_COLUMNS = ("decoded_image", "image", "images")


@dataclass
class Parsed:
    """One record as a question: text (with any choices), options, ground truth, type, and repairs made."""

    question: str
    options: list[str]
    ground_truth: str
    question_type: str
    repairs: list[str] = field(default_factory=list)
    #: what the summary should warn about (by kind; the records are named there), e.g. an answer matching no option
    warnings: list[str] = field(default_factory=list)
    #: the record's own answer, kept in ``extra_info["answer"]`` (``None``: the ground truth is kept there)
    source_answer: str | None = None


@dataclass(frozen=True)
class MathEvalSpec:
    name: str
    split: str
    parse: Callable[[dict], Parsed]
    config: str | None = None
    id_column: str | None = None
    #: ``--prompt-style paper``: the function of :mod:`data_prep.paper_prompts` that builds the authors' item, and
    #: the one that says whether a record is in the authors' set (``None``: all are)
    paper_item: str | None = None
    paper_keep: str | None = None
    #: records that legitimately have no image (MathVerse's Text Only version): they become text-only prompts;
    #: a missing image anywhere else stays an error
    imageless: Callable[[dict], bool] | None = None
    #: ids in ``id_column`` must be unique: a repeated id is a bad record (``duplicate id``)
    unique_ids: bool = False

    @property
    def hub_id(self) -> str:
        """The hub dataset id: the set's ``data_source`` in :mod:`mapo_verl.data_sources`."""
        return BY_NAME[self.name].data_source


def options_of(value: Any) -> list[str]:
    """A clean list of option strings (``None``/empty -> ``[]``)."""
    if value is None:
        return []
    return [str(option).strip() for option in value]


def record_images(
    rec: dict, max_pixels: int, base_dir, *, required: bool = True, image_rules: dict | None = None
) -> list[dict]:
    """The record's image(s): the first non-empty of ``decoded_image``/``image``/``images``; none is a
    :class:`BadRecord` unless ``required`` is false. ``image_rules``: :func:`~data_prep.images.image_options`."""
    for column in IMAGE_COLUMNS:
        values = image_list(rec.get(column))
        if values:
            return [normalize_image(v, max_pixels, base_dir, **(image_rules or {})) for v in values]
    if not required:
        return []
    raise BadRecord("missing image", "no image column")


def prepare_eval(spec: MathEvalSpec, args: argparse.Namespace) -> Summary:
    summary = Summary(spec.name, out_dir_of(args))
    base_dir = base_dir_of(args.local_dataset_path)
    source = load_split(spec.hub_id, args.local_dataset_path, args.split, args.config, spec.config)
    paper = args.prompt_style == "paper"
    records: Any = source
    total = source.num_rows
    if paper and spec.paper_keep:
        keep = getattr(paper_module(), spec.paper_keep)
        outside = [0]

        def kept(rows):
            for rec in rows:
                if keep(rec):
                    yield rec
                else:
                    outside[0] += 1

        records, total = kept(source), None

    first_index: dict[str, int] = {}  # spec.unique_ids: id -> index of its first record

    warned: dict[str, list[str]] = {}  # warning -> source ids of the rows written with it

    def convert(i: int, rec: dict) -> dict:
        if spec.unique_ids and spec.id_column and rec.get(spec.id_column) is not None:
            first = first_index.setdefault(str(rec[spec.id_column]), i)
            if first != i:
                raise BadRecord("duplicate id", f"{spec.id_column}={rec[spec.id_column]} already at index {first}")
        imageless = spec.imageless is not None and spec.imageless(rec)
        images = record_images(rec, args.max_pixels, base_dir, required=not imageless, image_rules=image_options(args))
        if paper:
            parsed = paper_parsed(spec, rec)
            content = paper_module().paper_content(parsed.question, len(images))
        else:
            parsed = spec.parse(rec)
            content = math_prompt(parsed.question, len(images))
        row = make_row(
            data_source=spec.hub_id,
            content=content,
            images=images,
            ability="math",
            ground_truth=parsed.ground_truth,
            split="test",
            index=i,
            source_id=str(rec.get(spec.id_column, i)) if spec.id_column else str(i),
            question=parsed.question,
            answer=parsed.ground_truth if parsed.source_answer is None else parsed.source_answer,
            question_type=parsed.question_type,
            options=parsed.options,
            problem_version=str(rec.get("problem_version") or ""),
        )
        summary.repair("test", parsed.repairs + [REPAIR_NO_IMAGE] * (not images))
        for warning in parsed.warnings:
            warned.setdefault(warning, []).append(row["extra_info"]["source_id"])
        return row

    def record_id(i: int, rec: dict) -> str:
        if spec.id_column and rec.get(spec.id_column) is not None:
            return f"index {i} ({spec.id_column}={rec[spec.id_column]})"
        return f"index {i}"

    write_split(
        summary=summary,
        split=args.split,
        records=records,
        convert=convert,
        record_id=record_id,
        args=args,
        total=total,
        file_name="test",
    )
    for warning, ids in warned.items():
        shown = ", ".join(ids[:10]) + (f" and {len(ids) - 10} more" if len(ids) > 10 else "")
        summary.notes.append(f"warning: {warning}: {len(ids)} ({spec.id_column or 'index'} {shown})")
    if paper and spec.paper_keep and outside[0]:
        summary.notes.append(f"{outside[0]} records outside the authors' set ({spec.paper_keep}) left out")
    if paper:
        summary.notes.append("prompts: the MAPO authors' (data_prep.paper_prompts)")
    return summary


def paper_parsed(spec: MathEvalSpec, rec: dict) -> Parsed:
    """The authors' question and answer for ``rec``; options and question type from our reading where it has one
    (so that our reward can still match an option's text)."""
    try:
        item = getattr(paper_module(), spec.paper_item or "")(rec)
    except (ValueError, AttributeError) as exc:
        raise BadRecord("not an item of the authors' set", str(exc)) from None
    try:
        ours = spec.parse(rec)
        options, question_type = ours.options, ours.question_type
    except BadRecord:
        options, question_type = [], ""
    return Parsed(item.question, options, item.ground_truth, question_type)


def eval_main(spec: MathEvalSpec, doc: str, argv: list[str] | None) -> int:
    parser = base_parser(spec.name, doc)
    parser.add_argument("--split", default=spec.split, help=f"source split (default {spec.split})")
    parser.add_argument("--config", default=None, help=f"dataset config (default: {spec.config or 'the default'})")
    add_prompt_style(parser)
    return run_main(lambda args: prepare_eval(spec, args), parser, argv)
