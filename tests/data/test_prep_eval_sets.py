"""Evaluation-set preparers (MathVista, MathVision, MathVerse, WEBEmo, Emotion6) on fixtures in the public layouts."""

from __future__ import annotations

import pyarrow.parquet as pq
import pytest

from data_prep import emotion6, mathvision, mathvista, webemo
from reward_fns import router


def perfect(answer: str) -> str:
    return f"<think>looked at it</think> \\boxed{{{answer}}}"


def rows_of(path) -> list[dict]:
    return pq.read_table(path).to_pylist()


def assert_verl_rows(rows: list[dict], data_source: str, ability: str) -> None:
    for row in rows:
        assert row["data_source"] == data_source and row["ability"] == ability
        assert len(row["prompt"]) == 1 and row["prompt"][0]["role"] == "user"
        assert row["prompt"][0]["content"].count("<image>") == len(row["images"]) >= 1
        assert row["reward_model"]["style"] == "rule" and row["reward_model"]["ground_truth"]
        assert row["extra_info"]["split"] == "test"
        # the reward reads back what the preparer wrote
        score = router.compute_score(
            data_source,
            perfect(row["reward_model"]["ground_truth"]),
            row["reward_model"]["ground_truth"],
            row["extra_info"],
        )
        assert score["score"] == 1.0


@pytest.fixture(scope="module")
def mathvista_src(tmp_path_factory, helpers):

    root = tmp_path_factory.mktemp("mathvista")
    features = helpers.hub_features("mathvista")

    def row(pid, question, choices, answer, qtype, atype, precision=None, unit=None):
        image = {"bytes": helpers.image_bytes(60, 40, seed=int(pid)), "path": None}
        return dict(
            pid=pid, question=question, image=f"images/{pid}.jpg", decoded_image=image, choices=choices,
            unit=unit, precision=precision, answer=answer, question_type=qtype, answer_type=atype,
        )  # fmt: skip

    rows = [
        row("1", "Which bar is tallest?", ["red", "green", "blue"], "green", "multi_choice", "text"),
        row("2", "What is the area?", None, "12", "free_form", "integer", unit="cm^2"),
        row("3", "What is the ratio?", None, "1.25", "free_form", "float", precision=2.0),
        row("4", "Pick one.", ["x", "y"], "z", "multi_choice", "text"),  # answer is not a choice
        row("5", "  ", None, "3", "free_form", "integer"),  # the question is in the image
    ]
    helpers.write_hub_parquet(root, "testmini", rows, features)
    return root


@pytest.mark.slow  # runs the module in a fresh interpreter, as users do
def test_mathvista_cli(mathvista_src, helpers, tmp_path):
    out = tmp_path / "out"
    proc = helpers.run_module(
        "mathvista", "--local-save-dir", str(out), "--local-dataset-path", str(mathvista_src), "--skip-bad"
    )
    assert proc.returncode == 0, proc.stderr
    assert "test.parquet: 4 rows; skipped 1 (bad answer: 1)\n    repaired: image-only question: 1" in proc.stdout
    assert [p.name for p in out.iterdir()] == ["test.parquet"]
    rows = rows_of(out / "test.parquet")
    assert [r["reward_model"]["ground_truth"] for r in rows] == ["B", "12", "1.25", "3"]
    assert [r["extra_info"]["source_id"] for r in rows] == ["1", "2", "3", "5"]
    assert rows[3]["prompt"][0]["content"].startswith("<image>Answer the question shown in the image.")
    assert "(A) red\n(B) green\n(C) blue" in rows[0]["prompt"][0]["content"]
    assert rows[0]["extra_info"]["options"] == ["red", "green", "blue"]
    assert rows[0]["extra_info"]["question_type"] == "multi_choice"
    assert "without the unit (cm^2)" in rows[1]["prompt"][0]["content"]
    assert "2 decimal place" in rows[2]["prompt"][0]["content"]
    assert_verl_rows(rows, "AI4Math/MathVista", "math")
    assert router.compute_score("AI4Math/MathVista", perfect("green"), "B", rows[0]["extra_info"])["acc"] == 1.0


def test_mathvista_bad_record_names_pid(mathvista_src, tmp_path, capsys):
    argv = ["--local-save-dir", str(tmp_path), "--local-dataset-path", str(mathvista_src), "--no-progress"]
    assert mathvista.main(argv) == 1
    assert "record index 3 (pid=4): bad answer" in capsys.readouterr().err
    assert not (tmp_path / "test.parquet").exists()


def test_mathvision_from_a_parquet_file(tmp_path, helpers):

    features = helpers.hub_features("mathvision")
    image = {"bytes": helpers.image_bytes(80, 50, mode="RGBA", fmt="PNG"), "path": None}
    rows = [
        dict(id="7", question="<image1>\nWhich shape?", options=["A", "B", "C", "D", "E"], image="images/7.jpg",
             decoded_image=image, answer="C", level=2, subject="metric geometry"),
        dict(id="8", question="How many cubes? <image1>", options=[], image="images/8.jpg",
             decoded_image=image, answer="14", level=3, subject="counting"),
        dict(id="9", question="Which is largest?", options=["1/2", "2/3"], image="images/9.jpg",
             decoded_image=image, answer="2/3", level=1, subject="arithmetic"),
    ]  # fmt: skip
    src = tmp_path / "src"
    helpers.write_hub_parquet(src, "test", rows, features)
    out = tmp_path / "out"
    parquet = next((src / "data").iterdir())
    assert mathvision.main(["--local-save-dir", str(out), "--local-dataset-path", str(parquet), "--no-progress"]) == 0
    rows = rows_of(out / "test.parquet")
    assert [r["reward_model"]["ground_truth"] for r in rows] == ["C", "14", "B"]
    assert all("<image1>" not in r["prompt"][0]["content"] for r in rows)
    assert rows[0]["prompt"][0]["content"].startswith("<image>Which shape?\nChoices:\n(A) A")
    assert rows[1]["extra_info"]["question_type"] == "free_form" and rows[1]["extra_info"]["options"] == []
    assert_verl_rows(rows, "MathLLMs/MathVision", "math")


@pytest.mark.slow  # runs the module in a fresh interpreter, as users do
def test_mathverse_cli_and_rlhfdataset(tmp_path, helpers, qwen_processor):
    import datasets
    from omegaconf import OmegaConf
    from transformers.models.qwen2_vl.image_processing_pil_qwen2_vl import smart_resize
    from verl.utils.dataset.rl_dataset import RLHFDataset

    features = datasets.Features(
        {
            "sample_index": datasets.Value("string"),
            "problem_index": datasets.Value("string"),
            "problem_version": datasets.Value("string"),
            "question": datasets.Value("string"),
            "image": datasets.Image(),
            "answer": datasets.Value("string"),
            "question_type": datasets.Value("string"),
        }
    )
    image = {"bytes": helpers.image_bytes(3000, 2000, seed=3), "path": None}  # 6 MP: over --max-pixels
    q = "As shown in the figure, find angle ABC.\nChoices:\nA:30°\nB:45°\nC:60°\nD:90°"
    rows = [
        dict(sample_index="1", problem_index="1", problem_version="Text Dominant", question=q, image=image,
             answer="B", question_type="multi-choice"),
        dict(sample_index="2", problem_index="1", problem_version="Vision Only", question="", image=image,
             answer="B", question_type="multi-choice"),
        dict(sample_index="3", problem_index="2", problem_version="Text Lite", question="Find x.", image=image,
             answer="2\\sqrt{3}", question_type="free-form"),
    ]  # fmt: skip
    src = tmp_path / "src"
    helpers.write_hub_parquet(src, "testmini", rows, features)
    out = tmp_path / "out"
    proc = helpers.run_module("mathverse", "--local-save-dir", str(out), "--local-dataset-path", str(src))
    assert proc.returncode == 0, proc.stderr
    rows = rows_of(out / "test.parquet")
    assert [r["reward_model"]["ground_truth"] for r in rows] == ["B", "B", "2\\sqrt{3}"]
    assert rows[0]["extra_info"]["options"] == ["30°", "45°", "60°", "90°"]
    assert "shown in the image" in rows[1]["prompt"][0]["content"]
    assert_verl_rows(rows, "AI4Math/MathVerse", "math")

    config = OmegaConf.create({"filter_overlong_prompts": False, "cache_dir": str(tmp_path / "cache")})
    ds = RLHFDataset(str(out / "test.parquet"), qwen_processor.tokenizer, config, qwen_processor)
    item = ds[0]
    image = next(c["image"] for c in item["raw_prompt"][0]["content"] if c["type"] == "image")
    assert image.width * image.height <= 4194304 and image.size == (2508, 1672)  # downscaled, aspect kept
    text = qwen_processor.apply_chat_template(item["raw_prompt"], add_generation_prompt=True, tokenize=False)
    out = qwen_processor(text=[text], images=[image], return_tensors="pt")
    height, width = smart_resize(1672, 2508, factor=28, min_pixels=56 * 56, max_pixels=4194304)
    assert out["image_grid_thw"].tolist() == [[1, height // 14, width // 14]]
    pad_id = qwen_processor.tokenizer.convert_tokens_to_ids("<|image_pad|>")
    assert int((out["input_ids"] == pad_id).sum()) == height * width // (28 * 28)


@pytest.mark.parametrize(("module", "name"), [(webemo, "webemo"), (emotion6, "emotion6")])
def test_folder_sets_skip_bad(module, name, folder_tree, tmp_path):
    out = tmp_path / "out"
    argv = ["--local-save-dir", str(out), "--local-dataset-path", str(folder_tree), "--no-progress", "--skip-bad"]
    assert module.main(argv) == 0
    rows = rows_of(out / "test.parquet")
    truths = [r["reward_model"]["ground_truth"] for r in rows]
    assert sorted(truths) == ["fear", "fear"] + ["joy"] * 4 + ["sadness"] * 2  # "Joy/" folded to "joy"
    assert rows[0]["extra_info"]["labels"] == ["fear", "joy", "sadness"]
    assert "Choose exactly one of: fear, joy, sadness." in rows[0]["prompt"][0]["content"]
    assert_verl_rows(rows, name, "emotion")


@pytest.mark.slow  # runs the module in a fresh interpreter, as users do
def test_folder_set_cli_stratified_and_labels(folder_tree, helpers, tmp_path):
    out = tmp_path / "out"
    args = ["--local-save-dir", str(out), "--local-dataset-path", str(folder_tree), "--skip-bad"]
    proc = helpers.run_module("webemo", *args, "--test-size", "4", "--labels", "sadness,joy")
    assert proc.returncode == 0, proc.stderr
    rows = rows_of(out / "test.parquet")
    # stratified over 9 files (fear 3, joy 4, sadness 2): 4 picks = fear 1, joy 2, sadness 1 (largest
    # remainder); fear is not in --labels, so its pick is skipped as an unknown label
    truths = sorted(r["reward_model"]["ground_truth"] for r in rows)
    assert truths == ["joy", "joy", "sadness"]
    assert "test.parquet: 3 rows; skipped 1 (unknown label: 1)" in proc.stdout
    assert all(r["extra_info"]["labels"] == ["sadness", "joy"] for r in rows)


def test_folder_set_corrupt_image_stops(folder_tree, tmp_path, capsys):
    argv = ["--local-save-dir", str(tmp_path), "--local-dataset-path", str(folder_tree), "--no-progress"]
    assert emotion6.main(argv) == 1
    err = capsys.readouterr().err
    assert "broken.jpg" in err and "corrupt image" in err
    assert list(tmp_path.iterdir()) == []


def test_folder_set_needs_a_source(tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("MAPO_SOURCE_DIR", str(tmp_path / "sources"))
    assert webemo.main(["--local-save-dir", str(tmp_path)]) == 1
    err = capsys.readouterr().err
    assert "--local-dataset-path" in err and str(tmp_path / "sources" / "webemo") in err


def test_folder_set_found_in_the_source_dir(folder_tree, tmp_path, monkeypatch):
    """``$MAPO_SOURCE_DIR/NAME`` is the default source and ``$MAPO_DATA_DIR/NAME`` the default output."""
    (tmp_path / "sources").mkdir()
    (tmp_path / "sources" / "emotion6").symlink_to(folder_tree)
    monkeypatch.setenv("MAPO_SOURCE_DIR", str(tmp_path / "sources"))
    monkeypatch.setenv("MAPO_DATA_DIR", str(tmp_path / "data"))
    assert emotion6.main(["--no-progress", "--skip-bad"]) == 0
    assert len(rows_of(tmp_path / "data" / "emotion6" / "test.parquet")) == 8
