"""Small sources in each dataset's public layout, for runs and tests that prepare data as a user would.

The generic writers (a generated image, the hub's parquet layout and column types) are shared with the data tests
(``tests/data/conftest.py``); :func:`write_source` writes a few clean records of one set in its public layout:

==============  ============================================================================================
preparer        layout written
==============  ============================================================================================
``mathvista``   ``AI4Math/MathVista``'s hub copy: ``data/testmini-*.parquet`` with the hub's columns
``mathvision``  ``MathLLMs/MathVision``'s hub copy: ``data/test-*.parquet``
``mathverse``   ``AI4Math/MathVerse``'s hub copy: two configs declared in ``README.md`` (``testmini`` with one
                record per vision-bearing problem version, ``testmini_text_only``)
``emoset``      EmoSet-118K's official folder: ``image/<emotion>/``, ``annotation/<emotion>/``, split JSONs
``webemo``      WEBEmo's release: ``category.txt``, ``test.txt`` (``URL label-index``), ``images/``
``emotion6``    Emotion6 as a folder per class: ``<label>/*.jpg``
==============  ============================================================================================

(Geometry3K's hub copy is :func:`mapo_verl.runs.smoke_data.write_hub_copy`.)
"""

from __future__ import annotations

import io
import json
from collections.abc import Callable
from pathlib import Path

from mapo_verl.data_sources import MATHVERSE_VERSIONS

EMOSET_LABELS = ("amusement", "awe", "contentment", "excitement", "anger", "disgust", "fear", "sadness")
EMOTION6_LABELS = ("anger", "disgust", "fear", "joy", "sadness", "surprise")
#: WEBEmo's ``category.txt`` format: (fine label, basic emotion, polarity) in label-index order (a few of the 25)
WEBEMO_CATEGORIES = (
    ("affection", "love", "+"),
    ("cheerfullness", "joy", "+"),
    ("anger", "anger", "-"),
    ("nervousness", "fear", "-"),
)


def image_bytes(width: int, height: int, mode: str = "RGB", fmt: str = "JPEG", seed: int = 0) -> bytes:
    """A generated image with a gradient, so that it is not trivially compressible (large ones are upscaled)."""
    from PIL import Image

    w, h = min(width, 64), min(height, 64)
    image = Image.new("RGB", (w, h))
    image.putdata([((x * 7 + seed) % 256, (y * 5 + seed) % 256, (x + y) % 256) for y in range(h) for x in range(w)])
    if (w, h) != (width, height):
        image = image.resize((width, height), Image.Resampling.BILINEAR)
    if mode != "RGB":
        image = image.convert(mode)
    buffer = io.BytesIO()
    image.save(buffer, format=fmt)
    return buffer.getvalue()


def hub_features(name: str):
    """The hub's column types of ``AI4Math/MathVista`` (testmini) or ``MathLLMs/MathVision`` (``name``)."""
    import datasets

    text = datasets.Value("string")
    columns = {
        "mathvista": {
            **{"pid": text, "question": text, "image": text, "decoded_image": datasets.Image()},
            **{"choices": datasets.List(text), "unit": text, "precision": datasets.Value("float64"), "answer": text},
            **{"question_type": text, "answer_type": text},
            **{"metadata": text, "query": text},  # metadata is a struct on the hub; unused by the preparer
        },
        "mathvision": {
            **{"id": text, "question": text, "options": datasets.List(text), "image": text},
            **{"decoded_image": datasets.Image(), "answer": text, "solution": text},
            **{"level": datasets.Value("int64"), "subject": text},
        },
    }
    return datasets.Features(columns[name])


def write_hub_parquet(root: Path, split: str, rows: list[dict], features) -> None:
    """``root/data/<split>-00000-of-00001.parquet``: the layout ``datasets.load_dataset(root)`` reads.

    Columns of ``features`` that a row lacks are written as nulls.
    """
    import datasets

    (root / "data").mkdir(parents=True, exist_ok=True)
    rows = [{column: row.get(column) for column in features} for row in rows]
    ds = datasets.Dataset.from_list(rows, features=features)
    ds.to_parquet(str(root / "data" / f"{split}-00000-of-00001.parquet"))


def _image(seed: int) -> dict:
    return {"bytes": image_bytes(60, 48, seed=seed), "path": None}


def write_mathvista(root: Path) -> None:
    """Two choice and two free-form MathVista testmini records (with the official ``query``)."""
    records = [
        ("1", "Which bar is tallest?", ["red", "green", "blue"], "green", "multi_choice", "text"),
        ("2", "What is the area of the square?", None, "16", "free_form", "integer"),
        ("3", "Which angle is larger?", ["A", "B"], "B", "multi_choice", "text"),
        ("4", "How many sides does the shape have?", None, "5", "free_form", "integer"),
    ]
    rows = [
        dict(pid=pid, question=q, image=f"images/{pid}.jpg", decoded_image=_image(10 + i), choices=choices,
             answer=answer, question_type=qtype, answer_type=atype, query=f"Hint: answer the question.\n{q}")
        for i, (pid, q, choices, answer, qtype, atype) in enumerate(records)
    ]  # fmt: skip
    write_hub_parquet(root, "testmini", rows, hub_features("mathvista"))


def write_mathvision(root: Path) -> None:
    """Three MathVision test records: a choice question, a free-form one, a choice answered by its text."""
    rows = [
        dict(id="1", question="<image1>\nWhich shape is a circle?", options=["A", "B", "C", "D", "E"],
             image="images/1.jpg", decoded_image=_image(20), answer="C", level=1, subject="metric geometry"),
        dict(id="2", question="How many cubes are there? <image1>", options=[], image="images/2.jpg",
             decoded_image=_image(21), answer="14", level=2, subject="counting"),
        dict(id="3", question="Which is largest?", options=["1/2", "2/3"], image="images/3.jpg",
             decoded_image=_image(22), answer="2/3", level=1, subject="arithmetic"),
    ]  # fmt: skip
    write_hub_parquet(root, "test", rows, hub_features("mathvision"))


def write_mathverse_configs(root: Path, vision_rows: list[dict], text_only_rows: list[dict]) -> None:
    """``AI4Math/MathVerse``'s public layout: two configs declared in ``README.md``, each with its own parquet file;
    ``testmini`` holds the vision-bearing versions with their diagrams, ``testmini_text_only`` the Text Only version,
    whose ``image`` is an empty string (no diagram). Rows: the hub's columns (``query_cot`` included)."""
    import datasets

    text = datasets.Value("string")
    columns = ("sample_index", "problem_index", "problem_version", "question", "answer", "question_type", "query_cot")
    root.mkdir(parents=True, exist_ok=True)
    features = datasets.Features({**{c: text for c in columns}, "image": datasets.Image()})
    datasets.Dataset.from_list(vision_rows, features=features).to_parquet(str(root / "testmini.parquet"))
    text_only = datasets.Features({**{c: text for c in columns}, "image": text})
    datasets.Dataset.from_list(text_only_rows, features=text_only).to_parquet(str(root / "testmini_text_only.parquet"))
    (root / "README.md").write_text(
        "---\nconfigs:\n"
        "- config_name: testmini\n  data_files:\n  - split: testmini\n    path: testmini.parquet\n"
        "- config_name: testmini_text_only\n  data_files:\n  - split: testmini_text_only\n"
        "    path: testmini_text_only.parquet\n---\n"
    )


def write_mathverse(root: Path) -> None:
    """One testmini record per vision-bearing problem version (Vision Only with an empty question), one Text Only."""
    choices = "As shown in the figure, find angle ABC.\nChoices:\nA:30°\nB:45°\nC:60°\nD:90°"

    def row(i: int, version: str, image) -> dict:
        question = "" if version == "Vision Only" else (choices if i % 2 == 0 else "Find x.")
        answer, qtype = ("B", "multi-choice") if i % 2 == 0 else ("6", "free-form")
        return dict(sample_index=str(i + 1), problem_index=str(i + 1), problem_version=version, question=question,
                    answer=answer, question_type=qtype, image=image,
                    query_cot=f"{question}\nPlease first conduct reasoning, then answer.")  # fmt: skip

    vision = [row(i, v, _image(30 + i)) for i, v in enumerate(MATHVERSE_VERSIONS)]
    write_mathverse_configs(root, vision, [row(len(vision), "Text Only", "")])


def write_emoset(root: Path, per_split: dict[str, int] | None = None) -> None:
    """EmoSet-118K's official layout with ``per_split`` images per class (default 1 train, 1 test, no val)."""
    counts = per_split or {"train": 1, "val": 0, "test": 1}
    splits: dict[str, list[list[str]]] = {split: [] for split in counts}
    n = 0
    for label in EMOSET_LABELS:
        (root / "image" / label).mkdir(parents=True, exist_ok=True)
        (root / "annotation" / label).mkdir(parents=True, exist_ok=True)
        for split, count in counts.items():
            for _ in range(count):
                name = f"{label}_{n:05d}"
                n += 1
                (root / "image" / label / f"{name}.jpg").write_bytes(image_bytes(48, 40, seed=7 * n))
                (root / "annotation" / label / f"{name}.json").write_text(json.dumps({"emotion": label}))
                splits[split].append([label, f"image/{label}/{name}.jpg", f"annotation/{label}/{name}.json"])
    for split, entries in splits.items():
        (root / f"{split}.json").write_text(json.dumps(entries))


def write_webemo(root: Path) -> None:
    """WEBEmo's release: ``category.txt``, ``test.txt`` with one URL per category, each image under ``images/``."""
    (root / "images").mkdir(parents=True, exist_ok=True)
    entries = ", \n\t".join(repr(entry) for entry in WEBEMO_CATEGORIES)
    (root / "category.txt").write_text(f"# Three level emotion hierarchy.\nlabels=[{entries}]\n")
    lines = []
    for index in range(len(WEBEMO_CATEGORIES)):
        name = f"220_F_{index:06d}.jpg"
        lines.append(f"https://example.org/jpg/{name} {index}")
        (root / "images" / name).write_bytes(image_bytes(52, 40, seed=40 + index))
    (root / "test.txt").write_text("\n".join(lines) + "\n")


def write_emotion6(root: Path) -> None:
    """Emotion6 as a folder per class, one image each."""
    for k, label in enumerate(EMOTION6_LABELS):
        (root / label).mkdir(parents=True, exist_ok=True)
        (root / label / "1.jpg").write_bytes(image_bytes(44, 40, seed=60 + k))


#: preparer name -> writer of its public layout
WRITERS: dict[str, Callable[[Path], None]] = {
    "mathvista": write_mathvista,
    "mathvision": write_mathvision,
    "mathverse": write_mathverse,
    "emoset": write_emoset,
    "webemo": write_webemo,
    "emotion6": write_emotion6,
}


def write_source(name: str, root: Path) -> Path:
    """A small source of preparer ``name`` in its public layout under ``root``; returns ``root``."""
    if name not in WRITERS:
        raise KeyError(f"no public-layout writer for {name!r} (known: {', '.join(sorted(WRITERS))})")
    WRITERS[name](root)
    return root
