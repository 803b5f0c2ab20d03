"""``compare --arms``: arm parsing (presets, custom arms, errors) and each arm's overrides reaching its runs only."""

from __future__ import annotations

from pathlib import Path

import pytest

from mapo_verl.mixed_advantage import LAMBDA_ASSIGNMENTS, LAMBDA_FUNCTIONS, MapoSettings, validate_settings
from mapo_verl_cpu.experiments import compare
from mapo_verl_cpu.experiments.compare import Arm


def _settings(arms: str, **kw) -> compare.Settings:
    return compare.Settings(**{"arms": compare.parse_arms(arms), "seeds": (1, 2), "steps": 4, "test_freq": 2, **kw})


def _args(*argv: str):
    return compare.build_parser().parse_args(["--out", "x", *argv])


def test_presets() -> None:
    quarter = compare.Settings().lr / 4  # the CPU runs' lr (--lr's default, also --quick's), read from the code
    assert compare.parse_arms("grpo,mapo,mapo-permuted,apd,grpo-quarter-lr") == (
        Arm("grpo", "grpo"),
        Arm("mapo", "mapo"),
        Arm("mapo-permuted", "mapo", ("algorithm.mapo.lambda_assignment=permuted",)),
        Arm("apd", "mapo", ("algorithm.mapo.lambda_fn=one",)),
        Arm("grpo-quarter-lr", "grpo", (f"actor_rollout_ref.actor.optim.lr={quarter:g}",)),
    )
    assert quarter == pytest.approx(2.5e-4)
    # the MAPO knobs the presets set are MapoSettings fields with values the estimator accepts
    assert {"permuted", "group"} <= set(LAMBDA_ASSIGNMENTS) and "one" in LAMBDA_FUNCTIONS
    validate_settings(MapoSettings(lambda_assignment="permuted"))
    validate_settings(MapoSettings(lambda_fn="one"))
    for name in compare.ARM_PRESETS:  # and the plug-in's own reading of algorithm.mapo.* takes them
        compare.check_arm_overrides(compare.parse_arm(name))


def test_custom_arms_and_the_estimators_shorthand() -> None:
    assert compare.parse_arm("ctrl=grpo") == Arm("ctrl", "grpo")
    assert compare.parse_arm("x.1=mapo:algorithm.mapo.lambda_fn=linear:+algorithm.mapo.success_threshold=0.5") == Arm(
        "x.1", "mapo", ("algorithm.mapo.lambda_fn=linear", "+algorithm.mapo.success_threshold=0.5")
    )
    assert compare.parse_arm("mapo:algorithm.mapo.lambda_fn=linear") == Arm(
        "mapo", "mapo", ("algorithm.mapo.lambda_fn=linear",)
    )
    # a preset in the estimator's place: its overrides first, the arm's own after
    assert compare.parse_arm("p2=mapo-permuted:algorithm.mapo.epsilon=0.001") == Arm(
        "p2", "mapo", ("algorithm.mapo.lambda_assignment=permuted", "algorithm.mapo.epsilon=0.001")
    )
    arms = compare.settings_of(_args("--arms", "grpo,b=grpo,apd")).arms
    assert [a.name for a in arms] == ["grpo", "b", "apd"]
    assert compare.settings_of(_args("--estimators", "mapo,grpo")) == compare.settings_of(_args("--arms", "mapo,grpo"))
    assert compare.settings_of(_args("--quick", "--arms", "apd")).arms == (compare.parse_arm("apd"),)
    defaults = compare.settings_of(_args("--arms", "grpo,mapo,mapo-permuted"))
    assert compare.reference_arm(defaults) == "grpo"
    assert compare.reference_arm(compare.settings_of(_args("--arms", "mapo,apd"))) == "mapo"  # no grpo: the first
    assert compare.reference_arm(compare.settings_of(_args("--arms", "grpo,mapo", "--reference", "mapo"))) == "mapo"


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--arms", "mapo,mapo"], "--arms: arm name(s) mapo given twice"),
        (["--arms", "a=grpo,a=mapo"], "--arms: arm name(s) a given twice"),
        (["--arms", "bad/name=mapo"], "--arms: arm 'bad/name=mapo': the name 'bad/name' must be"),
        (["--arms", "..=mapo"], "--arms: arm '..=mapo': the name '..' must be"),
        (["--arms", "x=mapo-permutd"], "--arms: arm x: 'mapo-permutd' is neither an estimator name nor a preset"),
        (["--arms", "x=mapo:oops"], "--arms: arm x: 'oops' is not an override of this arm"),
        (["--arms", "x=mapo:algorithm.adv_estimator=grpo"], "--arms: arm x: 'algorithm.adv_estimator=grpo' is not"),
        (["--arms", "x=mapo:algorithm.mapo.lambda_fn=cosine"], "--arms: arm x: algorithm.mapo.lambda_fn='cosine'"),
        (["--arms", "x=mapo:algorithm.mapo.lambda_assignment=shuffled"], "--arms: arm x: algorithm.mapo.lambda_assig"),
        (["--arms", "x=mapo:algorithm.mapo.typo=1"], "--arms: arm x: unknown key(s) algorithm.mapo.typo"),
        (["--arms", "x=mapo:algorithm.mapo.success_threshold=abc"], "--arms: arm x: algorithm.mapo.success_threshold"),
        (["--arms", "mapo", "--estimators", "grpo"], "--arms and --estimators: give one"),
        (["--arms", "grpo,grpo-quarter-lr", "--backend", "gpu"], "--arms: arm grpo-quarter-lr has the CPU preset"),
        (["--arms", "mapo,apd", "--reference", "grpo"], "--reference: 'grpo' is not an arm"),
        (["--arms", "a=grpo,b=grpo", "--negative-control", "a"], "--negative-control: two different arms"),
        (["--arms", "a=grpo,b=grpo", "--negative-control", "a,c"], "--negative-control: two different arms"),
        (["--arms", "grpo,mapo", "--positive-control", "grpo"], "--positive-control: an arm of grpo, mapo other"),
    ],
)
def test_bad_arms_fail_with_one_line_before_any_run(
    tmp_path: Path, capsys: pytest.CaptureFixture, argv: list[str], message: str
) -> None:
    out = tmp_path / "out"
    assert compare.main(["--out", str(out), *argv]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith(f"error: {message}"), err
    assert not out.exists()  # nothing started, nothing written


def test_overrides_reach_only_their_arms_runs(tmp_path: Path) -> None:
    settings = _settings("grpo,mapo,mapo-permuted,apd,grpo-quarter-lr", overrides=("trainer.val_only=False",))
    specs = compare.plan_runs(settings, tmp_path, tmp_path / "model", tmp_path / "data")
    names = [a.name for a in settings.arms]
    assert list(specs) == [(name, seed) for seed in (1, 2) for name in names]  # every arm at each seed
    for (name, seed), spec in specs.items():
        args = spec.main_ppo_args()
        arm = next(a for a in settings.arms if a.name == name)
        assert spec.out == tmp_path / "runs" / f"{name}-s{seed}"
        assert f"trainer.experiment_name=compare-{name}-s{seed}" in args
        assert f"trainer.rollout_data_dir={spec.out / 'rollouts'}" in args
        assert f"algorithm.adv_estimator={arm.estimator}" in args and f"data.seed={seed}" in args
        assert "trainer.val_only=False" in args  # the user's overrides: every arm
        mapo_knobs = [a for a in args if a.startswith("algorithm.mapo.")]
        lrs = [a for a in args if a.startswith("actor_rollout_ref.actor.optim.lr=")]
        assert mapo_knobs == [o for o in arm.overrides if o.startswith("algorithm.mapo.")]
        quarter = f"actor_rollout_ref.actor.optim.lr={settings.lr / 4:g}"
        assert lrs == (
            [quarter] if name == "grpo-quarter-lr" else [f"actor_rollout_ref.actor.optim.lr={settings.lr:g}"]
        )
    # an arm's override beats the user's override of the same key, in that arm only
    mine = _settings("a=mapo:algorithm.mapo.lambda_fn=linear,b=mapo", overrides=("algorithm.mapo.lambda_fn=zero",))
    fns = {
        name: [a for a in spec.main_ppo_args() if a.startswith("algorithm.mapo.lambda_fn=")]
        for (name, _), spec in compare.plan_runs(mine, tmp_path, tmp_path / "m", tmp_path / "d").items()
    }
    assert fns == {"a": ["algorithm.mapo.lambda_fn=linear"], "b": ["algorithm.mapo.lambda_fn=zero"]}
    gpu = compare.plan_runs(
        _settings("grpo,apd", backend="gpu", config="mapo_geo3k_qwen2_5_vl_7b"), tmp_path, None, None
    )
    assert "algorithm.mapo.lambda_fn=one" in gpu[("apd", 1)].main_ppo_args()
    assert not any(a.startswith("algorithm.mapo.") for a in gpu[("grpo", 1)].main_ppo_args())


def test_mapo_settings_read_each_arms_overrides(tmp_path: Path) -> None:
    """The config composed as each run's main_ppo composes it (real Hydra, the shipped config): the lambda the tables
    show is the arm's."""
    specs = compare.plan_runs(_settings("mapo,mapo-permuted,apd", seeds=(1,)), tmp_path, tmp_path / "m", tmp_path / "d")
    read = {name: compare.mapo_settings(spec) for (name, _), spec in specs.items()}
    assert (read["mapo"].lambda_fn, read["mapo"].lambda_assignment) == ("tcr", "group")
    assert (read["mapo-permuted"].lambda_fn, read["mapo-permuted"].lambda_assignment) == ("tcr", "permuted")
    assert (read["apd"].lambda_fn, read["apd"].lambda_assignment) == ("one", "group")
