"""The atomic, chunked parquet writer every preparer uses, and the summary it fills.

Rows are buffered and flushed as one parquet row group when the buffer holds ``--chunk-rows`` rows or
``--chunk-mb`` megabytes of row data (images included), whichever comes first: memory stays flat in the number
of rows *and* in image size. A split is written to a temporary file in the output folder and renamed into place
only when complete; temporary files of the same split left by killed runs are removed first. A split that would
have no rows is refused (a :class:`PrepError` naming what was read and skipped), and so is a failed write (a full
disk): the previous file stays.
"""

from __future__ import annotations

import argparse
import os
from collections import Counter, defaultdict
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager, suppress
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq
from tqdm import tqdm

from data_prep.rows import SCHEMA, BadRecord, row_nbytes
from mapo_verl.atomic_io import remove_stale_temps, temp_name

DEFAULT_CHUNK_ROWS = 256
DEFAULT_CHUNK_MB = 64


class PrepError(RuntimeError):
    """A run stops: an unusable record without ``--skip-bad``, or a missing split/source."""


@dataclass
class Summary:
    """Rows written, records skipped (by reason) and repairs made (by kind) per split."""

    name: str
    out_dir: Path
    written: dict[str, int] = field(default_factory=dict)
    skipped: dict[str, Counter] = field(default_factory=lambda: defaultdict(Counter))
    repaired: dict[str, Counter] = field(default_factory=lambda: defaultdict(Counter))
    notes: list[str] = field(default_factory=list)

    def repair(self, split: str, kinds: Iterable[str]) -> None:
        """Count repairs (one entry per repair, e.g. ``["LaTeX escape restored"]``) for ``split``."""
        self.repaired[split].update(kinds)

    def render(self) -> str:
        lines = [f"{self.name}: wrote {sum(self.written.values())} rows to {self.out_dir}"]
        for split, rows in self.written.items():
            skipped = self.skipped.get(split) or Counter()
            repaired = self.repaired.get(split) or Counter()
            skip_detail = ", ".join(f"{reason}: {n}" for reason, n in sorted(skipped.items())) or "none"
            lines.append(f"  {split}.parquet: {rows} rows; skipped {sum(skipped.values())} ({skip_detail})")
            if repaired:
                fix_detail = ", ".join(f"{kind}: {n}" for kind, n in sorted(repaired.items()))
                lines.append(f"    repaired: {fix_detail}")
        lines.extend(f"  note: {note}" for note in self.notes)
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
    """Convert ``records`` to rows and write ``OUT/<file_name or split>.parquet`` in row groups, atomically.

    A :class:`BadRecord` stops the split with a :class:`PrepError` naming the split and the record (and no
    output for the split), or, with ``--skip-bad``, is counted in the summary and skipped. No rows at all, or a
    failed write, is a :class:`PrepError` too (the previous file, if any, stays).
    """
    final = summary.out_dir / f"{file_name or split}.parquet"
    where = f"{summary.name} split {split!r}"
    with _writing(where, final):
        final.parent.mkdir(parents=True, exist_ok=True)
    remove_stale_temps(final)
    tmp = temp_name(final)
    skipped = summary.skipped[final.stem]
    chunk_rows = args.chunk_rows
    chunk_bytes = int(getattr(args, "chunk_mb", DEFAULT_CHUNK_MB) * 2**20)
    read = written = 0
    buffer: list[dict] = []
    buffered_bytes = 0
    try:
        with _writing(where, final):
            writer = pq.ParquetWriter(tmp, SCHEMA)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    bar = tqdm(total=total, desc=f"{summary.name}/{split}", unit="rows", disable=args.no_progress, mininterval=0.5)

    def flush() -> None:
        nonlocal written, buffered_bytes
        with _writing(where, final):
            writer.write_table(pa.Table.from_pylist(buffer, schema=SCHEMA))
        written += len(buffer)
        buffer.clear()
        buffered_bytes = 0

    try:
        for i, record in enumerate(records):
            read += 1
            try:
                row = convert(i, record)
            except BadRecord as exc:
                if not args.skip_bad:
                    raise PrepError(
                        f"{where}, record {record_id(i, record)}: {exc} (pass --skip-bad to skip such records)"
                    ) from exc
                skipped[exc.reason] += 1
            else:
                buffer.append(row)
                buffered_bytes += row_nbytes(row)
            bar.update(1)
            if buffer and (len(buffer) >= chunk_rows or buffered_bytes >= chunk_bytes):
                flush()
        if buffer:
            flush()
        if written == 0:
            raise PrepError(f"{where}: no rows to write, {final} not written ({_why_empty(read, skipped)})")
        with _writing(where, final):
            writer.close()
            os.replace(tmp, final)
    except BaseException:
        with suppress(OSError):
            writer.close()
        tmp.unlink(missing_ok=True)
        raise
    finally:
        bar.close()
    summary.written[final.stem] = written
    return final


def _why_empty(read: int, skipped: Counter) -> str:
    """What was read and skipped, for the error of a split with no rows."""
    if read == 0:
        return "the source split has 0 records"
    detail = ", ".join(f"{reason}: {n}" for reason, n in sorted(skipped.items()))
    return f"all {read} records read were skipped ({detail})"


@contextmanager
def _writing(where: str, final: Path) -> Iterator[None]:
    """An ``OSError`` while writing ``final`` (a full disk, a read-only folder) as a :class:`PrepError`."""
    try:
        yield
    except OSError as exc:
        raise PrepError(f"{where}: cannot write {final}: {exc}") from exc
