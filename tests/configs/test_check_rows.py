"""The pre-flight check reads each data file's row count from its parquet footer: an empty file, or training files
smaller than one batch (verl's train loader drops the incomplete batch: no step), fail by name and number."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest
from omegaconf import OmegaConf

from mapo_verl.check import CheckResult, check_data


def _parquet(path: Path, rows: int) -> str:
    path.parent.mkdir(parents=True, exist_ok=True)
    frame = pd.DataFrame(
        {
            "data_source": ["d"] * rows,
            "prompt": [[{"role": "user", "content": "<image>q"}]] * rows,
            "images": [[{"bytes": b"x"}]] * rows,
            "reward_model": [{"style": "rule", "ground_truth": "1"}] * rows,
        }
    )
    if rows == 0:  # keep the column types of a real file
        frame = pd.DataFrame({c: pd.Series([], dtype=object) for c in frame.columns})
    frame.to_parquet(path)
    return str(path)


def _report(train: list[str], val: list[str], batch: int) -> CheckResult:
    cfg = OmegaConf.create({"data": {"train_files": train, "val_files": val, "train_batch_size": batch}})
    report = CheckResult()
    check_data(cfg, report)
    return report


def test_enough_rows_pass(tmp_path):
    report = _report([_parquet(tmp_path / "geo3k/train.parquet", 8)], [_parquet(tmp_path / "geo3k/test.parquet", 1)], 8)
    assert not report.problems, report.render()
    assert f"{tmp_path / 'geo3k/train.parquet'}, 8 rows" in report.render()


def test_an_empty_training_file_fails(tmp_path):
    empty = _parquet(tmp_path / "geo3k/train.parquet", 0)
    report = _report([empty, _parquet(tmp_path / "other/train.parquet", 600)], [], 512)
    assert [p for p in report.problems if p.startswith(f"data.train_files: {empty} has 0 rows")], report.render()


@pytest.mark.parametrize(("rows", "batch"), [(3, 512), (511, 512)])
def test_fewer_training_rows_than_one_batch_fail(tmp_path, rows, batch):
    train = _parquet(tmp_path / "geo3k/train.parquet", rows)
    report = _report([train], [_parquet(tmp_path / "geo3k/test.parquet", 2)], batch)
    assert report.problems == [
        f"data.train_files: {rows} row(s) in all ({train} ({rows})), fewer than one batch of "
        f"data.train_batch_size={batch}: verl's train loader drops the incomplete batch and has no step to run; "
        "prepare more rows or lower data.train_batch_size"
    ], report.render()


def test_training_rows_add_up_over_files(tmp_path):
    files = [_parquet(tmp_path / f"{name}/train.parquet", 300) for name in ("a", "b")]
    report = _report(files, [_parquet(tmp_path / "a/test.parquet", 1)], 512)
    assert not report.problems and all(f"{f}, 300 rows" in report.render() for f in files), report.render()


def test_an_empty_validation_file_fails(tmp_path):
    empty = _parquet(tmp_path / "mathvista/test.parquet", 0)
    report = _report([_parquet(tmp_path / "geo3k/train.parquet", 4)], [empty], 4)
    assert [p for p in report.problems if p.startswith(f"data.val_files: {empty} has 0 rows")], report.render()


def test_data_not_prepared_yet_is_reported_as_before(tmp_path):
    """A missing file is named with the command that prepares it, as before, and no row count is invented for it;
    the empty file beside it is named by its rows."""
    missing = str(tmp_path / "geo3k/train.parquet")
    empty = _parquet(tmp_path / "geo3k/test.parquet", 0)
    report = _report([missing], [empty], 512)
    assert len(report.problems) == 2, report.render()
    assert report.problems[0].startswith(f"data.train_files: {missing} does not exist")
    assert "python -m data_prep.geo3k" in report.problems[0]
    assert report.problems[1].startswith(f"data.val_files: {empty} has 0 rows")
