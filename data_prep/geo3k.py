"""Geometry3K (``hiyouga/geometry3k``) -> ``OUT/{train,validation,test}.parquet`` (default ``$MAPO_DATA_DIR/geo3k``).

Source: the hub dataset, or ``--local-dataset-path SRC``, a local copy in the hub's layout (what
``datasets.load_dataset(SRC)`` reads, e.g. ``huggingface-cli download hiyouga/geometry3k --repo-type dataset
--local-dir SRC``), read from its files on every run (a copy updated in place is read as it is now).
Columns: ``images`` (list of images), ``problem`` (already holds ``<image>``), ``answer``.

``--prompt-style paper`` writes only ``test.parquet`` (the 601 problems the MAPO authors evaluate on) with their
prompt (:mod:`data_prep.paper_prompts`), to ``$MAPO_DATA_DIR/geo3k_paper`` by default.
"""

from __future__ import annotations

import argparse
import sys

from data_prep.arguments import add_prompt_style, base_parser, out_dir_of, run_main
from data_prep.hub_reader import base_dir_of, load_split
from data_prep.images import image_list, image_options, normalize_image
from data_prep.prompts import answer_text, math_prompt, paper_module, question_text
from data_prep.rows import BadRecord, make_row
from data_prep.writer import Summary, write_split
from mapo_verl.data_sources import BY_NAME

HUB_ID = BY_NAME["geo3k"].data_source
SPLITS = ("train", "validation", "test")


def prepare(args: argparse.Namespace) -> Summary:
    summary = Summary("geo3k", out_dir_of(args))
    base_dir = base_dir_of(args.local_dataset_path)
    paper = args.prompt_style == "paper"
    for split in ("test",) if paper else SPLITS:
        source = load_split(HUB_ID, args.local_dataset_path, split)

        def convert(i: int, rec: dict, split: str = split) -> dict:
            problem = question_text(rec.get("problem"))
            answer = answer_text(rec.get("answer"))
            images = [
                normalize_image(img, args.max_pixels, base_dir, **image_options(args))
                for img in image_list(rec.get("images"))
            ]
            if not images:
                raise BadRecord("missing image", "no images")
            content = math_prompt(problem.text, len(images))
            if paper:
                try:
                    item = paper_module().geo3k_item(rec)
                except ValueError as exc:
                    raise BadRecord("not an item of the authors' set", str(exc)) from None
                content = paper_module().paper_content(item.question, len(images))
            row = make_row(
                data_source=HUB_ID,
                content=content,
                images=images,
                ability="math",
                ground_truth=answer.text,
                split=split,
                index=i,
                source_id=str(i),
                question=problem.text,
                answer=answer.text,
                question_type="free_form",
            )
            summary.repair(split, problem.repairs + answer.repairs)
            return row

        write_split(
            summary=summary,
            split=split,
            records=source,
            convert=convert,
            record_id=lambda i, rec: f"index {i}",
            args=args,
            total=source.num_rows,
        )
    return summary


def main(argv: list[str] | None = None) -> int:
    parser = base_parser("geo3k", __doc__)
    add_prompt_style(parser)
    return run_main(prepare, parser, argv)


if __name__ == "__main__":
    sys.exit(main())
