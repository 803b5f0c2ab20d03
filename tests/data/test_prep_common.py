"""The shared preparer helpers: image normalisation, stratified sampling, chunked atomic writing."""

from __future__ import annotations

import argparse
import io
from collections import Counter

import pyarrow.parquet as pq
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from PIL import Image

from data_prep.arguments import parse_size
from data_prep.images import normalize_image
from data_prep.rows import BadRecord, make_row
from data_prep.sampling import stratified_sample
from data_prep.writer import PrepError, Summary, write_split


def decode(result: dict) -> Image.Image:
    return Image.open(io.BytesIO(result["bytes"]))


def test_small_rgb_and_grayscale_keep_original_bytes(helpers):
    for mode in ("RGB", "L"):
        raw = helpers.image_bytes(40, 30, mode=mode)
        assert normalize_image(raw)["bytes"] == raw


@pytest.mark.parametrize(
    ("mode", "fmt"), [("P", "PNG"), ("RGBA", "PNG"), ("LA", "PNG"), ("CMYK", "JPEG"), ("I;16", "PNG")]
)
def test_other_modes_become_rgb(helpers, mode, fmt):
    out = decode(normalize_image(helpers.image_bytes(40, 30, mode=mode, fmt=fmt)))
    assert out.mode == "RGB" and out.size == (40, 30)
    assert out.format == ("JPEG" if fmt == "JPEG" else "PNG")


def test_alpha_is_composited_on_white():
    image = Image.new("RGBA", (4, 4), (0, 0, 0, 0))
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    assert decode(normalize_image(buffer.getvalue())).getpixel((0, 0)) == (255, 255, 255)


@pytest.mark.parametrize(("size", "max_pixels"), [((400, 100), 10_000), ((101, 99), 10_000), ((1000, 7), 4_000)])
def test_large_images_are_downscaled_keeping_aspect(helpers, size, max_pixels):
    out = decode(normalize_image(helpers.image_bytes(*size), max_pixels=max_pixels))
    assert out.width * out.height <= max_pixels
    assert abs(out.width / out.height - size[0] / size[1]) / (size[0] / size[1]) < 0.1
    assert out.width * out.height > 0.9 * max_pixels


def test_bad_images(tmp_path, helpers):
    with pytest.raises(BadRecord, match="corrupt image"):
        normalize_image(b"\x89PNG\r\n\x1a\n garbage")
    with pytest.raises(BadRecord, match="corrupt image"):
        normalize_image(helpers.image_bytes(50, 50)[:100])
    with pytest.raises(BadRecord, match="missing image"):
        normalize_image(tmp_path / "nope.jpg")
    with pytest.raises(BadRecord, match="missing image"):
        normalize_image({"bytes": None, "path": None})
    with pytest.raises(BadRecord, match="aspect ratio"):
        normalize_image(helpers.image_bytes(402, 2))
    (tmp_path / "rel.jpg").write_bytes(helpers.image_bytes(10, 10))
    assert normalize_image("rel.jpg", base_dir=tmp_path)["bytes"] == (tmp_path / "rel.jpg").read_bytes()


def test_make_row_checks_placeholders_and_answer():
    img = {"bytes": b"x"}
    common = dict(data_source="d", ability="math", split="test", index=0)
    with pytest.raises(BadRecord, match="image placeholders"):
        make_row(content="<image><image>q", images=[img], ground_truth="1", **common)
    with pytest.raises(BadRecord, match="empty answer"):
        make_row(content="<image>q", images=[img], ground_truth=" ", **common)


@settings(max_examples=60, deadline=None)
@given(
    labels=st.lists(st.sampled_from("abcde"), min_size=1, max_size=60),
    size=st.integers(1, 70),
    seed=st.integers(0, 3),
)
def test_stratified_sample(labels, size, seed):
    picked = stratified_sample(labels, size, seed)
    assert picked == sorted(set(picked)) and picked == stratified_sample(labels, size, seed)
    assert len(picked) == min(size, len(labels))
    total, counts = Counter(labels), Counter(labels[i] for i in picked)
    for label, n in total.items():
        share = len(picked) * n / len(labels)
        assert share - 1 < counts[label] < share + 1


@pytest.mark.parametrize(("value", "expected"), [("all", None), ("ALL", None), ("5", 5)])
def test_parse_size(value, expected):
    assert parse_size(value) == expected


def _args(**kw) -> argparse.Namespace:
    return argparse.Namespace(skip_bad=False, chunk_rows=2, no_progress=True, **kw)


def _row(i: int) -> dict:
    return make_row(
        data_source="d", content="<image>q", images=[{"bytes": b"img"}], ability="math",
        ground_truth=str(i), split="test", index=i,
    )  # fmt: skip


def test_write_split_streams_in_row_groups(tmp_path):
    summary = Summary("t", tmp_path)
    path = write_split(
        summary=summary, split="test", records=range(5), convert=lambda i, r: _row(r),
        record_id=lambda i, r: str(i), args=_args(), total=5,
    )  # fmt: skip
    meta = pq.ParquetFile(path).metadata
    assert meta.num_rows == 5 and meta.num_row_groups == 3  # flushed every --chunk-rows rows
    assert summary.written == {"test": 5}


def test_failed_split_leaves_previous_output_and_no_temp(tmp_path):
    summary = Summary("t", tmp_path)
    (tmp_path / "test.parquet").write_bytes(b"previous complete file")

    def convert(i, r):
        if r == 3:
            raise RuntimeError("disk on fire")
        return _row(r)

    with pytest.raises(RuntimeError):
        write_split(
            summary=summary, split="test", records=range(5), convert=convert,
            record_id=lambda i, r: str(i), args=_args(),
        )  # fmt: skip
    assert sorted(p.name for p in tmp_path.iterdir()) == ["test.parquet"]
    assert (tmp_path / "test.parquet").read_bytes() == b"previous complete file"

    def bad(i, r):
        raise BadRecord("empty question")

    with pytest.raises(PrepError, match="split 'test', record #0: empty question"):
        write_split(
            summary=summary, split="test", records=[1], convert=bad, record_id=lambda i, r: f"#{i}", args=_args()
        )
