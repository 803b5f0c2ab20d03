"""The GPU recipe's fresh-venv install starts in the background as soon as the session's tests are collected.

It spends its minutes downloading and unpacking wheels, so it overlaps the CPU-bound tests that run before
``test_the_gpu_recipe_installs_in_a_fresh_venv``, which then waits for it and checks the result. When that test is
not selected, nothing starts.

Under pytest-xdist every worker collects the test but only one runs it, on either worker: the first process to
claim ``gpu-recipe/`` in the run's shared folder (tests/conftest.py) starts the install there, detached, and the
test, wherever it runs, reads its exit status from ``gpu-recipe/rc``. The session that made the shared folder ends
the install if it still runs (its pid is ``gpu-recipe.pid``) and removes the folder.
"""

from __future__ import annotations

import os
import shlex
import subprocess
import sys
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
    """``scripts/install_gpu.sh VENV`` with the GPU settings, running detached in ``root``: its output goes to
    ``install.log``, its exit status to ``rc`` when it ends, its start time (epoch seconds) to ``started``."""

    root: Path

    @property
    def venv(self) -> Path:
        return self.root / "venv"

    @property
    def pid_file(self) -> Path:
        return self.root.with_suffix(".pid")  # beside root: the run's background processes (tests/conftest.py)

    def start(self) -> bool:
        """Start the install unless another process of this run already did; True when this call started it."""
        try:
            self.root.mkdir()
        except FileExistsError:
            return False
        env = {**os.environ, "FLASH_ATTENTION_SKIP_CUDA_BUILD": "TRUE", "MAPO_VLLM": "vllm", "PYTHON": sys.executable}
        (self.root / "started").write_text(str(time.time()))
        q = {name: shlex.quote(str(path)) for name, path in (("script", SCRIPT), ("venv", self.venv),
             ("log", self.root / "install.log"), ("rc", self.root / "rc"), ("pid", self.pid_file))}  # fmt: skip
        # the exit status is written atomically (rc.tmp, then mv) and the pid file removed once it ended
        line = (f"bash {q['script']} {q['venv']} > {q['log']} 2>&1; echo $? > {q['rc']}.tmp; "
                f"mv {q['rc']}.tmp {q['rc']}; rm -f {q['pid']}")  # fmt: skip
        quiet = subprocess.DEVNULL
        proc = subprocess.Popen(["bash", "-c", line], cwd=REPO, env=env, start_new_session=True,
                                stdin=quiet, stdout=quiet, stderr=quiet)  # fmt: skip
        self.pid_file.write_text(str(proc.pid))
        return True

    def wait(self) -> tuple[int, str]:
        """Its exit status and output (124 when it ran past INSTALL_TIMEOUT_S, and it is then ended)."""
        started = float((self.root / "started").read_text())
        rc = self.root / "rc"
        while not rc.is_file() and time.time() - started < INSTALL_TIMEOUT_S:
            time.sleep(1.0)
        if rc.is_file():
            code = int(rc.read_text())
        else:
            self.stop()
            code = 124
        return code, (self.root / "install.log").read_text(errors="replace")

    def stop(self) -> None:
        from mapo_verl.supervise import end_tree_of_pid_file

        end_tree_of_pid_file(self.pid_file)


def _install() -> BackgroundInstall:
    return BackgroundInstall(Path(os.environ["MAPO_TEST_RUN_DIR"]) / "gpu-recipe")


def pytest_collection_finish(session: pytest.Session) -> None:
    if session.config.option.collectonly:
        return
    if any(item.name == GPU_RECIPE_TEST for item in session.items):
        _install().start()


@pytest.fixture(scope="session")
def gpu_recipe_install(test_run_dir: Path) -> BackgroundInstall:
    """The background install of this run (started now if collection did not start it)."""
    install = _install()
    install.start()
    return install
