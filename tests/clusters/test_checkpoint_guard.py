"""The checkpoint guard (mapo_verl/checkpoint_guard.py) on checkpoint folders in verl's FSDP layout, written with
``torch.save`` in ``tmp_path``; and, in a fresh interpreter, in front of verl 0.9.1's own reader."""

from __future__ import annotations

import os
import shutil
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


def _stray_shard(step_dir: Path, world: int = 4, *, truncated: bool = True) -> str:
    """One shard of another world size in ``step_dir/actor`` (an earlier save on ``world`` GPUs killed after its first
    file); its name relative to the step folder."""
    name = f"actor/model_world_size_{world}_rank_0.pt"
    torch.save({"w": torch.arange(64.0)}, step_dir / name)
    if truncated:
        (step_dir / name).write_bytes((step_dir / name).read_bytes()[:100])
    return name


@pytest.mark.parametrize("truncated", [True, False])
def test_a_stray_shard_of_another_world_size_does_not_rewind_a_complete_step(two_steps: Path, truncated) -> None:
    stray = _stray_shard(two_steps / "global_step_2", truncated=truncated)
    for judge in (guard.check_tracker, lambda root: guard.check_tracker(root, world_size=2)):  # unknown, and known
        message = judge(two_steps)
        assert _tracker(two_steps).read_text() == "2", message
        assert message and stray in message and "ignored shards of other world sizes" in message
    assert guard.incomplete_reason(two_steps / "global_step_2", 2) is None


def test_a_broken_tracker_goes_to_the_step_with_a_stray_shard(two_steps: Path) -> None:
    stray = _stray_shard(two_steps / "global_step_2")
    for judge in (guard.check_tracker, lambda root: guard.check_tracker(root, world_size=2)):
        _tracker(two_steps).write_text("")
        message = judge(two_steps)
        assert _tracker(two_steps).read_text() == "2", message
        assert message and "pointing it at global_step_2" in message and stray in message


def test_a_step_is_judged_by_the_world_size_it_resumes_with(tmp_path: Path) -> None:
    _save_step(tmp_path, 1, world=4)
    _save_step(tmp_path, 2, world=2)  # the run went on with 2 GPUs; resumed now with 4, verl finds no rank-2/3 shards
    _tracker(tmp_path).write_text("2")
    assert guard.check_tracker(tmp_path, world_size=2) is None
    assert guard.check_tracker(tmp_path, world_size=None) is None  # complete for some world size: never rewound
    message = guard.check_tracker(tmp_path, world_size=4)
    assert message and "holds no shards for world size 4 (only for 2)" in message and "for world size 4" in message
    assert _tracker(tmp_path).read_text() == "1"


def test_the_world_size_is_the_resuming_trainers(two_steps: Path) -> None:
    """``nnodes x n_gpus_per_node`` of the trainer config on the caller's stack (verl's ``self.config`` in
    ``_load_checkpoint``), None without one."""

    class Trainer:
        def __init__(self) -> None:
            self.config = {"trainer": {"nnodes": 2, "n_gpus_per_node": 4}}

        def _load_checkpoint(self) -> int | None:
            return guard.resume_world_size()

    assert Trainer()._load_checkpoint() == 8
    assert guard.resume_world_size() is None


@pytest.mark.skipif(os.geteuid() == 0 and not shutil.which("unshare"), reason="root, and no unshare to drop it")
def test_a_read_only_folder_is_one_error_line(two_steps: Path) -> None:
    _tracker(two_steps).write_text("")
    two_steps.chmod(0o555)
    # root writes anywhere: in a user namespace without a mapping it is an unprivileged owner of nothing
    drop = ["unshare", "--user"] if os.geteuid() == 0 else []
    try:
        proc = subprocess.run([*drop, sys.executable, "-m", "mapo_verl.checkpoint_guard", str(two_steps)],
                              capture_output=True, text=True, timeout=60)  # fmt: skip
    finally:
        two_steps.chmod(0o755)
    assert proc.returncode == 1, proc.stdout + proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith(f"error: {two_steps}: cannot rewrite"), proc.stderr
    assert "resume_from_path=" in lines[0] and _tracker(two_steps).read_text() == ""


def test_the_command_line_refuses_a_missing_folder_and_a_bad_world_size(tmp_path: Path, capsys) -> None:
    assert guard.main([str(tmp_path / "nowhere")]) == 2
    assert (
        capsys.readouterr().err.strip() == f"error: {tmp_path / 'nowhere'}: no such folder (trainer.default_local_dir)"
    )
    with pytest.raises(SystemExit):
        guard.main([str(tmp_path), "--world-size", "0"])
    assert "--world-size 0: expected a positive number of ranks" in capsys.readouterr().err


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


@pytest.mark.slow
def test_verls_reader_resumes_at_the_trainers_world_size(tmp_path: Path) -> None:
    """verl's own ``find_latest_ckpt_path``, guarded, called from a trainer's ``_load_checkpoint`` with 2 nodes x 2
    GPUs: the step saved on 2 GPUs (which verl's FSDP manager cannot load on 4 ranks) is passed over for the newest
    step saved on 4, and the stray 2-GPU shard in that step is named, not held against it."""
    from omegaconf import OmegaConf
    from verl.utils.checkpoint.checkpoint_manager import find_latest_ckpt_path

    _save_step(tmp_path, 1, world=4)
    stray = _stray_shard(tmp_path / "global_step_1", world=2)
    _save_step(tmp_path, 2, world=2)
    _tracker(tmp_path).write_text("2")
    find = guard.guarded(find_latest_ckpt_path)

    class Trainer:
        def __init__(self, nnodes: int, gpus: int) -> None:
            self.config = OmegaConf.create({"trainer": {"nnodes": nnodes, "n_gpus_per_node": gpus}})

        def _load_checkpoint(self) -> str | None:
            return find(str(tmp_path))

    assert Trainer(1, 2)._load_checkpoint() == str(tmp_path / "global_step_2")
    assert Trainer(2, 2)._load_checkpoint() == str(tmp_path / "global_step_1")
    assert _tracker(tmp_path).read_text() == "1"
    assert stray in (guard.check_tracker(tmp_path, world_size=4) or "")
