"""``compare``'s statistics (:mod:`mapo_verl_cpu.experiments.statistics`) and the tables and ``summary.json`` built
from them, on synthetic runs: known means and intervals, n/a cases, clipping, failed runs left out and counted,
pairing by seed, controls, and the whole write path from run folders as verl writes them."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest

from mapo_verl.mixed_advantage import MapoSettings
from mapo_verl.supervise import Outcome
from mapo_verl_cpu.experiments import compare
from mapo_verl_cpu.experiments.statistics import (
    Estimate,
    curve_area,
    mean_interval,
    paired_difference,
    t_quantile,
)

REPO = Path(__file__).resolve().parents[2]


def _t_cdf(q: float, df: int, intervals: int = 4000) -> float:
    """P(T <= q) for Student's t with ``df`` degrees of freedom: 1/2 plus Simpson's rule on its density over [0, q]."""
    log_norm = math.lgamma((df + 1) / 2) - math.lgamma(df / 2) - 0.5 * math.log(df * math.pi)

    def density(x: float) -> float:
        return math.exp(log_norm - (df + 1) / 2 * math.log1p(x * x / df))

    h = q / intervals
    total = density(0.0) + density(q)
    total += sum((4 if i % 2 else 2) * density(i * h) for i in range(1, intervals))
    return 0.5 + total * h / 3


@pytest.mark.parametrize("df", [*range(1, 31), 31, 35, 40, 60, 120, 500])
def test_t_quantile_is_the_975th_percentile(df: int) -> None:
    assert _t_cdf(t_quantile(df), df) == pytest.approx(0.975, abs=1e-5)


def test_t_quantile_known_values() -> None:
    known = {1: 12.706, 2: 4.303, 10: 2.228, 30: 2.042, 40: 2.021, 60: 2.000, 120: 1.980}
    assert {df: round(t_quantile(df), 3) for df in known} == known
    assert t_quantile(10**6) == pytest.approx(1.95996, abs=1e-5)
    with pytest.raises(ValueError, match="degrees of freedom"):
        t_quantile(0)


def test_mean_interval_known_values_na_and_clipping() -> None:
    five = mean_interval([1, 2, 3, 4, 5])
    half = 2.7764 * math.sqrt(2.5) / math.sqrt(5)  # t_{0.975,4} * s / sqrt(n)
    assert (five.mean, five.n) == (3, 5) and (five.low, five.high) == pytest.approx((3 - half, 3 + half))
    two = mean_interval([0.2, 0.4])
    assert (two.low, two.high) == pytest.approx((0.3 - 1.27062, 0.3 + 1.27062))  # 12.7062 * 0.1414 / 1.4142
    clipped = mean_interval([0.2, 0.4], (0.0, 1.0))
    assert (clipped.mean, clipped.low, clipped.high) == pytest.approx((0.3, 0.0, 1.0))
    assert clipped.text() == "0.300 [0.000, 1.000]"
    one, equal, none = mean_interval([0.5]), mean_interval([0.8, 0.8, 0.8]), mean_interval([])
    assert one == Estimate(0.5, None, None, 1) and one.text() == "0.500 (n/a: 1 seed)"
    assert equal == Estimate(pytest.approx(0.8), None, None, 3) and equal.text() == "0.800 (n/a: 3 seeds agree)"
    assert none == Estimate(None, None, None, 0) and none.text() == "n/a"
    assert one.covers_zero() is None and not one.has_interval
    assert mean_interval([-0.1, 0.2]).covers_zero() is True and mean_interval([0.1, 0.11]).covers_zero() is False
    assert mean_interval([-0.1, 0.2]).text(signed=True) == "+0.050 [-1.856, +1.956]"


def test_paired_difference_pairs_by_seed() -> None:
    arm = {1: 0.5, 2: 0.7, 3: 0.6}
    ref = {1: 0.4, 2: 0.5, 4: 0.9}  # seed 3 missing from the reference, seed 4 from the arm: left out
    diff = paired_difference(arm, ref)
    half = 12.7062 * math.sqrt(0.005) / math.sqrt(2)
    assert diff.n == 2 and diff.mean == pytest.approx(0.15)
    assert (diff.low, diff.high) == pytest.approx((0.15 - half, 0.15 + half))
    assert diff.as_dict() == {"mean": diff.mean, "low": diff.low, "high": diff.high, "n": 2}
    assert paired_difference({1: 0.5}, {1: 0.25}) == Estimate(0.25, None, None, 1)  # one pair: n/a
    assert paired_difference({1: 0.5}, {2: 0.25}) == Estimate(None, None, None, 0)
    # paired, not pooled: a shared seed effect cancels (unpaired, the spread of each arm would swamp 0.1)
    tight = paired_difference({1: 0.2, 2: 0.9, 3: 0.5}, {1: 0.1, 2: 0.8, 3: 0.41})
    assert tight.covers_zero() is False


def test_curve_area() -> None:
    assert curve_area([[0, 0.0], [10, 1.0]]) == pytest.approx(0.5)
    assert curve_area([[0, 0.0], [1, 1.0], [4, 1.0]]) == pytest.approx((0.5 + 3.0) / 4)  # uneven steps
    assert curve_area([[10, 0.796875], [0, 0.4375], [5, 0.78125]]) == pytest.approx(0.69921875)  # sorted by step
    assert curve_area([[0, 0.5]]) is None and curve_area([]) is None


def _run(arm: str, seed: int, val: list[list[float]], returncode: int = 0, estimator: str | None = None) -> dict:
    """A run record as :func:`compare.main` keeps it (what :func:`compare.read_run` returns, plus its identity)."""
    return {
        "arm": arm,
        "estimator": estimator or arm,
        "overrides": [],
        "seed": seed,
        "metrics": f"runs/{arm}-s{seed}/metrics.jsonl",
        "returncode": returncode,
        "seconds": 1.0,
        "steps": val[-1][0] if val else 0,
        "val_acc": val,
        "score": [],
        "lambda": [],
        "p": {},
        "lambdas": {},
        "kinds": {},
        "lambda_fn": "tcr",
        "lambda_assignment": "group",
    }


def _curve(final: float) -> list[list[float]]:
    return [[0, 0.4], [5, (0.4 + final) / 2], [10, final]]


def test_failed_runs_are_flagged_left_out_and_counted() -> None:
    runs = [
        _run("grpo", 1, _curve(0.6)),
        _run("grpo", 2, _curve(0.75)),
        _run("grpo", 3, _curve(0.95), returncode=124),  # timed out: its last validation is not a final accuracy
        _run("mapo", 1, _curve(0.7)),
        _run("mapo", 2, [], returncode=1),
        _run("mapo", 3, _curve(0.9)),
    ]
    assert [compare.run_status(r) for r in runs] == ["ok", "ok", "timed out", "ok", "failed (exit 1)", "ok"]
    assert compare.run_status(_run("x", 1, [])) == "no validation"
    stats = compare.summarise(runs, 0.5, "grpo", None, None)
    grpo, mapo = stats["table"]
    assert (grpo["arm"], grpo["runs"], grpo["failed"]) == ("grpo", 2, [{"seed": 3, "status": "timed out"}])
    assert grpo["final"]["mean"] == pytest.approx(0.675) and grpo["final"]["n"] == 2
    assert (grpo["final"]["low"], grpo["final"]["high"]) == (0.0, 1.0)  # 0.675 -+ 0.953: clipped to [0, 1]
    assert mapo["failed"] == [{"seed": 2, "status": "failed (exit 1)"}] and mapo["final"]["mean"] == pytest.approx(0.8)
    assert grpo["area"]["mean"] == pytest.approx((0.4 + 2 * 0.5 + 0.6 + 0.4 + 2 * 0.575 + 0.75) / 8)
    # paired by seed over the seeds both completed: seed 1 only (grpo's seed 3 timed out, mapo's seed 2 failed)
    assert stats["paired"] == {
        "mapo": {"mean": pytest.approx(0.1), "low": None, "high": None, "n": 1, "detectable": None}
    }
    assert stats["reference"] == "grpo" and stats["controls"] is None
    table = compare.render_table(stats, 0.5)
    assert "| grpo | grpo | - | 2 | 1: s3 timed out | 0.400 (n/a: 2 seeds agree) | 0.675 [0.000, 1.000] |" in table
    assert "| mapo | mapo | tcr | 2 | 1: s2 failed (exit 1) |" in table
    assert "| mapo | 1 | +0.100 (n/a: 1 seed) |" in table
    per_run = compare.render_runs(runs)
    assert (
        "| grpo | 3 | timed out (left out) | 0.950 |" in per_run
        and "| mapo | 2 | failed (exit 1) (left out) | n/a |" in per_run
    )
    assert "| grpo | 1 | ok | 0.600 | 0.500 | 1.0 |" in per_run


def test_paired_differences_and_controls() -> None:
    finals = {
        "grpo": [0.60, 0.70, 0.65, 0.72],
        "grpo-b": [0.62, 0.68, 0.66, 0.71],  # the same settings under another name
        "slow": [0.40, 0.52, 0.45, 0.50],  # a quarter of the lr
        "mapo": [0.61, 0.75, 0.66],  # seed 4 never ran
    }
    runs = [_run(arm, seed, _curve(f)) for arm, values in finals.items() for seed, f in enumerate(values, 1)]
    stats = compare.summarise(runs, 0.5, "grpo", ["grpo", "grpo-b"], "slow")
    assert set(stats["paired"]) == {"grpo-b", "slow", "mapo"}  # every arm but the reference
    mapo = stats["paired"]["mapo"]
    diffs = [0.01, 0.05, 0.01]
    half = t_quantile(2) * math.sqrt(sum((d - 7 / 300) ** 2 for d in diffs) / 2) / math.sqrt(3)
    assert mapo["n"] == 3 and mapo["mean"] == pytest.approx(7 / 300)
    assert (mapo["low"], mapo["high"]) == pytest.approx((7 / 300 - half, 7 / 300 + half))
    assert mapo["detectable"] == pytest.approx(half)  # the half-width: the smallest difference that excludes 0
    assert stats["paired_area"]["mapo"]["n"] == 3
    controls = stats["controls"]
    assert controls["negative"] == ["grpo", "grpo-b"] and controls["positive"] == ["slow", "grpo"]
    assert controls["negative_covers_zero"] is True and controls["positive_excludes_zero"] is True
    assert controls["positive_difference"]["high"] < 0 and controls["negative_difference"]["n"] == 4
    table = compare.render_table(stats, 0.5)
    assert "Paired by seed against grpo (arm - grpo, over the seeds both completed):" in table
    assert "* negative control, grpo - grpo-b: " in table and "interval covers 0: yes" in table
    assert "* positive control, slow - grpo: -0.200 [" in table and "interval excludes 0: yes" in table
    assert controls["negative_difference"]["detectable"] > 0 and "(smallest detectable 0." in table
    assert "| mapo | 3 | +0.023 [" in table and f"| {half:.3f} |" in table
    # a control the data do not bear out says so; one pair gives no verdict
    flipped = compare.summarise(runs, 0.5, "grpo", ["grpo", "slow"], "grpo-b")["controls"]
    assert flipped["negative_covers_zero"] is False and flipped["positive_excludes_zero"] is False
    assert "interval covers 0: NO" in compare.render_table(
        compare.summarise(runs, 0.5, "grpo", ["grpo", "slow"], None), 0.5
    )
    single = compare.summarise([r for r in runs if r["seed"] == 1], 0.5, "grpo", ["grpo", "grpo-b"], None)
    assert single["controls"]["negative_covers_zero"] is None and single["controls"]["positive"] is None


def _write_run_folder(run_dir: Path, val: list[tuple[int, float]]) -> None:
    """What :func:`compare.read_run` reads: verl's file-logger ``metrics.jsonl`` (validation and training steps),
    a rollout dump per training step and a validation dump per validation."""
    run_dir.mkdir(parents=True)
    lines = []
    for step, acc in val:
        lines.append({"step": step, "data": {"val-core/mapo/shapes/acc/mean@1": acc}})
        if step:
            lines.append({"step": step, "data": {"actor/pg_loss": 0.1, "critic/score/mean": acc}})
    (run_dir / "metrics.jsonl").write_text("\n".join(json.dumps(x) for x in lines) + "\n")
    (run_dir / "rollouts").mkdir()
    rows = [
        {"uid": f"g{g}_{r}_0", "score": float(r < g), "output": "", "input": "", "step": 1}
        for g in range(3)
        for r in range(2)
    ]
    (run_dir / "rollouts" / "1.jsonl").write_text("\n".join(json.dumps(r) for r in rows) + "\n")
    (run_dir / "validation").mkdir()
    for step, acc in val:
        rows = [{"input": "<image>What colour is the large shape?", "acc": acc}]
        (run_dir / "validation" / f"{step}.jsonl").write_text("\n".join(json.dumps(r) for r in rows) + "\n")


def test_write_path_from_run_folders(tmp_path: Path) -> None:
    arms = compare.parse_arms("grpo,apd,twin=grpo")
    settings = compare.Settings(arms=arms, seeds=(1, 2), steps=4, test_freq=2, negative_control=("grpo", "twin"))
    val = {
        ("grpo", 1): [(0, 0.5), (2, 0.5), (4, 0.75)],
        ("grpo", 2): [(0, 0.5), (2, 0.75), (4, 1.0)],
        ("apd", 1): [(0, 0.5), (2, 0.75), (4, 1.0)],
        ("apd", 2): [(0, 0.5), (2, 1.0)],  # killed at step 3
        ("twin", 1): [(0, 0.5), (2, 0.5), (4, 0.5)],
        ("twin", 2): [(0, 0.5), (2, 0.75), (4, 1.0)],
    }
    arms = {arm.name: arm for arm in settings.arms}
    runs = []
    for (name, seed), spec in compare.plan_runs(settings, tmp_path, tmp_path / "m", tmp_path / "d").items():
        _write_run_folder(spec.out, val[(name, seed)])
        mapo = MapoSettings(lambda_fn="one") if name == "apd" else None
        runs.append(
            {
                "arm": name,
                "estimator": arms[name].estimator,
                "overrides": list(arms[name].overrides),
                "seed": seed,
                "metrics": str(spec.metrics_path.relative_to(tmp_path)),
                "returncode": 124 if (name, seed) == ("apd", 2) else 0,
                "seconds": 2.0,
                **compare.read_run(spec.out, mapo),
            }
        )
    summary = compare.write_outputs(tmp_path, settings, runs)
    on_disk = json.loads((tmp_path / "summary.json").read_text())
    assert on_disk == json.loads(json.dumps(summary))
    assert on_disk["format"] == compare.SUMMARY_FORMAT == 2
    assert on_disk["arms"] == {
        "grpo": {"estimator": "grpo", "overrides": []},
        "apd": {"estimator": "mapo", "overrides": ["algorithm.mapo.lambda_fn=one"]},
        "twin": {"estimator": "grpo", "overrides": []},
    }
    assert on_disk["reference"] == "grpo"
    apd_run = next(r for r in on_disk["runs"] if (r["arm"], r["seed"]) == ("apd", 1))
    assert apd_run["estimator"] == "mapo" and apd_run["overrides"] == ["algorithm.mapo.lambda_fn=one"]
    assert apd_run["final_acc"] == 1.0 and apd_run["area"] == pytest.approx((0.625 + 0.875) / 2)
    assert (tmp_path / apd_run["metrics"]).is_file()
    killed = next(r for r in on_disk["runs"] if (r["arm"], r["seed"]) == ("apd", 2))
    assert killed["status"] == "timed out" and killed["final_acc"] == 1.0  # kept per run, left out of the means
    assert on_disk["paired"]["apd"] == {"mean": 0.25, "low": None, "high": None, "n": 1, "detectable": None}
    assert on_disk["paired"]["twin"]["n"] == 2 and on_disk["controls"]["negative"] == ["grpo", "twin"]
    assert on_disk["controls"]["positive"] is None
    table = (tmp_path / "table.md").read_text()
    assert "| apd | mapo | one | 1 | 1: s2 timed out |" in table  # the arm's lambda_fn, from its MAPO settings
    assert "| grpo | grpo | - | 2 | 0 | 0.500 (n/a: 2 seeds agree) | 0.875 [0.000, 1.000] |" in table
    assert "| apd | 2 | timed out (left out) | 1.000 |" in table
    assert "| step | grpo: p hist 0/0.5/1 | grpo: mean lambda | apd: p hist 0/0.5/1 | apd: mean lambda |" in table
    assert "* negative control, grpo - twin: +0.125 [" in table
    pytest.importorskip("matplotlib")
    assert (tmp_path / "curves.png").stat().st_size > 1000


def test_older_summary_reads_with_arms_and_recomputed_statistics() -> None:
    """The committed ``--quick`` summary (format 1, keyed by estimator) reads as arms named after the estimators."""
    summary = compare.read_summary(REPO / "docs" / "learning" / "quick_summary.json")
    assert summary["format"] == 1 and "format 1 (before arms)" in summary["note"]
    assert summary["arms"] == {
        "mapo": {"estimator": "mapo", "overrides": []},
        "grpo": {"estimator": "grpo", "overrides": []},
    }
    assert summary["reference"] == "grpo"
    mapo, grpo = summary["table"]
    assert mapo["final"] == {"mean": 0.796875, "low": None, "high": None, "n": 2}  # both seeds 51/64: no interval
    assert (grpo["final"]["low"], grpo["final"]["high"]) == pytest.approx((0.598, 0.995), abs=1e-3)
    assert summary["paired"]["mapo"]["mean"] == pytest.approx(0.0) and summary["paired"]["mapo"]["n"] == 2
    assert all(r["arm"] == r["estimator"] and r["status"] == "ok" for r in summary["runs"])
    assert compare.read_summary(REPO / "docs" / "learning" / "quick_summary.json")["runs"][0]["area"] is not None


def test_main_keys_runs_by_arm(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture) -> None:
    """``main`` end to end with the runner replaced by one that writes each run's folder as verl's trainer does
    (nothing of verl replaced; the GPU backend, so no tiny model is built): folders, records and tables by arm, each
    arm's lambda from its own composed config, a timed-out run flagged and its exit status returned."""
    curves = {"grpo": [(0, 0.5), (2, 0.75)], "apd": [(0, 0.5), (2, 1.0)]}
    ran = []

    def stand_in(launcher: str, spec, placement, timeout, report) -> Outcome:
        name, seed = spec.out.name.rsplit("-s", 1)
        ran.append((name, int(seed), [a for a in spec.main_ppo_args() if a.startswith("algorithm.mapo.")]))
        _write_run_folder(spec.out, curves[name])
        return Outcome(-9, 3.0, timed_out=True) if (name, seed) == ("grpo", "2") else Outcome(0, 3.0)

    monkeypatch.setattr(compare, "run_with", stand_in)
    out = tmp_path / "out"
    argv = ["--out", str(out), "--backend", "gpu", "--arms", "grpo,apd", "--seeds", "2", "--steps", "2"]
    assert compare.main([*argv, "--positive-control", "apd", "--jobs", "1"]) == 124
    assert sorted(ran) == [("apd", s, ["algorithm.mapo.lambda_fn=one"]) for s in (1, 2)] + [
        ("grpo", 1, []),
        ("grpo", 2, []),
    ]
    assert sorted(p.name for p in (out / "runs").iterdir()) == ["apd-s1", "apd-s2", "grpo-s1", "grpo-s2"]
    summary = json.loads((out / "summary.json").read_text())
    assert [(r["arm"], r["seed"], r["status"]) for r in summary["runs"]] == [
        ("grpo", 1, "ok"), ("apd", 1, "ok"), ("grpo", 2, "timed out"), ("apd", 2, "ok"),
    ]  # fmt: skip
    assert summary["paired"]["apd"] == {"mean": 0.25, "low": None, "high": None, "n": 1, "detectable": None}
    assert summary["controls"]["positive"] == ["apd", "grpo"] and summary["controls"]["positive_excludes_zero"] is None
    console = capsys.readouterr().out
    assert "apd seed 1: held-out accuracy by step 0:0.50 2:1.00" in console
    assert "| apd | mapo | one | 2 | 0 |" in console and "| grpo | grpo | - | 1 | 1: s2 timed out |" in console
    assert "| apd | mapo | one | 2 | 0 |" in (out / "table.md").read_text()
