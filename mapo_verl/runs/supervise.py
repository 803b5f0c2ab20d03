"""Run a command under supervision: its output to a log, progress from its lines, a deadline that always fires.

The deadline is checked on the wall clock, not when a line arrives: a trainer that hangs silently (as verl's does
after a failed weight sync) is still stopped. On time-out, or when the supervisor itself is interrupted (Ctrl-C, or
SIGTERM from ``kill``, ``scancel`` or a CI time limit, see :func:`ending_trees_on_sigterm`), the whole process tree
is ended (the trainer, the Ray processes it started, a rollout engine's workers): SIGTERM, then SIGKILL after a
grace period.
"""

from __future__ import annotations

import contextlib
import signal
import subprocess
import threading
import time
from collections import deque
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

TAIL_LINES = 80
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
    _, alive = psutil.wait_procs(procs, timeout=grace)
    for proc in alive:
        with contextlib.suppress(psutil.NoSuchProcess):
            proc.kill()
    psutil.wait_procs(alive, timeout=grace)


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
) -> Outcome:
    """Run ``cmd``; every output line goes to ``log_path``; ``progress(line)`` may return a message to report.

    ``timeout`` (seconds, wall clock) ends the whole process tree even while the command prints nothing.
    """
    tail: deque[str] = deque(maxlen=TAIL_LINES)
    last: list[str | None] = [None]
    start = time.monotonic()
    log_path.parent.mkdir(parents=True, exist_ok=True)
    with ending_trees_on_sigterm(), _counted(), open(log_path, "w", encoding="utf-8") as log_file:
        proc = subprocess.Popen(
            list(cmd),
            cwd=cwd,
            env=dict(env) if env is not None else None,
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
            reader.join(timeout=10)
    return Outcome(
        returncode=returncode,
        seconds=time.monotonic() - start,
        timed_out=timed_out,
        tail=list(tail),
        last_progress=last[0],
    )

