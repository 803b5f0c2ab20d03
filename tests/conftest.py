"""Suite-wide hooks.

pytest exits normally: atexit handlers (coverage, profilers, a caller's ``pytest.main()``) run as usual. At the
end of the session the suite reports what the tests left running in this process (threads that are not daemons,
an initialised Ray), the usual cause of a crash in interpreter teardown.

One workaround remains, opted into by ``.ci/run`` alone: with ``MAPO_PYTEST_HARD_EXIT=1`` the process ends right
after pytest's report, with pytest's exit status, skipping the interpreter's teardown. In one of five fresh-clone
CI runs (28 Nov 2026) the pytest process died with SIGSEGV after its summary line (618 passed) while native
libraries were being finalised; it has not been reproduced since (docs/development.md, "Test runner exit").
"""

from __future__ import annotations

import asyncio
import os
import sys
import threading
import warnings

import pytest

_EXIT_STATUS = "_mapo_exit_status"


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


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    setattr(session.config, _EXIT_STATUS, int(exitstatus))
    left = leftovers()
    if left:
        print(f"\n[mapo-verl] left running by the tests: {'; '.join(left)}", file=sys.stderr)


@pytest.hookimpl(trylast=True)
def pytest_unconfigure(config: pytest.Config) -> None:
    status = getattr(config, _EXIT_STATUS, None)
    if status is None or os.environ.get("MAPO_PYTEST_HARD_EXIT") != "1":
        return
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(status)
