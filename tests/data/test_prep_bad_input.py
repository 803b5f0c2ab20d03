"""Bad input to the preparers: one ``error:`` line naming the split, file, field or flag, a non-zero exit, nothing
half-written; empty splits refused; image paths confined to the dataset; temporary files of killed runs removed."""

from __future__ import annotations

import io
import json
import os
import random
import struct
import subprocess
import sys
import threading
import zlib
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from PIL import Image

from data_prep import emoset, emotion6, mathvision, webemo
from data_prep.images import normalize_image
from data_prep.rows import BadRecord
from mapo_verl.atomic_io import write_text


def _run(capsys, main, argv: list[str]) -> int:
    """``main(argv)`` with stdout and stderr captured from here on (fixtures print progress bars)."""
    capsys.readouterr()
    return main(argv)


def _error_line(capsys) -> str:
    """The one ``error:`` line on stderr (and nothing else there)."""
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: ") and "\n" not in err, err
    return err


def _mathvision_parquet(tmp_path: Path, helpers, rows: list[dict], drop: tuple[str, ...] = ()) -> Path:
    import datasets

    features = datasets.Features({k: v for k, v in helpers.hub_features("mathvision").items() if k not in drop})
    src = tmp_path / "src"
    if not rows:  # datasets cannot write an empty split: pyarrow, with the hub's schema
        src.mkdir()
        pq.write_table(pa.Table.from_pylist([], schema=features.arrow_schema), src / "test.parquet")
        return src / "test.parquet"
    helpers.write_hub_parquet(src, "test", [{k: v for k, v in r.items() if k not in drop} for r in rows], features)
    return next((src / "data").iterdir())


def _mv_row(helpers, id_: str, answer: str = "14") -> dict:
    image = {"bytes": helpers.image_bytes(40, 30, seed=int(id_)), "path": None}
    return dict(id=id_, question="How many cubes?", options=[], image="", decoded_image=image, answer=answer)


def _emoset(root: Path, helpers, entries: dict[str, list]) -> Path:
    """The official EmoSet layout with the given ``{train,val,test}.json`` entries and one image per label."""
    for label in helpers.EMOSET_LABELS:
        (root / "image" / label).mkdir(parents=True, exist_ok=True)
        (root / "image" / label / "0.jpg").write_bytes(helpers.image_bytes(32, 24, seed=1))
    for name, value in entries.items():
        (root / f"{name}.json").write_text(json.dumps(value))
    return root


def _good_entries(helpers) -> list[list[str]]:
    return [[label, f"image/{label}/0.jpg", "a.json"] for label in helpers.EMOSET_LABELS]


# ------------------------------------------------------------------------------------------- empty data refused
def test_a_source_split_with_no_rows_is_refused(tmp_path, helpers, capsys):
    parquet = _mathvision_parquet(tmp_path, helpers, [])
    out = tmp_path / "out"
    assert (
        _run(
            capsys,
            mathvision.main,
            ["--local-save-dir", str(out), "--local-dataset-path", str(parquet), "--no-progress"],
        )
        == 1
    )
    err = _error_line(capsys)
    assert "mathvision split 'test': no rows to write" in err and "the source split has 0 records" in err
    assert not (out / "test.parquet").exists()


def test_every_record_skipped_is_refused_with_the_counts(tmp_path, helpers, capsys):
    rows = [_mv_row(helpers, "1"), _mv_row(helpers, "2")]
    parquet = _mathvision_parquet(tmp_path, helpers, rows, drop=("answer",))  # no answer column at all
    out = tmp_path / "out"
    argv = ["--local-save-dir", str(out), "--local-dataset-path", str(parquet), "--no-progress", "--skip-bad"]
    assert _run(capsys, mathvision.main, argv) == 1
    err = _error_line(capsys)
    assert "split 'test': no rows to write" in err and "all 2 records read were skipped (empty answer: 2)" in err
    assert not (out / "test.parquet").exists()


def test_an_empty_emoset_train_json_is_refused(tmp_path, helpers, capsys):
    src = _emoset(tmp_path / "src", helpers, {"train": [], "val": [], "test": _good_entries(helpers)})
    out = tmp_path / "out"
    assert (
        _run(capsys, emoset.main, ["--local-dataset-path", str(src), "--local-save-dir", str(out), "--no-progress"])
        == 1
    )
    err = _error_line(capsys)
    assert "split 'train'" in err and f"{src / 'train.json'} lists no records" in err
    assert not out.exists() or not list(out.iterdir())


# ------------------------------------------------------------------------------ one error line for each bad input
def test_emoset_folder_without_train_json(tmp_path, helpers, capsys):
    src = _emoset(tmp_path / "src", helpers, {"val": _good_entries(helpers), "test": _good_entries(helpers)})
    assert _run(capsys, emoset.main, ["--local-dataset-path", str(src), "--local-save-dir", str(tmp_path / "out")]) == 1
    err = _error_line(capsys)
    assert str(src) in err and "no train.json" in err


@pytest.fixture
def read_only_dir(tmp_path):
    """A folder nobody can write in: a read-only tmpfs for root (who ignores permissions), else mode 0555."""
    folder = tmp_path / "ro"
    folder.mkdir()
    if os.geteuid() != 0:
        folder.chmod(0o555)
        yield folder
        folder.chmod(0o755)
        return
    done = subprocess.run(["mount", "-t", "tmpfs", "-o", "ro,size=1m", "tmpfs", str(folder)], capture_output=True)
    if done.returncode != 0:
        pytest.skip(f"cannot mount a read-only tmpfs: {done.stderr.decode().strip()}")
    try:
        yield folder
    finally:
        subprocess.run(["umount", str(folder)], check=False)


@pytest.mark.parametrize("kind", ["file", "under a file", "read-only"])
def test_local_save_dir_that_cannot_be_written(tmp_path, helpers, capsys, kind, request):
    parquet = _mathvision_parquet(tmp_path, helpers, [_mv_row(helpers, "1")])
    if kind == "read-only":
        target = request.getfixturevalue("read_only_dir") / "out"
    else:
        (tmp_path / "a_file").write_text("x")
        target = tmp_path / "a_file" if kind == "file" else tmp_path / "a_file" / "out"
    assert _run(capsys, mathvision.main, ["--local-save-dir", str(target), "--local-dataset-path", str(parquet)]) == 2
    err = _error_line(capsys)
    assert err.startswith("error: --local-save-dir: ") and ("is a file" in err or "is not writable" in err)


@pytest.mark.parametrize("value", ["nan", "inf", "-1", "0"])
def test_chunk_mb_must_be_positive_and_finite(tmp_path, helpers, capsys, value):
    parquet = _mathvision_parquet(tmp_path, helpers, [_mv_row(helpers, "1")])
    argv = ["--local-save-dir", str(tmp_path / "out"), "--local-dataset-path", str(parquet), "--chunk-mb", value]
    assert _run(capsys, mathvision.main, argv) == 2
    assert "--chunk-mb must be a positive finite number" in _error_line(capsys)
    assert not (tmp_path / "out").exists()


def test_emoset_train_json_that_is_not_utf8(tmp_path, helpers, capsys):
    src = _emoset(tmp_path / "src", helpers, {"val": [], "test": _good_entries(helpers)})
    (src / "train.json").write_bytes(b'[["joy", "image/\xff\xfe.jpg", "a.json"]]')
    assert _run(capsys, emoset.main, ["--local-dataset-path", str(src), "--local-save-dir", str(tmp_path / "out")]) == 1
    err = _error_line(capsys)
    assert f"cannot read {src / 'train.json'}" in err and "utf-8" in err


def _webemo_release(root: Path, helpers) -> Path:
    (root / "images").mkdir(parents=True)
    (root / "category.txt").write_text("[('joy', 'joy', '+'), ('fear', 'fear', '-')]")
    (root / "images" / "a.jpg").write_bytes(helpers.image_bytes(30, 20))
    (root / "test.txt").write_text("http://x/a.jpg 0\n")
    return root


def test_webemo_test_txt_that_is_not_utf8(tmp_path, helpers, capsys):
    src = _webemo_release(tmp_path / "src", helpers)
    (src / "test.txt").write_bytes(b"http://x/\xe9t\xe9.jpg 0\n")
    assert _run(capsys, webemo.main, ["--local-dataset-path", str(src), "--local-save-dir", str(tmp_path / "out")]) == 1
    err = _error_line(capsys)
    assert str(src / "test.txt") in err and "UTF-8" in err


def test_webemo_without_category_txt(tmp_path, helpers, capsys):
    src = _webemo_release(tmp_path / "src", helpers)
    (src / "category.txt").unlink()
    assert _run(capsys, webemo.main, ["--local-dataset-path", str(src), "--local-save-dir", str(tmp_path / "out")]) == 1
    err = _error_line(capsys)
    assert f"{src / 'category.txt'}: missing" in err


@pytest.fixture
def tiny_disk(tmp_path):
    """A 64 KiB tmpfs (root only): a real full disk."""
    folder = tmp_path / "disk"
    folder.mkdir()
    if os.geteuid() != 0:
        pytest.skip("mounting a tmpfs needs root")
    done = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=64k", "tmpfs", str(folder)], capture_output=True)
    if done.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs: {done.stderr.decode().strip()}")
    try:
        yield folder
    finally:
        subprocess.run(["umount", str(folder)], check=False)


def test_a_full_disk_is_an_error_and_the_previous_file_stays(tmp_path, helpers, capsys, tiny_disk):
    import datasets

    features = helpers.hub_features("mathvision")
    noise = Image.frombytes("RGB", (200, 200), random.Random(5).randbytes(200 * 200 * 3))
    buffer = io.BytesIO()
    noise.save(buffer, format="PNG")  # noise does not compress: about 120 KB, more than the disk holds
    big = {"bytes": buffer.getvalue(), "path": None}
    rows = [dict(_mv_row(helpers, str(i)), decoded_image=big) for i in range(3)]
    src = tmp_path / "src"
    helpers.write_hub_parquet(src, "test", rows, datasets.Features(features))
    (tiny_disk / "test.parquet").write_bytes(b"previous complete file")
    argv = ["--local-save-dir", str(tiny_disk), "--local-dataset-path", str(src), "--no-progress", "--chunk-rows", "1"]
    assert _run(capsys, mathvision.main, argv) == 1
    err = _error_line(capsys)
    assert f"cannot write {tiny_disk / 'test.parquet'}" in err and "No space left" in err
    assert sorted(p.name for p in tiny_disk.iterdir()) == ["test.parquet"]
    assert (tiny_disk / "test.parquet").read_bytes() == b"previous complete file"


# ------------------------------------------------------------------------------- temporary files of killed runs
def _dead_pid() -> int:
    child = subprocess.Popen([sys.executable, "-c", "pass"])
    child.wait()
    return child.pid


def test_temp_files_of_killed_runs_are_removed_by_the_next_run(tmp_path, helpers, capsys):
    import socket

    parquet = _mathvision_parquet(tmp_path, helpers, [_mv_row(helpers, "1")])
    out = tmp_path / "out"
    out.mkdir()
    live = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        dead = _dead_pid()
        stale = [out / f".test.parquet.{dead}.tmp", out / f".test.parquet.{dead}@{socket.gethostname()}.tmp"]
        kept = [
            out / f".test.parquet.{live.pid}.tmp",  # another writer, alive
            out / f".test.parquet.{dead}@another-node.tmp",  # a writer on another host of a shared file system
            out / f".train.parquet.{dead}.tmp",  # another file's
        ]
        for path in stale + kept:
            path.write_bytes(b"partial")
        assert (
            _run(
                capsys,
                mathvision.main,
                ["--local-save-dir", str(out), "--local-dataset-path", str(parquet), "--no-progress"],
            )
            == 0
        )
        assert all(not p.exists() for p in stale) and all(p.exists() for p in kept)
        assert pq.read_metadata(out / "test.parquet").num_rows == 1

        report = tmp_path / "report"
        report.mkdir()
        (report / f".results.md.{dead}@{socket.gethostname()}~abc123.tmp").write_text("partial")
        write_text(report / "results.md", "done")
        assert sorted(p.name for p in report.iterdir()) == ["results.md"]
    finally:
        live.kill()
        live.wait()


# -------------------------------------------------------------------------------------------- images: reach
def test_image_paths_stay_inside_the_dataset(tmp_path, helpers):
    root = tmp_path / "dataset"
    (root / "image").mkdir(parents=True)
    outside = tmp_path / "outside.jpg"
    outside.write_bytes(helpers.image_bytes(20, 20))
    (root / "image" / "inside.jpg").write_bytes(helpers.image_bytes(20, 20))
    (root / "image" / "link.jpg").symlink_to(outside)
    for path in (str(outside), "../outside.jpg", "image/../../outside.jpg", "image/link.jpg"):
        with pytest.raises(BadRecord, match=r"image outside the dataset.*--allow-outside-images"):
            normalize_image(path, base_dir=root)
        assert normalize_image(path, base_dir=root, allow_outside=True)["bytes"] == outside.read_bytes()
    assert normalize_image("image/inside.jpg", base_dir=root)["bytes"]


def test_emoset_record_pointing_outside_and_the_flag_that_allows_it(tmp_path, helpers, capsys):
    outside = tmp_path / "elsewhere.jpg"
    outside.write_bytes(helpers.image_bytes(30, 20))
    entries = [*_good_entries(helpers), ["awe", str(outside), "a.json"]]
    src = _emoset(tmp_path / "src", helpers, {"train": entries, "val": [], "test": _good_entries(helpers)})
    argv = ["--local-dataset-path", str(src), "--local-save-dir", str(tmp_path / "out"), "--no-progress"]
    assert _run(capsys, emoset.main, argv) == 1
    assert "image outside the dataset" in _error_line(capsys)
    assert _run(capsys, emoset.main, [*argv, "--allow-outside-images"]) == 0
    assert pq.read_metadata(tmp_path / "out" / "train.parquet").num_rows == len(entries)


def test_a_fifo_is_refused_without_hanging(tmp_path):
    os.mkfifo(tmp_path / "pipe.jpg")
    outcome: list[BaseException] = []

    def read() -> None:
        try:
            normalize_image("pipe.jpg", base_dir=tmp_path)
        except BaseException as exc:
            outcome.append(exc)

    worker = threading.Thread(target=read, daemon=True)
    worker.start()
    worker.join(timeout=20)
    assert not worker.is_alive(), "reading a FIFO blocked"
    assert isinstance(outcome[0], BadRecord) and outcome[0].reason == "not a regular file"
    assert "is a FIFO" in str(outcome[0])


def _png_header(width: int, height: int) -> bytes:
    """A PNG that declares ``width`` x ``height`` (8-bit grey) and holds one tiny IDAT: cheap to make, and PIL reads
    its size without decoding it."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    ihdr = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(b"\0")) + chunk(b"IEND", b"")


def test_a_400_megapixel_image_is_oversize_not_corrupt():
    huge = _png_header(20000, 20000)
    with pytest.raises(BadRecord, match=r"oversize image: 20000x20000 = 400000000 pixels.*--max-image-pixels") as bad:
        normalize_image(huge)
    assert bad.value.reason == "oversize image"
    with pytest.raises(BadRecord) as raised:  # the knob lets it through to the decoder (this one has no pixel data)
        normalize_image(huge, max_image_pixels=400_000_000)
    assert raised.value.reason == "corrupt image"


def test_duplicate_mathvision_ids(tmp_path, helpers, capsys):
    rows = [_mv_row(helpers, "7"), _mv_row(helpers, "8"), _mv_row(helpers, "7", answer="3")]
    parquet = _mathvision_parquet(tmp_path, helpers, rows)
    argv = ["--local-save-dir", str(tmp_path / "out"), "--local-dataset-path", str(parquet), "--no-progress"]
    assert _run(capsys, mathvision.main, argv) == 1
    assert "record index 2 (id=7): duplicate id: id=7 already at index 0" in _error_line(capsys)
    assert _run(capsys, mathvision.main, [*argv, "--skip-bad"]) == 0
    assert "skipped 1 (duplicate id: 1)" in capsys.readouterr().out
    assert pq.read_metadata(tmp_path / "out" / "test.parquet").num_rows == 2


@pytest.mark.parametrize(("char", "name"), [("\u200f", "RIGHT-TO-LEFT MARK"), ("\u200b", "ZERO WIDTH SPACE"),
                                            ("\ufeff", "ZERO WIDTH NO-BREAK SPACE")])  # fmt: skip
def test_invisible_characters_in_a_label_folder(tmp_path, helpers, capsys, char, name):
    src = tmp_path / "src"
    for folder in ("joy", f"joy{char}", "fear"):
        (src / folder).mkdir(parents=True)
        (src / folder / "0.jpg").write_bytes(helpers.image_bytes(30, 20))
    argv = ["--local-dataset-path", str(src), "--local-save-dir", str(tmp_path / "out"), "--no-progress"]
    assert _run(capsys, emotion6.main, argv) == 1
    assert f"invisible characters in label: 'joy\\u{ord(char):04x}' holds U+{ord(char):04X} ({name})" in (
        _error_line(capsys)
    )
    assert _run(capsys, emotion6.main, [*argv, "--skip-bad"]) == 0
    assert "skipped 1 (invisible characters in label: 1)" in capsys.readouterr().out
    labels = pq.read_table(tmp_path / "out" / "test.parquet").column("extra_info").to_pylist()[0]["labels"]
    assert labels == ["fear", "joy"]


def test_atomic_writes_give_the_mode_a_plain_write_would(tmp_path):
    """mkstemp's private 0600 is not left on finished files: other readers of a shared data folder need them."""
    import os

    from mapo_verl.atomic_io import write_text

    plain = tmp_path / "plain.txt"
    plain.write_text("x")
    atomic = tmp_path / "atomic.txt"
    write_text(atomic, "x")
    assert os.stat(atomic).st_mode & 0o777 == os.stat(plain).st_mode & 0o777
    old = os.umask(0o077)
    try:
        write_text(tmp_path / "private.txt", "x")
    finally:
        os.umask(old)
    assert os.stat(tmp_path / "private.txt").st_mode & 0o777 == 0o600
