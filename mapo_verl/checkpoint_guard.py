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
"Complete" (:func:`judge_step`) for the world size W the run resumes with: ``data.pt`` (the last file of a save) and
the ``*_world_size_W_rank_R.pt`` shards of ``actor/`` and ``critic/`` (all W ranks) are whole zip archives
(``torch.save``'s format; a truncated file has no central directory). verl's FSDP checkpoint manager loads exactly
``{model,optim,extra_state}_world_size_{W}_rank_{rank}.pt`` (``utils/checkpoint/fsdp_checkpoint_manager.py``), so
shards of another world size (an earlier save killed on another GPU count, in the same folder) are ignored and named
in the message. W is ``trainer.nnodes * trainer.n_gpus_per_node`` of the trainer reading the checkpoint (the size of
verl's ``global_pool``, where the actor and critic run); where no trainer config is found (and by hand without
``--world-size``) any world size whose shards are all there and whole makes the step complete, so the guard never
points the tracker below a step that verl would load. Folders of other layouts (Megatron) are judged on ``data.pt``
alone.

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
from dataclasses import dataclass
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
    'def find_latest_ckpt_path(path, directory_format="global_step_{}"):',
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


@dataclass(frozen=True)
class StepVerdict:
    """What :func:`judge_step` found in one ``global_step_N`` folder."""

    #: why the step is not a complete checkpoint; None when it is
    reason: str | None
    #: shards of other world sizes that were not judged (``role/name``), sorted
    ignored: tuple[str, ...] = ()


def _world_problem(role: str, world: int, files: dict[str, dict[int, Path]]) -> str | None:
    """Why the shards of one world size of ``role/`` cannot be loaded (a rank missing, a file truncated), or None."""
    for kind, ranks in sorted(files.items()):
        missing = sorted(set(range(world)) - set(ranks))
        if missing:
            return f"{role}/{kind}_world_size_{world}: ranks {missing} missing"
        for rank in sorted(ranks):
            if not _whole_zip(ranks[rank]):
                return f"{role}/{ranks[rank].name} is truncated"
    return None


def judge_step(step_dir: Path, world_size: int | None = None) -> StepVerdict:
    """Whether ``global_step_N`` is a complete checkpoint for a run of ``world_size`` ranks (None: unknown, any world
    size whose shards are complete counts); shards of the other world sizes are ignored and listed."""
    if not step_dir.is_dir():
        return StepVerdict("no such folder")
    if not _whole_zip(step_dir / "data.pt"):
        return StepVerdict("data.pt is missing or truncated (the save did not finish)")
    ignored: list[str] = []
    for role in ("actor", "critic"):
        folder = step_dir / role
        if not folder.is_dir():
            if role == "actor":
                return StepVerdict("actor/ is missing")
            continue
        shards: dict[int, dict[str, dict[int, Path]]] = {}  # world size -> kind -> rank -> file
        for item in folder.iterdir():
            match = SHARD.match(item.name)
            if match:
                shards.setdefault(int(match["world"]), {}).setdefault(match["kind"], {})[int(match["rank"])] = item
        if not shards:
            continue  # not verl's FSDP layout: judged on data.pt alone
        problems = {world: _world_problem(role, world, files) for world, files in sorted(shards.items())}
        if world_size is None:
            loadable = [world for world, problem in problems.items() if problem is None]
            if not loadable:
                return StepVerdict("; ".join(p for p in problems.values() if p), tuple(ignored))
        elif world_size not in shards:
            found = ", ".join(str(world) for world in shards)
            return StepVerdict(f"{role}/ holds no shards for world size {world_size} (only for {found})")
        else:
            if problems[world_size]:
                return StepVerdict(problems[world_size])
            loadable = [world_size]
        ignored += [f"{role}/{path.name}" for world, files in shards.items() if world not in loadable
                    for ranks in files.values() for path in ranks.values()]  # fmt: skip
    return StepVerdict(None, tuple(sorted(ignored)))


def incomplete_reason(step_dir: Path, world_size: int | None = None) -> str | None:
    """Why ``global_step_N`` is not a complete checkpoint for ``world_size`` ranks, or None when it is."""
    return judge_step(step_dir, world_size).reason


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


def newest_complete(root: Path, world_size: int | None = None) -> int | None:
    """The highest step whose folder is a complete checkpoint for ``world_size`` ranks, or None."""
    for step, folder in sorted(step_dirs(root).items(), reverse=True):
        if incomplete_reason(folder, world_size) is None:
            return step
    return None


def _ignored_note(step: int, verdict: StepVerdict, world_size: int | None) -> str:
    """The shards of other world sizes left out when judging ``global_step_<step>`` ('' when none)."""
    if not verdict.ignored:
        return ""
    shown = ", ".join(verdict.ignored[:4]) + (
        f" and {len(verdict.ignored) - 4} more" if len(verdict.ignored) > 4 else ""
    )
    judged = f"world size {world_size}" if world_size else "a world size whose shards are all there"
    return f"global_step_{step} judged for {judged}; ignored shards of other world sizes: {shown}"


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


def check_tracker(root: str | os.PathLike[str], *, repair: bool = True, world_size: int | None = None) -> str | None:
    """Make ``root``'s tracker name a complete checkpoint for ``world_size`` ranks (None: unknown); a message when it
    did not, or when shards of other world sizes were ignored (None: nothing to say).

    Raises :class:`CheckpointTrackerError` when the tracker is unusable and no complete checkpoint is left, or when it
    cannot be read or rewritten (a read-only folder).
    """
    root = Path(root)
    tracker = root / TRACKER
    if not tracker.is_file():
        return None  # nothing saved yet: verl trains from scratch
    try:
        raw = tracker.read_bytes()
    except OSError as err:
        raise CheckpointTrackerError(f"{tracker}: cannot read it ({err.strerror or err})") from err
    text = raw.decode(errors="replace").strip()
    if text.isdigit():
        verdict = judge_step(root / f"global_step_{int(text)}", world_size)
        if verdict.reason is None:
            note = _ignored_note(int(text), verdict, world_size)
            return f"mapo checkpoint guard: {tracker}: {note}" if note else None
        problem = f"it names step {text}, but global_step_{text}: {verdict.reason}"
    else:
        problem = f"it holds {raw[:40]!r}, not a step number (a save was killed while writing it)"
    best = newest_complete(root, world_size)
    judged = f" for world size {world_size}" if world_size else ""
    if best is None:
        raise CheckpointTrackerError(
            f"{tracker}: {problem}, and no complete global_step_N folder{judged} is left in {root}. Delete the "
            "tracker to train from scratch, or set trainer.resume_mode=resume_path with trainer.resume_from_path"
        )
    action = "pointing it at" if repair else "would point it at"
    message = (
        f"mapo checkpoint guard: {tracker}: {problem}; {action} global_step_{best}, the newest complete one{judged}"
    )
    note = _ignored_note(best, judge_step(root / f"global_step_{best}", world_size), world_size)
    if note:
        message += f" ({note})"
    if repair:
        try:
            write_tracker(root, best)
        except OSError as err:
            raise CheckpointTrackerError(
                f"{root}: cannot rewrite {TRACKER} there ({err.strerror or err}): {problem}. Make the folder "
                f"writable, or resume with trainer.resume_mode=resume_path trainer.resume_from_path={root}/"
                f"global_step_{best}"
            ) from err
    return message


def _get(section: Any, key: str) -> Any:
    try:
        return section.get(key)
    except Exception:
        return getattr(section, key, None)


def resume_world_size() -> int | None:
    """``trainer.nnodes * trainer.n_gpus_per_node`` of the trainer config nearest on the caller's stack (a local
    ``config`` or ``self.config``, as in verl's ``_load_checkpoint``), the world size of verl's ``global_pool``; None
    where no caller holds one."""
    frame = sys._getframe(1)
    while frame is not None:
        for candidate in (frame.f_locals.get("config"), getattr(frame.f_locals.get("self"), "config", None)):
            trainer = _get(candidate, "trainer") if candidate is not None else None
            if trainer is None:
                continue
            nnodes, gpus = _get(trainer, "nnodes"), _get(trainer, "n_gpus_per_node")
            if isinstance(nnodes, int) and isinstance(gpus, int) and nnodes > 0 and gpus > 0:
                return nnodes * gpus
        frame = frame.f_back
    return None


def guarded(original: Callable[..., Any]) -> Callable[..., Any]:
    """``find_latest_ckpt_path`` with :func:`check_tracker` run on its folder first."""
    if getattr(original, _MARK, False):
        return original

    @functools.wraps(original)
    def find_latest_ckpt_path(path: Any, directory_format: str = "global_step_{}") -> Any:
        if path is not None and directory_format == "global_step_{}":
            message = check_tracker(path, world_size=resume_world_size())
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
    parser.add_argument(
        "--world-size",
        type=int,
        help="the GPU count the run resumes with (trainer.nnodes x trainer.n_gpus_per_node); default: any world size "
        "whose shards are complete",
    )
    args = parser.parse_args(argv)
    if args.world_size is not None and args.world_size < 1:
        parser.error(f"--world-size {args.world_size}: expected a positive number of ranks")
    if not Path(args.folder).is_dir():
        print(f"error: {args.folder}: no such folder (trainer.default_local_dir)", file=sys.stderr)
        return 2
    try:
        message = check_tracker(args.folder, repair=not args.dry_run, world_size=args.world_size)
    except CheckpointTrackerError as err:
        print(f"error: {err}", file=sys.stderr)
        return 1
    print(message or f"{Path(args.folder) / TRACKER}: fine (or absent: nothing saved yet)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
