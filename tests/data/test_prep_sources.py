"""Sources as users have them: hub copies that declare several configs, copies updated in place, EasyR1's layout of
the EmoSet mirrors; and row groups bounded in bytes as well as rows."""

from __future__ import annotations

import argparse
import os

import pyarrow.parquet as pq

from data_prep import emoset, geo3k, mathverse
from data_prep.writer import Summary, write_split
from mapo_verl_cpu.fixtures.public_layouts import write_mathverse_configs


def rows_of(path) -> list[dict]:
    return pq.read_table(path).to_pylist()


CHOICES = "As shown in the figure, find angle ABC.\nChoices:\nA:30°\nB:45°\nC:60°\nD:90°"
BEARING = "A ship sails from port P to port Q. Q is due east of P. Find the true bearing of Q from P."
LIGHTHOUSE = "The lighthouse L is 5 km from the harbour H. Find the true bearing of L from H, to the nearest degree."
PARALLEL = "Which of the following lines are parallel to AB?\nChoices:\nA:CD\nB:EF\nC:GH\nD:IJ"
STATEMENT = "Triangle ABC is right-angled at B. True or false: AC is the longest side."
#: (sample_index, problem_version, question, answer, question_type, correct answers a model writes, wrong ones).
#: The classes of the real testmini records: one letter, option text, a free-form value with a name and unit, a
#: bearing under a choice label with no options (``090° T``, ``053 ° T``), two correct letters on separate lines,
#: ``False`` under a choice label; vision-bearing versions here, the Text Only version below.
MATHVERSE_RECORDS = [
    ("1", "Text Lite", CHOICES, "B", "multi-choice", ["B", "(B) 45°", "45^{\\circ}"], ["C", "60°"]),
    ("2", "Text Lite", CHOICES, "$45^{\\circ}$", "multi-choice", ["B"], ["A"]),
    ("3", "Vision Only", "", "Area $=9.4 \\mathrm{~cm}^{2}$", "free-form", ["9.4", "9.4\\text{ cm}^2"], ["94"]),
    ("4", "Text Dominant", BEARING, "090° T", "multi-choice", ["090° T", "90°T", "90^{\\circ}", "N 90° E"],
     ["270° T", "180° T", "N 90° W"]),
    ("5", "Vision Only", "", "053 ° T", "multi-choice", ["053° T", "53°T", "53^\\circ \\text{T}"], ["127° T", "35° T"]),
    ("6", "Text Lite", PARALLEL, "C\nD", "multi-choice", ["C, D", "D and C", "(C) (D)", "C;D"],
     ["C", "D", "C, D, A", "CD"]),
    ("7", "Vision Only", "", "C\nD", "multi-choice", ["C, D", "D, C"], ["B, D"]),
    ("8", "Vision Dominant", STATEMENT, "False", "multi-choice", ["False", "\\text{False}", "false"], ["True"]),
]  # fmt: skip
MATHVERSE_TEXT_ONLY = [
    ("9", "Text Only", BEARING, "090° T", "multi-choice", ["90° T", "090°"], ["90° W", "270°"]),
    ("10", "Text Only", LIGHTHOUSE, "053 ° T", "multi-choice", ["53° T", "N 53° E"], ["S 53° E"]),
    ("11", "Text Only", PARALLEL, "C\nD", "multi-choice", ["C and D"], ["C"]),
    ("12", "Text Only", STATEMENT, "False", "multi-choice", ["False"], ["True"]),
    ("13", "Text Only", CHOICES, "B", "multi-choice", ["B"], ["D"]),
]  # fmt: skip
MATHVERSE_TRUTHS = ["B", "B", "Area $=9.4 \\mathrm{~cm}^{2}$", "090° T", "053 ° T", "C, D", "C, D", "False"]


def write_mathverse_copy(root, helpers) -> None:
    """``AI4Math/MathVerse``'s public layout (:func:`write_mathverse_configs`) with the records above; the Text Only
    version has no diagram."""

    def rows(records, image):
        return [
            dict(sample_index=i, problem_index=i, problem_version=v, question=q, answer=a, question_type=t,
                 image=image, query_cot=f"{q}\nPlease first conduct reasoning.")
            for i, v, q, a, t, _, _ in records
        ]  # fmt: skip

    image = {"bytes": helpers.image_bytes(40, 30), "path": None}
    write_mathverse_configs(root, rows(MATHVERSE_RECORDS, image), rows(MATHVERSE_TEXT_ONLY, ""))


def _assert_graded(rows: list[dict], records: list[tuple]) -> None:
    """Every correct answer a model writes scores 1.0 and every wrong one less, through the router."""
    from reward_fns import router

    for row, (sample, *_, right, wrong) in zip(rows, records, strict=True):
        assert row["extra_info"]["source_id"] == sample
        truth = row["reward_model"]["ground_truth"]
        for answer, expected in [(a, 1.0) for a in right] + [(a, 0.1) for a in wrong]:
            response = f"<think>r</think>\\boxed{{{answer}}}"
            got = router.compute_score("AI4Math/MathVerse", response, truth, row["extra_info"])["score"]
            assert got == expected, (sample, truth, answer)


def test_mathverse_copy_with_configs_default_command(tmp_path, helpers, monkeypatch, capsys):
    """Every record prepares by default (nothing skipped), each with a ground truth the reward grades right."""
    src = tmp_path / "MathVerse"
    write_mathverse_copy(src, helpers)
    monkeypatch.setenv("MAPO_DATA_DIR", str(tmp_path / "data"))
    assert mathverse.main(["--local-dataset-path", str(src), "--no-progress"]) == 0
    rows = rows_of(tmp_path / "data" / "mathverse" / "test.parquet")
    assert [r["reward_model"]["ground_truth"] for r in rows] == MATHVERSE_TRUTHS
    out = capsys.readouterr().out
    assert "test.parquet: 8 rows; skipped 0 (none)" in out
    for repair in (
        "choice answer given as option text: 1",
        "choice type without options, answer a value: asked as free-form: 2",
        "several correct letters: multi-answer ground truth: 2",
        "choice type without options, answer True/False: asked as true/false: 1",
    ):
        assert repair in out
    _assert_graded(rows, MATHVERSE_RECORDS)
    types = [r["extra_info"]["question_type"] for r in rows]
    assert types == ["multi_choice"] * 2 + ["free_form"] * 3 + ["multi_choice"] * 2 + ["free_form"]
    prompts = [r["prompt"][0]["content"] for r in rows]
    assert "letters of all correct options" in prompts[5] and "option's letter" not in prompts[5]
    assert "option's letter" not in prompts[3] and "choices are shown in the image" not in prompts[4]
    assert "shown in the image; its choices" in prompts[6] and "Answer True or False." in prompts[7]
    assert all(p.count("<image>") == 1 and len(r["images"]) == 1 for p, r in zip(prompts, rows, strict=True))


def test_mathverse_text_only_config_prepares_without_images(tmp_path, helpers, capsys):
    src = tmp_path / "MathVerse"
    write_mathverse_copy(src, helpers)
    out = tmp_path / "out"
    argv = ["--local-dataset-path", str(src), "--local-save-dir", str(out), "--no-progress"]
    assert mathverse.main([*argv, "--config", "testmini_text_only", "--split", "testmini_text_only"]) == 0
    rows = rows_of(out / "test.parquet")
    assert [r["reward_model"]["ground_truth"] for r in rows] == ["090° T", "053 ° T", "C, D", "False", "B"]
    assert all(r["images"] == [] and "<image>" not in r["prompt"][0]["content"] for r in rows)
    assert all(r["extra_info"]["problem_version"] == "Text Only" for r in rows)
    assert "text-only record (no image): 5" in capsys.readouterr().out
    _assert_graded(rows, MATHVERSE_TEXT_ONLY)


def test_mathverse_broken_input_is_an_error_naming_the_record(tmp_path, helpers, capsys):
    """What stops a split (or is skipped with --skip-bad): a vision version without its diagram, a letter beyond
    the listed options; legitimate records around them still prepare, and so does an answer that names none of the
    listed options (kept as written, with a warning: tests/data/test_mathverse_choices.py)."""
    import datasets

    text = datasets.Value("string")
    features = datasets.Features(
        {**{c: text for c in ("sample_index", "problem_version", "question", "answer", "question_type")},
         "image": datasets.Image()}
    )  # fmt: skip
    image = {"bytes": helpers.image_bytes(30, 30), "path": None}
    rows = [
        dict(sample_index="20", problem_version="Text Lite", question=CHOICES, answer="B", question_type="multi-choice",
             image=image),
        dict(sample_index="21", problem_version="Vision Only", question="", answer="B", question_type="multi-choice",
             image=None),
        dict(sample_index="22", problem_version="Text Lite", question=CHOICES, answer="75°",
             question_type="multi-choice", image=image),
        dict(sample_index="23", problem_version="Text Lite", question=CHOICES, answer="D\nF",
             question_type="multi-choice", image=image),
        dict(sample_index="24", problem_version="Text Only", question="Find x.", answer="5", question_type="free-form",
             image=None),
    ]  # fmt: skip
    helpers.write_hub_parquet(tmp_path / "src", "testmini", rows, features)
    argv = ["--local-save-dir", str(tmp_path / "out"), "--local-dataset-path", str(tmp_path / "src"), "--no-progress"]
    assert mathverse.main(argv) == 1
    assert "sample_index=21" in capsys.readouterr().err and not (tmp_path / "out" / "test.parquet").exists()
    assert mathverse.main([*argv, "--skip-bad"]) == 0
    assert [r["extra_info"]["source_id"] for r in rows_of(tmp_path / "out" / "test.parquet")] == ["20", "22", "24"]
    assert "skipped 2 (bad answer: 1, missing image: 1)" in capsys.readouterr().out


def test_geo3k_copy_updated_in_place_is_read_as_it_is_now(geo3k_src, tmp_path, helpers):
    """Rewrite a split's parquet in place, keeping its size class and mtime: the output follows the file."""
    import shutil

    import datasets

    src = tmp_path / "geo3k"
    shutil.copytree(geo3k_src, src)
    out = tmp_path / "out"
    argv = ["--local-dataset-path", str(src), "--local-save-dir", str(out), "--no-progress", "--skip-bad"]
    assert geo3k.main(argv) == 0
    assert [r["reward_model"]["ground_truth"] for r in rows_of(out / "test.parquet")] == ["3"]
    test_file = next((src / "data").glob("test-*.parquet"))
    stat = test_file.stat()
    features = datasets.Features(
        {
            "images": datasets.List(datasets.Image()),
            "problem": datasets.Value("string"),
            "answer": datasets.Value("string"),
        }
    )
    helpers.write_hub_parquet(
        src,
        "test",
        [{"images": [{"bytes": helpers.image_bytes(50, 50), "path": None}], "problem": "<image>New?", "answer": "7"}],
        features,
    )
    os.utime(test_file, ns=(stat.st_atime_ns, stat.st_mtime_ns))
    assert geo3k.main(argv) == 0
    assert [r["reward_model"]["ground_truth"] for r in rows_of(out / "test.parquet")] == ["7"]


def test_emoset_easyr1_layout_found_without_flags(tmp_path, helpers, monkeypatch, capsys):
    """EasyR1's EmoSet mirrors: ``images`` (a list of images), ``problem``, ``course_grained``, ``answer``."""
    import datasets

    features = datasets.Features(
        {
            "images": datasets.List(datasets.Image()),
            "problem": datasets.Value("string"),
            "course_grained": datasets.Value("string"),
            "answer": datasets.Value("string"),
        }
    )
    src = tmp_path / "sources" / "emoset"
    for split, n in (("train", 16), ("test", 8)):
        rows = [
            {
                "images": [{"bytes": helpers.image_bytes(32, 32, seed=i), "path": None}],
                "problem": "<image>What emotion does this image evoke?",
                "course_grained": "positive" if i % 8 < 4 else "negative",
                "answer": helpers.EMOSET_LABELS[i % 8].capitalize(),
            }
            for i in range(n)
        ]
        helpers.write_hub_parquet(src, split, rows, features)
    monkeypatch.setenv("MAPO_SOURCE_DIR", str(tmp_path / "sources"))
    monkeypatch.setenv("MAPO_DATA_DIR", str(tmp_path / "data"))
    assert emoset.main(["--no-progress", "--test-size", "all"]) == 0
    test = rows_of(tmp_path / "data" / "emoset" / "test.parquet")
    assert [r["reward_model"]["ground_truth"] for r in test] == list(helpers.EMOSET_LABELS)
    assert all(len(r["images"]) == 1 for r in test)
    assert len(rows_of(tmp_path / "data" / "emoset" / "train.parquet")) == 16


def test_row_groups_are_bounded_in_bytes(tmp_path, helpers):
    """Large images flush a row group long before ``--chunk-rows`` rows: memory is flat in image size."""
    big = helpers.image_bytes(1200, 900, fmt="PNG", seed=1)
    args = argparse.Namespace(skip_bad=False, chunk_rows=1000, chunk_mb=len(big) * 2.5 / 2**20, no_progress=True)
    summary = Summary("bytes", tmp_path)

    def convert(i: int, data: bytes) -> dict:
        from data_prep.rows import make_row

        return make_row(
            data_source="x", content="<image>q", images=[{"bytes": data}], ability="math",
            ground_truth="1", split="test", index=i,
        )  # fmt: skip

    path = write_split(summary=summary, split="test", records=[big] * 9, convert=convert, record_id=str, args=args)
    groups = [pq.ParquetFile(path).metadata.row_group(k).num_rows for k in range(pq.ParquetFile(path).num_row_groups)]
    assert groups == [3, 3, 3]


def test_mathverse_paper_prompts_keep_versions(tmp_path, helpers, monkeypatch, capsys):
    """The authors' MathVerse: ``query_cot`` on the vision-bearing versions, ``problem_version`` kept per row."""
    import datasets

    from data_prep import paper_prompts

    features = datasets.Features(
        {name: datasets.Value("string") for name in ("sample_index", "problem_version", "question", "answer",
                                                      "question_type", "query_cot")}
        | {"image": datasets.Image()}
    )  # fmt: skip
    image = {"bytes": helpers.image_bytes(40, 30), "path": None}
    rows = [
        dict(sample_index=str(i), problem_version=version, question="Find x.", answer="5", question_type="free-form",
             query_cot=f"Please answer: find x ({version}).", image=image)
        for i, version in enumerate(("Text Dominant", "Text Only", "Vision Only"))
    ]  # fmt: skip
    helpers.write_hub_parquet(tmp_path / "src", "testmini", rows, features)
    monkeypatch.setenv("MAPO_DATA_DIR", str(tmp_path / "data"))
    argv = ["--local-dataset-path", str(tmp_path / "src"), "--no-progress", "--prompt-style", "paper"]
    assert mathverse.main(argv) == 0
    out = rows_of(tmp_path / "data" / "mathverse_paper" / "test.parquet")
    assert [r["extra_info"]["problem_version"] for r in out] == ["Text Dominant", "Vision Only"]
    assert out[0]["prompt"][0]["content"] == paper_prompts.paper_content("Please answer: find x (Text Dominant).")
    assert "1 records outside the authors' set" in capsys.readouterr().out
