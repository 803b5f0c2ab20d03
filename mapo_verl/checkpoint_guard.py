"""Resume only from a complete checkpoint: a guard on verl's ``latest_checkpointed_iteration.txt``.

What verl 0.9.1 does (``trainer/ppo/v1/trainer_base.py`` and ``ray_trainer.py``, ``_save_checkpoint``): a synchronous
save writes ``global_step_N/actor`` (every rank), then ``global_step_N/data.pt``, and last the tracker
``latest_checkpointed_iteration.txt`` next to the step folders; ``trainer.resume_mode=auto`` loads the step the
tracker names (``utils/checkpoint/checkpoint_manager.py``, ``find_latest_ckpt_path``). A kill while the step folder
is being written therefore leaves the tracker on the previous step: verl resumes from the last complete checkpoint by
itself. Two gaps remain:

* the tracker is written in place (``open(..., "w")`` then ``write``): a kill between the two leaves an empty file,
  and every later resume stops in ``find_latest_ckpt_path`` with ``ValueError: invalid literal for int()``;
* with ``max_actor_ckpt_to_keep`` set, the actor checkpoint manager deletes the oldest ``actor/`` folder right after
  writing the new one, before the tracker moves: a kill there leaves the tracker naming a step whose ``actor/`` is
  gone (or any other hand-made mismatch).

:func:`check_tracker` reads the tracker before verl does. A missing tracker (nothing saved yet) or one naming a
complete step folder is left alone. An unreadable tracker, or one naming a missing or incomplete folder, is
rewritten atomically to the newest complete step, with a warning naming the file, the bad value and the step
chosen; with no complete step it raises :class:`CheckpointTrackerError` naming the file and what to do.
"Complete" (:func:`incomplete_reason`): ``data.pt`` (the last file of a save) and every ``*_world_size_W_rank_R.pt``
of ``actor/`` and ``critic/`` (all W ranks) are whole zip archives (``torch.save``'s format; a truncated file has
no central directory). Folders of other layouts (Megatron) are judged on ``data.pt`` alone.

:func:`install` puts the check in front of ``find_latest_ckpt_path`` in every verl process (the plug-in calls it; a
GPU run gets it with ``pip install mapo-verl``). It wraps the function by name when verl's checkpoint module is
imported (:mod:`mapo_verl.post_import`), before the trainers import it; it checks verl's source first and, where it
changed, leaves verl as it is with a warning. ``MAPO_CHECKPOINT_GUARD=0`` turns it off.
``python -m mapo_verl.checkpoint_guard DIR`` runs the check by hand (``--dry-run``: report only).
"""

from __future__ import annotations

import argparse
import functools
import importlib.util
import logging
import os
import re
import sys
import tempfile
import zipfile
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from mapo_verl.post_import import call_after_import, replace_function
from mapo_verl.verl_log import TRACKER_FILE as TRACKER

logger = logging.getLogger(__name__)

STEP_DIR = re.compile(r"^global_step_(\d+)$")
SHARD = re.compile(r"^(?P<kind>\w+?)_world_size_(?P<world>\d+)_rank_(?P<rank>\d+)\.pt$")
VERL_MODULE = "verl.utils.checkpoint.checkpoint_manager"
VERL_FUNCTION = "find_latest_ckpt_path"
#: the source text of verl 0.9.1's reader this guard was written against
VERL_SNIPPETS = (
    "def find_latest_ckpt_path(path, directory_format=\"global_step_{}\"):",
    "tracker_file = get_checkpoint_tracker_filename(path)",
    "iteration = int(f.read().decode())",
    'return os.path.join(root_path, "latest_checkpointed_iteration.txt")',
)
_MARK = "_mapo_checkpoint_guard"


class CheckpointTrackerError(RuntimeError):
    """The tracker is unusable and no complete checkpoint is left to point it at."""


def _whole_zip(path: Path) -> bool:
    if not path.is_file():  # absent, a folder, or a pipe (opening that would block)
        return False
    try:
        with zipfile.ZipFile(path):
            return True
    except (OSError, zipfile.BadZipFile):
        return False


def incomplete_reason(step_dir: Path) -> str | None:
    """Why ``global_step_N`` is not a complete checkpoint, or None when it is (see the module docstring)."""
    if not step_dir.is_dir():
        return "no such folder"
    if not _whole_zip(step_dir / "data.pt"):
        return "data.pt is missing or truncated (the save did not finish)"
    for role in ("actor", "critic"):
        folder = step_dir / role
        if not folder.is_dir():
            if role == "actor":
                return "actor/ is missing"
            continue
        shards: dict[tuple[str, int], set[int]] = {}
        for item in folder.iterdir():
            match = SHARD.match(item.name)
            if match:
                shards.setdefault((match["kind"], int(match["world"])), set()).add(int(match["rank"]))
                if not _whole_zip(item):
                    return f"{role}/{item.name} is truncated"
        for (kind, world), ranks in sorted(shards.items()):
            missing = sorted(set(range(world)) - ranks)
            if missing:
                return f"{role}/{kind}_world_size_{world}: ranks {missing} missing"
    return None


def step_dirs(root: Path) -> dict[int, Path]:
    """step -> ``root/global_step_<step>`` for every step folder under ``root``."""
    if not root.is_dir():
        return {}
    found = {}
    for item in root.iterdir():
        match = STEP_DIR.match(item.name)
        if match and item.is_dir():
            found[int(match.group(1))] = item
    return found


def newest_complete(root: Path) -> int | None:
    """The highest step whose folder is a complete checkpoint, or None."""
    for step, folder in sorted(step_dirs(root).items(), reverse=True):
        if incomplete_reason(folder) is None:
            return step
    return None


def write_tracker(root: Path, step: int) -> None:
    """Write the tracker atomically: a temporary file in the same folder, then ``os.replace``."""
    fd, tmp = tempfile.mkstemp(prefix=f".{TRACKER}.", dir=root)
    try:
        with os.fdopen(fd, "w") as f:
            f.write(str(step))
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, root / TRACKER)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def check_tracker(root: str | os.PathLike[str], *, repair: bool = True) -> str | None:
    """Make ``root``'s tracker name a complete checkpoint; a message when it did not (None: nothing to do).

    Raises :class:`CheckpointTrackerError` when the tracker is unusable and no complete checkpoint is left.
    """
    root = Path(root)
    tracker = root / TRACKER
    if not tracker.is_file():
        return None  # nothing saved yet: verl trains from scratch
    raw = tracker.read_bytes()
    text = raw.decode(errors="replace").strip()
    if text.isdigit():
        reason = incomplete_reason(root / f"global_step_{int(text)}")
        if reason is None:
            return None
        problem = f"it names step {text}, but global_step_{text}: {reason}"
    else:
        problem = f"it holds {raw[:40]!r}, not a step number (a save was killed while writing it)"
    best = newest_complete(root)
    if best is None:
        raise CheckpointTrackerError(
            f"{tracker}: {problem}, and no complete global_step_N folder is left in {root}. Delete the tracker to "
            "train from scratch, or set trainer.resume_mode=resume_path with trainer.resume_from_path"
        )
    action = "pointing it at" if repair else "would point it at"
    message = f"mapo checkpoint guard: {tracker}: {problem}; {action} global_step_{best}, the newest complete one"
    if repair:
        write_tracker(root, best)
    return message


def guarded(original: Callable[..., Any]) -> Callable[..., Any]:
    """``find_latest_ckpt_path`` with :func:`check_tracker` run on its folder first."""
    if getattr(original, _MARK, False):
        return original

    @functools.wraps(original)
    def find_latest_ckpt_path(path: Any, directory_format: str = "global_step_{}") -> Any:
        if path is not None and directory_format == "global_step_{}":
            message = check_tracker(path)
            if message:
                print(message, file=sys.stderr, flush=True)
        return original(path, directory_format)

    setattr(find_latest_ckpt_path, _MARK, True)
    return find_latest_ckpt_path


def source_problems() -> list[str]:
    """What in verl's installed reader differs from what this guard was written against (read, not imported)."""
    spec = importlib.util.find_spec("verl")
    if spec is None or not spec.submodule_search_locations:
        return ["verl is not installed"]
    path = Path(next(iter(spec.submodule_search_locations)), "utils", "checkpoint", "checkpoint_manager.py")
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as err:
        return [f"{path}: {err}"]
    return [f"{path} no longer contains {snippet!r}" for snippet in VERL_SNIPPETS if snippet not in text]


def _wrap(module: Any) -> None:
    if not replace_function(module, VERL_FUNCTION, guarded):
        logger.warning("mapo checkpoint guard off: %s has no %s", VERL_MODULE, VERL_FUNCTION)


def install() -> bool:
    """Put :func:`check_tracker` in front of verl's ``find_latest_ckpt_path`` (now, or when it is imported)."""
    if os.environ.get("MAPO_CHECKPOINT_GUARD", "1") == "0":
        return False
    problems = source_problems()
    if problems:
        logger.warning("mapo checkpoint guard off, verl changed: %s", "; ".join(problems))
        return False
    call_after_import(VERL_MODULE, _wrap)
    return True


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m mapo_verl.checkpoint_guard",
        description="Check (and repair) verl's latest_checkpointed_iteration.txt in a checkpoint folder.",
    )
    parser.add_argument("folder", help="trainer.default_local_dir (the folder holding global_step_N/)")
    parser.add_argument("--dry-run", action="store_true", help="report only; change nothing")
    args = parser.parse_args(argv)
    try:
        message = check_tracker(args.folder, repair=not args.dry_run)
    except CheckpointTrackerError as err:
        print(f"error: {err}", file=sys.stderr)
        return 1
    print(message or f"{Path(args.folder) / TRACKER}: fine (or absent: nothing saved yet)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
