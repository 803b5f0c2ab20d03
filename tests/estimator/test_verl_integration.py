"""`mapo` inside the real verl 0.9.1: registry, entry point, compute_advantage, composed config."""

from __future__ import annotations

import importlib
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest
import torch
import verl
from hydra import compose, initialize_config_module
from verl import DataProto
from verl.trainer.ppo import core_algos
from verl.trainer.ppo.ray_trainer import compute_advantage
from verl.trainer.ppo.v1.utils import compute_advantage_for_multi_trajectories

from mapo_verl import verl_plugin


def _python(code: str, **env: str) -> subprocess.CompletedProcess[str]:
    """A fresh interpreter (outside the repo, so only the installed package is visible)."""
    full_env = {**os.environ, **env}
    full_env.pop("PYTHONPATH", None)
    return subprocess.run(
        [sys.executable, "-c", textwrap.dedent(code)],
        capture_output=True,
        text=True,
        env=full_env,
        cwd=Path(sys.executable).parent,
        timeout=300,
    )


def _algorithm_section(*overrides: str):
    """verl's own ppo_trainer config composed as main_ppo would, returning `algorithm`."""
    with initialize_config_module("verl.trainer.config", version_base=None):
        cfg = compose("ppo_trainer", overrides=list(overrides))
    return cfg.algorithm


@pytest.mark.parametrize("norm", [True, False])
def test_lambda_zero_equals_verl_grpo(rng, make_batch, norm: bool) -> None:
    from omegaconf import OmegaConf

    for _ in range(4):
        rewards, mask, index = make_batch(rng, num_groups=25, min_group=2)
        cfg = OmegaConf.create({"norm_adv_by_std_in_grpo": norm, "mapo": {"lambda_fn": "zero"}})
        ours, _ = verl_plugin.mapo_advantage(rewards, mask, index, cfg)
        theirs, _ = core_algos.compute_grpo_outcome_advantage(
            rewards.clone(), mask, index, norm_adv_by_std_in_grpo=norm
        )
        torch.testing.assert_close(ours, theirs, rtol=1e-5, atol=1e-5)


def test_registered_under_mapo_and_idempotent() -> None:
    fn = core_algos.get_adv_estimator_fn("mapo")
    assert fn is verl_plugin.mapo_advantage
    verl_plugin.register()
    verl_plugin.register()
    assert core_algos.get_adv_estimator_fn("mapo") is fn


def test_reload_replaces_our_stale_function_without_error() -> None:
    old = core_algos.get_adv_estimator_fn("mapo")
    try:
        reloaded = importlib.reload(verl_plugin)
        assert core_algos.get_adv_estimator_fn("mapo") is reloaded.mapo_advantage
        assert reloaded.mapo_advantage is not old
    finally:
        core_algos.ADV_ESTIMATOR_REGISTRY["mapo"] = old


def test_an_unrelated_estimator_named_mapo_is_not_overridden() -> None:
    ours = core_algos.ADV_ESTIMATOR_REGISTRY.pop("mapo")
    try:
        core_algos.ADV_ESTIMATOR_REGISTRY["mapo"] = lambda **kw: None
        with pytest.raises(ValueError, match="another advantage estimator is already registered as 'mapo'"):
            verl_plugin.register()
    finally:
        core_algos.ADV_ESTIMATOR_REGISTRY["mapo"] = ours


def test_fresh_interpreter_that_imports_only_verl_resolves_mapo() -> None:
    out = _python(
        """
        import sys
        from verl.trainer.ppo.core_algos import get_adv_estimator_fn as g
        fn = g('mapo')
        print(fn.__module__, fn.__name__)
        """
    )
    assert out.returncode == 0, out.stderr
    assert out.stdout.split() == ["mapo_verl.verl_plugin", "mapo_advantage"]


def test_entry_point_is_the_mechanism_and_the_env_fallback_works() -> None:
    probe = "from verl.trainer.ppo.core_algos import ADV_ESTIMATOR_REGISTRY as R; print('mapo' in R)"
    off = _python(probe, VERL_USE_EXTERNAL_PLUGINS="none")
    assert off.returncode == 0, off.stderr
    assert off.stdout.strip() == "False"
    only_ours = _python(probe, VERL_USE_EXTERNAL_PLUGINS="mapo")
    assert only_ours.stdout.strip() == "True", only_ours.stderr
    fallback = _python(probe, VERL_USE_EXTERNAL_PLUGINS="none", VERL_USE_EXTERNAL_MODULES="mapo_verl")
    assert fallback.stdout.strip() == "True", fallback.stderr


def test_mapo_verl_alone_does_not_import_verl() -> None:
    out = _python("import sys, mapo_verl.mixed_advantage; print('verl' in sys.modules)")
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "False"


def _data_proto(rewards: torch.Tensor, mask: torch.Tensor, index: np.ndarray) -> DataProto:
    return DataProto.from_dict(
        tensors={"token_level_rewards": rewards, "response_mask": mask},
        non_tensors={"uid": index},
    )


@pytest.mark.parametrize(
    ("overrides", "kwargs"),
    [
        ([], {}),
        (
            ["+algorithm.mapo.lambda_fn=linear", "+algorithm.mapo.success_threshold=0.9"],
            {"lambda_fn": "linear", "success_threshold": 0.9},
        ),
        (["algorithm.norm_adv_by_std_in_grpo=false"], {"norm_by_std": False}),
    ],
)
def test_verl_compute_advantage_with_composed_config(rng, make_batch, reference, overrides, kwargs) -> None:
    algorithm = _algorithm_section("algorithm.adv_estimator=mapo", *overrides)
    assert algorithm.adv_estimator == "mapo"
    rewards, mask, index = make_batch(rng, num_groups=20)
    data = compute_advantage(
        _data_proto(rewards, mask, index),
        adv_estimator=algorithm.adv_estimator,
        norm_adv_by_std_in_grpo=algorithm.norm_adv_by_std_in_grpo,
        config=algorithm,
    )
    expected = torch.tensor(reference(rewards.sum(-1).tolist(), list(index), **kwargs))[:, None] * mask
    torch.testing.assert_close(data.batch["advantages"], expected, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(data.batch["returns"], expected, rtol=1e-5, atol=1e-5)


def test_v1_trainer_path_hands_mapo_the_batch_unchanged(rng, make_batch, reference) -> None:
    algorithm = _algorithm_section("algorithm.adv_estimator=mapo")
    rewards, mask, index = make_batch(rng, num_groups=10)
    keys = [f"{uid}_0_{i}" for i, uid in enumerate(index)]
    data = compute_advantage_for_multi_trajectories(
        _data_proto(rewards, mask, index), batch_keys=keys, adv_estimator="mapo", config=algorithm
    )
    expected = torch.tensor(reference(rewards.sum(-1).tolist(), list(index)))[:, None] * mask
    torch.testing.assert_close(data.batch["advantages"], expected, rtol=1e-5, atol=1e-5)


def test_verl_own_core_algos_cpu_tests_pass_with_the_plugin_installed() -> None:
    verl_tests = Path(verl.__file__).parent.parent / "tests" / "trainer" / "ppo" / "test_core_algos_on_cpu.py"
    assert verl_tests.is_file(), f"verl's wheel no longer ships {verl_tests}"
    out = _python(
        f"""
        import sys
        import verl.trainer.ppo.core_algos as ca
        assert 'mapo' in ca.ADV_ESTIMATOR_REGISTRY, 'plugin not loaded'
        import pytest
        sys.exit(pytest.main(['-q', '-p', 'no:cacheprovider', '--rootdir', {str(verl_tests.parent)!r},
                              {str(verl_tests)!r}]))
        """
    )
    assert out.returncode == 0, out.stdout[-3000:] + out.stderr[-3000:]
    assert " passed" in out.stdout and "failed" not in out.stdout
