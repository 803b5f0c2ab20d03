"""The supervisor: a deadline that fires while the command is silent, and nothing of its process tree left."""

from __future__ import annotations

import contextlib
import subprocess
import sys
import time

import psutil
import pytest

from mapo_verl.supervise import run_supervised
from mapo_verl_cpu.runners.spec import RunSpec
from mapo_verl_cpu.runners.summary import summary

# A parent that prints a marker, starts a grandchild, then hangs without a word (as main_ppo after a failed sync).
SILENT_HANG = (
    "import subprocess, sys, time\n"
    "child = subprocess.Popen([sys.executable, '-c', 'import time; time.sleep(600)'])\n"
    "print('CHILD', child.pid, flush=True)\n"
    "print('workers are up', flush=True)\n"
    "time.sleep(600)\n"
)


def test_deadline_fires_during_silence_and_ends_the_whole_tree(tmp_path):
    seen: list[str] = []
    start = time.monotonic()
    outcome = run_supervised(
        [sys.executable, "-c", SILENT_HANG],
        log_path=tmp_path / "log.txt",
        timeout=3.0,
        progress=lambda line: "up" if "workers are up" in line else None,
        report=seen.append,
        poll=0.1,
    )
    assert outcome.timed_out
    assert time.monotonic() - start < 60  # not the 600 s the command would have slept
    assert outcome.last_progress == "up"
    child = int(next(line.split()[1] for line in outcome.tail if line.startswith("CHILD")))
    assert not psutil.pid_exists(child) or psutil.Process(child).status() == psutil.STATUS_ZOMBIE
    assert any("timed out" in message for message in seen)
    assert "CHILD" in (tmp_path / "log.txt").read_text()


def test_exit_status_and_tail_without_timeout(tmp_path):
    outcome = run_supervised(
        [sys.executable, "-c", "print('a'); print('b'); raise SystemExit(3)"],
        log_path=tmp_path / "log.txt",
        timeout=None,
        report=lambda message: None,
    )
    assert (outcome.returncode, outcome.timed_out, outcome.tail) == (3, False, ["a", "b"])


def test_summary_of_a_timed_out_run_says_what_was_last_seen(tmp_path):
    outcome = run_supervised(
        [sys.executable, "-c", SILENT_HANG],
        log_path=tmp_path / "main_ppo.log",
        timeout=2.0,
        progress=lambda line: "workers are up" if "workers are up" in line else None,
        report=lambda message: None,
        poll=0.1,
    )
    text = summary(RunSpec(out=tmp_path, overrides=(), steps=2), outcome)
    assert "TIMED OUT; last progress seen: workers are up" in text
    assert "0 training step(s)" in text


# A supervisor in a worker thread of a pool, as ``compare --jobs 2`` runs them, with the main thread's SIGTERM handler.
SUPERVISOR_IN_A_THREAD = (
    "import sys\n"
    "from concurrent.futures import ThreadPoolExecutor\n"
    "from pathlib import Path\n"
    "from mapo_verl.supervise import ending_trees_on_sigterm, run_supervised\n"
    "def work():\n"
    "    run_supervised([sys.executable, '-c', sys.argv[1]], log_path=Path(sys.argv[2]), timeout=None,\n"
    "                   report=lambda m: None, poll=0.1)\n"
    "with ending_trees_on_sigterm(), ThreadPoolExecutor(2) as pool:\n"
    "    pool.submit(work).result()\n"
)
# The same in the main thread, as ``smoke`` runs it (run_supervised installs the handler itself there).
SUPERVISOR_IN_THE_MAIN_THREAD = (
    "import sys\n"
    "from pathlib import Path\n"
    "from mapo_verl.supervise import run_supervised\n"
    "run_supervised([sys.executable, '-c', sys.argv[1]], log_path=Path(sys.argv[2]), timeout=None,\n"
    "               report=lambda m: None, poll=0.1)\n"
)


@pytest.mark.parametrize("script", [SUPERVISOR_IN_A_THREAD, SUPERVISOR_IN_THE_MAIN_THREAD], ids=["pool", "main"])
def test_sigterm_to_the_supervisor_ends_the_tree_it_supervises(tmp_path, script):
    import signal
    import subprocess

    log = tmp_path / "log.txt"
    supervisor = subprocess.Popen([sys.executable, "-c", script, SILENT_HANG, str(log)])
    deadline = time.monotonic() + 60
    while "workers are up" not in (log.read_text() if log.is_file() else ""):
        assert supervisor.poll() is None and time.monotonic() < deadline, "the supervised command never started"
        time.sleep(0.1)
    child = int(next(line.split()[1] for line in log.read_text().splitlines() if line.startswith("CHILD")))
    supervisor.send_signal(signal.SIGTERM)
    assert supervisor.wait(timeout=60) == 143
    assert not psutil.pid_exists(child) or psutil.Process(child).status() == psutil.STATUS_ZOMBIE


# A command that leaves a process outside its tree (a new session, its parent gone: reparented to init, as a Ray
# worker whose raylet exited first), then exits 0.
ORPHAN_LEFT_BEHIND = (
    "import subprocess, sys\n"
    'launcher = (\'import subprocess, sys; p = subprocess.Popen([sys.executable, "-c", "import time; '
    'time.sleep(600)"], start_new_session=True); print("ORPHAN", p.pid, flush=True)\')\n'
    "subprocess.run([sys.executable, '-c', launcher], check=True)\n"
)


def test_a_process_left_outside_the_tree_is_ended_after_the_command_exits(tmp_path):
    seen: list[str] = []
    outcome = run_supervised(
        [sys.executable, "-c", ORPHAN_LEFT_BEHIND],
        log_path=tmp_path / "log.txt",
        timeout=None,
        report=seen.append,
        poll=0.1,
        settle=1.0,
    )
    orphan = int(next(line.split()[1] for line in outcome.tail if line.startswith("ORPHAN")))
    assert outcome.returncode == 0
    assert not psutil.pid_exists(orphan) or psutil.Process(orphan).status() == psutil.STATUS_ZOMBIE
    assert [entry.split()[0] for entry in outcome.stragglers] == [str(orphan)]
    assert any(f"left running: {orphan} " in message for message in seen), seen


def test_a_process_of_another_run_is_left_alone(tmp_path):
    import subprocess

    other = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(600)"])
    try:
        outcome = run_supervised([sys.executable, "-c", "pass"], log_path=tmp_path / "log.txt", timeout=None,
                                 report=lambda message: None)  # fmt: skip
        assert outcome.stragglers == []
        assert other.poll() is None
    finally:
        other.kill()
        other.wait()


def test_the_tree_named_by_a_pid_file_is_ended_and_a_missing_or_empty_file_is_nothing(tmp_path):
    from mapo_verl.supervise import end_tree_of_pid_file

    code = ("import subprocess, sys, time; subprocess.Popen([sys.executable, '-c', 'import time; time.sleep(600)']); "
            "print('up', flush=True); time.sleep(600)")  # fmt: skip
    root = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True)
    assert root.stdout.readline().strip() == "up"
    tree = [psutil.Process(root.pid), *psutil.Process(root.pid).children(recursive=True)]
    assert len(tree) == 2
    (tmp_path / "job.pid").write_text(str(root.pid))
    try:
        end_tree_of_pid_file(tmp_path / "job.pid")
        root.wait(timeout=30)
        assert not any(p.is_running() and p.status() != psutil.STATUS_ZOMBIE for p in tree)
    finally:
        for proc in tree:
            with contextlib.suppress(psutil.NoSuchProcess):
                proc.kill()
    (tmp_path / "empty.pid").write_text("")
    end_tree_of_pid_file(tmp_path / "empty.pid")
    end_tree_of_pid_file(tmp_path / "missing.pid")
