"""The test runner exits normally: an atexit handler registered by a pytest plug-in runs after the session."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]

PLUGIN = """
import atexit, os

def pytest_configure(config):
    atexit.register(lambda: open(os.environ["ATEXIT_MARK"], "w").write("ran"))
"""


def _run_pytest(tmp_path: Path, **env: str) -> tuple[subprocess.CompletedProcess, Path]:
    (tmp_path / "atexit_plugin.py").write_text(PLUGIN)
    mark = tmp_path / "atexit.txt"
    environ = dict(os.environ)
    environ.update(PYTHONPATH=str(tmp_path), ATEXIT_MARK=str(mark), **env)
    proc = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "atexit_plugin", "tests/dev/test_pytest_exit.py::test_trivial"],
        cwd=REPO,
        env=environ,
        capture_output=True,
        text=True,
        timeout=300,
    )
    return proc, mark


def test_trivial():
    assert True


@pytest.mark.slow
def test_atexit_handlers_of_a_plugin_run_by_default(tmp_path):
    proc, mark = _run_pytest(tmp_path)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert mark.read_text() == "ran"
