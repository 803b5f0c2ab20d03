"""The datasets this project knows, defined once: preparer name, ``data_source`` id, table column, task.

``name`` is the ``data_prep`` module and the folder of the data convention ``$MAPO_DATA_DIR/NAME/*.parquet``
(``NAME_paper`` for ``--prompt-style paper``); ``data_source`` is what the preparer writes into every row, what the
reward router dispatches on and what verl's validation metrics are keyed by (``val-core/<data_source>/...``); for
the hub-hosted sets it is the hub dataset id the preparer downloads. Also the data convention's roots
(:func:`default_data_dir`, :func:`default_source_dir`). No verl or data-library import: the reward workers, the
preparers and the report all read it.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class DataSource:
    name: str
    data_source: str  # the hub dataset id for the hub-hosted sets
    column: str
    task: str  # "Math" or "Emotion": which reward scores it
    in_domain: bool  # trained on in the paper (Geo3K, EmoSet); the rest are held-out evaluation sets


#: In the paper's table order.
DATA_SOURCES: tuple[DataSource, ...] = (
    DataSource("geo3k", "hiyouga/geometry3k", "Geo3K", "Math", True),
    DataSource("mathvista", "AI4Math/MathVista", "MathVista", "Math", False),
    DataSource("mathvision", "MathLLMs/MathVision", "MathVision", "Math", False),
    DataSource("mathverse", "AI4Math/MathVerse", "MathVerse", "Math", False),
    DataSource("emoset", "emoset", "EmoSet", "Emotion", True),
    DataSource("webemo", "webemo", "WEBEmo", "Emotion", False),
    DataSource("emotion6", "emotion6", "Emotion6", "Emotion", False),
    # not the paper's: the small picture task made locally (data_prep.shapes) on which the CPU comparison learns
    DataSource("shapes", "mapo/shapes", "Shapes", "Math", True),
)
BY_NAME = {d.name: d for d in DATA_SOURCES}
#: The ``data_prep`` preparers, by the folder they write.
PREPARERS: tuple[str, ...] = tuple(d.name for d in DATA_SOURCES)
#: MathVerse's problem versions that carry an image, in the order ``reward_fns.paper_compat`` logs their index.
MATHVERSE_VERSIONS: tuple[str, ...] = (
    "Text Dominant",
    "Text Lite",
    "Vision Intensive",
    "Vision Dominant",
    "Vision Only",
)
#: Defaults of ``$MAPO_DATA_DIR`` (the prepared parquet files) and ``$MAPO_SOURCE_DIR`` (hand-downloaded sources).
DATA_DIR_DEFAULT = "~/data/mapo"
SOURCE_DIR_DEFAULT = "~/data/mapo_sources"


def default_data_dir() -> Path:
    """Root of the prepared parquet files: ``$MAPO_DATA_DIR``, else :data:`DATA_DIR_DEFAULT`."""
    return Path(os.path.expanduser(os.environ.get("MAPO_DATA_DIR") or DATA_DIR_DEFAULT))


def default_source_dir() -> Path:
    """Root of hand-downloaded sources: ``$MAPO_SOURCE_DIR``, else :data:`SOURCE_DIR_DEFAULT`."""
    return Path(os.path.expanduser(os.environ.get("MAPO_SOURCE_DIR") or SOURCE_DIR_DEFAULT))


def data_source_ids(task: str) -> tuple[str, ...]:
    """The ``data_source`` ids of one task (``Math`` or ``Emotion``)."""
    return tuple(d.data_source for d in DATA_SOURCES if d.task == task)


def preparer_of(path: str) -> tuple[str, str]:
    """The ``data_prep`` module that writes ``path`` (its folder's name) and its extra options, or ``("-", "")``."""
    name = os.path.basename(os.path.dirname(path))
    if name in PREPARERS:
        return name, ""
    base = name.removesuffix("_paper")
    if name.endswith("_paper") and base in PREPARERS:
        return base, "--prompt-style paper"
    return "-", ""
