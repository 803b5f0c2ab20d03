"""Geometry3K (``hiyouga/geometry3k``) -> ``OUT/{train,validation,test}.parquet``.

Source: the hub dataset, or ``--local-dataset-path SRC``, a local copy in the hub's layout (what
``datasets.load_dataset(SRC)`` reads, e.g. ``huggingface-cli download hiyouga/geometry3k --repo-type dataset
--local-dir SRC``). Columns: ``images`` (list of images), ``problem`` (already holds ``<image>``), ``answer``.
"""

from __future__ import annotations

import argparse
import sys

from data_prep.common import (
    BadRecord,
    Summary,
    base_dir_of,
    base_parser,
    load_hub_split,
    make_row,
    math_prompt,
    normalize_image,
    out_dir_of,
    require_text,
    run_main,
    write_split,
)

HUB_ID = "hiyouga/geometry3k"
SPLITS = ("train", "validation", "test")


def prepare(args: argparse.Namespace) -> Summary:
    summary = Summary("geo3k", out_dir_of(args))
    base_dir = base_dir_of(args.local_dataset_path)
    for split in SPLITS:
        ds = load_hub_split(HUB_ID, args.local_dataset_path, split)

        def convert(i: int, rec: dict, split: str = split) -> dict:
            problem = require_text(rec.get("problem"), "question")
            answer = require_text(rec.get("answer"), "answer")
            images = [normalize_image(img, args.max_pixels, base_dir) for img in rec.get("images") or []]
            if not images:
                raise BadRecord("missing image", "no images")
            return make_row(
                data_source=HUB_ID,
                content=math_prompt(problem, len(images)),
                images=images,
                ability="math",
                ground_truth=answer,
                split=split,
                index=i,
                source_id=str(i),
                question=problem,
                answer=answer,
                question_type="free_form",
            )

        write_split(
            summary=summary,
            split=split,
            records=ds,
            convert=convert,
            record_id=lambda i, rec: f"index {i}",
            args=args,
            total=len(ds),
        )
    return summary


def main(argv: list[str] | None = None) -> int:
    parser = base_parser("geo3k", __doc__)
    return run_main(prepare, parser, argv)


if __name__ == "__main__":
    sys.exit(main())
