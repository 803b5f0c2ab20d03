"""`mapo` in a Ray worker (where verl's TaskRunner computes advantages), and the CLI."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from mapo_verl.cli import declared_verl_range, explain, verl_version_check


@pytest.fixture(scope="module")
def ray_local():
    ray = pytest.importorskip("ray")
    os.environ.setdefault("RAY_AUTH_MODE", "disabled")
    ray.init(address="local", num_cpus=1, include_dashboard=False, log_to_driver=False)  # never a neighbour's Ray
    yield ray
    ray.shutdown()


@pytest.mark.ray
def test_mapo_resolves_inside_a_ray_actor_that_only_imports_verl(ray_local) -> None:
    ray = ray_local

    @ray.remote(num_cpus=0)
    class AdvantageActor:  # stands in for verl's TaskRunner: a fresh worker process
        def compute(self) -> tuple[int, str, list[float]]:
            import numpy as np
            import torch
            from verl.trainer.ppo.core_algos import get_adv_estimator_fn

            fn = get_adv_estimator_fn("mapo")
            rewards = torch.tensor([[0.9], [1.0], [1.0], [1.0]])
            adv, _ = fn(
                token_level_rewards=rewards,
                response_mask=torch.ones_like(rewards),
                index=np.array(["g"] * 4, dtype=object),
                config=None,
            )
            return os.getpid(), fn.__module__, adv[:, 0].tolist()

    pid, module, adv = ray.get(AdvantageActor.remote().compute.remote(), timeout=300)
    assert pid != os.getpid()
    assert module == "mapo_verl.verl_plugin"
    assert adv == pytest.approx([-1.1442, 0.3814, 0.3814, 0.3814], abs=1e-4)


def test_explain_table_shows_the_worked_example() -> None:
    table = explain([0.9, 1, 1, 1], success_threshold=1.0, lambda_fn="tcr", epsilon=1e-6, norm_by_std=True)
    assert "p = N/G = 0.7500" in table and "lambda(p) = 0.2500" in table
    rows = [line.split() for line in table.splitlines() if line.strip()[:1].isdigit()]
    assert [r[-1] for r in rows] == ["-1.1442", "0.3814", "0.3814", "0.3814"]
    assert [r[3] for r in rows] == ["-1.5000", "0.5000", "0.5000", "0.5000"]  # GRPO column


def test_explain_states_the_signed_rule_with_an_example() -> None:
    knobs = {"success_threshold": 1.0, "lambda_fn": "tcr", "epsilon": 1e-6, "norm_by_std": True}
    table = explain([1, -1, 0, 0], reward_min=-1, **knobs)
    assert "APD: (r - mu) / (mu - r_min + eps)" in table and "r_min = -1" in table
    rows = [line.split() for line in table.splitlines() if line.strip()[:1].isdigit()]
    assert [r[4] for r in rows] == ["1.0000", "-1.0000", "0.0000", "0.0000"]  # APD = s / (0 + 1)
    assert "bound: |MAPO| <= G - 1 = 3" in table


def test_declared_verl_range_is_the_tested_one() -> None:
    import verl

    declared = declared_verl_range()
    assert declared == ">=0.9.1,<0.10"
    assert verl_version_check(verl.__version__)[0], "the verl these tests run against is outside the declared range"
    inside, sentence = verl_version_check("0.9.0", declared)
    assert not inside and "verl 0.9.0 is outside the range" in sentence
    assert "pip install 'verl>=0.9.1,<0.10'" in sentence
    assert not verl_version_check("0.10.0", declared)[0]


@pytest.mark.slow
def test_explain_command_line() -> None:
    out = subprocess.run(
        [sys.executable, "-m", "mapo_verl", "explain", "1", "0", "0", "0", "--lambda-fn", "linear"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert out.returncode == 0, out.stderr
    assert "lambda(p) = 0.5000  (linear)" in out.stdout
    bad = subprocess.run([sys.executable, "-m", "mapo_verl", "explain", "x"], capture_output=True, text=True)
    assert bad.returncode == 2 and "invalid float value: 'x'" in bad.stderr
    signed = subprocess.run([sys.executable, "-m", "mapo_verl", "explain", "1", "-1"], capture_output=True, text=True)
    assert signed.returncode == 2 and "below algorithm.mapo.reward_min=0" in signed.stderr


@pytest.mark.slow
def test_doctor_without_ray_reports_all_good() -> None:
    out = subprocess.run(
        [sys.executable, "-m", "mapo_verl", "doctor", "--no-ray"], capture_output=True, text=True, timeout=300
    )
    assert out.returncode == 0, out.stdout + out.stderr
    assert "[ok ] fresh interpreter: `import verl` registers 'mapo'" in out.stdout
    assert "[ok ] verl 0.9.1 is inside the tested range verl>=0.9.1,<0.10" in out.stdout


@pytest.mark.slow
def test_doctor_reports_a_disabled_plugin_and_fails() -> None:
    env = {**os.environ, "VERL_USE_EXTERNAL_PLUGINS": "none"}
    out = subprocess.run(
        [sys.executable, "-m", "mapo_verl", "doctor", "--no-ray"], capture_output=True, text=True, env=env, timeout=300
    )
    assert out.returncode == 1
    assert "[FAIL] VERL_USE_EXTERNAL_PLUGINS='none' excludes the 'mapo' plugin" in out.stdout
    assert "[FAIL] fresh interpreter" in out.stdout
