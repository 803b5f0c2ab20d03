"""Every verbatim public record in ``../shared/realdata`` prepares with the default commands, and the reward scores
it right on the answers models write.

Each test builds a local copy in the hub's layout from the verbatim records (as ``datasets.load_dataset(SRC)``
reads it: ``SRC/data/<split>-00000-of-00001.parquet`` with the hub's columns and features) and runs the preparer
as a user would, with ``--local-dataset-path SRC`` and no other flag (output: ``$MAPO_DATA_DIR/NAME``).

Images: MathVision's are real where realdata has them (the 304 testmini records and test records 528 and 2830);
the other 2734 test records get a generated image, so that all 3040 test records (and their answers, the part
that can go wrong) run through the preparer. MathVista's images are not in realdata: all 1000 are generated.
Geometry3K's are the real diagrams. WEBEmo's realdata is the release's label file and URL list: its images are
generated and put where a download would put them.

For every record, a correct answer written the way models write it (option letters in their common forms, the
option's text, degrees, units, quantity names, thousands separators, fractions as decimals) must score 1.0 and a
wrong one less.
"""

from __future__ import annotations

import io
import json
from pathlib import Path

import pyarrow.parquet as pq
import pytest
from PIL import Image

from data_prep import geo3k, mathvision, mathvista, webemo
from mapo_verl_cpu.checkout import realdata_dir
from reward_fns import router
from reward_fns.answer_forms import option_key, option_letter, parse_number, read_answer

REALDATA = realdata_dir()
pytestmark = pytest.mark.skipif(not REALDATA.is_dir(), reason=f"{REALDATA} is absent (CI has it)")


# ------------------------------------------------------------------------------------- model-written answers


def think(answer: str) -> str:
    return f"<think>I read the figure and computed step by step.</think> The answer is \\boxed{{{answer}}}."


def written_choice(letter: str, options: list[str], i: int) -> str:
    """The correct option as models write it, cycling through the common forms."""
    text = options[ord(letter) - ord("A")]
    unique_text = sum(option_key(o) == option_key(text) for o in options) == 1
    forms = [letter, f"({letter})", f"{letter}.", f"Option {letter}", f"Answer: {letter}", f"({letter}) {text}"]
    if unique_text and option_letter(text) is None:  # an option whose text is a letter is answered by letter
        forms.append(text)
    return forms[i % len(forms)]


def written_free(truth: str, i: int) -> str:
    """A correct free-form answer as models write it: the value with units, degrees, names, separators."""
    key = read_answer(truth).key
    number = parse_number(key)
    if number is None:
        return [truth, f"${truth}$", f" {truth} "][i % 3]
    if number.decimals == 0:  # an integer
        n = int(number.value)
        forms = [str(n), f"{n}^\\circ", f"{n}^{{\\circ}}", f"x = {n}", f"{n} \\text{{ cm}}", f"{n}\\%"]
        if abs(n) >= 1000:
            forms.append(f"{n:,}")
        return forms[i % len(forms)]
    if number.decimals is None:  # a fraction: a decimal for it (rounded when it has no finite decimal form)
        return [truth, f"{float(number.value):.3f}".rstrip("0").rstrip(".") if number.value.denominator > 1 else key][
            i % 2
        ]
    return [key, f"{key} \\mathrm{{~cm}}^{{2}}", f"Area = {key}"][i % 3]


def written_wrong(truth: str, options: list[str], question_type: str) -> str:
    """A wrong answer that looks like a right one: the next option, or the value plus one."""
    if question_type == "multi_choice":  # the next option whose text differs (MathVista 781 repeats "18")
        index = ord(truth) - ord("A")
        others = [k for k in range(index + 1, index + len(options)) if options[k % len(options)] != options[index]]
        return chr(ord("A") + others[0] % len(options))
    number = parse_number(read_answer(truth).key)
    if number is not None:
        wrong = number.value + 1
        return str(wrong.numerator) if wrong.denominator == 1 else f"\\frac{{{wrong.numerator}}}{{{wrong.denominator}}}"
    return "0" if read_answer(truth).key != "0" else "1"


def assert_scores(rows: list[dict]) -> None:
    for i, row in enumerate(rows):
        truth, extra = row["reward_model"]["ground_truth"], row["extra_info"]
        options = list(extra["options"])
        if extra["question_type"] == "multi_choice":
            right = written_choice(truth, options, i)
        else:
            right = written_free(truth, i)
        wrong = written_wrong(truth, options, extra["question_type"])
        good = router.compute_score(row["data_source"], think(right), truth, extra)
        bad = router.compute_score(row["data_source"], think(wrong), truth, extra)
        assert good["score"] == 1.0, (extra["source_id"], right, truth, good)
        assert bad["score"] < 1.0, (extra["source_id"], wrong, truth, bad)


def assert_images_decode(rows: list[dict]) -> None:
    for row in rows:
        assert row["images"], row["extra_info"]["source_id"]
        for image in row["images"]:
            Image.open(io.BytesIO(image["bytes"])).load()


# ------------------------------------------------------------------------------------------ hub-layout copies


def generated_image(seed: int, size: tuple[int, int] = (48, 36)) -> bytes:
    image = Image.new("RGB", size, ((seed * 37) % 256, (seed * 91) % 256, (seed * 13) % 256))
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    return buffer.getvalue()


def mathvision_records(split: str) -> list[dict]:
    return [json.loads(line) for line in (REALDATA / "mathvision" / f"{split}.jsonl").read_text().splitlines()]


def build_mathvision(root: Path, helpers, ids: set[str] | None = None) -> dict[str, list[dict]]:
    """``MathLLMs/MathVision``'s layout and features: test and testmini splits (``ids`` limits the records)."""
    features = helpers.hub_features("mathvision")
    records = {}
    for split in ("test", "testmini"):
        chosen = [r for r in mathvision_records(split) if ids is None or r["id"] in ids]
        rows = []
        for rec in chosen:
            path = REALDATA / "mathvision" / "images" / f"{rec['id']}.jpg"
            data = path.read_bytes() if path.is_file() else generated_image(int(rec["id"]))
            rows.append({**rec, "decoded_image": {"bytes": data, "path": None}})
        if rows:
            helpers.write_hub_parquet(root, split, rows, features)
        records[split] = chosen
    return records


def run_default(module, name: str, src: Path, data_dir: Path, monkeypatch, *extra: str) -> tuple[list[dict], str]:
    """``python -m data_prep.NAME --local-dataset-path SRC`` with ``MAPO_DATA_DIR`` set: rows and stdout."""
    monkeypatch.setenv("MAPO_DATA_DIR", str(data_dir))
    out = io.StringIO()
    from contextlib import redirect_stdout

    with redirect_stdout(out):
        status = module.main(["--local-dataset-path", str(src), "--no-progress", *extra])
    assert status == 0, out.getvalue()
    return pq.read_table(data_dir / name / "test.parquet").to_pylist(), out.getvalue()


def expected_mathvision_truth(rec: dict) -> str:
    # the one damaged escape in the real answers restored; surrounding spaces (``"11 "``) dropped
    return rec["answer"].replace("\x0c", "\\f").strip()


# -------------------------------------------------------------------------------------------------- MathVision


def test_mathvision_quirk_records(tmp_path, monkeypatch, helpers):
    """The image-only question (528) and the eaten ``\\f`` (2830) prepare by default and are named in the summary."""
    src = tmp_path / "src"
    build_mathvision(src, helpers, ids={"1", "2", "528", "2830", "2966"})
    rows, stdout = run_default(mathvision, "mathvision", src, tmp_path / "data", monkeypatch)
    by_id = {r["extra_info"]["source_id"]: r for r in rows}
    assert set(by_id) == {"1", "2", "528", "2830", "2966"}
    assert "Answer the question shown in the image." in by_id["528"]["prompt"][0]["content"]
    assert by_id["2830"]["reward_model"]["ground_truth"] == "\\frac{36}{13}"
    assert "\\n" not in by_id["2830"]["extra_info"]["question"]  # a literal backslash-n before <image1>
    assert "image-only question: 1" in stdout and "LaTeX escape restored: 1" in stdout
    assert "skipped 0 (none)" in stdout
    assert router.compute_score("MathLLMs/MathVision", think("\\frac{36}{13}"), "\\frac{36}{13}")["score"] == 1.0
    assert router.compute_score("MathLLMs/MathVision", think("2.77"), "\\frac{36}{13}")["score"] == 1.0


@pytest.mark.slow
@pytest.mark.parametrize("split", ["test", "testmini"])
def test_mathvision_every_record(split, tmp_path, monkeypatch, helpers):
    src = tmp_path / "src"
    records = build_mathvision(src, helpers)[split]
    extra = [] if split == "test" else ["--split", "testmini"]
    rows, stdout = run_default(mathvision, "mathvision", src, tmp_path / "data", monkeypatch, *extra)
    assert len(rows) == len(records) == {"test": 3040, "testmini": 304}[split]
    assert [r["extra_info"]["source_id"] for r in rows] == [rec["id"] for rec in records]
    assert [r["reward_model"]["ground_truth"] for r in rows] == [expected_mathvision_truth(rec) for rec in records]
    for row, rec in zip(rows, records, strict=True):
        assert row["extra_info"]["question_type"] == ("multi_choice" if rec["options"] else "free_form")
    assert "skipped 0 (none)" in stdout
    if split == "test":  # every repair named and counted
        assert "repaired: LaTeX escape restored: 1, image-only question: 1, literal \\n made a newline: 115" in stdout
    assert_images_decode(rows)
    assert_scores(rows)


# --------------------------------------------------------------------------------------------------- MathVista


def build_mathvista(root: Path, helpers, pids: set[str] | None = None) -> list[dict]:
    """``AI4Math/MathVista``'s testmini in the hub layout, with the official ``query`` and generated images."""
    annotations = json.loads((REALDATA / "mathvista" / "testmini.json").read_text())
    queries = json.loads((REALDATA / "mathvista" / "query_testmini.json").read_text())
    features = helpers.hub_features("mathvista")
    records, rows = [], []
    for pid, rec in annotations.items():
        if pids is not None and pid not in pids:
            continue
        records.append(rec)
        rows.append(
            {
                **{k: rec.get(k) for k in features if k not in ("decoded_image", "metadata", "query")},
                "decoded_image": {"bytes": generated_image(int(pid)), "path": None},
                "metadata": json.dumps(rec.get("metadata")),
                "query": queries[pid],
            }
        )
    helpers.write_hub_parquet(root, "testmini", rows, features)
    return records


def expected_mathvista_truth(rec: dict) -> str:
    if rec["question_type"] == "multi_choice":
        return chr(ord("A") + rec["choices"].index(rec["answer"]))
    return rec["answer"]


def test_mathvista_sample(tmp_path, monkeypatch, helpers):
    """A few records of each answer type (choice text, integer, float with precision, list, unit)."""
    src = tmp_path / "src"
    records = build_mathvista(src, helpers, pids={"1", "2", "3", "4", "5", "10", "20", "27", "36"})
    rows, _ = run_default(mathvista, "mathvista", src, tmp_path / "data", monkeypatch)
    assert [r["reward_model"]["ground_truth"] for r in rows] == [expected_mathvista_truth(r) for r in records]
    assert_images_decode(rows)
    assert_scores(rows)


@pytest.mark.slow
def test_mathvista_every_record(tmp_path, monkeypatch, helpers):
    src = tmp_path / "src"
    records = build_mathvista(src, helpers)
    rows, stdout = run_default(mathvista, "mathvista", src, tmp_path / "data", monkeypatch)
    assert len(rows) == len(records) == 1000
    assert [r["extra_info"]["source_id"] for r in rows] == [rec["pid"] for rec in records]
    assert [r["reward_model"]["ground_truth"] for r in rows] == [expected_mathvista_truth(r) for r in records]
    assert "skipped 0 (none)" in stdout
    assert_images_decode(rows)
    assert_scores(rows)


# --------------------------------------------------------------------------------------------------- Geometry3K


def test_geo3k_real_examples(tmp_path, monkeypatch, helpers):
    """InterGPS's Geometry3K examples in ``hiyouga/geometry3k``'s layout (``<image>`` + problem, the answer's
    value), with their real diagrams, through the default command."""
    import datasets

    features = datasets.Features(
        {
            "images": datasets.List(datasets.Image()),
            "problem": datasets.Value("string"),
            "answer": datasets.Value("string"),
        }
    )
    examples = []
    for folder in sorted((REALDATA / "geo3k").iterdir(), key=lambda p: int(p.name)):
        data = json.loads((folder / "data.json").read_text())
        answer = data["choices"][ord(data["answer"]) - ord("A")]
        image = {"bytes": (folder / "img_diagram.png").read_bytes(), "path": None}
        examples.append({"images": [image], "problem": f"<image>{data['annotat_text']}", "answer": answer})
    src = tmp_path / "src"
    splits = {"train": examples[:6], "validation": examples[6:8], "test": examples[8:]}
    for split, rows in splits.items():
        helpers.write_hub_parquet(src, split, rows, features)
    monkeypatch.setenv("MAPO_DATA_DIR", str(tmp_path / "data"))
    assert geo3k.main(["--local-dataset-path", str(src), "--no-progress"]) == 0
    for split, source_rows in splits.items():
        rows = pq.read_table(tmp_path / "data" / "geo3k" / f"{split}.parquet").to_pylist()
        assert [r["reward_model"]["ground_truth"] for r in rows] == [r["answer"] for r in source_rows]
        assert all(r["prompt"][0]["content"].count("<image>") == 1 for r in rows)
        assert_images_decode(rows)
        assert_scores(rows)
    # the authors' prompts: the test split only, in geo3k_paper
    assert geo3k.main(["--local-dataset-path", str(src), "--no-progress", "--prompt-style", "paper"]) == 0
    assert sorted(p.name for p in (tmp_path / "data" / "geo3k_paper").iterdir()) == ["test.parquet"]
    rows = pq.read_table(tmp_path / "data" / "geo3k_paper" / "test.parquet").to_pylist()
    assert [r["reward_model"]["ground_truth"] for r in rows] == [r["answer"] for r in splits["test"]]
    assert all(
        r["prompt"][0]["content"].startswith("<image>") and "FIRST think" in r["prompt"][0]["content"] for r in rows
    )


# ------------------------------------------------------------------------------------------------------ WEBEmo


def test_webemo_release_layout(tmp_path, monkeypatch):
    """WEBEmo as released (``category.txt``, ``test.txt`` of URLs) with images where a download puts them; one
    URL not downloaded is left out and counted."""
    src = tmp_path / "webemo"
    (src / "images").mkdir(parents=True)
    for name in ("category.txt", "test.txt"):
        (src / name).write_text((REALDATA / "webemo" / name).read_text())
    lines = [line.split() for line in (src / "test.txt").read_text().splitlines() if line.strip()]
    for k, (url, _) in enumerate(lines[:-1]):
        (src / "images" / url.rsplit("/", 1)[-1]).write_bytes(generated_image(k))
    monkeypatch.setenv("MAPO_SOURCE_DIR", str(tmp_path))
    monkeypatch.setenv("MAPO_DATA_DIR", str(tmp_path / "data"))
    out = io.StringIO()
    from contextlib import redirect_stdout

    with redirect_stdout(out):
        assert webemo.main(["--no-progress"]) == 0
    rows = pq.read_table(tmp_path / "data" / "webemo" / "test.parquet").to_pylist()
    hierarchy = webemo.read_hierarchy(src / "category.txt")
    assert [r["reward_model"]["ground_truth"] for r in rows] == [hierarchy[int(i)][1] for _, i in lines[:-1]]
    assert f"1 of {len(lines)} images not downloaded" in out.getvalue()
    for row in rows:
        truth = row["reward_model"]["ground_truth"]
        assert router.compute_score("webemo", think(truth.title()), truth, row["extra_info"])["score"] == 1.0
        other = next(label for label in row["extra_info"]["labels"] if label != truth)
        assert router.compute_score("webemo", think(other), truth, row["extra_info"])["score"] < 1.0


# ----------------------------------------------------------------------------------- the authors' prompts


def test_paper_prompts_mathvista_and_mathvision(tmp_path, monkeypatch, helpers):
    """``--prompt-style paper`` writes the authors' questions (MathVista's official ``query``) to NAME_paper."""
    from data_prep import paper_prompts

    src = tmp_path / "vista"
    records = build_mathvista(src, helpers, pids={"1", "2", "10"})
    queries = json.loads((REALDATA / "mathvista" / "query_testmini.json").read_text())
    rows, stdout = run_default(
        mathvista, "mathvista_paper", src, tmp_path / "data", monkeypatch, "--prompt-style", "paper"
    )
    assert [r["prompt"][0]["content"] for r in rows] == [
        paper_prompts.paper_content(queries[rec["pid"]]) for rec in records
    ]
    assert [r["reward_model"]["ground_truth"] for r in rows] == [expected_mathvista_truth(r) for r in records]
    assert "the MAPO authors'" in stdout
    assert_scores(rows)

    src = tmp_path / "vision"
    build_mathvision(src, helpers, ids={"528", "2830", "742"})
    rows, _ = run_default(
        mathvision, "mathvision_paper", src, tmp_path / "data", monkeypatch, "--prompt-style", "paper"
    )
    by_id = {r["extra_info"]["source_id"]: r for r in rows}
    assert by_id["2830"]["reward_model"]["ground_truth"] == "\\frac{36}{13}"
    assert all(r["prompt"][0]["content"].endswith(paper_prompts.PAPER_INSTRUCTION) for r in rows)
    assert_scores(rows)
