"""Peak memory (RSS) and speed of a preparer, in a fresh interpreter per run, on real and on large images.

    python benchmarks/bench_prep_memory.py [--realdata ../shared/realdata] [--big 24] [--big-side 2048]

Sets (each a local copy in the hub's layout, prepared with ``python -m data_prep.mathvision``):

* ``real``: the 306 MathVision records whose real images are in ``realdata`` (testmini and test 528, 2830);
* ``big``: ``--big`` records with ``--big-side``-square PNGs of noise (4.2 megapixels at 2048: about 12 MB each,
  incompressible), the worst case for row-group buffering.

Each set is prepared with the default row groups (at most 256 rows or 64 MB, whichever comes first) and with
rows-only row groups (``--chunk-mb`` huge: the behaviour before byte-bounded flushing). Reported: rows, seconds,
rows/s (the preparer's own time, without interpreter start-up), peak RSS of the preparing process (imports
included: pyarrow, datasets, PIL) and the parquet's size.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

from mapo_verl_cpu.checkout import realdata_dir

REPO = Path(__file__).resolve().parents[1]

_RUNNER = """
import sys, time
from data_prep import mathvision
start = time.perf_counter()
status = mathvision.main(sys.argv[1:])
print("PREP_S", time.perf_counter() - start)
# VmHWM: this process's peak RSS (ru_maxrss would carry the parent's peak across fork and exec)
hwm = next(line for line in open("/proc/self/status") if line.startswith("VmHWM:"))
print("MAXRSS_KB", hwm.split()[1])
sys.exit(status)
"""


def build_real(realdata: Path, root: Path) -> int:
    """The MathVision records with real images, as one ``testmini`` split in the hub layout."""

    images = realdata / "mathvision" / "images"
    records = [json.loads(line) for line in (realdata / "mathvision" / "test.jsonl").read_text().splitlines()]
    rows = [
        {**rec, "decoded_image": {"bytes": (images / f"{rec['id']}.jpg").read_bytes(), "path": None}}
        for rec in records
        if (images / f"{rec['id']}.jpg").is_file()
    ]
    _write(root, rows)
    return len(rows)


def build_big(root: Path, count: int, side: int) -> int:
    """``count`` records with incompressible ``side`` x ``side`` PNGs."""
    import io

    from PIL import Image

    rows = []
    for i in range(count):
        image = Image.frombytes("RGB", (side, side), os.urandom(side * side * 3))
        buffer = io.BytesIO()
        image.save(buffer, format="PNG", compress_level=1)
        rows.append(
            {"id": str(i), "question": f"Image {i}: what is x?", "options": [], "answer": str(i),
             "decoded_image": {"bytes": buffer.getvalue(), "path": None}}
        )  # fmt: skip
    _write(root, rows)
    return len(rows)


def _write(root: Path, rows: list[dict]) -> None:
    import datasets

    features = datasets.Features(
        {
            "id": datasets.Value("string"),
            "question": datasets.Value("string"),
            "options": datasets.List(datasets.Value("string")),
            "answer": datasets.Value("string"),
            "decoded_image": datasets.Image(),
        }
    )
    rows = [{k: row.get(k) for k in features} for row in rows]
    (root / "data").mkdir(parents=True, exist_ok=True)
    # small row groups in the source, as the hub's image datasets have them
    datasets.Dataset.from_list(rows, features=features).to_parquet(
        str(root / "data" / "testmini-00000-of-00001.parquet"), batch_size=8
    )


def measure(src: Path, out: Path, extra: list[str]) -> dict[str, float]:
    argv = ["--local-dataset-path", str(src), "--local-save-dir", str(out), "--split", "testmini", "--no-progress"]
    env = {**os.environ, "PYTHONPATH": str(REPO), "HF_DATASETS_OFFLINE": "1", "HF_HUB_OFFLINE": "1"}
    proc = subprocess.run(
        [sys.executable, "-c", _RUNNER, *argv, *extra], capture_output=True, text=True, env=env, cwd=REPO
    )
    if proc.returncode != 0:
        raise SystemExit(f"preparer failed:\n{proc.stdout}\n{proc.stderr}")
    values = dict(line.split() for line in proc.stdout.splitlines() if line.startswith(("MAXRSS_KB", "PREP_S")))
    seconds, rss_kb = float(values["PREP_S"]), int(values["MAXRSS_KB"])
    import pyarrow.parquet as pq

    parquet = out / "test.parquet"
    return {
        "rows": pq.ParquetFile(parquet).metadata.num_rows,
        "seconds": seconds,
        "rss_mb": rss_kb / 1024,
        "out_mb": parquet.stat().st_size / 2**20,
        "row_groups": pq.ParquetFile(parquet).num_row_groups,
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--realdata", type=Path, default=realdata_dir())
    parser.add_argument("--big", type=int, default=24, help="number of large PNGs (0: skip)")
    parser.add_argument("--big-side", type=int, default=2048, help="side of the large PNGs in pixels")
    args = parser.parse_args()
    settings = {"default (256 rows / 64 MB)": [], "rows only (256 rows)": ["--chunk-mb", "1000000"]}
    with tempfile.TemporaryDirectory() as tmp:
        sets: dict[str, Path] = {}
        if (args.realdata / "mathvision" / "images").is_dir():
            sets["real MathVision images"] = Path(tmp) / "real"
            n = build_real(args.realdata, sets["real MathVision images"])
            print(f"real: {n} records with real images")
        if args.big:
            name = f"{args.big} x {args.big_side}^2 noise PNGs"
            sets[name] = Path(tmp) / "big"
            build_big(sets[name], args.big, args.big_side)
        header = (
            f"{'set':32s} {'row groups':28s} {'rows':>5s} {'s':>6s} {'rows/s':>7s} {'peak RSS MB':>11s} {'out MB':>7s}"
        )
        print(header)
        for set_name, src in sets.items():
            for setting, extra in settings.items():
                result = measure(src, Path(tmp) / "out", extra)
                print(
                    f"{set_name:32s} {setting:28s} {result['rows']:5.0f} {result['seconds']:6.1f} "
                    f"{result['rows'] / result['seconds']:7.1f} {result['rss_mb']:11.0f} {result['out_mb']:7.1f}"
                )
    return 0


if __name__ == "__main__":
    sys.exit(main())
