"""The mapo-verl checkout this harness runs from: its root, the shipped configs and the shared reference records.

The CPU harness drives the shipped ``trainer_configs/`` and ``scripts/`` of a checkout (it is installed editable
from ``cpu/`` by ``make venv``); the product ``mapo-verl`` never needs a checkout. The shared reference records
(``realdata/``) sit beside the checkout in ``../shared`` (CI lays them there); ``MAPO_SHARED_DIR`` points
elsewhere, and a folder that does not exist hides them (``MAPO_SHARED_DIR=/nonexistent``: what a newcomer's clone
sees).
"""

from __future__ import annotations

import os
from pathlib import Path


class NotACheckout(RuntimeError):
    """The harness is not installed from a mapo-verl checkout (no ``trainer_configs/`` above it)."""


def _find_root(start: Path) -> Path:
    for folder in start.parents:
        if (folder / "trainer_configs").is_dir() and (folder / "scripts").is_dir() and (folder / "cpu").is_dir():
            return folder
    raise NotACheckout(
        f"{start}: mapo-verl-cpu runs from a checkout of mapo-verl (trainer_configs/, scripts/ and cpu/ above it); "
        "install it with `pip install -e cpu/` from the clone"
    )


#: the checkout's root (the folder holding ``trainer_configs/``, ``scripts/``, ``cpu/``)
REPO_ROOT = _find_root(Path(__file__).resolve())
#: the shipped Hydra configs
CONFIG_DIR = REPO_ROOT / "trainer_configs"
#: the shipped launchers
SCRIPTS_DIR = REPO_ROOT / "scripts"
#: the config ``make smoke`` runs
DEFAULT_CONFIG = "mapo_geo3k_qwen2_5_vl_7b"


def shared_dir() -> Path:
    """The shared reference material: ``$MAPO_SHARED_DIR``, else ``../shared`` beside the checkout."""
    configured = os.environ.get("MAPO_SHARED_DIR")
    return Path(configured).expanduser() if configured else REPO_ROOT.parent / "shared"


def realdata_dir() -> Path:
    """The verbatim public records (``shared/realdata``); may not exist (tests skip with a reason then)."""
    return shared_dir() / "realdata"
