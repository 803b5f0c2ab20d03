"""What every preparer shares: CLI arguments, prompts, image normalisation, the bad-record policy, chunked and
atomic parquet writing with a progress bar, and the closing summary.

Every row follows verl's RLHF schema (one fixed Arrow schema for all seven sets, so that verl can concatenate
parquet files of different sets in one validation run)::

    data_source: str
    prompt:      [{"role": "user", "content": "<image>..."}]   # exactly one <image> per image
    images:      [{"bytes": b"..."}]
    ability:     "math" | "emotion"
    reward_model: {"style": "rule", "ground_truth": str}
    extra_info:  {split, index, source_id, question, answer, question_type, options, labels}
"""

from __future__ import annotations

import argparse
import io
import math
import os
import random
import sys
from collections import Counter, defaultdict
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq
from PIL import Image
from tqdm import tqdm

#: The paper's image budget (Qwen2.5-VL ``max_pixels``): larger images are downscaled keeping aspect ratio.
DEFAULT_MAX_PIXELS = 4194304
#: Qwen2-VL's processors reject images whose long side exceeds 200x the short side.
MAX_ASPECT_RATIO = 200
DEFAULT_CHUNK_ROWS = 256
IMAGE_TOKEN = "<image>"
IMAGE_SUFFIXES = frozenset({".jpg", ".jpeg", ".png", ".bmp", ".gif", ".webp", ".tif", ".tiff"})

MATH_INSTRUCTION = (
    "First reason step by step inside <think> </think> tags, "
    "then give the final answer inside \\boxed{} after the closing </think> tag."
)

SCHEMA = pa.schema(
    [
        ("data_source", pa.string()),
        ("prompt", pa.list_(pa.struct([("role", pa.string()), ("content", pa.string())]))),
        ("images", pa.list_(pa.struct([("bytes", pa.binary())]))),
        ("ability", pa.string()),
        ("reward_model", pa.struct([("style", pa.string()), ("ground_truth", pa.string())])),
        (
            "extra_info",
            pa.struct(
                [
                    ("split", pa.string()),
                    ("index", pa.int64()),
                    ("source_id", pa.string()),
                    ("question", pa.string()),
                    ("answer", pa.string()),
                    ("question_type", pa.string()),
                    ("options", pa.list_(pa.string())),
                    ("labels", pa.list_(pa.string())),
                ]
            ),
        ),
    ]
)


class BadRecord(Exception):
    """One input record cannot be converted; ``reason`` is the short key counted in the summary."""

    def __init__(self, reason: str, detail: str = "") -> None:
        super().__init__(f"{reason}: {detail}" if detail else reason)
        self.reason = reason


class PrepError(RuntimeError):
    """A run stops: bad input without ``--skip-bad``, or a missing split/source."""


# ----------------------------------------------------------------------------------------------------- CLI


def base_parser(name: str, doc: str) -> argparse.ArgumentParser:
    """The arguments every preparer takes; ``doc`` (the module docstring) is the help text."""
    parser = argparse.ArgumentParser(
        prog=f"python -m data_prep.{name}", description=doc, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--local-save-dir", default=f"~/data/{name}", help="output folder (default ~/data/NAME)")
    parser.add_argument("--local-dataset-path", default=None, help="local source (layout: see the module doc)")
    parser.add_argument("--max-pixels", type=int, default=DEFAULT_MAX_PIXELS, help="downscale larger images")
    parser.add_argument("--skip-bad", action="store_true", help="skip and count bad records instead of stopping")
    parser.add_argument("--chunk-rows", type=int, default=DEFAULT_CHUNK_ROWS, help="rows per parquet row group")
    parser.add_argument("--seed", type=int, default=42, help="seed for stratified subsets")
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")
    return parser


def parse_size(value: str) -> int | None:
    """A subset size: a positive integer, or ``all`` (``None``)."""
    if value.strip().lower() == "all":
        return None
    try:
        size = int(value)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a positive integer or 'all', got {value!r}") from None
    if size <= 0:
        raise argparse.ArgumentTypeError(f"expected a positive integer or 'all', got {value!r}")
    return size


def run_main(body: Callable[[argparse.Namespace], Summary], parser: argparse.ArgumentParser, argv=None) -> int:
    """Parse ``argv``, run ``body``, print the summary; a :class:`PrepError` becomes exit status 1."""
    args = parser.parse_args(argv)
    if args.max_pixels <= 0 or args.chunk_rows <= 0:
        parser.error("--max-pixels and --chunk-rows must be positive")
    try:
        summary = body(args)
    except PrepError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    print(summary.render())
    return 0


# --------------------------------------------------------------------------------------------------- prompts


def math_prompt(question: str, n_images: int = 1) -> str:
    """The user turn for a math question: images first unless the question already places ``<image>``."""
    question = question.strip()
    if IMAGE_TOKEN not in question:
        question = IMAGE_TOKEN * n_images + question
    return f"{question}\n\n{MATH_INSTRUCTION}"


def emotion_prompt(labels: Sequence[str]) -> str:
    """The user turn for emotion classification, naming the allowed labels."""
    return (
        f"{IMAGE_TOKEN}Which emotion does this image evoke? Choose exactly one of: {', '.join(labels)}.\n\n"
        "First reason step by step inside <think> </think> tags, then give exactly one label from that list "
        "inside \\boxed{} after the closing </think> tag."
    )


def choices_block(options: Sequence[str]) -> str:
    """``(A) ...`` lines and the instruction to answer with the letter."""
    lines = [f"({chr(ord('A') + i)}) {option}" for i, option in enumerate(options)]
    return "Choices:\n" + "\n".join(lines) + "\nAnswer with the option's letter."


def option_letter(index: int) -> str:
    if not 0 <= index < 26:
        raise BadRecord("bad answer", f"option index {index} out of range")
    return chr(ord("A") + index)


# ---------------------------------------------------------------------------------------------------- images


def _image_bytes(source: Any, base_dir: Path | None) -> bytes:
    """Raw bytes from ``bytes``, a ``{"bytes", "path"}`` dict, a path, or a PIL image."""
    if isinstance(source, Image.Image):
        buffer = io.BytesIO()
        source.save(buffer, format="PNG")
        return buffer.getvalue()
    if isinstance(source, dict):
        if source.get("bytes"):
            return bytes(source["bytes"])
        source = source.get("path")
    if isinstance(source, bytes | bytearray | memoryview):
        return bytes(source)
    if isinstance(source, str | os.PathLike) and str(source):
        path = Path(source)
        if not path.is_absolute() and base_dir is not None:
            path = base_dir / path
        try:
            return path.read_bytes()
        except OSError as exc:
            raise BadRecord("missing image", f"{path}: {exc.strerror or exc}") from None
    raise BadRecord("missing image", "no image data")


def normalize_image(source: Any, max_pixels: int = DEFAULT_MAX_PIXELS, base_dir: Path | None = None) -> dict:
    """``{"bytes": ...}`` for one image.

    The original bytes are kept unless the image has more than ``max_pixels`` pixels (then it is downscaled
    keeping its aspect ratio) or a mode other than RGB/L (palette, CMYK, alpha, 16-bit...: converted to RGB,
    alpha composited on white). Re-encoded images are JPEG (quality 95) if the source was JPEG, else PNG.
    Unreadable data raises :class:`BadRecord`.
    """
    raw = _image_bytes(source, base_dir)
    if not raw:
        raise BadRecord("missing image", "empty image file")
    try:
        image = Image.open(io.BytesIO(raw))
        image.load()
    except Exception as exc:  # PIL raises OSError, SyntaxError, ValueError, DecompressionBombError...
        raise BadRecord("corrupt image", f"{type(exc).__name__}: {exc}") from None
    width, height = image.size
    if width < 1 or height < 1:
        raise BadRecord("corrupt image", f"size {width}x{height}")
    if max(width, height) / min(width, height) > MAX_ASPECT_RATIO:
        raise BadRecord("extreme aspect ratio", f"{width}x{height}")
    fmt = image.format
    needs_rgb = image.mode not in ("RGB", "L")
    needs_resize = width * height > max_pixels
    if not needs_rgb and not needs_resize:
        return {"bytes": raw}
    if needs_rgb:
        image = _to_rgb(image)
    if needs_resize:
        scale = math.sqrt(max_pixels / (width * height))
        size = (max(1, math.floor(width * scale)), max(1, math.floor(height * scale)))
        image = image.resize(size, Image.Resampling.LANCZOS)
    buffer = io.BytesIO()
    if fmt in ("JPEG", "MPO"):
        image.save(buffer, format="JPEG", quality=95)
    else:
        image.save(buffer, format="PNG")
    return {"bytes": buffer.getvalue()}


def _to_rgb(image: Image.Image) -> Image.Image:
    if image.mode == "P":
        image = image.convert("RGBA")
    if image.mode in ("RGBA", "LA", "PA", "RGBa", "La"):
        rgba = image.convert("RGBA")
        background = Image.new("RGB", rgba.size, (255, 255, 255))
        background.paste(rgba, mask=rgba.getchannel("A"))
        return background
    return image.convert("RGB")


# ------------------------------------------------------------------------------------------------------- rows


def make_row(
    *,
    data_source: str,
    content: str,
    images: Sequence[dict],
    ability: str,
    ground_truth: str,
    split: str,
    index: int,
    source_id: str = "",
    question: str = "",
    answer: str = "",
    question_type: str = "",
    options: Sequence[str] = (),
    labels: Sequence[str] = (),
) -> dict:
    """One row in verl's schema; checks the ``<image>`` count and a non-empty ground truth."""
    if content.count(IMAGE_TOKEN) != len(images):
        raise BadRecord("image placeholders", f"{content.count(IMAGE_TOKEN)} <image> for {len(images)} images")
    if not ground_truth.strip():
        raise BadRecord("empty answer")
    return {
        "data_source": data_source,
        "prompt": [{"role": "user", "content": content}],
        "images": list(images),
        "ability": ability,
        "reward_model": {"style": "rule", "ground_truth": ground_truth},
        "extra_info": {
            "split": split,
            "index": int(index),
            "source_id": source_id,
            "question": question,
            "answer": answer,
            "question_type": question_type,
            "options": [str(option) for option in options],
            "labels": list(labels),
        },
    }


def require_text(value: Any, what: str) -> str:
    """A non-blank string, else :class:`BadRecord` (``empty question`` / ``empty answer``)."""
    text = "" if value is None else str(value)
    if not text.strip():
        raise BadRecord(f"empty {what}")
    return text.strip()


# ------------------------------------------------------------------------------------------ sampling, labels


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


def fold_label(label: str) -> str:
    """Canonical label spelling: lower case, single spaces."""
    return " ".join(str(label).replace("_", " ").split()).lower()


# --------------------------------------------------------------------------------------------------- writing


@dataclass
class Summary:
    """Rows written and records skipped (by reason) per split."""

    name: str
    out_dir: Path
    written: dict[str, int] = field(default_factory=dict)
    skipped: dict[str, Counter] = field(default_factory=lambda: defaultdict(Counter))

    def render(self) -> str:
        lines = [f"{self.name}: wrote {sum(self.written.values())} rows to {self.out_dir}"]
        for split, rows in self.written.items():
            skipped = self.skipped.get(split) or Counter()
            detail = ", ".join(f"{reason}: {n}" for reason, n in sorted(skipped.items())) or "none"
            lines.append(f"  {split}.parquet: {rows} rows; skipped {sum(skipped.values())} ({detail})")
        return "\n".join(lines)


def write_split(
    *,
    summary: Summary,
    split: str,
    records: Iterable[Any],
    convert: Callable[[int, Any], dict],
    record_id: Callable[[int, Any], str],
    args: argparse.Namespace,
    total: int | None = None,
    file_name: str | None = None,
) -> Path:
    """Convert ``records`` to rows and write ``OUT/<split>.parquet`` in chunks, atomically.

    Rows go to a temporary file in the output folder, flushed every ``--chunk-rows`` rows (so memory does not
    grow with the dataset), and the file is renamed into place only when the split is complete. A
    :class:`BadRecord` stops the split with a :class:`PrepError` naming the split and the record (and no
    output for the split), or, with ``--skip-bad``, is counted in the summary and skipped.
    """
    out_dir = summary.out_dir
    out_dir.mkdir(parents=True, exist_ok=True)
    final = out_dir / f"{file_name or split}.parquet"
    tmp = out_dir / f".{final.name}.{os.getpid()}.tmp"
    skipped = summary.skipped[final.stem]
    written = 0
    buffer: list[dict] = []
    writer = pq.ParquetWriter(tmp, SCHEMA)
    bar = tqdm(total=total, desc=f"{summary.name}/{split}", unit="rows", disable=args.no_progress, mininterval=0.5)
    try:
        for i, record in enumerate(records):
            try:
                buffer.append(convert(i, record))
            except BadRecord as exc:
                if not args.skip_bad:
                    raise PrepError(
                        f"{summary.name} split {split!r}, record {record_id(i, record)}: {exc} "
                        "(pass --skip-bad to skip such records)"
                    ) from exc
                skipped[exc.reason] += 1
            bar.update(1)
            if len(buffer) >= args.chunk_rows:
                writer.write_table(pa.Table.from_pylist(buffer, schema=SCHEMA))
                written += len(buffer)
                buffer.clear()
        if buffer:
            writer.write_table(pa.Table.from_pylist(buffer, schema=SCHEMA))
            written += len(buffer)
        writer.close()
        os.replace(tmp, final)
    except BaseException:
        writer.close()
        tmp.unlink(missing_ok=True)
        raise
    finally:
        bar.close()
    summary.written[final.stem] = written
    return final


def out_dir_of(args: argparse.Namespace) -> Path:
    return Path(os.path.expanduser(args.local_save_dir))


# ------------------------------------------------------------------------------------------ hub-layout input


def load_hub_split(hub_id: str, src: str | None, split: str, config: str | None = None):
    """One split of a hub dataset, or of ``src``: a local copy in the hub's layout or a single parquet file.

    Image columns come back undecoded (``{"bytes", "path"}``) so that original bytes can be kept.
    """
    import datasets

    try:
        if src and src.endswith(".parquet") and os.path.isfile(src):
            ds = datasets.load_dataset("parquet", data_files={split: src}, split=split)
        elif src:
            ds = datasets.load_dataset(src, config, split=split) if config else datasets.load_dataset(src, split=split)
        else:
            ds = datasets.load_dataset(hub_id, config, split=split)
    except (ValueError, KeyError, OSError) as exc:  # OSError: FileNotFoundError, ConnectionError
        raise PrepError(f"cannot load split {split!r} of {src or hub_id}: {exc}") from exc
    return undecoded(ds)


def undecoded(ds):
    """``ds`` with every (nested) ``Image`` feature set to ``decode=False`` (a metadata change, no copy)."""
    import datasets

    def visit(feature):
        if isinstance(feature, datasets.Image):
            return datasets.Image(decode=False)
        if isinstance(feature, datasets.List | datasets.Sequence):
            return type(feature)(visit(feature.feature), length=feature.length)
        if isinstance(feature, datasets.LargeList):
            return datasets.LargeList(visit(feature.feature))
        if isinstance(feature, dict):
            return {k: visit(v) for k, v in feature.items()}
        return feature

    for name, feature in ds.features.items():
        new = visit(feature)
        if new != feature:
            ds = ds.cast_column(name, new)
    return ds


def base_dir_of(src: str | None) -> Path | None:
    """Folder against which relative image paths in a local copy are resolved."""
    if not src:
        return None
    path = Path(src)
    return path.parent if path.is_file() else path
