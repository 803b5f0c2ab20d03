"""EmoSet-118K -> ``OUT/train.parquet``, ``OUT/test.parquet`` (and ``OUT/validation.parquet`` with ``--val-size``);
``OUT`` defaults to ``$MAPO_DATA_DIR/emoset``.

Sources (``--local-dataset-path SRC``; default ``$MAPO_SOURCE_DIR/emoset``, i.e. ``~/data/mapo_sources/emoset``):

* the official release (https://vcc.tech/EmoSet; request access, unzip): ``SRC/image/<emotion>/*.jpg``,
  ``SRC/annotation/<emotion>/*.json`` and ``SRC/{train,val,test}.json``, each a list of
  ``[emotion, image_path, annotation_path]`` with paths relative to ``SRC``;
* or a hub mirror / local copy in the hub layout with an image and a label column and ``train``/``test`` (and
  ``validation``) splits. Columns are found without flags: the image in ``image``/``img``/``images`` (EasyR1's
  layout stores a list of images: the first is used), the label in ``label``/``emotion``/``labels``/``answer``
  (EasyR1's layout: ``images``, ``problem``, ``course_grained``, ``answer``); a ``ClassLabel`` is mapped to its
  names. ``--image-column`` / ``--label-column`` override the choice.

Eight classes: amusement, awe, contentment, excitement, anger, disgust, fear, sadness. ``--train-size``,
``--test-size`` and ``--val-size`` (a number or ``all``) take class-stratified random subsets with ``--seed``;
the defaults (2000 / 2000 / none) follow the paper's ~2k-sample subsets.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from data_prep.arguments import add_prompt_style, base_parser, out_dir_of, parse_size, run_main
from data_prep.emotion_driver import default_source, emotion_row
from data_prep.hub_reader import SplitSource, base_dir_of, load_split
from data_prep.images import image_options
from data_prep.sampling import fold_label, stratified_sample
from data_prep.writer import PrepError, Summary, write_split
from mapo_verl.data_sources import BY_NAME

LABELS = ("amusement", "awe", "contentment", "excitement", "anger", "disgust", "fear", "sadness")
DATA_SOURCE = BY_NAME["emoset"].data_source
#: output split -> (official json, hub split names tried in order)
SPLITS = {
    "train": ("train.json", ("train",)),
    "validation": ("val.json", ("validation", "val")),
    "test": ("test.json", ("test",)),
}
IMAGE_COLUMNS = ("image", "img", "images")
LABEL_COLUMNS = ("label", "emotion", "labels", "answer")


def _sizes(args: argparse.Namespace) -> dict[str, int | None]:
    sizes = {"train": args.train_size, "test": args.test_size}
    if args.val_size != 0:
        sizes["validation"] = args.val_size
    return sizes


def _official(args: argparse.Namespace, root: Path, summary: Summary) -> None:
    for split, size in _sizes(args).items():
        index_file = root / SPLITS[split][0]
        try:
            entries = json.loads(index_file.read_text(encoding="utf-8"))
        except (OSError, ValueError) as exc:  # ValueError: not JSON, not UTF-8
            raise PrepError(f"emoset split {split!r}: cannot read {index_file}: {exc}") from exc
        if not isinstance(entries, list) or not all(isinstance(e, list) and len(e) >= 2 for e in entries):
            raise PrepError(f"{index_file}: expected a list of [emotion, image_path, annotation_path]")
        if not entries:
            raise PrepError(f"emoset split {split!r}: {index_file} lists no records (0 rows to write)")
        keep = stratified_sample([fold_label(e[0]) for e in entries], size, args.seed)

        def convert(i: int, item: tuple[int, list], split: str = split) -> dict:
            index, entry = item
            return emotion_row(
                data_source=DATA_SOURCE,
                image=str(entry[1]),
                label=str(entry[0]),
                labels=LABELS,
                split=split,
                index=index,
                source_id=str(entry[1]),
                max_pixels=args.max_pixels,
                prompt_style=args.prompt_style,
                base_dir=root,
                image_rules=image_options(args),
            )

        write_split(
            summary=summary,
            split=split,
            records=((i, entries[i]) for i in keep),
            convert=convert,
            record_id=lambda i, item: f"{item[1][1]} (index {item[0]})",
            args=args,
            total=len(keep),
        )


def _pick(columns: list[str], wanted: str | None, candidates: tuple[str, ...], what: str) -> str:
    if wanted:
        if wanted not in columns:
            raise PrepError(f"emoset: no {what} column {wanted!r} (columns: {', '.join(columns)})")
        return wanted
    for name in candidates:
        if name in columns:
            return name
    raise PrepError(f"emoset: no {what} column among {candidates}; pass --{what}-column")


def _hub(args: argparse.Namespace, src: str, summary: Summary) -> None:
    import datasets

    for split, size in _sizes(args).items():
        source: SplitSource | None = None
        for name in SPLITS[split][1]:
            try:
                source = load_split(src, src, name)
                break
            except PrepError:
                continue
        if source is None:
            raise PrepError(f"emoset: {src} has no {' / '.join(SPLITS[split][1])} split")
        image_col = _pick(source.columns, args.image_column, IMAGE_COLUMNS, "image")
        label_col = _pick(source.columns, args.label_column, LABEL_COLUMNS, "label")
        feature = source.features[label_col] if source.features is not None else None
        names = feature.names if isinstance(feature, datasets.ClassLabel) else None
        raw = [rec[label_col] for rec in source.records([label_col])]
        labels = [names[v] if names is not None and isinstance(v, int) and 0 <= v < len(names) else str(v) for v in raw]
        keep = stratified_sample([fold_label(v) for v in labels], size, args.seed)
        wanted = set(keep)
        chosen = ((index, rec[image_col]) for index, rec in enumerate(source.records([image_col])) if index in wanted)

        def convert(i: int, item: tuple, split: str = split, labels: list[str] = labels) -> dict:
            index, image = item
            return emotion_row(
                data_source=DATA_SOURCE,
                image=image,
                label=labels[index],
                labels=LABELS,
                split=split,
                index=index,
                source_id=str(index),
                max_pixels=args.max_pixels,
                prompt_style=args.prompt_style,
                base_dir=base_dir_of(src),
                image_rules=image_options(args),
            )

        write_split(
            summary=summary,
            split=split,
            records=chosen,
            convert=convert,
            record_id=lambda i, item: f"index {item[0]}",
            args=args,
            total=len(keep),
        )


EMOSET_DOWNLOAD = (
    "request EmoSet-118K at https://vcc.tech/EmoSet and unzip it (image/, annotation/, train.json, val.json, "
    "test.json), or download a hub mirror in the hub layout (huggingface-cli download REPO --repo-type dataset "
    "--local-dir DIR)"
)


def prepare(args: argparse.Namespace) -> Summary:
    src = args.local_dataset_path
    root = Path(src).expanduser() if src else default_source("emoset", args, EMOSET_DOWNLOAD)
    summary = Summary("emoset", out_dir_of(args))
    official = [name for name, _ in SPLITS.values() if (root / name).exists()]
    if (root / "train.json").is_file():
        _official(args, root, summary)
    elif official:  # the official layout without its train.json
        raise PrepError(
            f"emoset: {root} holds {', '.join(official)} but no train.json file (the official release has "
            "train.json, val.json and test.json)"
        )
    else:
        _hub(args, src if src and not root.exists() else str(root), summary)
    return summary


def main(argv: list[str] | None = None) -> int:
    parser = base_parser("emoset", __doc__)
    parser.add_argument("--train-size", type=parse_size, default=2000, help="stratified subset size or 'all'")
    parser.add_argument("--test-size", type=parse_size, default=2000, help="stratified subset size or 'all'")
    parser.add_argument("--val-size", type=_val_size, default=0, help="validation subset (from val.json): N, 'all', 0")
    parser.add_argument("--image-column", default=None, help="hub mirror: image column (default: auto)")
    parser.add_argument("--label-column", default=None, help="hub mirror: label column (default: auto)")
    add_prompt_style(parser)
    return run_main(prepare, parser, argv)


def _val_size(value: str) -> int | None:
    return 0 if value.strip() == "0" else parse_size(value)


if __name__ == "__main__":
    sys.exit(main())
