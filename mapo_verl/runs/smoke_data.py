"""The smoke run's data: Geometry3K problems in the hub layout, prepared by ``python -m data_prep.geo3k``.

The real problems of ``../shared/realdata/geo3k`` where present, else generated right-triangle diagrams; the
prepared training rows are also the tiny model's warm-start examples (the format only, see
:mod:`mapo_verl.runs.tiny_model`).
"""

from __future__ import annotations

import io
import json
import os
import random
import subprocess
import sys
from pathlib import Path

from mapo_verl.runs.spec import REPO_ROOT, SHARED_DIR

REALDATA_GEO3K = SHARED_DIR / "realdata" / "geo3k"


def _geo3k_records_from_realdata(root: Path) -> list[dict]:
    """Geometry3K problems of ``root/<id>/{data.json,img_diagram.png}`` as hub rows (problem, answer, image)."""
    rows = []
    for folder in sorted((p for p in root.iterdir() if (p / "data.json").is_file()), key=lambda p: int(p.name)):
        record = json.loads((folder / "data.json").read_text())
        letter = str(record["answer"]).strip().upper()
        choices = record.get("compact_choices") or record["choices"]
        answer = str(choices[ord(letter) - ord("A")]).strip()
        problem = " ".join(str(record.get("compact_text") or record["problem_text"]).split())
        rows.append(
            {"problem": f"<image>{problem}", "answer": answer, "image": (folder / "img_diagram.png").read_bytes()}
        )
    return rows


#: (question, answer from the legs a, b and hypotenuse c): worded apart, so that the warm start tells them apart
_GENERATED_QUESTIONS = (
    ("Find x, the hypotenuse. Round to the nearest tenth.", lambda a, b, c: c),
    ("Find the perimeter of the triangle. Round to the nearest tenth.", lambda a, b, c: a + b + c),
    ("Find the area of the triangle.", lambda a, b, c: a * b / 2),
    ("Which leg is longer? Give its length.", lambda a, b, c: max(a, b)),
    ("Give the length of the shorter leg.", lambda a, b, c: min(a, b)),
    ("What is the sum of both legs?", lambda a, b, c: a + b),
    ("How much longer is one leg than the other?", lambda a, b, c: abs(a - b)),
    ("Find m \\angle at the corner marked square, in degrees.", lambda a, b, c: 90),
    ("How many sides does the polygon have?", lambda a, b, c: 3),
    ("Find twice the shorter leg.", lambda a, b, c: 2 * min(a, b)),
)


def _number_text(value: float) -> str:
    return f"{value:.1f}".rstrip("0").rstrip(".")


def _generated_geo3k_records(count: int = 10, seed: int = 0) -> list[dict]:
    """Right-triangle diagrams with two labelled legs, each asked a differently worded question.

    Distinct wordings let the tiny model's warm start learn each training prompt's answer (about half of the sampled
    answers right, as on the real problems), so groups of rollouts succeed at varied rates and MAPO mixes its terms
    (lambda strictly between 0 and 1); questions that differed only in two numbers gave all-fail groups.
    """
    from PIL import Image, ImageDraw

    rng = random.Random(seed)
    rows = []
    for i in range(count):
        a, b = rng.randint(3, 12), rng.randint(3, 12)
        img = Image.new("RGB", (160, 120), "white")
        draw = ImageDraw.Draw(img)
        pts = [(20, 100), (20 + 10 * b, 100), (20, 100 - 7 * a)]
        draw.polygon(pts, outline="black")
        draw.text((4, 100 - 3.5 * a), str(a), fill="black")
        draw.text((20 + 5 * b, 104), str(b), fill="black")
        draw.text((24 + 5 * b, 96 - 3.5 * a), "x", fill="black")
        buf = io.BytesIO()
        img.save(buf, format="PNG")
        question, answer_of = _GENERATED_QUESTIONS[i % len(_GENERATED_QUESTIONS)]
        answer = _number_text(answer_of(a, b, (a * a + b * b) ** 0.5))
        problem = f"<image>The legs of the right triangle are {a} and {b}. {question}"
        rows.append({"problem": problem, "answer": answer, "image": buf.getvalue()})
    return rows


def write_hub_copy(dest: Path, rows: list[dict], n_eval: int = 2) -> None:
    """``dest/data/{train,validation,test}-00000-of-00001.parquet`` as ``datasets.load_dataset(dest)`` reads."""
    import datasets

    datasets.disable_progress_bars()
    features = datasets.Features(
        {
            "images": datasets.List(datasets.Image()),
            "problem": datasets.Value("string"),
            "answer": datasets.Value("string"),
        }
    )
    splits = {"train": rows[:-n_eval], "validation": rows[-n_eval:], "test": rows[-n_eval:]}
    (dest / "data").mkdir(parents=True, exist_ok=True)
    for split, split_rows in splits.items():
        hub_rows = [
            {"images": [{"bytes": r["image"], "path": None}], "problem": r["problem"], "answer": r["answer"]}
            for r in split_rows
        ]
        datasets.Dataset.from_list(hub_rows, features=features).to_parquet(
            str(dest / "data" / f"{split}-00000-of-00001.parquet")
        )


def prepare_data(out: Path, source_kind: str = "auto") -> tuple[Path, str]:
    """Run ``python -m data_prep.geo3k`` on a hub-layout copy; returns the prepared folder and the source used.

    ``source_kind``: ``real`` (``../shared/realdata/geo3k``, required), ``generated``, or ``auto`` (real if present).
    """
    if source_kind == "real" and not REALDATA_GEO3K.is_dir():
        raise FileNotFoundError(f"--data real: {REALDATA_GEO3K} not found")
    if source_kind != "generated" and REALDATA_GEO3K.is_dir():
        rows, source = _geo3k_records_from_realdata(REALDATA_GEO3K), f"{REALDATA_GEO3K} (real Geometry3K problems)"
    else:
        rows, source = _generated_geo3k_records(), "generated diagrams (../shared/realdata/geo3k not found)"
    src, prepared = out / "data" / "geo3k_hub_copy", out / "data" / "geo3k"
    write_hub_copy(src, rows)
    cmd = [sys.executable, "-m", "data_prep.geo3k", "--local-dataset-path", str(src), "--local-save-dir", str(prepared)]
    env = {**os.environ, "HF_DATASETS_OFFLINE": "1", "HF_HUB_OFFLINE": "1"}
    result = subprocess.run(
        [*cmd, "--no-progress"], cwd=REPO_ROOT, env=env, capture_output=True, text=True, check=False
    )
    if result.returncode != 0:
        raise RuntimeError(f"data_prep.geo3k failed ({result.returncode}):\n{result.stdout}\n{result.stderr}")
    for split in ("train", "test"):
        if not (prepared / f"{split}.parquet").is_file():
            raise RuntimeError(f"data_prep.geo3k wrote no {prepared / f'{split}.parquet'}:\n{result.stdout}")
    return prepared, source


def warm_start_examples(train_parquet: Path):
    """The prepared training rows as warm-start examples (the prompt verl will render, its image, its answer)."""
    import pyarrow.parquet as pq

    from mapo_verl.runs.tiny_model import WarmStartExample

    examples = []
    for row in pq.read_table(train_parquet).to_pylist():
        content = row["prompt"][-1]["content"]
        images = tuple(img["bytes"] for img in row["images"])
        examples.append(WarmStartExample(question=content, answer=row["reward_model"]["ground_truth"], images=images))
    return examples
