"""verl's file logger, read in one place.

With ``trainer.logger=[...,file]`` verl appends one JSON object per step to ``$VERL_FILE_LOGGER_PATH``:
``{"step": k, "data": {metric: value, ...}}``. Training steps carry ``actor/pg_loss``; validation-only records
(``step`` 0 before training, the final validation) carry ``val-*`` keys alone. Checkpoints are
``DIR/global_step_<k>/`` with ``DIR/latest_checkpointed_iteration.txt`` naming the last complete one.
"""

from __future__ import annotations

import json
from pathlib import Path

#: A metric every training step logs (validation-only records lack it).
TRAINING_STEP_KEY = "actor/pg_loss"


def parse_record(line: str) -> tuple[int, dict] | None:
    """One file-logger line -> ``(step, data)``; None when the line is not such a record."""
    try:
        record = json.loads(line)
    except (json.JSONDecodeError, RecursionError):
        return None
    if isinstance(record, dict) and isinstance(record.get("step"), int) and isinstance(record.get("data"), dict):
        return record["step"], record["data"]
    return None


def read_records(path: Path) -> list[tuple[int, dict]]:
    """Every record of a file-logger JSONL, in order (an absent file has none; unreadable lines are skipped)."""
    if not path.is_file():
        return []
    records = (parse_record(line) for line in path.read_text(errors="replace").splitlines() if line.strip())
    return [r for r in records if r is not None]


def training_steps(records: list[tuple[int, dict]]) -> dict[int, dict]:
    """step -> merged metrics of the training steps (records that carry :data:`TRAINING_STEP_KEY`)."""
    steps: dict[int, dict] = {}
    for step, data in records:
        if TRAINING_STEP_KEY in data:
            steps.setdefault(step, {}).update(data)
    return steps


def validation_points(records: list[tuple[int, dict]], prefix: str = "val-core/") -> dict[int, dict]:
    """step -> the validation metrics (keys starting with ``prefix``) logged at that step."""
    points: dict[int, dict] = {}
    for step, data in records:
        values = {k: v for k, v in data.items() if k.startswith(prefix)}
        if values:
            points.setdefault(step, {}).update(values)
    return points


def latest_checkpoint(checkpoints: Path) -> Path | None:
    """The folder of the last complete checkpoint under ``checkpoints`` (verl's tracker file), or None."""
    marker = checkpoints / "latest_checkpointed_iteration.txt"
    if not marker.is_file():
        return None
    path = checkpoints / f"global_step_{marker.read_text().strip()}"
    return path if path.is_dir() else None
