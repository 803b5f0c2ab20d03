"""Run a command under supervision: its output to a log, progress from its lines, a deadline that always fires.

The deadline is checked on the wall clock, not when a line arrives: a trainer that hangs silently (as verl's does
after a failed weight sync) is still stopped. On time-out, or when the supervisor itself is interrupted, the whole
process tree is ended (the trainer, the Ray processes it started, a rollout engine's workers): SIGTERM, then
SIGKILL after a grace period.
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
    with open(log_path, "w", encoding="utf-8") as log_file:
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

