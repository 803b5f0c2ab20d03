"""Shared pieces of the emotion preparers (EmoSet, WEBEmo, Emotion6): one labelled image -> one row, and the
folder-per-class reader (``SRC/<label>/*.jpg``) used for the out-of-domain test sets."""

from __future__ import annotations

import argparse
from collections.abc import Sequence
from pathlib import Path

from data_prep.common import (
    IMAGE_SUFFIXES,
    BadRecord,
    PrepError,
    Summary,
    base_parser,
    emotion_prompt,
    fold_label,
    make_row,
    normalize_image,
    out_dir_of,
    parse_size,
    run_main,
    stratified_sample,
    write_split,
)


def emotion_row(
    *,
    data_source: str,
    image: object,
    label: str,
    labels: Sequence[str],
    split: str,
    index: int,
    source_id: str,
    max_pixels: int,
    base_dir: Path | None = None,
) -> dict:
    """One emotion row; an unknown or empty label is a :class:`BadRecord`."""
    folded = fold_label(label)
    if not folded:
        raise BadRecord("empty answer", "no label")
    if folded not in labels:
        raise BadRecord("unknown label", f"{label!r} is not one of {', '.join(labels)}")
    images = [normalize_image(image, max_pixels, base_dir)]
    return make_row(
        data_source=data_source,
        content=emotion_prompt(labels),
        images=images,
        ability="emotion",
        ground_truth=folded,
        split=split,
        index=index,
        source_id=source_id,
        answer=folded,
        question_type="emotion",
        labels=labels,
    )


def parse_labels(value: str | None) -> list[str] | None:
    """``--labels a,b,c`` -> folded labels (order kept, duplicates dropped)."""
    if value is None:
        return None
    labels = list(dict.fromkeys(fold_label(v) for v in value.split(",") if v.strip()))
    if not labels:
        raise argparse.ArgumentTypeError("--labels needs at least one label")
    return labels


def scan_folder_tree(root: Path) -> list[tuple[str, Path]]:
    """``(folder name, image path)`` for every image file under ``root/<label>/``, sorted."""
    if not root.is_dir():
        raise PrepError(f"--local-dataset-path {root} is not a folder")
    items = [
        (folder.name, path)
        for folder in sorted(p for p in root.iterdir() if p.is_dir() and not p.name.startswith("."))
        for path in sorted(folder.iterdir())
        if path.is_file() and path.suffix.lower() in IMAGE_SUFFIXES
    ]
    if not items:
        raise PrepError(f"no images found under {root}/<label>/")
    return items


def prepare_folder_set(name: str, args: argparse.Namespace) -> Summary:
    """A folder-per-class test set -> ``OUT/test.parquet`` (``data_source`` = ``name``)."""
    if not args.local_dataset_path:
        raise PrepError(f"{name} is not on the hub: download it and pass --local-dataset-path SRC")
    root = Path(args.local_dataset_path).expanduser()
    items = scan_folder_tree(root)
    labels = args.labels or sorted({fold_label(folder) for folder, _ in items})
    keep = stratified_sample([fold_label(folder) for folder, _ in items], args.test_size, args.seed)
    summary = Summary(name, out_dir_of(args))

    def convert(i: int, item: tuple[int, tuple[str, Path]]) -> dict:
        index, (folder, path) = item
        return emotion_row(
            data_source=name,
            image=path,
            label=folder,
            labels=labels,
            split="test",
            index=index,
            source_id=str(path.relative_to(root)),
            max_pixels=args.max_pixels,
        )

    write_split(
        summary=summary,
        split="test",
        records=((i, items[i]) for i in keep),
        convert=convert,
        record_id=lambda i, item: str(item[1][1]),
        args=args,
        total=len(keep),
    )
    return summary


def folder_set_main(name: str, doc: str, argv: list[str] | None) -> int:
    parser = base_parser(name, doc)
    parser.add_argument("--test-size", type=parse_size, default=None, help="stratified subset size or 'all'")
    parser.add_argument("--labels", type=parse_labels, default=None, help="comma-separated label set")
    return run_main(lambda args: prepare_folder_set(name, args), parser, argv)
