"""Shared pieces of the emotion preparers (EmoSet, WEBEmo, Emotion6): one labelled image -> one row, and the
folder-per-class reader (``SRC/<label>/*.jpg``) used for the out-of-domain test sets."""

from __future__ import annotations

import argparse
from collections.abc import Callable, Sequence
from pathlib import Path

from data_prep.arguments import add_prompt_style, base_parser, out_dir_of, parse_size, run_main
from data_prep.images import IMAGE_SUFFIXES, image_list, image_options, normalize_image
from data_prep.prompts import emotion_prompt, paper_module
from data_prep.rows import BadRecord, make_row
from data_prep.sampling import fold_label, invisible_characters, stratified_sample
from data_prep.writer import PrepError, Summary, write_split
from mapo_verl.data_sources import BY_NAME, SOURCE_DIR_DEFAULT, default_source_dir


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
    prompt_style: str = "ours",
    image_rules: dict | None = None,
) -> dict:
    """One emotion row; an unknown or empty label, one with invisible characters, or no image, is a
    :class:`BadRecord`.

    ``image`` may be one image or a list of them (EasyR1's layout): the first image is used. ``image_rules``:
    :func:`~data_prep.images.image_options`.
    """
    invisible = invisible_characters(label)
    if invisible:
        raise BadRecord("invisible characters in label", f"{label!r} holds {', '.join(invisible)}")
    folded = fold_label(label)
    if not folded:
        raise BadRecord("empty answer", "no label")
    if folded not in labels:
        raise BadRecord("unknown label", f"{label!r} is not one of {', '.join(labels)}")
    candidates = image_list(image)
    if not candidates:
        raise BadRecord("missing image", "no image data")
    images = [normalize_image(candidates[0], max_pixels, base_dir, **(image_rules or {}))]
    return make_row(
        data_source=data_source,
        content=emotion_prompt(labels, prompt_style),
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


def default_source(name: str, args: argparse.Namespace, what: str) -> Path:
    """``--local-dataset-path``, else ``$MAPO_SOURCE_DIR/NAME`` if it exists, else a :class:`PrepError` that says
    what to download (``what``) and where to put it."""
    if args.local_dataset_path:
        return Path(args.local_dataset_path).expanduser()
    root = default_source_dir() / name
    if root.exists():
        return root
    raise PrepError(
        f"{name} is downloaded by hand: {what}; put it in {root} ($MAPO_SOURCE_DIR/{name}, MAPO_SOURCE_DIR "
        f"defaulting to {SOURCE_DIR_DEFAULT}) or pass --local-dataset-path SRC"
    )


FOLDER_SET_LAYOUT = "a folder per class, SRC/<label>/*.jpg"


def prepare_folder_set(
    name: str,
    args: argparse.Namespace,
    read_items: Callable[[Path, argparse.Namespace, Summary], list[tuple[str, Path]]] | None = None,
    what: str = f"arrange its images as {FOLDER_SET_LAYOUT}",
) -> Summary:
    """A labelled-image test set -> ``OUT/test.parquet`` (``data_source``: the registry's, by ``name``).

    ``read_items`` lists ``(label, image path)`` under the source folder (default: a folder per class) and may
    add notes to the summary.
    """
    root = default_source(name, args, what)
    summary = Summary(name, out_dir_of(args))
    items = read_items(root, args, summary) if read_items is not None else scan_folder_tree(root)
    # a label with invisible characters is not a label of its own: its records are bad records (convert)
    labels = args.labels or sorted({fold_label(folder) for folder, _ in items if not invisible_characters(folder)})
    folded = [fold_label(folder) for folder, _ in items]
    if args.prompt_style == "paper":  # the authors' subset size (WEBEmo: 2000), chosen without an RNG
        size = args.test_size or paper_module().PAPER_SUBSET_SIZES.get(name)
        keep = paper_module().paper_subset_indices(folded, size) if size else list(range(len(items)))
    else:
        keep = stratified_sample(folded, args.test_size, args.seed)

    def convert(i: int, item: tuple[int, tuple[str, Path]]) -> dict:
        index, (folder, path) = item
        return emotion_row(
            data_source=BY_NAME[name].data_source,
            image=path.relative_to(root) if path.is_relative_to(root) else path,
            label=folder,
            labels=labels,
            split="test",
            index=index,
            source_id=str(path.relative_to(root)) if path.is_relative_to(root) else str(path),
            max_pixels=args.max_pixels,
            base_dir=root,
            prompt_style=args.prompt_style,
            image_rules=image_options(args),
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


def folder_set_parser(name: str, doc: str) -> argparse.ArgumentParser:
    parser = base_parser(name, doc)
    parser.add_argument("--test-size", type=parse_size, default=None, help="stratified subset size or 'all'")
    parser.add_argument("--labels", type=parse_labels, default=None, help="comma-separated label set")
    add_prompt_style(parser)
    return parser


def folder_set_main(name: str, doc: str, argv: list[str] | None) -> int:
    return run_main(lambda args: prepare_folder_set(name, args), folder_set_parser(name, doc), argv)
