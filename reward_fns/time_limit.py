"""A hard time limit on a scorer's slow step, in any thread: the step runs in a worker process, killed on overrun.

sympy, mathruler and math-verify can run for minutes on a short answer (``\\boxed{1e999999}``,
``\\Gamma(9999999)``), inside C calls that no signal or thread can interrupt, and math-verify's own
``signal.alarm`` timeouts work only on the main thread, while verl calls rewards from executor threads. So the
step that may hang, and only that step, is sent to a worker process: the caller waits at most until its deadline,
and a worker that has not answered by then is killed (SIGKILL) and replaced. Each worker serves one call at a
time; a caller with no idle worker gets a new one (at most ``$MAPO_REWARD_WORKERS``, default 4, per scoring
process) or waits for one. Workers are forked by a fork server, an interpreter started on first use that has
imported and exercised the scorers once (:data:`WORKER_WARM_UP`), so a replacement costs a fork, not a second
of imports; time spent getting a worker is not charged to the limit.

The limit is per reward call: ``with Deadline(seconds):`` around one ``compute_score`` call, and every
:func:`call_bounded` inside it gets what is left. Its value is the reward kwarg ``time_limit`` when given, else
``$MAPO_REWARD_TIME_LIMIT``, else :data:`DEFAULT_TIME_LIMIT_S`.
"""

from __future__ import annotations

import atexit
import contextlib
import importlib
import logging
import math
import os
import pickle
import select
import signal
import socket
import struct
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

#: Seconds one reward call may spend in its slow steps, when neither the kwarg nor the environment says.
DEFAULT_TIME_LIMIT_S = 2.0
#: The environment variable that sets the limit (seconds, a positive number).
LIMIT_ENV = "MAPO_REWARD_TIME_LIMIT"
#: The environment variable that sets the most worker processes one scoring process starts (default 4).
WORKERS_ENV = "MAPO_REWARD_WORKERS"
DEFAULT_WORKERS = 4
#: How long the fork server may take to import and warm up before calls fail (not part of any limit).
STARTUP_TIMEOUT_S = 120.0

_HEADER = struct.Struct("!Q")
_logger = logging.getLogger(__name__)
#: What the fork server runs before it reports ready (imports and first comparisons, inherited by every worker).
WORKER_WARM_UP = "reward_fns.math_answer:warm_up"
_local = threading.local()  # .call: the innermost open Deadline of this thread


def _positive_seconds(value: Any, source: str) -> float:
    try:
        seconds = float(value)
    except (TypeError, ValueError):
        seconds = math.nan
    if not (0 < seconds < math.inf):
        raise ValueError(f"{source} must be a positive number of seconds, got {value!r}")
    return seconds


def time_limit(value: Any = None) -> float:
    """The per-call limit in seconds: ``value`` (the ``time_limit`` reward kwarg) if given, else
    ``$MAPO_REWARD_TIME_LIMIT``, else :data:`DEFAULT_TIME_LIMIT_S`. A configuration error raises ``ValueError``."""
    if value is not None:
        return _positive_seconds(value, "time_limit")
    env = os.environ.get(LIMIT_ENV, "").strip()
    return _positive_seconds(env, LIMIT_ENV) if env else DEFAULT_TIME_LIMIT_S


def _max_workers() -> int:
    env = os.environ.get(WORKERS_ENV, "").strip()
    if not env:
        return DEFAULT_WORKERS
    if not env.isdigit() or int(env) < 1:
        raise ValueError(f"{WORKERS_ENV} must be a whole number >= 1, got {env!r}")
    return int(env)


class Deadline:
    """One reward call's time limit: ``with Deadline(time_limit) as call:`` bounds every :func:`call_bounded`
    made inside, in this thread, to what is left of ``time_limit`` seconds (resolved by :func:`time_limit` when
    first needed; an enclosing deadline that ends sooner wins). ``call.failures`` lists the failures
    (:attr:`Outcome.failure`) of those calls. Cheap to open: a reward call that needs no slow step pays ~1 µs."""

    __slots__ = ("failures", "limit", "outer", "start")

    def __init__(self, limit: Any = None) -> None:
        self.limit = None if limit is None else _positive_seconds(limit, "time_limit")
        self.failures: list[str] = []

    def __enter__(self) -> Deadline:
        self.start = time.monotonic()
        self.outer: Deadline | None = getattr(_local, "call", None)
        _local.call = self
        return self

    def __exit__(self, *exc_info: object) -> None:
        _local.call = self.outer

    def end(self) -> float:
        """The ``time.monotonic()`` instant at which this deadline (or an enclosing one) passes."""
        end = self.start + (time_limit() if self.limit is None else self.limit)
        return end if self.outer is None else min(end, self.outer.end())

    def postpone(self, seconds: float) -> None:
        """Move this deadline and the enclosing ones later (time spent waiting for a worker is not charged)."""
        call: Deadline | None = self
        while call is not None:
            call.start += seconds
            call = call.outer

    def record(self, failure: str) -> None:
        call: Deadline | None = self
        while call is not None:
            call.failures.append(failure)
            call = call.outer


def seconds_left() -> float:
    """Seconds left to this thread's open :class:`Deadline` (the default limit when none is open)."""
    call: Deadline | None = getattr(_local, "call", None)
    return time_limit() if call is None else call.end() - time.monotonic()


@dataclass(frozen=True)
class Outcome:
    """A bounded call's result: ``value`` when it finished, else ``failure`` says why (``value`` is ``None``)."""

    value: Any = None
    failure: str | None = None

    @property
    def timed_out(self) -> bool:
        return self.failure is not None


class _WorkerFailed(Exception):
    """The worker died, or answered nonsense, or could not start."""


def _write_frame(fd: int, payload: bytes) -> None:
    view = memoryview(_HEADER.pack(len(payload)) + payload)
    while view:
        view = view[os.write(fd, view) :]


def _read_frame(fd: int, end: float | None) -> bytes | None:
    """One length-prefixed frame from ``fd``, or ``None`` when ``end`` (a ``time.monotonic`` instant) passes first.

    Requests and replies alternate, so whatever arrives belongs to this frame: a small one is one ``read``."""
    data = b""
    size = None
    while size is None or len(data) < size:
        if end is not None:
            wait = end - time.monotonic()
            if wait <= 0 or not select.select([fd], [], [], wait)[0]:
                return None
        chunk = os.read(fd, 1 << 16 if size is None else size - len(data))
        if not chunk:
            raise _WorkerFailed("the worker process exited")
        data += chunk
        if size is None and len(data) >= _HEADER.size:
            size = _HEADER.size + _HEADER.unpack_from(data)[0]
    return data[_HEADER.size :]


class _ForkServer:
    """A warmed-up interpreter (``python -c ... _fork_server``) that forks reward workers on request: a new worker
    costs a fork (milliseconds), not a Python start-up with sympy's and math-verify's imports (about a second).
    Its own children are killed and reaped only by it, so a killed worker's pid is never mistaken for another's.
    """

    def __init__(self) -> None:
        ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
        env = dict(os.environ)
        root = str(Path(__file__).resolve().parents[1])  # so that the server imports this very reward_fns
        env["PYTHONPATH"] = os.pathsep.join(p for p in (root, env.get("PYTHONPATH", "")) if p)
        code = "import sys; from reward_fns.time_limit import _fork_server; _fork_server(int(sys.argv[1]), sys.argv[2])"
        try:
            self.process = subprocess.Popen(
                [sys.executable, "-c", code, str(theirs.fileno()), WORKER_WARM_UP],
                stdin=subprocess.DEVNULL,
                env=env,
                pass_fds=[theirs.fileno()],
            )
        finally:
            theirs.close()
        self.socket = ours
        self.lock = threading.Lock()
        ours.settimeout(STARTUP_TIMEOUT_S)
        try:
            ready = self._receive(5)
        except (OSError, _WorkerFailed):
            ready = b""
        if ready != b"ready":
            self.close()
            raise _WorkerFailed(f"the reward fork server did not start within {STARTUP_TIMEOUT_S:.0f} s")
        ours.settimeout(60)

    def _receive(self, size: int) -> bytes:
        data = b""
        while len(data) < size:
            chunk = self.socket.recv(size - len(data))
            if not chunk:
                raise _WorkerFailed("the reward fork server exited")
            data += chunk
        return data

    def fork_worker(self) -> tuple[int, int, int]:
        """``(pid, request fd, reply fd)`` of a new worker."""
        with self.lock:
            try:
                self.socket.sendall(b"w")
                message, fds, _, _ = socket.recv_fds(self.socket, _HEADER.size, 2)
            except OSError as exc:
                raise _WorkerFailed(f"the reward fork server failed: {exc}") from None
        if len(message) != _HEADER.size or len(fds) != 2:
            for fd in fds:
                os.close(fd)
            raise _WorkerFailed("the reward fork server failed")
        return _HEADER.unpack(message)[0], fds[0], fds[1]

    def kill_worker(self, pid: int) -> None:
        with self.lock, contextlib.suppress(OSError, _WorkerFailed):
            self.socket.sendall(b"k" + _HEADER.pack(pid))
            self._receive(1)

    def alive(self) -> bool:
        return self.process.poll() is None

    def close(self) -> None:
        with contextlib.suppress(OSError):
            self.process.kill()
        with contextlib.suppress(Exception):
            self.process.wait(timeout=10)
        self.socket.close()


class _Worker:
    """One forked worker, talking length-prefixed pickles over a pair of pipes."""

    def __init__(self, server: _ForkServer) -> None:
        self.server = server
        self.pid, self.requests, self.replies = server.fork_worker()

    def call(self, func: Callable[..., Any], args: tuple, end: float) -> tuple[bool, Any]:
        """``(True, result)``, or ``(False, None)`` when ``end`` passed first (the worker must then be killed)."""
        request = pickle.dumps((func.__module__, func.__qualname__, args), protocol=pickle.HIGHEST_PROTOCOL)
        try:
            _write_frame(self.requests, request)
            reply = _read_frame(self.replies, end)
        except OSError as exc:
            raise _WorkerFailed(str(exc)) from None
        if reply is None:
            return False, None
        status, value = pickle.loads(reply)
        if status != "ok":
            raise _WorkerFailed(str(value))
        return True, value

    def kill(self) -> None:
        self.server.kill_worker(self.pid)
        for fd in (self.requests, self.replies):
            with contextlib.suppress(OSError):
                os.close(fd)


class _Pool:
    """Idle workers of this process, at most ``_max_workers()`` alive; reset in a forked child."""

    def __init__(self) -> None:
        self.lock = threading.Condition()
        self.server: _ForkServer | None = None
        self.server_lock = threading.Lock()
        self.idle: list[_Worker] = []
        self.alive: set[_Worker] = set()
        self.starting = 0  # workers being started, for a caller or as replacements
        self.replacing = 0  # of those, replacements of killed workers (they go to the idle list)
        self.waiting = 0  # callers waiting for a worker
        self.closed = False

    def acquire(self) -> _Worker:
        with self.lock:
            while not self.idle:
                # a replacement on its way that no other caller waits for is quicker than starting one more
                if self.replacing <= self.waiting and len(self.alive) + self.starting < _max_workers():
                    break
                self.waiting += 1
                self.lock.wait()
                self.waiting -= 1
            else:
                return self.idle.pop()
            self.starting += 1
        worker = None
        try:
            worker = _Worker(self.fork_server())
        finally:
            with self.lock:
                self.starting -= 1
                if worker is not None:
                    self.alive.add(worker)
                self.lock.notify_all()
        return worker

    def release(self, worker: _Worker, healthy: bool) -> None:
        if not healthy:
            worker.kill()
        with self.lock:
            if healthy:
                self.idle.append(worker)
            else:
                self.alive.discard(worker)
                self.starting += 1  # a replacement, started now so that the next caller need not wait for one
                self.replacing += 1
                threading.Thread(target=self._replace, daemon=True, name="reward-worker-start").start()
            self.lock.notify_all()

    def fork_server(self) -> _ForkServer:
        """The fork server, started on first use and again if it died."""
        with self.server_lock:
            if self.server is None or not self.server.alive():
                if self.server is not None:
                    self.server.close()
                self.server = _ForkServer()
            return self.server

    def _replace(self) -> None:
        try:
            worker = _Worker(self.fork_server())
        except Exception as exc:
            _logger.warning("reward_fns: could not replace a reward worker (%s)", exc)
            worker = None
        with self.lock:
            self.starting -= 1
            self.replacing -= 1
            if worker is not None:
                if self is _pool and not self.closed:
                    self.alive.add(worker)
                    self.idle.append(worker)
                else:  # closed, or this is a forked child's copy
                    worker.kill()
            self.lock.notify_all()

    def close(self) -> None:
        with self.lock:
            self.closed = True
            workers, self.idle, self.alive = list(self.alive), [], set()
        for worker in workers:
            worker.kill()
        with self.server_lock:
            if self.server is not None:
                self.server.close()
                self.server = None


_pool = _Pool()


def _forget_parent_pool() -> None:
    global _pool
    _pool = _Pool()  # the parent's workers and pipes are the parent's; never touch them from a forked child


os.register_at_fork(after_in_child=_forget_parent_pool)
atexit.register(lambda: _pool.close())


def call_bounded(func: Callable[..., Any], *args: Any) -> Outcome:
    """``func(*args)`` in a worker process, within the time left to this thread's open :class:`Deadline`.

    ``func`` must be a module-level function, ``args`` and its result picklable. Never raises: an overrun, or a
    worker that died or could not start, is an :class:`Outcome` with ``failure`` set, also appended to the
    failure list of every open :class:`Deadline` of this thread.
    """
    outcome = _call_in_worker(func, args)
    call: Deadline | None = getattr(_local, "call", None)
    if outcome.failure is not None and call is not None:
        call.record(outcome.failure)
    return outcome


def _call_in_worker(func: Callable[..., Any], args: tuple) -> Outcome:
    _max_workers()  # a configuration error raises here, whether or not a worker is idle
    left = seconds_left()
    if left <= 0:
        return Outcome(failure="no time left")
    started = time.monotonic()
    try:
        worker = _pool.acquire()
    except (_WorkerFailed, OSError) as exc:  # OSError from Popen, e.g. out of processes
        _logger.warning("reward_fns: a reward worker could not start (%s); the answer is scored as failed", exc)
        return Outcome(failure=f"worker failed: {exc}")
    # the limit counts from the moment a worker is ready: starting one, or waiting for one (bounded by the calls
    # ahead of this one), moves the enclosing deadline too
    call: Deadline | None = getattr(_local, "call", None)
    if call is not None:
        call.postpone(time.monotonic() - started)
    healthy = False
    try:
        finished, value = worker.call(func, args, time.monotonic() + left)
        healthy = finished
    except _WorkerFailed as exc:
        _logger.warning("reward_fns: a reward worker failed (%s); the answer is scored as failed", exc)
        return Outcome(failure=f"worker failed: {exc}")
    finally:
        _pool.release(worker, healthy)
    if not finished:
        return Outcome(failure=f"over the time limit ({left:.3g} s)")
    return Outcome(value=value)


# ------------------------------------------------------------------------------------------------ the worker


def _watch_parent(parent: int) -> None:
    """End this worker when the process that started it is gone (even mid-computation)."""
    while True:
        time.sleep(1.0)
        if os.getppid() != parent:
            os._exit(0)


def _resolve(module: str, qualname: str) -> Any:
    func: Any = importlib.import_module(module)
    for part in qualname.split("."):
        func = getattr(func, part)
    return func


def _serve(requests: int, replies: int) -> None:
    """A worker's loop: read a request, run it, write the reply, until the scoring process closes the pipe."""
    threading.Thread(target=_watch_parent, args=(os.getppid(),), daemon=True).start()
    while True:
        try:
            request = _read_frame(requests, None)
        except _WorkerFailed:
            return  # the scoring process closed the pipe
        if request is None:
            return
        try:
            module, qualname, args = pickle.loads(request)
            reply = ("ok", _resolve(module, qualname)(*args))
        except BaseException as exc:  # reported to the caller, which scores the answer as failed
            if isinstance(exc, KeyboardInterrupt | SystemExit):
                raise
            reply = ("error", f"{type(exc).__name__}: {exc}")
        _write_frame(replies, pickle.dumps(reply, protocol=pickle.HIGHEST_PROTOCOL))


def _reap(children: set[int]) -> None:
    for pid in list(children):
        with contextlib.suppress(ChildProcessError):
            if os.waitpid(pid, os.WNOHANG)[0]:
                children.discard(pid)


def _fork_server(fd: int, warm_up: str) -> None:
    """The fork server's loop: ``w`` forks a worker and sends its pid and pipe ends; ``k<pid>`` kills one."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C reaches the scoring process, which ends us
    sys.stdout = sys.stderr  # anything a scorer prints stays off the protocol
    channel = socket.socket(fileno=fd)
    _resolve(*warm_up.split(":"))()
    threading.Thread(target=_watch_parent, args=(os.getppid(),), daemon=True).start()
    channel.sendall(b"ready")
    children: set[int] = set()
    while command := channel.recv(1):
        _reap(children)
        if command == b"k":
            (pid,) = _HEADER.unpack(channel.recv(_HEADER.size, socket.MSG_WAITALL))
            if pid in children:  # not yet reaped, so the pid is still this worker's
                with contextlib.suppress(OSError):
                    os.kill(pid, signal.SIGKILL)
                with contextlib.suppress(ChildProcessError):
                    os.waitpid(pid, 0)
                children.discard(pid)
            channel.sendall(b"k")
            continue
        to_worker, requests = os.pipe()
        replies, from_worker = os.pipe()
        pid = os.fork()
        if pid == 0:  # the worker
            try:
                channel.close()
                os.close(requests)
                os.close(replies)
                _serve(to_worker, from_worker)
            finally:
                os._exit(0)
        children.add(pid)
        os.close(to_worker)
        os.close(from_worker)
        socket.send_fds(channel, [_HEADER.pack(pid)], [requests, replies])
        os.close(requests)
        os.close(replies)
