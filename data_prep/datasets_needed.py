"""The data a training config reads, from the config as ``main_ppo`` composes it (not from its name).

    python -m data_prep.datasets_needed --config-path DIR --config-name NAME [overrides...]
    python -m data_prep.datasets_needed --prepare --config-path DIR --config-name NAME [overrides...]

The first prints one line per parquet file in ``data.train_files`` and ``data.val_files``:
``NAME<TAB>FOLDER<TAB>FILE<TAB>OPTIONS``, where ``FOLDER`` is the file's folder, ``NAME`` its preparer (the folder's
name, by the data convention ``$MAPO_DATA_DIR/NAME/{train,test}.parquet``; a folder ``NAME_paper`` is written by
``data_prep.NAME --prompt-style paper``, the MAPO authors' prompts; ``-`` when no preparer writes it) and
``OPTIONS`` the preparer's extra options. ``--prepare`` runs ``python -m data_prep.NAME --local-save-dir FOLDER
OPTIONS`` once for each folder with a missing file (``scripts/train.sh`` does this before training).
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
from dataclasses import dataclass
from typing import Any

from mapo_verl.compose import compose
from mapo_verl.data_sources import preparer_of


@dataclass(frozen=True)
class Needed:
    """One folder a config reads: the preparer that writes it (``-``: none), its options and the files read there."""

    name: str
    folder: str
    options: str
    files: tuple[str, ...]

    def missing(self) -> list[str]:
        return [f for f in self.files if not os.path.isfile(f)]

    def command(self, python: str = sys.executable) -> list[str]:
        """``python -m data_prep.NAME --local-save-dir FOLDER OPTIONS``."""
        return [python, "-m", f"data_prep.{self.name}", "--local-save-dir", self.folder, *self.options.split()]


def data_files(cfg: Any) -> list[str]:
    """``data.train_files`` then ``data.val_files`` of a composed config, resolved, in order, without repeats."""
    from omegaconf import OmegaConf

    files: list[str] = []
    for key in ("data.train_files", "data.val_files"):
        value = OmegaConf.select(cfg, key, default=None)
        if value is None:
            continue
        value = OmegaConf.to_container(value, resolve=True) if not isinstance(value, str) else value
        files.extend([value] if isinstance(value, str) else [str(v) for v in value])
    return list(dict.fromkeys(os.path.expanduser(f) for f in files))


def needed(cfg: Any) -> list[Needed]:
    """The folders a composed config reads, in the order of its files, each with its preparer and files."""
    folders: dict[str, list[str]] = {}
    for path in data_files(cfg):
        folders.setdefault(os.path.dirname(path), []).append(path)
    found = []
    for folder, files in folders.items():
        name, options = preparer_of(files[0])  # the folder's name decides
        found.append(Needed(name, folder, options, tuple(files)))
    return found


def prepare_missing(folders: list[Needed]) -> int:
    """Run the preparer of every folder with a missing file (its output on this console); 0, or 1 on the first
    folder that no preparer writes or whose preparer fails (a line on stderr names it)."""
    for item in folders:
        missing = item.missing()
        if not missing:
            continue
        if item.name == "-":
            print(f"error: {missing[0]} does not exist and no data_prep module writes {item.folder}/ (name it after "
                  "a preparer)", file=sys.stderr)  # fmt: skip
            return 1
        print(f"preparing {item.name} {f'({item.options}) ' if item.options else ''}-> {item.folder} "
              f"(for {missing[0]})", flush=True)  # fmt: skip
        if subprocess.run(item.command(), check=False).returncode != 0:
            print(f"error: preparing {item.name} failed (see above)", file=sys.stderr)
            return 1
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m data_prep.datasets_needed", description=__doc__.split("\n")[0])
    parser.add_argument("--config-path", required=True, help="folder of the config (absolute, as for main_ppo)")
    parser.add_argument("--config-name", required=True)
    parser.add_argument("--prepare", action="store_true", help="prepare every folder with a missing file")
    parser.add_argument("overrides", nargs="*", help="Hydra overrides, as given to main_ppo")
    args = parser.parse_args(argv)
    try:
        folders = needed(compose(args.config_path, args.config_name, args.overrides))
    except Exception as exc:  # ComposeError, or an omegaconf error for an unresolvable ${oc.env:...}
        print(f"error: cannot compose {args.config_name} to find its data files: {exc}", file=sys.stderr)
        return 1
    if args.prepare:
        return prepare_missing(folders)
    for item in folders:
        for path in item.files:
            print(f"{item.name}\t{item.folder}\t{path}\t{item.options}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
