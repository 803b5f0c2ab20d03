"""verl's file-logger JSONL and checkpoint tracker, read in one place.

With ``trainer.logger=[...,file]`` verl appends one JSON object per step to ``$VERL_FILE_LOGGER_PATH`` (in our
runs :data:`METRICS_FILE` in the output folder): ``{"step": k, "data": {metric: value, ...}}``. Training steps carry
:data:`TRAINING_STEP_KEY`; validation-only records (``step`` 0 before training, the final validation) carry
``val-*`` keys alone. Checkpoints are ``DIR/global_step_<k>/``, with :data:`TRACKER_FILE` in ``DIR`` naming the
last complete one.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

#: The file our runs point ``$VERL_FILE_LOGGER_PATH`` at, in the run's output folder.
METRICS_FILE = "metrics.jsonl"
#: verl's checkpoint tracker, next to the ``global_step_<k>`` folders.
TRACKER_FILE = "latest_checkpointed_iteration.txt"
#: A metric every training step logs (validation-only records lack it).
TRAINING_STEP_KEY = "actor/pg_loss"


def load_json(line: str) -> Any:
    """One JSONL line decoded; None when it is not JSON."""
    try:
        return json.loads(line)
    except (json.JSONDecodeError, RecursionError):
        return None


def as_record(value: Any) -> tuple[int, dict] | None:
    """A decoded JSON value -> ``(step, data)`` when it is a file-logger record, else None."""
    if isinstance(value, dict) and isinstance(value.get("step"), int) and isinstance(value.get("data"), dict):
        return value["step"], value["data"]
    return None


def read_records(path: Path) -> list[tuple[int, dict]]:
    """Every record of a file-logger JSONL, in order (an absent file has none; unreadable lines are skipped)."""
    if not path.is_file():
        return []
    records = (as_record(load_json(line)) for line in path.read_text(errors="replace").splitlines() if line.strip())
    return [r for r in records if r is not None]


def training_steps(records: list[tuple[int, dict]]) -> dict[int, dict]:
    """step -> merged metrics of the training steps (records that carry :data:`TRAINING_STEP_KEY`)."""
    steps: dict[int, dict] = {}
    for step, data in records:
        if TRAINING_STEP_KEY in data:
            steps.setdefault(step, {}).update(data)
    return steps


def latest_checkpoint(checkpoints: Path) -> Path | None:
    """The folder of the last complete checkpoint under ``checkpoints`` (verl's tracker file), or None."""
    marker = checkpoints / TRACKER_FILE
    if not marker.is_file():
        return None
    path = checkpoints / f"global_step_{marker.read_text().strip()}"
    return path if path.is_dir() else None
