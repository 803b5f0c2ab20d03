"""The datasets a training config reads, from the config as ``main_ppo`` composes it (not from its name).

    python -m data_prep.datasets_needed --config-path DIR --config-name NAME [overrides...]

prints one line per parquet file in ``data.train_files`` and ``data.val_files``:
``NAME<TAB>FOLDER<TAB>FILE<TAB>OPTIONS``, where ``FOLDER`` is the file's folder, ``NAME`` its preparer (the folder's
name, by the data convention ``$MAPO_DATA_DIR/NAME/{train,test}.parquet``; a folder ``NAME_paper`` is written by
``data_prep.NAME --prompt-style paper``, the MAPO authors' prompts; ``-`` when no preparer writes it) and
``OPTIONS`` the preparer's extra options. ``scripts/train.sh`` prepares the folders whose files are missing.
"""

from __future__ import annotations

import argparse
import os
import sys
from typing import Any

from mapo_verl.compose import compose
from mapo_verl.data_sources import preparer_of


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


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m data_prep.datasets_needed", description=__doc__.split("\n")[0])
    parser.add_argument("--config-path", required=True, help="folder of the config (absolute, as for main_ppo)")
    parser.add_argument("--config-name", required=True)
    parser.add_argument("overrides", nargs="*", help="Hydra overrides, as given to main_ppo")
    args = parser.parse_args(argv)
    try:
        cfg = compose(args.config_path, args.config_name, args.overrides)
        files = data_files(cfg)
    except Exception as exc:  # ComposeError, or an omegaconf error for an unresolvable ${oc.env:...}
        print(f"error: {exc}", file=sys.stderr)
        return 1
    for path in files:
        name, options = preparer_of(path)
        print(f"{name}\t{os.path.dirname(path)}\t{path}\t{options}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
