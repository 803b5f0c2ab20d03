"""Emotion6 (out-of-domain emotion test set) -> ``OUT/test.parquet`` (default ``$MAPO_DATA_DIR/emotion6``).

Emotion6 is not on the hub: download it from its authors (Peng et al., CVPR 2015, "A Mixed Bag of Emotions")
and arrange it as a folder per class, ``SRC/<label>/*.jpg`` (anger, disgust, fear, joy, sadness, surprise and,
if kept, neutral); ``SRC`` defaults to ``$MAPO_SOURCE_DIR/emotion6``. Labels are the folder names, lower-cased,
unless ``--labels a,b,c`` fixes the label set (images in other folders are then bad records). ``--test-size N``
takes a class-stratified subset (default: all).
"""

from __future__ import annotations

import sys

from data_prep.emotion_driver import folder_set_main


def main(argv: list[str] | None = None) -> int:
    return folder_set_main("emotion6", __doc__, argv)


if __name__ == "__main__":
    sys.exit(main())
