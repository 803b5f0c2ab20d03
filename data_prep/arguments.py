"""The command line every preparer shares: arguments, the data-folder convention, running and the summary.

Data convention (roots: :func:`mapo_verl.data_sources.default_data_dir` and ``default_source_dir``): a preparer
writes to ``$MAPO_DATA_DIR/NAME``, the folder the training configs read (``NAME/{train,test}.parquet``); the
hand-downloaded sets (EmoSet, WEBEmo, Emotion6) are read from ``$MAPO_SOURCE_DIR/NAME`` unless
``--local-dataset-path`` names another place.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Callable
from pathlib import Path

from data_prep.images import DEFAULT_MAX_PIXELS
from data_prep.writer import DEFAULT_CHUNK_MB, DEFAULT_CHUNK_ROWS, PrepError, Summary
from mapo_verl.data_sources import DATA_DIR_DEFAULT, default_data_dir


def base_parser(name: str, doc: str) -> argparse.ArgumentParser:
    """The arguments every preparer takes; ``doc`` (the module docstring) is the help text."""
    parser = argparse.ArgumentParser(
        prog=f"python -m data_prep.{name}", description=doc, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.set_defaults(dataset_name=name, prompt_style="ours")
    parser.add_argument(
        "--local-save-dir",
        default=None,
        help=f"output folder (default $MAPO_DATA_DIR/{name}, or {name}_paper with --prompt-style paper; "
        f"MAPO_DATA_DIR defaulting to {DATA_DIR_DEFAULT})",
    )
    parser.add_argument("--local-dataset-path", default=None, help="local source (layout: see the module doc)")
    parser.add_argument("--max-pixels", type=int, default=DEFAULT_MAX_PIXELS, help="downscale larger images")
    parser.add_argument("--skip-bad", action="store_true", help="skip and count unusable records instead of stopping")
    parser.add_argument("--chunk-rows", type=int, default=DEFAULT_CHUNK_ROWS, help="most rows per parquet row group")
    parser.add_argument(
        "--chunk-mb", type=float, default=DEFAULT_CHUNK_MB, help="most megabytes of rows per parquet row group"
    )
    parser.add_argument("--seed", type=int, default=42, help="seed for stratified subsets")
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")
    return parser


def add_prompt_style(parser: argparse.ArgumentParser) -> None:
    """``--prompt-style {ours,paper}`` for the evaluation preparers (``paper``: :mod:`data_prep.paper_prompts`)."""
    parser.add_argument(
        "--prompt-style",
        choices=("ours", "paper"),
        default="ours",
        help="ours (default) or paper: the MAPO authors' prompts, answers and splits (data_prep/paper_prompts.py); "
        "default output $MAPO_DATA_DIR/NAME_paper",
    )


def parse_size(value: str) -> int | None:
    """A subset size: a positive integer, or ``all`` (``None``)."""
    if value.strip().lower() == "all":
        return None
    try:
        size = int(value)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a positive integer or 'all', got {value!r}") from None
    if size <= 0:
        raise argparse.ArgumentTypeError(f"expected a positive integer or 'all', got {value!r}")
    return size


def run_main(body: Callable[[argparse.Namespace], Summary], parser: argparse.ArgumentParser, argv=None) -> int:
    """Parse ``argv``, run ``body``, print the summary; a :class:`PrepError` becomes exit status 1."""
    args = parser.parse_args(argv)
    if args.max_pixels <= 0 or args.chunk_rows <= 0 or args.chunk_mb <= 0:
        parser.error("--max-pixels, --chunk-rows and --chunk-mb must be positive")
    try:
        summary = body(args)
    except PrepError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    print(summary.render())
    return 0


def out_dir_of(args: argparse.Namespace) -> Path:
    """``--local-save-dir``, else ``$MAPO_DATA_DIR/NAME`` (``NAME_paper`` for the authors' prompts)."""
    if args.local_save_dir:
        return Path(os.path.expanduser(args.local_save_dir))
    suffix = "_paper" if getattr(args, "prompt_style", "ours") == "paper" else ""
    return default_data_dir() / f"{args.dataset_name}{suffix}"
