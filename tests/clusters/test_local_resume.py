"""The local smoke beside someone else's Ray, killed in the middle of a checkpoint save, then resumed.

Two real runs of ``python -m mapo_verl smoke`` (verl's trainer; checkpoints every step, no validation), both with
a neighbour Ray running, ``RAY_ADDRESS`` naming it and ``/tmp/ray/ray_current_cluster`` pointing at it:

1. ``--steps 2``, with ``global_step_2/data.pt`` made a named pipe beforehand: the save of step 2 writes ``actor/``
   (every shard), then blocks opening ``data.pt`` (nothing reads the pipe), before the tracker. There the whole
   process tree gets SIGKILL, and the pipe is removed: the state of a crash between verl's actor save and its
   ``data.pt`` (the real save takes about 40 ms here, too short to hit by polling);
2. the same command with ``trainer.resume_mode=auto`` after the tracker was emptied, the state a kill between
   verl's ``open(tracker, "w")`` and its ``write`` leaves: the checkpoint guard points it back at ``global_step_1``
   (the newest complete one), verl resumes there and trains step 2 to the requested 2 steps.
"""

from __future__ import annotations

import contextlib
import os
import subprocess
import sys
import time
from pathlib import Path

import psutil
import pytest

from mapo_verl import checkpoint_guard
from mapo_verl.verl_log import read_records, training_steps

pytestmark = [pytest.mark.cluster, pytest.mark.e2e, pytest.mark.slow, pytest.mark.ray]

REPO = Path(__file__).resolve().parents[2]
#: checkpoints every step, no validation, resume from the newest checkpoint (a fresh folder: from scratch)
ARGS = ("--steps", "2", "--timeout", "600", "trainer.save_freq=1", "trainer.test_freq=-1",
        "trainer.val_before_train=False", "trainer.resume_mode=auto")  # fmt: skip


def _smoke(out: Path, neighbour) -> subprocess.Popen:
    neighbour.own_pointer()
    env = {**os.environ, "RAY_AUTH_MODE": "disabled", "RAY_ADDRESS": neighbour.address}  # must not be joined
    cmd = [sys.executable, "-m", "mapo_verl", "smoke", "--out", str(out), *ARGS]
    return subprocess.Popen(cmd, env=env, cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                            start_new_session=True)  # fmt: skip


def _kill_tree(pid: int) -> None:
    try:
        root = psutil.Process(pid)
        procs = [root, *root.children(recursive=True)]
    except psutil.NoSuchProcess:
        return
    for proc in procs:  # SIGKILL, no clean-up: as an OOM kill or a lost node would end it
        with contextlib.suppress(psutil.NoSuchProcess):
            proc.kill()
    psutil.wait_procs(procs, timeout=30)


@pytest.fixture(scope="module")
def killed(neighbour, tmp_path_factory, memory_claim):
    """Run 1, SIGKILLed while its save of step 2 waits on ``data.pt``; the tracker's text right after the kill."""
    with memory_claim("hf", "smoke (killed during the save)"):
        return _kill_during_the_save(neighbour, tmp_path_factory.mktemp("local-resume"))


def _kill_during_the_save(neighbour, out: Path) -> tuple:
    ckpt = out / "checkpoints"
    pipe = ckpt / "global_step_2" / "data.pt"
    pipe.parent.mkdir(parents=True)
    os.mkfifo(pipe)
    proc = _smoke(out, neighbour)
    deadline = time.monotonic() + 600
    while not (ckpt / "global_step_2" / "actor" / "fsdp_config.json").exists():  # the actor save's last file
        assert proc.poll() is None, f"run 1 ended before saving step 2:\n{proc.stdout.read()[-4000:]}"
        assert time.monotonic() < deadline, "run 1 never saved step 2's actor"
        time.sleep(0.2)
    time.sleep(0.5)  # the trainer is now blocked opening the pipe
    _kill_tree(proc.pid)
    tracker = (ckpt / checkpoint_guard.TRACKER).read_text()
    pipe.unlink()
    output = proc.communicate(timeout=60)[0]
    return out, tracker, output


@pytest.fixture(scope="module")
def resumed(killed, neighbour, memory_claim):
    """Run 2 (same command) after the tracker was emptied."""
    out = killed[0]
    (out / "checkpoints" / checkpoint_guard.TRACKER).write_text("")
    with memory_claim("hf", "smoke (resumed after the kill)"):
        proc = _smoke(out, neighbour)
        output = proc.communicate(timeout=900)[0]
    return proc.returncode, output, out


def test_a_kill_during_the_save_leaves_the_tracker_on_the_previous_step(killed):
    out, tracker, _ = killed
    ckpt = out / "checkpoints"
    assert tracker == "1", f"tracker {tracker!r} after the kill"
    assert checkpoint_guard.incomplete_reason(ckpt / "global_step_1") is None
    assert checkpoint_guard.incomplete_reason(ckpt / "global_step_2") is not None
    steps = training_steps(read_records(out / "metrics.jsonl"))
    assert 1 in steps and any(k.startswith("mapo/") for k in steps[1])


def test_resume_after_an_emptied_tracker_continues_from_the_last_complete_checkpoint(resumed):
    code, output, out = resumed
    log = (out / "main_ppo.log").read_text()
    assert code == 0, output[-4000:] + "\n--- main_ppo.log ---\n" + log[-4000:]
    assert "not a step number" in log and "pointing it at global_step_1" in log, log[-4000:]
    steps = training_steps(read_records(out / "metrics.jsonl"))
    assert sorted(steps) == [2], f"run 2 trained steps {sorted(steps)}; expected only step 2 (resumed from 1)"
    assert any(k.startswith("mapo/") for k in steps[2])
    ckpt = out / "checkpoints"
    assert (ckpt / checkpoint_guard.TRACKER).read_text() == "2"
    assert checkpoint_guard.incomplete_reason(ckpt / "global_step_2") is None


def test_the_smoke_left_the_neighbour_ray_alive(resumed, neighbour):
    assert neighbour.is_alive()
    log = (resumed[2] / "main_ppo.log").read_text()
    assert "'address': 'local'" in log and "Started a local Ray instance" in log, log[:3000]
