"""Run a command under supervision: its output to a log, progress from its lines, a deadline that always fires.

The deadline is checked on the wall clock, not when a line arrives: a trainer that hangs silently (as verl's does
after a failed weight sync) is still stopped. On time-out, or when the supervisor itself is interrupted (Ctrl-C, or
SIGTERM from ``kill``, ``scancel`` or a CI time limit, see :func:`ending_trees_on_sigterm`), the whole process tree
is ended (the trainer, the Ray processes it started, a rollout engine's workers): SIGTERM, then SIGKILL after a
grace period.

However the command ends, nothing it started outlives the supervisor: each run's environment carries a marker
(``MAPO_SUPERVISED_RUN``), which every descendant inherits, so a process that left the tree (a Ray worker
reparented to init when its raylet exited first) is still found, given a few seconds to exit on its own, then ended.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import threading
import time
import uuid
from collections import deque
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

TAIL_LINES = 80
#: the environment variable whose value names one supervised run in every process it starts
RUN_MARKER = "MAPO_SUPERVISED_RUN"
#: seconds a run's leftover processes get to exit on their own after the command ends (Ray workers, slow under load)
SETTLE_SECONDS = 15.0
#: set when this process is told to stop (SIGTERM): every supervisor, in any thread, ends its tree and raises
STOPPING = threading.Event()
#: supervisors running now, in any thread
_active = [0]
_active_lock = threading.Lock()


def _on_sigterm(signum: int, frame) -> None:
    STOPPING.set()
    with _active_lock:
        idle = _active[0] == 0
    if idle:  # no tree to end: stop as Python's default would, with an exit status
        raise SystemExit(128 + signum)
    # otherwise the supervisors see STOPPING within a poll and raise there, after ending their trees; raising here
    # could land inside a Thread.join and make Python forget a thread that is still running


@contextlib.contextmanager
def ending_trees_on_sigterm():
    """While inside, SIGTERM ends every supervised process tree of this process, then the process (status 143).

    Python's default SIGTERM ends the process at once and would orphan the trainers it supervises. Handlers can be
    installed in the main thread only; elsewhere this does nothing (the main thread's handler covers all threads).
    """
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = signal.signal(signal.SIGTERM, _on_sigterm)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


@dataclass
class Outcome:
    """How a supervised command ended."""

    returncode: int
    seconds: float
    timed_out: bool = False
    tail: list[str] = field(default_factory=list)
    #: the last progress message shown (what was last seen before a hang)
    last_progress: str | None = None
    #: "pid name" of the processes the command left running after it ended, which the supervisor then ended
    stragglers: list[str] = field(default_factory=list)
    #: the launcher's job and how it ended, where a launcher ran it (``slurm job 12: COMPLETED ...``)
    job: str = ""


def process_tree(pid: int) -> list[int]:
    """``pid`` and all its descendants (children first), read from /proc via psutil."""
    import psutil

    try:
        parent = psutil.Process(pid)
        children = parent.children(recursive=True)
    except psutil.NoSuchProcess:
        return []
    return [c.pid for c in reversed(children)] + [pid]


def end_tree(pids: Sequence[int], grace: float = 5.0) -> None:
    """SIGTERM every pid, wait up to ``grace`` seconds, then SIGKILL those still alive."""
    import psutil

    procs = []
    for pid in pids:
        try:
            proc = psutil.Process(pid)
            proc.send_signal(signal.SIGTERM)
            procs.append(proc)
        except psutil.NoSuchProcess:
            continue
    alive = _wait_gone(procs, grace)
    for proc in alive:
        with contextlib.suppress(psutil.NoSuchProcess):
            proc.kill()
    _wait_gone(alive, grace)


def end_tree_of_pid_file(pid_file: Path) -> None:
    """End the process tree whose root pid ``pid_file`` holds (a background job's); nothing when the file is
    missing or empty, or the process is gone."""
    try:
        pid = int(pid_file.read_text())
    except (FileNotFoundError, ValueError):
        return
    end_tree(process_tree(pid))


def _wait_gone(procs: list, timeout: float) -> list:
    """Wait up to ``timeout`` seconds for ``procs`` to end; return those still running. A zombie counts as ended
    (an orphan's zombie stays until init's reaper collects it, which may take a while)."""
    import psutil

    deadline = time.monotonic() + timeout
    while True:
        alive = []
        for proc in procs:
            with contextlib.suppress(psutil.Error):
                if proc.is_running() and proc.status() != psutil.STATUS_ZOMBIE:
                    alive.append(proc)
        if not alive or time.monotonic() >= deadline:
            return alive
        time.sleep(0.1)


def processes_with_env(name: str, value: str) -> list:
    """Live processes whose environment has ``name=value`` (zombies and unreadable ones skipped)."""
    import psutil

    entry = f"{name}={value}".encode()
    found = []
    for proc in psutil.process_iter():
        try:
            with open(f"/proc/{proc.pid}/environ", "rb") as environ:
                if entry in environ.read().split(b"\0") and proc.status() != psutil.STATUS_ZOMBIE:
                    found.append(proc)
        except (OSError, psutil.Error):
            continue
    return found


def end_stragglers(marker: str, settle: float = SETTLE_SECONDS, grace: float = 5.0) -> list[str]:
    """Wait up to ``settle`` seconds for the run's processes to exit, then end the rest; "pid name" of those ended."""
    deadline = time.monotonic() + settle
    while (left := processes_with_env(RUN_MARKER, marker)) and time.monotonic() < deadline:
        time.sleep(0.5)
    ended = []
    for proc in left:
        with contextlib.suppress(Exception):
            ended.append(f"{proc.pid} {proc.name()}")
    end_tree([proc.pid for proc in left], grace=grace)
    return ended


@contextlib.contextmanager
def _counted():
    """Count this supervisor as active; refuse to start once the process is stopping."""
    with _active_lock:
        if STOPPING.is_set():
            raise SystemExit(143)
        _active[0] += 1
    try:
        yield
    finally:
        with _active_lock:
            _active[0] -= 1


def run_supervised(
    cmd: Sequence[str],
    *,
    log_path: Path,
    env: Mapping[str, str] | None = None,
    cwd: Path | None = None,
    timeout: float | None = None,
    progress: Callable[[str], str | None] = lambda line: None,
    report: Callable[[str], None] = print,
    poll: float = 0.5,
    settle: float = SETTLE_SECONDS,
) -> Outcome:
    """Run ``cmd``; every output line goes to ``log_path``; ``progress(line)`` may return a message to report.

    ``timeout`` (seconds, wall clock) ends the whole process tree even while the command prints nothing. After the
    command ends, any process it started that is still running a few seconds later is ended and reported.
    """
    marker = uuid.uuid4().hex
    child_env = {**(os.environ if env is None else env), RUN_MARKER: marker}
    tail: deque[str] = deque(maxlen=TAIL_LINES)
    last: list[str | None] = [None]
    start = time.monotonic()
    log_path.parent.mkdir(parents=True, exist_ok=True)
    with ending_trees_on_sigterm(), _counted(), open(log_path, "w", encoding="utf-8") as log_file:
        proc = subprocess.Popen(
            list(cmd),
            cwd=cwd,
            env=child_env,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            text=True,
            errors="replace",
            bufsize=1,
            start_new_session=True,  # its own process group: a Ctrl-C here does not reach Ray's processes twice
        )

        def pump() -> None:
            assert proc.stdout is not None
            for line in proc.stdout:
                log_file.write(line)
                log_file.flush()
                tail.append(line.rstrip())
                message = progress(line)
                if message:
                    last[0] = message
                    report(f"{message} ({time.monotonic() - start:.0f} s)")

        reader = threading.Thread(target=pump, name="supervise-output", daemon=True)
        reader.start()
        timed_out = False
        try:
            while proc.poll() is None:
                if STOPPING.is_set():
                    raise SystemExit(143)
                if timeout is not None and time.monotonic() - start > timeout:
                    timed_out = True
                    report(f"timed out after {timeout:.0f} s; ending the process tree of pid {proc.pid}")
                    end_tree(process_tree(proc.pid))
                    break
                time.sleep(poll)
        except BaseException:  # KeyboardInterrupt included: leave nothing running behind us
            end_tree(process_tree(proc.pid))
            raise
        finally:
            returncode = proc.wait()
            stragglers = end_stragglers(marker, settle=settle)  # before the join: a straggler may hold the pipe
            reader.join(timeout=10)
            if stragglers:
                report(f"ended {len(stragglers)} process(es) the command left running: {', '.join(stragglers)}")
    return Outcome(
        returncode=returncode,
        seconds=time.monotonic() - start,
        timed_out=timed_out,
        tail=list(tail),
        last_progress=last[0],
        stragglers=stragglers,
    )
