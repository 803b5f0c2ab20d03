"""WEBEmo (out-of-domain emotion test set) -> ``OUT/test.parquet`` (default ``$MAPO_DATA_DIR/webemo``).

WEBEmo is not on the hub; its authors (Panda et al., ECCV 2018, "Contemplating Visual Emotions") publish image
URLs with labels. Source (``--local-dataset-path SRC``, default ``$MAPO_SOURCE_DIR/webemo``) in either layout:

* the release as published: ``SRC/category.txt`` (the three-level label hierarchy: 25 fine labels, their 7
  basic emotions, polarity), ``SRC/test.txt`` (``URL fine-label-index`` per line), and the images downloaded
  into ``SRC/images/`` under their URL's file name (``images/220_F_100194555_....jpg``). ``--label-level``
  picks the label set: ``7`` (default: anger, confusion, fear, joy, love, sadness, surprise) or ``25``. Dead
  URLs are common: lines whose image was not downloaded are left out and counted in the summary (an image
  that is there but cannot be decoded is still a bad record);
* or a folder per class, ``SRC/<label>/*.jpg``, labels being the folder names, lower-cased.

``--labels a,b,c`` fixes the label set (images with other labels are then bad records). ``--test-size N`` takes a
class-stratified subset (default: all; the MAPO authors evaluate on 2000 images).
"""

from __future__ import annotations

import argparse
import re
import sys
from pathlib import Path

from data_prep.arguments import run_main
from data_prep.emotion_driver import FOLDER_SET_LAYOUT, folder_set_parser, prepare_folder_set, scan_folder_tree
from data_prep.writer import PrepError, Summary

_HIERARCHY_ENTRY = re.compile(r"\(\s*'([^']*)'\s*,\s*'([^']*)'\s*,\s*'([+-])'\s*\)")
DOWNLOAD = (
    "get category.txt and test.txt from the WEBEmo release (Panda et al., ECCV 2018) and download each URL of "
    f"test.txt into images/ under its file name; or arrange the images as {FOLDER_SET_LAYOUT}"
)


def read_text(path: Path, what: str) -> str:
    """``path`` as UTF-8 text; missing, unreadable or not UTF-8 is a :class:`PrepError` naming it."""
    try:
        return path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise PrepError(f"{path}: missing; {what}") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise PrepError(f"{path}: cannot read it as UTF-8 text: {exc}") from None


def read_hierarchy(path: Path) -> list[tuple[str, str, str]]:
    """``category.txt``: ``(fine label, basic emotion, polarity)`` in label-index order."""
    text = read_text(path, "the release layout (test.txt) needs the release's category.txt beside it")
    entries = _HIERARCHY_ENTRY.findall(text)
    if not entries:
        raise PrepError(f"{path}: no (fine, basic, polarity) entries found")
    return entries


def read_release(root: Path, args: argparse.Namespace, summary: Summary) -> list[tuple[str, Path]]:
    """``(label, image path)`` for each line of ``test.txt`` (the release layout), else the folder tree."""
    index_file = root / "test.txt"
    if not index_file.is_file():
        return scan_folder_tree(root)
    hierarchy = read_hierarchy(root / "category.txt")
    items = []
    not_downloaded = 0
    for number, line in enumerate(read_text(index_file, DOWNLOAD).splitlines(), 1):
        if not line.strip():
            continue
        parts = line.split()
        if len(parts) != 2 or not parts[1].isdigit() or int(parts[1]) >= len(hierarchy):
            raise PrepError(f"{index_file}:{number}: expected 'URL LABEL_INDEX' (0-{len(hierarchy) - 1})")
        fine, basic, _ = hierarchy[int(parts[1])]
        label = fine if args.label_level == "25" else basic
        image = root / "images" / parts[0].rsplit("/", 1)[-1]
        if image.is_file():
            items.append((label, image))
        else:
            not_downloaded += 1
    if not_downloaded:
        summary.notes.append(f"{not_downloaded} of {not_downloaded + len(items)} images not downloaded, left out")
    if not items:
        raise PrepError(f"{root}/images/ holds none of the {not_downloaded} images test.txt lists: {DOWNLOAD}")
    return items


def main(argv: list[str] | None = None) -> int:
    parser = folder_set_parser("webemo", __doc__)
    parser.add_argument("--label-level", choices=("7", "25"), default="7", help="release layout: label set")
    return run_main(lambda args: prepare_folder_set("webemo", args, read_release, DOWNLOAD), parser, argv)


if __name__ == "__main__":
    sys.exit(main())
