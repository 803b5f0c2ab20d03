"""Sources as users have them: hub copies that declare several configs, copies updated in place, EasyR1's layout of
the EmoSet mirrors; and row groups bounded in bytes as well as rows."""

from __future__ import annotations

import argparse
import os

import pyarrow.parquet as pq

from data_prep import emoset, geo3k, mathverse
from data_prep.writer import Summary, write_split


def rows_of(path) -> list[dict]:
    return pq.read_table(path).to_pylist()


def write_mathverse_copy(root, helpers) -> None:
    """``AI4Math/MathVerse``'s layout: two configs declared in README.md, each with its own parquet file."""
    import datasets

    features = datasets.Features(
        {
            "sample_index": datasets.Value("string"),
            "problem_version": datasets.Value("string"),
            "question": datasets.Value("string"),
            "image": datasets.Image(),
            "answer": datasets.Value("string"),
            "question_type": datasets.Value("string"),
        }
    )
    image = {"bytes": helpers.image_bytes(40, 30), "path": None}
    q = "As shown in the figure, find angle ABC.\nChoices:\nA:30°\nB:45°\nC:60°\nD:90°"
    testmini = [
        dict(sample_index="1", problem_version="Text Lite", question=q, image=image, answer="B",
             question_type="multi-choice"),
        # the answer is the option's text, not its letter
        dict(sample_index="2", problem_version="Text Lite", question=q, image=image, answer="$45^{\\circ}$",
             question_type="multi-choice"),
        dict(sample_index="3", problem_version="Vision Only", question="", image=image,
             answer="Area $=9.4 \\mathrm{~cm}^{2}$", question_type="free-form"),
    ]  # fmt: skip
    text_only = [dict(testmini[0], sample_index="9", image=None)]
    root.mkdir(parents=True)
    datasets.Dataset.from_list(testmini, features=features).to_parquet(str(root / "testmini.parquet"))
    datasets.Dataset.from_list(text_only, features=features).to_parquet(str(root / "testmini_text_only.parquet"))
    (root / "README.md").write_text(
        "---\nconfigs:\n"
        "- config_name: testmini\n  data_files:\n  - split: testmini\n    path: testmini.parquet\n"
        "- config_name: testmini_text_only\n  data_files:\n  - split: testmini_text_only\n"
        "    path: testmini_text_only.parquet\n---\n"
    )


def test_mathverse_copy_with_configs_default_command(tmp_path, helpers, monkeypatch, capsys):
    src = tmp_path / "MathVerse"
    write_mathverse_copy(src, helpers)
    monkeypatch.setenv("MAPO_DATA_DIR", str(tmp_path / "data"))
    assert mathverse.main(["--local-dataset-path", str(src), "--no-progress"]) == 0
    rows = rows_of(tmp_path / "data" / "mathverse" / "test.parquet")
    assert [r["reward_model"]["ground_truth"] for r in rows] == ["B", "B", "Area $=9.4 \\mathrm{~cm}^{2}$"]
    assert "choice answer given as option text: 1" in capsys.readouterr().out
    from reward_fns import router

    for answer in ("9.4", "9.4 \\mathrm{~cm}^{2}", "9.4\\text{ cm}^2"):
        response = f"<think>r</think>\\boxed{{{answer}}}"
        assert (
            router.compute_score("AI4Math/MathVerse", response, rows[2]["reward_model"]["ground_truth"])["score"] == 1
        )


def test_mathverse_copy_other_config(tmp_path, helpers, monkeypatch):
    src = tmp_path / "MathVerse"
    write_mathverse_copy(src, helpers)
    out = tmp_path / "out"
    argv = ["--local-dataset-path", str(src), "--local-save-dir", str(out), "--no-progress", "--skip-bad"]
    argv += ["--config", "testmini_text_only", "--split", "testmini_text_only"]
    assert mathverse.main(argv) == 0
    assert len(rows_of(out / "test.parquet")) == 0  # its one record has no image: skipped with --skip-bad


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
