"""Class labels and class-stratified subsets (EmoSet's ~2k-sample subsets, WEBEmo / Emotion6 test subsets)."""

from __future__ import annotations

import math
import random
import unicodedata
from collections import defaultdict
from collections.abc import Sequence


def fold_label(label: str) -> str:
    """Canonical label spelling: lower case, single spaces."""
    return " ".join(str(label).replace("_", " ").split()).lower()


def invisible_characters(label: str) -> list[str]:
    """The invisible characters of ``label`` (format and control characters other than white space: a right-to-left
    mark, a zero-width space, a byte-order mark...), as ``U+200F (RIGHT-TO-LEFT MARK)``."""
    return [
        f"U+{ord(c):04X} ({unicodedata.name(c, 'unnamed')})"
        for c in dict.fromkeys(str(label))
        if unicodedata.category(c) in ("Cf", "Cc", "Co", "Cs", "Cn") and not c.isspace()
    ]


def stratified_sample(labels: Sequence[str], size: int | None, seed: int) -> list[int]:
    """Indices of a class-stratified random subset (proportional allocation, largest remainder), in input order.

    ``size=None`` or ``size >= len(labels)`` keeps everything.
    """
    if size is None or size >= len(labels):
        return list(range(len(labels)))
    by_class: dict[str, list[int]] = defaultdict(list)
    for i, label in enumerate(labels):
        by_class[label].append(i)
    classes = sorted(by_class)
    exact = {c: size * len(by_class[c]) / len(labels) for c in classes}
    quota = {c: math.floor(exact[c]) for c in classes}
    leftover = size - sum(quota.values())
    for c in sorted(classes, key=lambda c: (-(exact[c] - quota[c]), c))[:leftover]:
        quota[c] += 1
    rng = random.Random(seed)
    chosen: list[int] = []
    for c in classes:
        chosen.extend(rng.sample(by_class[c], quota[c]))
    return sorted(chosen)
