"""Inputs a new user gives that used to run silently or print NaN: each stops with one line naming the key, flag or
rows, through the one validation the plug-in, ``check`` and ``explain`` share."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from omegaconf import OmegaConf

from mapo_verl import cli
from mapo_verl.mixed_advantage import DEFAULTS, validate_settings
from mapo_verl.verl_plugin import compute_mapo_outcome_advantage, settings_from_config


def _run(scores: list[float], index: list[object], config=None) -> torch.Tensor:
    rewards = torch.tensor(scores, dtype=torch.float32)[:, None]
    return compute_mapo_outcome_advantage(rewards, torch.ones_like(rewards), np.array(index, dtype=object), config)[0]


@pytest.mark.parametrize("section", ["linear", 3, ["tcr"]])
def test_algorithm_mapo_must_be_a_mapping(section):
    with pytest.raises(ValueError, match=r"algorithm\.mapo must be a mapping of its knobs"):
        settings_from_config(OmegaConf.create({"mapo": section}))


@pytest.mark.parametrize("key", ["lambda_fn", "success_threshold", "reward_min", "epsilon", "lambda_assignment"])
def test_a_null_knob_is_refused_not_defaulted(key):
    with pytest.raises(ValueError, match=rf"algorithm\.mapo\.{key} is null"):
        settings_from_config(OmegaConf.create({"mapo": {key: None}}))


@pytest.mark.parametrize(
    ("argv", "flag"),
    [
        (["0", "0", "0", "--epsilon", "0"], "--epsilon must be a positive number"),
        (["1", "0", "--success-threshold", "-1"], "--success-threshold=-1 must lie above --reward-min=0"),
        (["1", "0", "--success-threshold", "0.5", "--reward-min", "0.5"], "--success-threshold=0.5 must lie above"),
        (["1", "0", "--epsilon", "nan"], "--epsilon must be finite"),
    ],
)
def test_explain_refuses_what_the_plugin_refuses(argv, flag, capsys):
    assert cli.main(["explain", *argv]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and flag in err and len(err.strip().splitlines()) == 1


def test_plugin_and_explain_share_one_validation():
    bad = {"epsilon": 0.0}
    with pytest.raises(ValueError, match=r"algorithm\.mapo\.epsilon must be a positive number"):
        settings_from_config(OmegaConf.create({"mapo": bad}))
    with pytest.raises(ValueError, match="epsilon must be a positive number"):
        validate_settings(DEFAULTS.__class__(epsilon=0.0))


@pytest.mark.parametrize("reward_min", [-1e308, -1e300, -1e40])
def test_a_floor_so_far_below_that_apd_underflows_is_an_error(reward_min):
    """float32 rewards (as verl hands them): APD = (s - mu) / (mu - r_min) below float32's smallest normal number, or
    an overflow, is an error naming the knob, not zero or NaN advantages."""
    config = OmegaConf.create({"mapo": {"reward_min": reward_min, "success_threshold": 1.0}})
    with pytest.raises(ValueError, match=r"algorithm\.mapo\.reward_min=.* over- or underflows in float32"):
        _run([1.0, 0.0, 0.0, 1.0, 1.0, 0.0], ["a"] * 3 + ["b"] * 3, config)  # p = 1/3, 2/3: lambda = 1/9


def test_a_far_but_representable_floor_still_trains():
    config = OmegaConf.create({"mapo": {"reward_min": -1e6}})
    adv = _run([1.0, 0.0, 0.0, 1.0, 1.0, 0.0], ["a"] * 3 + ["b"] * 3, config)
    assert torch.isfinite(adv).all() and (adv[:, 0] != 0).all()


@pytest.mark.parametrize("missing", [None, float("nan"), np.nan])
def test_missing_uids_are_refused_not_merged_into_one_group(missing):
    with pytest.raises(ValueError, match=r"no group label \(uid None or NaN\) at rows \[1, 3\]"):
        _run([1.0, 0.0, 0.0, 1.0], ["a", missing, "a", missing])


def test_report_is_a_subcommand(capsys):
    with pytest.raises(SystemExit) as ended:
        cli.main(["report", "--help"])
    assert ended.value.code == 0
    assert "[NAME=]LOG" in capsys.readouterr().out
