"""`mapo` inside the real verl 0.9.1: registry, entry point, compute_advantage, composed config."""

from __future__ import annotations

import importlib
import json
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


def _start(code: str, **env: str) -> subprocess.Popen[str]:
    """A fresh interpreter (outside the repo, so only the installed package is visible)."""
    full_env = {**os.environ, **env}
    full_env.pop("PYTHONPATH", None)
    return subprocess.Popen(
        [sys.executable, "-c", textwrap.dedent(code)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=full_env,
        cwd=Path(sys.executable).parent,
    )


def _finish(proc: subprocess.Popen[str]) -> tuple[int, str, str]:
    out, err = proc.communicate(timeout=300)
    return proc.returncode, out, err


VERL_CPU_TESTS = Path(verl.__file__).parent.parent / "tests" / "trainer" / "ppo" / "test_core_algos_on_cpu.py"

# One fresh interpreter for every probe that needs a clean `import verl` under the default environment;
# its findings are the last line of stdout, as JSON.
_FRESH_PROBES = f"""
import json, sys
import mapo_verl.mixed_advantage
found = {{"math_imports_verl": "verl" in sys.modules}}
from verl.trainer.ppo.core_algos import get_adv_estimator_fn
fn = get_adv_estimator_fn("mapo")
found["estimator"] = [fn.__module__, fn.__name__]
from verl.trainer.ppo.v1.trainer_base import PPOTrainer
found["metrics_hook"] = bool(getattr(PPOTrainer.step, "__mapo_metrics_hook__", False))
from verl.utils.checkpoint import checkpoint_manager
found["guarded"] = bool(getattr(checkpoint_manager.find_latest_ckpt_path, "_mapo_checkpoint_guard", False))
import pytest
# verl's own CPU tests of the estimators, with the plugin loaded (their setUp clears the registry: last)
found["verl_tests_exit"] = int(pytest.main(["-q", "-p", "no:cacheprovider", "--rootdir", {str(VERL_CPU_TESTS.parent)!r},
                                            {str(VERL_CPU_TESTS)!r}]))
print(json.dumps(found))
"""


@pytest.fixture(scope="module")
def fresh_interpreter() -> dict:
    code, out, err = _finish(_start(_FRESH_PROBES))
    assert code == 0, out[-3000:] + err[-3000:]
    return {**json.loads(out.strip().splitlines()[-1]), "stdout": out}


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
        ours, _ = verl_plugin.compute_mapo_outcome_advantage(rewards, mask, index, cfg)
        theirs, _ = core_algos.compute_grpo_outcome_advantage(
            rewards.clone(), mask, index, norm_adv_by_std_in_grpo=norm
        )
        torch.testing.assert_close(ours, theirs, rtol=1e-5, atol=1e-5)


def test_registered_under_mapo_and_idempotent() -> None:
    fn = core_algos.get_adv_estimator_fn("mapo")
    assert fn is verl_plugin.compute_mapo_outcome_advantage
    verl_plugin.register()
    verl_plugin.register()
    assert core_algos.get_adv_estimator_fn("mapo") is fn


def test_reload_replaces_our_stale_function_without_error() -> None:
    old = core_algos.get_adv_estimator_fn("mapo")
    try:
        reloaded = importlib.reload(verl_plugin)
        assert core_algos.get_adv_estimator_fn("mapo") is reloaded.compute_mapo_outcome_advantage
        assert reloaded.compute_mapo_outcome_advantage is not old
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


@pytest.mark.slow
def test_fresh_interpreter_that_imports_only_verl_resolves_mapo_and_leaves_verl_unchanged(fresh_interpreter) -> None:
    assert fresh_interpreter["estimator"] == ["mapo_verl.verl_plugin", "compute_mapo_outcome_advantage"]
    # outside a run that selects mapo, the plug-in changes no verl function (mapo_verl.run_hooks)
    assert fresh_interpreter["metrics_hook"] is False
    assert fresh_interpreter["guarded"] is False


@pytest.mark.slow
def test_mapo_verl_math_alone_does_not_import_verl(fresh_interpreter) -> None:
    assert fresh_interpreter["math_imports_verl"] is False


@pytest.mark.slow
def test_verl_own_core_algos_cpu_tests_pass_with_the_plugin_installed(fresh_interpreter) -> None:
    assert VERL_CPU_TESTS.is_file(), f"verl's wheel no longer ships {VERL_CPU_TESTS}"
    assert fresh_interpreter["verl_tests_exit"] == 0, fresh_interpreter["stdout"][-3000:]
    assert " passed" in fresh_interpreter["stdout"]


@pytest.mark.slow
def test_entry_point_is_the_mechanism_and_the_env_fallback_works() -> None:
    probe = "from verl.trainer.ppo.core_algos import ADV_ESTIMATOR_REGISTRY as R; print('mapo' in R)"
    envs = {
        "off": {"VERL_USE_EXTERNAL_PLUGINS": "none"},
        "only_ours": {"VERL_USE_EXTERNAL_PLUGINS": "mapo"},
        "fallback": {"VERL_USE_EXTERNAL_PLUGINS": "none", "VERL_USE_EXTERNAL_MODULES": "mapo_verl"},
    }
    procs = {name: _start(probe, **env) for name, env in envs.items()}  # concurrently: three verl imports
    results = {name: _finish(proc) for name, proc in procs.items()}
    for name, (code, _, err) in results.items():
        assert code == 0, f"{name}: {err[-2000:]}"
    assert {name: out.strip() for name, (_, out, _) in results.items()} == {
        "off": "False",
        "only_ours": "True",
        "fallback": "True",
    }


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


def test_kl_in_reward_stops_verl_compute_advantage_at_the_first_call(rng, make_batch) -> None:
    algorithm = _algorithm_section("algorithm.adv_estimator=mapo", "algorithm.use_kl_in_reward=true")
    rewards, mask, index = make_batch(rng, num_groups=3)
    with pytest.raises(ValueError, match=r"use_kl_in_reward=true.*actor_rollout_ref\.actor\.use_kl_loss=true"):
        compute_advantage(_data_proto(rewards, mask, index), adv_estimator="mapo", config=algorithm)


def test_v1_trainer_path_hands_mapo_the_batch_unchanged(rng, make_batch, reference) -> None:
    algorithm = _algorithm_section("algorithm.adv_estimator=mapo")
    rewards, mask, index = make_batch(rng, num_groups=10)
    keys = [f"{uid}_{i}_0" for i, uid in enumerate(index)]  # {uid}_{session_id}_{index}: one output per session
    data = compute_advantage_for_multi_trajectories(
        _data_proto(rewards, mask, index), batch_keys=keys, adv_estimator="mapo", config=algorithm
    )
    expected = torch.tensor(reference(rewards.sum(-1).tolist(), list(index)))[:, None] * mask
    torch.testing.assert_close(data.batch["advantages"], expected, rtol=1e-5, atol=1e-5)
