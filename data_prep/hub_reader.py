"""Reading one split of a hub dataset, from the hub or from a local copy in the hub's layout.

A local copy (a folder as ``huggingface-cli download REPO --repo-type dataset --local-dir SRC`` leaves it, or one
parquet file) is read straight from its files on every run, never through the ``datasets`` Arrow cache, so the
output always reflects the files as they are now (a copy updated in place included). ``datasets`` only
resolves which files make up the split: the layout and the configs named in its ``README.md``. When the copy
declares several configs (MathVerse: ``testmini`` and ``testmini_text_only``) and none is given, the preparer's
default config is used if the copy has it, else the copy's own default. Parquet files are streamed one record
batch at a time; other formats go through ``datasets``' streaming reader (also file-direct, no cache).
A hub id without a local copy is downloaded with ``datasets.load_dataset`` (cached per hub revision).

Image columns come back undecoded (``{"bytes", "path"}``) so that original bytes can be kept.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pyarrow.parquet as pq

from data_prep.writer import PrepError

#: Bytes of source rows decoded per record batch, and the bounds on rows per batch.
READ_BATCH_BYTES = 8 * 2**20
READ_BATCH_ROWS = (1, 64)


def batch_rows(metadata: pq.FileMetaData) -> int:
    """Rows per record batch so that one batch holds about :data:`READ_BATCH_BYTES` (large images: a few rows)."""
    widest = max(
        (
            metadata.row_group(k).total_byte_size / max(1, metadata.row_group(k).num_rows)
            for k in range(metadata.num_row_groups)
        ),
        default=0.0,
    )
    low, high = READ_BATCH_ROWS
    return max(low, min(high, int(READ_BATCH_BYTES / widest) if widest else high))


@dataclass
class SplitSource:
    """One split: its column names, ``datasets`` features (if known), row count (if known) and records."""

    description: str
    columns: list[str]
    features: Any  # datasets.Features | None
    num_rows: int | None
    _read: Callable[[list[str] | None], Iterator[dict]]

    def __iter__(self) -> Iterator[dict]:
        return self._read(None)

    def records(self, columns: list[str] | None = None) -> Iterator[dict]:
        """The records, optionally only some columns (a cheap pass over a label column)."""
        return self._read(columns)

    def __len__(self) -> int:
        if self.num_rows is None:
            raise TypeError(f"{self.description}: row count unknown")
        return self.num_rows


def local_path(src: str | None) -> Path | None:
    """``src`` as a local path when it names an existing file or folder, else ``None`` (a hub id)."""
    if not src:
        return None
    path = Path(os.path.expanduser(src))
    return path if path.exists() else None


def base_dir_of(src: str | None) -> Path | None:
    """Folder against which relative image paths in a local copy are resolved."""
    path = local_path(src)
    if path is None:
        return None
    return path.parent if path.is_file() else path


def load_split(
    hub_id: str, src: str | None, split: str, config: str | None = None, default_config: str | None = None
) -> SplitSource:
    """One split of ``hub_id``, or of ``src`` (a local copy in the hub layout, a parquet file, or another hub id).

    ``config`` is the user's choice; ``default_config`` the preparer's (used for the hub, and for a local copy
    that declares it).
    """
    path = local_path(src)
    if path is not None:
        return _load_local(path, split, config, default_config)
    return _load_hub(src or hub_id, split, config or default_config)


def _load_hub(hub_id: str, split: str, config: str | None) -> SplitSource:
    import datasets

    try:
        ds = datasets.load_dataset(hub_id, config, split=split)
    except (ValueError, KeyError, OSError) as exc:  # OSError: FileNotFoundError, ConnectionError
        raise PrepError(f"cannot load split {split!r} of {hub_id}: {exc}") from exc
    ds = undecoded(ds)

    def read(columns: list[str] | None) -> Iterator[dict]:
        return iter(ds.select_columns(columns) if columns else ds)

    return SplitSource(f"{hub_id} [{split}]", list(ds.column_names), ds.features, len(ds), read)


def resolve_config(path: Path, config: str | None, default_config: str | None) -> str | None:
    """The config to read from a local copy: the user's, else the preparer's if declared, else the copy's own."""
    import datasets

    if config:
        return config
    try:
        names = datasets.get_dataset_config_names(str(path))
    except Exception:  # no README/configs: the plain layout has one unnamed config
        return None
    if len(names) <= 1:
        return names[0] if names and names[0] != "default" else None
    if default_config in names:
        return default_config
    return datasets.get_dataset_default_config_name(str(path)) or names[0]


def split_files(path: Path, split: str, config: str | None) -> list[str]:
    """The data files of ``split`` in a local copy, as ``datasets`` resolves its layout (no data is read)."""
    import datasets

    if path.is_file():
        return [str(path)]
    try:
        builder = datasets.load_dataset_builder(str(path), config)
    except (ValueError, KeyError, OSError) as exc:
        raise PrepError(f"cannot read the layout of {path}: {exc}") from exc
    data_files = builder.config.data_files or {}
    if split not in data_files:
        known = ", ".join(sorted(str(name) for name in data_files)) or "none"  # keys are NamedSplit
        where = f"{path}" + (f" (config {config!r})" if config else "")
        raise PrepError(f"{where} has no split {split!r} (splits: {known})")
    return [str(f) for f in data_files[split]]


def _load_local(path: Path, split: str, config: str | None, default_config: str | None) -> SplitSource:
    config = resolve_config(path, config, default_config) if path.is_dir() else None
    files = split_files(path, split, config)
    description = f"{path} [{config + ', ' if config else ''}{split}]"
    if files and all(f.endswith(".parquet") for f in files):
        return _parquet_source(description, files)
    return _streamed_source(description, path, split, config)


def _parquet_source(description: str, files: list[str]) -> SplitSource:
    import datasets

    try:
        schema = pq.read_schema(files[0])
        num_rows = sum(pq.ParquetFile(f).metadata.num_rows for f in files)
    except (OSError, ValueError) as exc:
        raise PrepError(f"{description}: cannot read {files[0]}: {exc}") from exc
    try:
        features = datasets.Features.from_arrow_schema(schema)
    except Exception:
        features = None

    def read(columns: list[str] | None) -> Iterator[dict]:
        for name in files:
            parquet = pq.ParquetFile(name, pre_buffer=False)
            rows = batch_rows(parquet.metadata)
            for batch in parquet.iter_batches(batch_size=rows, columns=columns, use_threads=False):
                yield from batch.to_pylist()

    return SplitSource(description, list(schema.names), features, num_rows, read)


def _streamed_source(description: str, path: Path, split: str, config: str | None) -> SplitSource:
    import datasets

    try:
        stream = datasets.load_dataset(str(path), config, split=split, streaming=True)
    except (ValueError, KeyError, OSError) as exc:
        raise PrepError(f"cannot load split {split!r} of {path}: {exc}") from exc
    features = stream.features
    if features is not None:
        stream = undecoded(stream)
    columns = list(features) if features is not None else list(stream.column_names or [])
    info = stream.info.splits.get(split) if stream.info.splits else None

    def read(wanted: list[str] | None) -> Iterator[dict]:
        return iter(stream.select_columns(wanted) if wanted else stream)

    return SplitSource(description, columns, features, info.num_examples if info else None, read)


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
