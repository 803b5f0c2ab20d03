"""``compare --seeds A-B`` and ``--merge``: a comparison's later seeds run on their own and aggregated with its first
ones into one set of outputs, exactly as if they had run together."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from mapo_verl_cpu.experiments import compare
from tests.runs.test_compare_statistics import _curve, _run


def test_seed_lists() -> None:
    assert compare.seed_list("3") == (1, 2, 3)
    assert compare.seed_list("6-8") == (6, 7, 8)
    assert compare.seed_list("2,5") == (2, 5)
    for bad in ("0", "a", "1,1", "3-1", "-2"):
        with pytest.raises(ValueError, match="--seeds"):
            compare.seed_list(bad)
    parsed = compare.settings_of(compare.build_parser().parse_args(["--out", "x", "--seeds", "6-8"]))
    assert parsed.seeds == (6, 7, 8)


def _comparison(out: Path, seeds: tuple[int, ...], finals: dict[str, list[float]]) -> Path:
    arms = compare.parse_arms("grpo,mapo,grpo-twin")
    settings = compare.Settings(arms=arms, seeds=seeds, steps=10, test_freq=5, negative_control=("grpo", "grpo-twin"))
    runs = []
    for seed in seeds:
        for arm in arms:
            run = _run(arm.name, seed, _curve(finals[arm.name][seed - 1]), estimator=arm.estimator)
            run["p"], run["lambdas"] = {1: [0.25, 1.0]}, {1: [0.25, 1.0]}
            runs.append(run)
    compare.write_outputs(out, settings, runs)
    return out / "summary.json"


FINALS = {
    "grpo": [0.50, 0.60, 0.55, 0.58],
    "mapo": [0.55, 0.66, 0.57, 0.63],
    "grpo-twin": [0.52, 0.58, 0.56, 0.57],
}


def test_merging_later_seeds_gives_what_one_comparison_of_all_seeds_gives(tmp_path: Path) -> None:
    whole = json.loads(_comparison(tmp_path / "whole", (1, 2, 3, 4), FINALS).read_text())
    first = _comparison(tmp_path / "first", (1, 2, 3), FINALS)
    later = _comparison(tmp_path / "later", (4,), FINALS)
    assert compare.main(["--merge", str(first), str(later), "--out", str(tmp_path / "merged")]) == 0
    merged = json.loads((tmp_path / "merged" / "summary.json").read_text())
    for key in ("table", "paired", "paired_area", "controls", "arms", "reference"):
        assert merged[key] == whole[key], key
    assert merged["settings"]["seeds"] == [1, 2, 3, 4]
    assert [(r["arm"], r["seed"]) for r in merged["runs"]] == [(r["arm"], r["seed"]) for r in whole["runs"]]
    assert merged["runs"][0]["p"] == {"1": [0.25, 1.0]}  # the per-step certainty travels in the records
    assert (tmp_path / "merged" / "table.md").read_text() == (tmp_path / "whole" / "table.md").read_text()


def test_merge_refuses_other_settings_and_runs_twice(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    first = _comparison(tmp_path / "first", (1, 2), FINALS)
    again = _comparison(tmp_path / "again", (2, 3), FINALS)
    assert compare.main(["--merge", str(first), str(again), "--out", str(tmp_path / "m")]) == 2
    assert "runs already merged: grpo seed 2" in capsys.readouterr().err
    other = json.loads(first.read_text())
    other["settings"]["lr"] = 0.5
    (tmp_path / "other.json").write_text(json.dumps(other))
    later = _comparison(tmp_path / "later", (3,), FINALS)
    assert compare.main(["--merge", str(tmp_path / "other.json"), str(later), "--out", str(tmp_path / "m")]) == 2
    err = capsys.readouterr().err
    assert "other settings than" in err and "(lr)" in err
    assert not (tmp_path / "m" / "summary.json").exists()


def test_a_rerun_replaces_the_failed_run_of_its_arm_and_seed(tmp_path: Path) -> None:
    """A crash (out of memory) in the study: grpo-twin seed 2 failed; it runs again alone (``--arms grpo-twin
    --seeds 2``, no controls) and the merge gives the whole comparison's numbers, the failed attempt named."""
    whole = json.loads(_comparison(tmp_path / "whole", (1, 2, 3), FINALS).read_text())
    first = json.loads(_comparison(tmp_path / "first", (1, 2, 3), FINALS).read_text())
    crashed = next(r for r in first["runs"] if (r["arm"], r["seed"]) == ("grpo-twin", 2))
    crashed.update(returncode=1, val_acc=[], final_acc=None, area=None, seconds=332.0)
    (tmp_path / "crashed.json").write_text(json.dumps(first))
    alone = compare.Settings(arms=compare.parse_arms("grpo-twin"), seeds=(2,), steps=10, test_freq=5)
    rerun = _run("grpo-twin", 2, _curve(FINALS["grpo-twin"][1]), estimator="grpo")
    rerun["p"], rerun["lambdas"] = {1: [0.25, 1.0]}, {1: [0.25, 1.0]}
    compare.write_outputs(tmp_path / "rerun", alone, [rerun])
    merged_dir = tmp_path / "merged"
    argv = ["--merge", str(tmp_path / "crashed.json"), str(tmp_path / "rerun" / "summary.json"), "--out"]
    assert compare.main([*argv, str(merged_dir)]) == 0
    merged = json.loads((merged_dir / "summary.json").read_text())
    for key in ("table", "paired", "paired_area", "controls", "arms", "reference"):
        assert merged[key] == whole[key], key
    twin = next(r for r in merged["runs"] if (r["arm"], r["seed"]) == ("grpo-twin", 2))
    assert twin["failed_attempts"] == [{"status": "failed (exit 1)", "seconds": 332.0, "commit": None}]
    assert (
        "| grpo-twin | 2 | ok, rerun after 1 failed attempt: failed (exit 1) after 332 s |"
        in (merged_dir / "table.md").read_text()
    )
    # the first comparison names the arms: the rerun's one arm first refuses the others
    again = ["--merge", str(tmp_path / "rerun" / "summary.json"), str(tmp_path / "crashed.json")]
    assert compare.main([*again, "--out", str(tmp_path / "m2")]) == 2  # the first names the arms: one arm only


def test_merge_refuses_an_arm_defined_otherwise(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    first = _comparison(tmp_path / "first", (1,), FINALS)
    twin = compare.parse_arms("grpo-twin=grpo:actor_rollout_ref.rollout.seed=7")
    other = compare.Settings(arms=twin, seeds=(2,), steps=10, test_freq=5)
    compare.write_outputs(tmp_path / "other", other, [_run("grpo-twin", 2, _curve(0.5), estimator="grpo")])
    argv = ["--merge", str(first), str(tmp_path / "other" / "summary.json"), "--out", str(tmp_path / "m")]
    assert compare.main(argv) == 2
    assert "arms not defined as in" in capsys.readouterr().err


def _study_module():
    import importlib.util
    import sys

    repo = Path(__file__).resolve().parents[2]
    sys.path.insert(0, str(repo / "benchmarks"))
    try:
        spec = importlib.util.spec_from_file_location("study_arms", repo / "benchmarks" / "study_arms.py")
        assert spec is not None and spec.loader is not None
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
    finally:
        sys.path.remove(str(repo / "benchmarks"))
    return module


def test_the_study_report_reads_every_number_and_verdict_from_the_summary(tmp_path: Path) -> None:
    study = _study_module()
    finals = {**FINALS, "mapo-permuted": [0.50, 0.61, 0.54, 0.60], "apd": [0.51, 0.60, 0.55, 0.59]}
    arms = compare.parse_arms("grpo,mapo,mapo-permuted,apd")
    settings = compare.Settings(arms=arms, seeds=(1, 2, 3, 4), steps=10, test_freq=5)
    runs = [
        {**_run(a.name, seed, _curve(finals[a.name][seed - 1]), estimator=a.estimator), "commit": "abc1234"}
        for seed in settings.seeds
        for a in arms
    ]
    compare.write_outputs(tmp_path, settings, runs)
    text = study.report(tmp_path / "summary.json")
    assert "**Interim: 4 of the planned 8 seeds.**" in text and "--seeds 5-8" in text
    assert "16 runs (16 completed) of 4 arms x 4 seeds" in text and "code at abc1234" in text
    # mapo - grpo = +0.05, +0.06, +0.02, +0.05: the interval excludes 0
    assert (
        "mapo - grpo (final held-out accuracy): +0.045 [" in text and "the interval excludes 0: mapo is higher" in text
    )
    # mapo - mapo-permuted: +0.05, +0.05, +0.03, +0.03, from the paired table against mapo, negated
    assert "**The permuted-lambda question.** mapo - mapo-permuted (final held-out accuracy): +0.040 [" in text
    page = tmp_path / "page.md"
    page.write_text(f"# t\n\n{study.START}old\n{study.END}\nafter\n")
    study.update_docs(text, page)
    assert page.read_text() == f"# t\n\n{study.START}{text.rstrip()}\n{study.END}\nafter\n"
