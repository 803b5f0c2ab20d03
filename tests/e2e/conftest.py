"""Fixtures of the CPU-backend tests: the tiny model and the smoke runs, built once per session and shared."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import pytest

from mapo_verl.verl_log import read_records, training_steps

REPO = Path(__file__).resolve().parents[2]
SMOKE_TIMEOUT_S = 900


@dataclass
class SmokeRun:
    """One ``python -m mapo_verl smoke`` subprocess: its folder, console output and verl's file-logger records."""

    out: Path
    returncode: int
    console: str
    records: list[tuple[int, dict]]

    def training_steps(self) -> dict[int, dict]:
        """step -> metrics of the training steps (records with ``actor/pg_loss``)."""
        return training_steps(self.records)


def run_smoke(out: Path, cache_dir: Path, *args: str) -> SmokeRun:
    """Run the smoke command as a user would; the JSONL is read before any later run replaces it."""
    env = {**os.environ, "RAY_AUTH_MODE": "disabled"}
    env.pop("RAY_ADDRESS", None)
    cmd = [sys.executable, "-m", "mapo_verl", "smoke", "--out", str(out), "--cache-dir", str(cache_dir), *args]
    proc = subprocess.run(cmd, cwd=REPO, env=env, capture_output=True, text=True, timeout=SMOKE_TIMEOUT_S, check=False)
    records = read_records(out / "metrics.jsonl")
    console = proc.stdout + proc.stderr
    if proc.returncode != 0:
        log = out / "main_ppo.log"
        tail = "\n".join(log.read_text().splitlines()[-60:]) if log.is_file() else ""
        pytest.fail(f"smoke run failed ({proc.returncode}):\n{console[-4000:]}\n--- main_ppo.log tail ---\n{tail}")
    return SmokeRun(out=out, returncode=proc.returncode, console=console, records=records)


@pytest.fixture(scope="session")
def model_cache(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("mapo_verl_cache")


@pytest.fixture(scope="session")
def smoke_mapo(tmp_path_factory, model_cache) -> SmokeRun:
    """MAPO from scratch: validation, 2 training steps, a checkpoint at step 2 (verl's layout)."""
    return run_smoke(tmp_path_factory.mktemp("smoke") / "run", model_cache, "--steps", "2")


@pytest.fixture(scope="session")
def smoke_resumed_grpo(smoke_mapo, model_cache) -> SmokeRun:
    """The same folder, 3 steps, ``trainer.resume_mode=auto`` and the GRPO estimator: verl resumes from step 2 and
    trains step 3 with the baseline estimator (one job for both checks keeps the e2e tier near 4 minutes)."""
    return run_smoke(
        smoke_mapo.out,
        model_cache,
        "--steps",
        "3",
        "--estimator",
        "grpo",
        "trainer.resume_mode=auto",
        "trainer.val_before_train=False",
    )


@pytest.fixture(scope="session")
def tiny_model_dir(model_cache) -> Path:
    """The tiny model without warm start (random weights), for the processor tests."""
    from mapo_verl.runs.tiny_model import build_tiny_model

    return build_tiny_model(model_cache)


@pytest.fixture(scope="session")
def sample_images() -> Callable[[], list]:
    """Images of several sizes: a real Geometry3K diagram where ../shared is present, plus synthetic ones."""

    def make() -> list:
        import numpy as np
        from PIL import Image

        rng = np.random.default_rng(0)
        images = [
            Image.fromarray(rng.integers(0, 256, (h, w, 3), dtype=np.uint8))
            for h, w in ((100, 120), (56, 300), (251, 250))
        ]
        real = REPO.parent / "shared" / "realdata" / "geo3k" / "11" / "img_diagram.png"
        if real.is_file():
            images.append(Image.open(real).convert("RGB"))
        return images

    return make
