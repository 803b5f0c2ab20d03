"""Suite-wide hooks.

The run ends its own process once pytest has reported, with pytest's exit status, skipping the interpreter's
teardown: in one of five fresh-clone `.ci/run`s (28 Nov 2026) the pytest process died with SIGSEGV after its
summary line (618 passed), while native libraries (Ray's core worker, gloo, tokenizers, pyarrow thread pools)
were being finalised, and `make test` failed with every test green. Results and the exit status are unchanged;
set ``MAPO_PYTEST_NORMAL_EXIT=1`` to get the ordinary teardown (to chase such a crash with ``-X faulthandler``).
"""

from __future__ import annotations

import os
import sys

import pytest

_EXIT_STATUS = "_mapo_exit_status"


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    setattr(session.config, _EXIT_STATUS, int(exitstatus))


@pytest.hookimpl(trylast=True)
def pytest_unconfigure(config: pytest.Config) -> None:
    status = getattr(config, _EXIT_STATUS, None)
    if status is None or os.environ.get("MAPO_PYTEST_NORMAL_EXIT") == "1":
        return
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(status)
