"""The GPU recipe's fresh-venv install starts in the background as soon as the session's tests are collected.

It spends its minutes downloading and unpacking wheels, so it overlaps the CPU-bound tests that run before
``test_the_gpu_recipe_installs_in_a_fresh_venv``, which then waits for it and checks the result. When that test is
not selected, nothing starts. The venv's folder is removed at the end of the session.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
SCRIPT = REPO / "scripts" / "install_gpu.sh"
GPU_RECIPE_TEST = "test_the_gpu_recipe_installs_in_a_fresh_venv"
#: the install's time limit, from its start
INSTALL_TIMEOUT_S = 1500


@dataclass
class BackgroundInstall:
    """``scripts/install_gpu.sh VENV`` with the GPU settings, running in the background."""

    root: Path
    proc: subprocess.Popen
    log: Path
    started: float

    @property
    def venv(self) -> Path:
        return self.root / "venv"

    def wait(self) -> tuple[int, str]:
        """Its exit status and output (124 when it ran past INSTALL_TIMEOUT_S)."""
        try:
            self.proc.wait(timeout=max(1.0, INSTALL_TIMEOUT_S - (time.monotonic() - self.started)))
            code = self.proc.returncode
        except subprocess.TimeoutExpired:
            self.stop()
            code = 124
        return code, self.log.read_text(errors="replace")

    def stop(self) -> None:
        if self.proc.poll() is None:
            from mapo_verl.runs.supervise import end_tree, process_tree

            end_tree(process_tree(self.proc.pid))
            self.proc.wait()


_INSTALL = pytest.StashKey[BackgroundInstall]()


def start_install() -> BackgroundInstall:
    root = Path(tempfile.mkdtemp(prefix="mapo-gpu-recipe-"))
    env = {**os.environ, "FLASH_ATTENTION_SKIP_CUDA_BUILD": "TRUE", "MAPO_VLLM": "vllm", "PYTHON": sys.executable}
    log = root / "install.log"
    with log.open("w") as out:
        proc = subprocess.Popen(
            ["bash", str(SCRIPT), str(root / "venv")], cwd=REPO, env=env, stdout=out, stderr=subprocess.STDOUT
        )
    return BackgroundInstall(root, proc, log, time.monotonic())


def pytest_collection_finish(session: pytest.Session) -> None:
    if session.config.option.collectonly:
        return
    if any(item.name == GPU_RECIPE_TEST for item in session.items):
        session.config.stash[_INSTALL] = start_install()


def pytest_sessionfinish(session: pytest.Session) -> None:
    install = session.config.stash.get(_INSTALL, None)
    if install is not None:
        install.stop()
        shutil.rmtree(install.root, ignore_errors=True)


@pytest.fixture(scope="session")
def gpu_recipe_install(request) -> BackgroundInstall:
    """The background install of this session (started now if collection did not start it)."""
    install = request.config.stash.get(_INSTALL, None)
    if install is None:
        install = request.config.stash[_INSTALL] = start_install()
    return install
