"""The command line every preparer shares: arguments, the data-folder convention, running and the summary.

Data convention (roots: :func:`mapo_verl.data_sources.default_data_dir` and ``default_source_dir``): a preparer
writes to ``$MAPO_DATA_DIR/NAME``, the folder the training configs read (``NAME/{train,test}.parquet``); the
hand-downloaded sets (EmoSet, WEBEmo, Emotion6) are read from ``$MAPO_SOURCE_DIR/NAME`` unless
``--local-dataset-path`` names another place.
"""

from __future__ import annotations

import argparse
import math
import os
import sys
from collections.abc import Callable
from pathlib import Path

from data_prep.images import DEFAULT_MAX_IMAGE_PIXELS, DEFAULT_MAX_PIXELS
from data_prep.writer import DEFAULT_CHUNK_MB, DEFAULT_CHUNK_ROWS, PrepError, Summary
from mapo_verl.atomic_io import unwritable_dir
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
    parser.add_argument(
        "--max-image-pixels",
        type=int,
        default=DEFAULT_MAX_IMAGE_PIXELS,
        help=f"refuse to decode larger images as oversize (default {DEFAULT_MAX_IMAGE_PIXELS}, PIL's bomb limit)",
    )
    parser.add_argument(
        "--allow-outside-images",
        action="store_true",
        help="follow image paths in source records that lead outside the dataset's folder (absolute, ../, links)",
    )
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


def argument_problem(args: argparse.Namespace) -> str | None:
    """What is wrong with the shared arguments (checked before any work), or ``None``."""
    for flag in ("max_pixels", "max_image_pixels", "chunk_rows", "chunk_mb"):
        value = getattr(args, flag, 1)
        if not (math.isfinite(value) and value > 0):
            return f"--{flag.replace('_', '-')} must be a positive finite number, got {value}"
    problem = unwritable_dir(out_dir_of(args))
    if problem:
        return f"--local-save-dir: {problem}"
    return None


def run_main(body: Callable[[argparse.Namespace], Summary], parser: argparse.ArgumentParser, argv=None) -> int:
    """Parse ``argv``, check it, run ``body``, print the summary.

    Bad arguments give exit status 2, a :class:`PrepError` (or a file that cannot be read or written) 1, each as one
    ``error:`` line.
    """
    args = parser.parse_args(argv)
    problem = argument_problem(args)
    if problem:
        print(f"error: {problem}", file=sys.stderr)
        return 2
    try:
        summary = body(args)
    except PrepError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    except (OSError, UnicodeDecodeError) as exc:  # a source file that cannot be read, a full disk
        print(f"error: {args.dataset_name}: {exc}", file=sys.stderr)
        return 1
    print(summary.render())
    return 0


def out_dir_of(args: argparse.Namespace) -> Path:
    """``--local-save-dir``, else ``$MAPO_DATA_DIR/NAME`` (``NAME_paper`` for the authors' prompts)."""
    if args.local_save_dir:
        return Path(os.path.expanduser(args.local_save_dir))
    suffix = "_paper" if getattr(args, "prompt_style", "ours") == "paper" else ""
    return default_data_dir() / f"{args.dataset_name}{suffix}"
