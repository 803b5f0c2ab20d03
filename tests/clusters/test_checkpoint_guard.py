"""The checkpoint guard (mapo_verl/checkpoint_guard.py) on checkpoint folders in verl's FSDP layout, written with
``torch.save`` in ``tmp_path``; and, in a fresh interpreter, in front of verl 0.9.1's own reader."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
import torch

from mapo_verl import checkpoint_guard as guard


def _save_step(root: Path, step: int, world: int = 2, *, truncate: str | None = None, skip: str | None = None) -> Path:
    """``root/global_step_<step>`` as verl's synchronous save leaves it; ``truncate``/``skip``: that file cut in half
    or never written (a save killed part-way)."""
    folder = root / f"global_step_{step}"
    names = [f"actor/{kind}_world_size_{world}_rank_{r}.pt" for kind in ("model", "optim", "extra_state")
             for r in range(world)] + ["data.pt"]  # fmt: skip
    for name in names:
        if name == skip:
            continue
        path = folder / name
        path.parent.mkdir(parents=True, exist_ok=True)
        torch.save({"step": step, "w": torch.arange(64.0)}, path)
        if name == truncate:
            path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])
    (folder / "actor" / "fsdp_config.json").write_text("{}")
    return folder


def _tracker(root: Path) -> Path:
    return root / guard.TRACKER


@pytest.fixture
def two_steps(tmp_path: Path) -> Path:
    _save_step(tmp_path, 1)
    _save_step(tmp_path, 2)
    _tracker(tmp_path).write_text("2")
    return tmp_path


def test_a_good_tracker_and_no_tracker_are_left_alone(two_steps: Path, tmp_path_factory) -> None:
    assert guard.check_tracker(two_steps) is None
    assert _tracker(two_steps).read_text() == "2"
    empty = tmp_path_factory.mktemp("fresh")
    _save_step(empty, 1, skip="data.pt")  # first save killed: no tracker yet, verl trains from scratch
    assert guard.check_tracker(empty) is None and not _tracker(empty).exists()


def test_an_empty_tracker_is_pointed_at_the_newest_complete_step(two_steps: Path) -> None:
    _tracker(two_steps).write_text("")
    message = guard.check_tracker(two_steps)
    assert message and "not a step number" in message and "global_step_2" in message
    assert _tracker(two_steps).read_text() == "2"
    assert not list(two_steps.glob(f".{guard.TRACKER}.*")), "temporary file left behind"


@pytest.mark.parametrize(
    ("truncate", "skip", "reason"),
    [
        (None, "data.pt", "data.pt"),
        ("data.pt", None, "data.pt"),
        ("actor/optim_world_size_2_rank_1.pt", None, "truncated"),
        (None, "actor/model_world_size_2_rank_1.pt", "ranks [1] missing"),
    ],
)
def test_an_incomplete_step_is_never_chosen(tmp_path: Path, truncate, skip, reason) -> None:
    _save_step(tmp_path, 1)
    folder = _save_step(tmp_path, 2, truncate=truncate, skip=skip)
    assert reason in (guard.incomplete_reason(folder) or "")
    _tracker(tmp_path).write_text("")
    guard.check_tracker(tmp_path)
    assert _tracker(tmp_path).read_text() == "1"


def test_a_tracker_naming_a_removed_step_falls_back(two_steps: Path) -> None:
    import shutil

    shutil.rmtree(two_steps / "global_step_2" / "actor")  # max_actor_ckpt_to_keep's rotation, killed mid-way
    assert guard.check_tracker(two_steps, repair=False) is not None
    assert _tracker(two_steps).read_text() == "2", "--dry-run changed the tracker"
    assert "global_step_1" in (guard.check_tracker(two_steps) or "")
    assert _tracker(two_steps).read_text() == "1"


def test_no_complete_step_is_a_clear_error(tmp_path: Path) -> None:
    _save_step(tmp_path, 1, skip="data.pt")
    _tracker(tmp_path).write_text("")
    with pytest.raises(guard.CheckpointTrackerError, match=r"no complete global_step_N folder.*resume_from_path"):
        guard.check_tracker(tmp_path)
    assert _tracker(tmp_path).read_text() == ""


def test_the_command_line(two_steps: Path, capsys) -> None:
    _tracker(two_steps).write_text("x")
    assert guard.main([str(two_steps), "--dry-run"]) == 0
    assert "would point it at global_step_2" in capsys.readouterr().out
    assert _tracker(two_steps).read_text() == "x"
    assert guard.main([str(two_steps)]) == 0 and _tracker(two_steps).read_text() == "2"


def test_verl_source_still_matches() -> None:
    assert guard.source_problems() == []


@pytest.mark.slow
def test_verls_reader_is_guarded_where_verl_imports_it(two_steps: Path) -> None:
    """A fresh interpreter whose run selects mapo (the import of verl's trainer inside a function holding the run's
    config, as ``TaskRunnerV1.run`` does): ``find_latest_ckpt_path`` (bound by name in verl's modules at their
    import) repairs an empty tracker before reading it. Without the guard verl raises ``ValueError: invalid literal
    for int()``."""
    _tracker(two_steps).write_text("")
    code = """
import importlib, sys
import verl
from omegaconf import OmegaConf
def run(config):
    importlib.import_module("verl.trainer.ppo.v1.trainer_base")
run(OmegaConf.create({"algorithm": {"adv_estimator": "mapo"}}))
from verl.trainer.ppo import ray_trainer
from verl.utils.checkpoint import checkpoint_handler, checkpoint_manager
for module in (ray_trainer, checkpoint_handler, checkpoint_manager):
    assert getattr(module.find_latest_ckpt_path, "_mapo_checkpoint_guard", False), module.__name__
print(ray_trainer.find_latest_ckpt_path(sys.argv[1]))
"""
    proc = subprocess.run([sys.executable, "-c", code, str(two_steps)], capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert proc.stdout.strip().splitlines()[-1] == str(two_steps / "global_step_2")
    assert "pointing it at global_step_2" in proc.stderr
