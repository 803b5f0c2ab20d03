"""The data a shipped config reads, built locally in each set's public layout and prepared by our preparers.

The config is composed as ``main_ppo`` composes it, with ``mapo_data_dir`` set to ``OUT/data``, and every file of
its ``data.train_files`` and ``data.val_files`` is written by the preparer the data convention names
(:func:`mapo_verl.data_sources.preparer_of`: ``geo3k``, ``emoset_paper`` = ``data_prep.emoset --prompt-style
paper``, ...) from a small source in that set's public layout (:mod:`mapo_verl.runs.public_layouts`; Geometry3K:
:mod:`mapo_verl.runs.smoke_data`). The run then reads exactly those paths, and the tiny model is warm-started on
the training rows.
"""

from __future__ import annotations

import contextlib
import importlib
import io
import shutil
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from mapo_verl.data_sources import preparer_of
from mapo_verl.runs.public_layouts import write_source
from mapo_verl.runs.spec import CONFIG_DIR

#: options beyond the convention's for our small sources: every record of a split (EmoSet's default is 2000)
EXTRA_OPTIONS = {"emoset": ("--train-size", "all", "--test-size", "all")}


@dataclass(frozen=True)
class ConfigData:
    """What a config reads, prepared: the root (``mapo_data_dir``), its train and validation files, the sources."""

    root: Path
    train_file: Path
    val_files: tuple[Path, ...]
    source: str

    @property
    def data_dir(self) -> Path:
        """The folder of the training file."""
        return self.train_file.parent

    def overrides(self) -> list[str]:
        """``data.train_files`` / ``data.val_files`` as the composed config names them under :attr:`root`."""
        return [f"data.train_files={self.train_file}", f"data.val_files=[{','.join(map(str, self.val_files))}]"]

    def examples(self) -> list:
        """The prepared training rows as the tiny model's warm-start examples."""
        from mapo_verl.runs.smoke_data import warm_start_examples

        return warm_start_examples(self.train_file)


def config_files(config_name: str, root: Path, config_dir: Path = CONFIG_DIR) -> tuple[Path, list[Path]]:
    """The config's training file and validation files, composed as ``main_ppo`` does with ``mapo_data_dir=root``."""
    from omegaconf import OmegaConf

    from data_prep.datasets_needed import data_files
    from mapo_verl.compose import compose

    cfg = compose(str(config_dir), config_name, [f"mapo_data_dir={root}"])
    train = OmegaConf.to_container(cfg.data, resolve=True)["train_files"]
    train_files = [train] if isinstance(train, str) else list(train)
    if len(train_files) != 1:
        raise ValueError(f"{config_name}: expected one data.train_files entry, got {train_files}")
    train_file = Path(train_files[0])
    val_files = [Path(f) for f in data_files(cfg) if Path(f) != train_file]
    return train_file, val_files


def run_preparer(name: str, argv: Sequence[str]) -> None:
    """``python -m data_prep.NAME ARGV`` in this process (the preparer's own ``main``); its output on failure."""
    module = importlib.import_module(f"data_prep.{name}")
    buffer = io.StringIO()
    with contextlib.redirect_stdout(buffer), contextlib.redirect_stderr(buffer):
        status = module.main([*argv, "--no-progress"])
    if status != 0:
        raise RuntimeError(f"data_prep.{name} {' '.join(argv)} failed ({status}):\n{buffer.getvalue()}")


def prepare_config_data(
    config_name: str, out: Path, geo3k_kind: str = "auto", config_dir: Path = CONFIG_DIR
) -> ConfigData:
    """Build and prepare every file ``config_name`` reads under ``OUT/data``; sources under ``OUT/data/sources``.

    ``geo3k_kind``: the Geometry3K problems (:func:`mapo_verl.runs.smoke_data.prepare_data`: ``auto``, ``real``,
    ``generated``).
    """
    from mapo_verl.runs.smoke_data import prepare_data

    root = out / "data"
    train_file, val_files = config_files(config_name, root, config_dir)
    sources: dict[str, Path] = {}
    prepared: set[Path] = set()
    described: list[str] = []
    for path in dict.fromkeys([train_file, *val_files]):
        folder = path.parent
        name, options = preparer_of(str(path))
        if name == "-":
            raise ValueError(f"{config_name} reads {path}, which no data_prep preparer writes")
        if name not in sources and name == "geo3k":
            folder_written, text = prepare_data(out, geo3k_kind)  # OUT/data/geo3k from OUT/data/geo3k_hub_copy
            sources[name], described = out / "data" / "geo3k_hub_copy", [*described, text]
            prepared.add(folder_written)
        elif name not in sources:
            shutil.rmtree(root / "sources" / name, ignore_errors=True)
            sources[name] = write_source(name, root / "sources" / name)
            described.append(f"{name}: generated records in its public layout")
        if folder not in prepared:
            argv = ["--local-dataset-path", str(sources[name]), "--local-save-dir", str(folder), *options.split()]
            run_preparer(name, [*argv, *EXTRA_OPTIONS.get(name, ())])
            prepared.add(folder)
        if not path.is_file():
            raise RuntimeError(f"data_prep.{name} wrote no {path}")
    return ConfigData(root=root, train_file=train_file, val_files=tuple(val_files), source="; ".join(described))
