"""Suite-wide hooks: the run's shared folder, the trainer jobs' memory budget, how ``make test`` splits the suite
between its two pytest-xdist workers, and what the tests left running.

``make test`` runs ``pytest -n 2 --dist loadfile``: two worker processes, each test file (a *group*) whole on one
worker, the longest files first (:data:`LONGEST_FIRST`). Files that share a session fixture share a group
(:data:`SHARED_GROUPS`), so that no expensive fixture is built twice. The processes of one run (the controller
and its workers) share a folder (``$MAPO_TEST_RUN_DIR``): the tiny models' cache, the GPU recipe's background
install, and the memory ledger through which every trainer job claims its measured peak before it starts
(:class:`MemoryBudget`), so that the two workers never run more jobs at once than the machine's memory holds.
Without ``-n`` the same hooks give one process the same folder and budget.

pytest exits normally: atexit handlers (coverage, profilers, a caller's ``pytest.main()``) run as usual. At the
end of the session the suite reports what the tests left running in this process (threads that are not daemons,
an initialised Ray), the usual cause of a crash in interpreter teardown.
CI runs with ``PYTHONFAULTHANDLER=1``: a crash anywhere, teardown included, leaves every thread's stack in the log
(docs/development.md, "Test runner exit").
"""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import json
import os
import shutil
import sys
import tempfile
import threading
import time
import uuid
import warnings
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import psutil
import pytest

#: the folder the pytest processes of one run share (made by the first, inherited by pytest-xdist's workers)
RUN_DIR_ENV = "MAPO_TEST_RUN_DIR"
_OWNS_RUN_DIR = pytest.StashKey[Path]()

#: the longest test files (measured, docs/measurements.md), first in the queue, longest first, so that the two
#: workers start on them at once and no long file is left for the end while the other worker sits idle. The every-
#: config jobs (sixteen, two at a time where memory allows) run beside the vLLM runs (one at a time: with a vLLM job
#: only one more trainer job fits the memory budget), then the cluster tests, whose jobs fit beside each other
LONGEST_FIRST = (
    "e2e/test_every_config.py",
    "e2e/test_vllm_smoke.py",
    "clusters/test_ray_launcher.py",
    "e2e/test_learnable_compare.py",
    "clusters/test_local_resume.py",
    "clusters/test_slurm_smoke.py",
    "e2e/test_smoke_e2e.py",
    "e2e/test_qwen3_vl_smoke.py",
)
#: files that use another file's session fixture run in that file's group (one worker builds the fixture once)
SHARED_GROUPS = {
    "e2e/test_readme_smoke_sample.py": "e2e/test_smoke_e2e.py",  # smoke_mapo
    "e2e/test_loggers.py": "e2e/test_qwen3_vl_smoke.py",  # smoke_qwen3_vl
    # one vLLM job at a time (the memory budget): after the other vLLM runs on the same worker, never waiting
    "e2e/test_qwen3_vl_vllm_smoke.py": "e2e/test_vllm_smoke.py",
}


def is_xdist_worker(config: pytest.Config) -> bool:
    return hasattr(config, "workerinput")


# ------------------------------------------------------------------------------------- the run's folder
def run_dir() -> Path:
    """The folder shared by every pytest process of this run (see the module's docstring)."""
    return Path(os.environ[RUN_DIR_ENV])


@pytest.fixture(scope="session")
def test_run_dir() -> Path:
    """:func:`run_dir`, for the other conftests and the tests (which cannot import this file by name)."""
    return run_dir()


def pytest_configure(config: pytest.Config) -> None:
    if os.environ.get(RUN_DIR_ENV) and Path(os.environ[RUN_DIR_ENV]).is_dir():
        return  # a pytest-xdist worker, or a pytest started by a test: the outer run's folder
    path = Path(tempfile.mkdtemp(prefix="mapo-tests-"))
    os.environ[RUN_DIR_ENV] = str(path)  # before pytest-xdist starts its workers, which inherit it
    config.stash[_OWNS_RUN_DIR] = path


# ------------------------------------------------------------------------------------- the memory budget
#: measured peaks of one job (GB of the machine's used memory, docs/measurements.md: hf 4.4, vLLM 9.0), claimed
#: with a margin
JOB_GB = {"hf": 5.0, "vllm": 9.5, "ray-cluster": 6.0, "slurm": 6.0}
#: memory left outside the budget: the pytest processes (verl and torch imported), the tests' fresh
#: interpreters, the GPU recipe's install, the system. On 24 GB (23.4 GiB) the budget is 17.4: a vLLM job fits
#: beside a two-node Ray or Slurm job or one hf job, not beside two hf jobs
RESERVED_GB = 6.0
#: a claim that waits longer than this fails and names what held the memory
CLAIM_TIMEOUT_S = 2400


@dataclass
class MemoryBudget:
    """The trainer jobs' memory on this machine, shared by every pytest process of a run.

    A job claims ``gb`` (its measured peak) before it starts and frees it when it ends. A claim waits while the
    claims held plus its own exceed ``total_gb``; one that alone exceeds the budget waits for an empty ledger. The
    ledger is a JSON file ``{claim: [pid, gb, what]}`` rewritten under an ``flock``; claims of processes that are
    gone are dropped. Each claim's wait is appended to ``waits.jsonl`` for the session's summary.
    """

    folder: Path
    total_gb: float

    @classmethod
    def for_this_machine(cls, folder: Path) -> MemoryBudget:
        total = float(os.environ.get("MAPO_TEST_MEMORY_GB", 0)) or psutil.virtual_memory().total / 2**30 - RESERVED_GB
        return cls(folder, max(total, 1.0))

    @property
    def ledger(self) -> Path:
        return self.folder / "memory.json"

    @contextlib.contextmanager
    def _held(self) -> Iterator[dict[str, list]]:
        self.folder.mkdir(parents=True, exist_ok=True)
        with open(self.folder / "memory.lock", "a") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            try:
                held = json.loads(self.ledger.read_text()) if self.ledger.is_file() else {}
                held = {k: v for k, v in held.items() if psutil.pid_exists(v[0])}
                yield held
                tmp = self.ledger.with_suffix(".tmp")
                tmp.write_text(json.dumps(held))
                os.replace(tmp, self.ledger)
            finally:
                fcntl.flock(lock, fcntl.LOCK_UN)

    @contextlib.contextmanager
    def claim(self, gb: float, what: str) -> Iterator[None]:
        key = f"{os.getpid()}-{threading.get_ident()}-{uuid.uuid4().hex[:8]}"
        start = time.monotonic()
        while True:
            with self._held() as held:
                used = sum(v[1] for v in held.values())
                if not held or used + gb <= self.total_gb:
                    held[key] = [os.getpid(), gb, what]
                    break
            if time.monotonic() - start > CLAIM_TIMEOUT_S:
                pytest.fail(f"{what}: waited {CLAIM_TIMEOUT_S} s for {gb} GB of {self.total_gb:.1f}; held: {held}")
            time.sleep(1.0)
        waited = time.monotonic() - start
        with (self.folder / "waits.jsonl").open("a") as log:
            log.write(json.dumps({"what": what, "gb": gb, "waited_s": round(waited, 1)}) + "\n")
        try:
            yield
        finally:
            with self._held() as held:
                held.pop(key, None)


@pytest.fixture(scope="session")
def memory_claim() -> Callable[..., contextlib.AbstractContextManager]:
    """``with memory_claim(kind, what, jobs=1):`` around ``jobs`` trainer jobs of one ``kind`` (a key of
    :data:`JOB_GB`) that run at once."""
    budget = MemoryBudget.for_this_machine(run_dir() / "memory")
    return lambda kind, what, jobs=1: budget.claim(jobs * JOB_GB[kind], what)


# ------------------------------------------------------------------------------------- the split
TESTS_DIR = Path(__file__).resolve().parent


def group_of(name: str) -> str:
    """The group of a test file named relative to ``tests/`` (``e2e/test_x.py``): the file, or the file whose
    session fixture it shares."""
    return SHARED_GROUPS.get(name, name)


def _rank(item: pytest.Item) -> int:
    group = group_of(item.path.resolve().relative_to(TESTS_DIR).as_posix())
    return LONGEST_FIRST.index(group) if group in LONGEST_FIRST else len(LONGEST_FIRST)


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    items.sort(key=_rank)  # stable: the order within a file, and of the other files, is kept


def pytest_xdist_make_scheduler(config: pytest.Config, log):
    """``--dist loadfile`` (``make test``) with :data:`SHARED_GROUPS`: each group goes whole to one worker, in the
    collection's order (with ``--no-loadscope-reorder``). pytest-xdist 3.8's own ``loadgroup`` has no effect under
    pytest 9: it writes the ``xdist_group`` mark into ``item._nodeid``, which pytest 9's ``nodeid`` no longer reads."""
    if config.getvalue("dist") != "loadfile":
        return None
    from xdist.scheduler import LoadFileScheduling

    class FileGroupScheduling(LoadFileScheduling):
        def _split_scope(self, nodeid: str) -> str:
            # node ids are relative to the rootdir, the repository: tests/e2e/test_x.py::test_y
            return group_of(nodeid.split("::", 1)[0].removeprefix("tests/"))

    return FileGroupScheduling(config, log)


# ------------------------------------------------------------------------------------- the end
def leftovers() -> list[str]:
    """What the tests left running in this process: non-daemon threads other than main, an initialised Ray."""
    found = [
        f"thread {t.name!r} ({type(t).__module__})"
        for t in threading.enumerate()
        if t is not threading.main_thread() and not t.daemon and t.is_alive()
    ]
    ray = sys.modules.get("ray")
    if ray is not None and getattr(ray, "is_initialized", lambda: False)():
        found.append("an initialised Ray (ray.shutdown() was not called)")
    return found


@pytest.fixture(scope="session", autouse=True)
def _shut_down_the_main_event_loop():
    """verl's reward workers run on the main thread's event loop (``verl.utils.ray_utils.get_event_loop``) and hand
    scoring to its default executor; at the end of the session that executor's threads are joined and the loop
    closed, so that no thread outlives the tests."""
    yield
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        loop = asyncio.get_event_loop_policy().get_event_loop()
    if not loop.is_closed() and not loop.is_running():
        loop.run_until_complete(loop.shutdown_default_executor())
        loop.close()


#: the run's background processes (``<name>.pid`` in the run's folder), ended with the session that made the folder
BACKGROUND_PIDS = "*.pid"


def _end_background(folder: Path) -> None:
    from mapo_verl.supervise import end_tree_of_pid_file

    for pid_file in folder.glob(BACKGROUND_PIDS):
        end_tree_of_pid_file(pid_file)


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    left = leftovers()
    if left:
        print(f"\n[mapo-verl] left running by the tests: {'; '.join(left)}", file=sys.stderr)
    owned = session.config.stash.get(_OWNS_RUN_DIR, None)
    if owned is not None:  # the controller (or the only process), after every worker ended
        _end_background(owned)


def pytest_terminal_summary(terminalreporter, exitstatus: int, config: pytest.Config) -> None:
    owned = config.stash.get(_OWNS_RUN_DIR, None)
    waits_log = owned / "memory" / "waits.jsonl" if owned else None
    if waits_log is None or not waits_log.is_file():
        return
    waits = [json.loads(line) for line in waits_log.read_text().splitlines()]
    waited = [w for w in waits if w["waited_s"] >= 1]
    total = sum(w["waited_s"] for w in waited)
    terminalreporter.write_line(
        f"[mapo-verl] memory budget: {len(waits)} trainer jobs, {len(waited)} waited for memory ({total:.0f} s in all)"
    )


@pytest.hookimpl(trylast=True)
def pytest_unconfigure(config: pytest.Config) -> None:
    owned = config.stash.get(_OWNS_RUN_DIR, None)
    if owned is not None:
        shutil.rmtree(owned, ignore_errors=True)
