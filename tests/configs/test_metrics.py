"""MAPO's metrics reach verl's step metrics; the verl internals the hook relies on are pinned here."""

from __future__ import annotations

import inspect
import uuid

import numpy as np
import pytest
import torch
from omegaconf import OmegaConf
from verl import DataProto
from verl.trainer.ppo import ray_trainer
from verl.trainer.ppo.v1 import trainer_base
from verl.trainer.ppo.v1 import utils as v1_utils

from mapo_verl import metrics, verl_plugin

# groups: all succeed (p=1), none succeed (p=0), half (p=1/2), and a single response
GROUP_SCORES = [[1.0, 1.0, 1.0, 1.0], [0.0, 0.1, 0.9, 0.0], [1.0, 0.0, 0.9, 1.0], [1.0]]


def _batch() -> DataProto:
    scores, uids = [], []
    for group in GROUP_SCORES:
        uid = str(uuid.uuid4())
        scores += group
        uids += [uid] * len(group)
    length = 5
    mask = torch.ones(len(scores), length)
    mask[:, 3:] = 0
    rewards = torch.zeros(len(scores), length)
    rewards[:, 2] = torch.tensor(scores)  # outcome reward on the last response token
    data = DataProto.from_dict(tensors={"token_level_rewards": rewards, "response_mask": mask})
    data.non_tensor_batch["uid"] = np.array(uids, dtype=object)
    return data


def _algorithm(lambda_fn: str = "tcr"):
    return OmegaConf.create(
        {
            "adv_estimator": "mapo",
            "norm_adv_by_std_in_grpo": True,
            "mapo": {"success_threshold": 1.0, "lambda_fn": lambda_fn, "epsilon": 1e-6},
        }
    )


def test_metrics_from_verl_compute_advantage_on_a_dataproto():
    metrics.SINK.clear()
    data = ray_trainer.compute_advantage(_batch(), adv_estimator="mapo", num_repeat=4, config=_algorithm())
    got = metrics.SINK.drain()
    # p per group: 1, 0, 1/2, 1 (singleton of a success); tcr lambda: 1, 1, 0, 1
    assert got["mapo/num_groups"] == 4
    assert got["mapo/p_mean"] == pytest.approx((1 + 0 + 0.5 + 1) / 4)
    assert got["mapo/lambda_mean"] == pytest.approx((1 + 1 + 0 + 1) / 4)
    assert got["mapo/groups_p0_frac"] == pytest.approx(0.25)
    assert got["mapo/groups_p1_frac"] == pytest.approx(0.5)
    assert got["mapo/groups_singleton_frac"] == pytest.approx(0.25)
    adv = data.batch["advantages"][:, 0]
    success = torch.tensor([s >= 1.0 for g in GROUP_SCORES for s in g])
    assert got["mapo/adv_success_mean"] == pytest.approx(adv[success].mean().item(), abs=1e-6)
    assert got["mapo/adv_failure_mean"] == pytest.approx(adv[~success].mean().item(), abs=1e-6)
    assert got["mapo/adv_success_mean"] > 0 > got["mapo/adv_failure_mean"]
    assert metrics.SINK.drain() == {}  # drained


def test_metrics_survive_verl_aggregation():
    metrics.SINK.clear()
    ray_trainer.compute_advantage(_batch(), adv_estimator="mapo", config=_algorithm())
    agg = v1_utils.MetricsAggregator()
    agg.add_step_metrics(metrics.SINK.drain(), sample_count=13)
    out = agg.get_aggregated_metrics()
    assert out["mapo/p_mean"] == pytest.approx(2.5 / 4)


def test_no_success_means_no_success_key():
    metrics.SINK.clear()
    data = _batch()
    data.batch["token_level_rewards"].zero_()
    ray_trainer.compute_advantage(data, adv_estimator="mapo", config=_algorithm())
    got = metrics.SINK.drain()
    assert "mapo/adv_success_mean" not in got and got["mapo/groups_p0_frac"] == 1.0


def test_estimator_works_without_the_metrics_path(monkeypatch):
    def broken(*_a, **_k):
        raise RuntimeError("metrics broke")

    monkeypatch.setattr(metrics, "batch_sums", broken)
    data = ray_trainer.compute_advantage(_batch(), adv_estimator="mapo", config=_algorithm())
    assert torch.isfinite(data.batch["advantages"]).all()


# ------------------------------------------------------------ the verl internals the hook relies on
def test_hook_is_installed_on_the_v1_trainer():
    """`import verl` loaded the plugin, which wrapped PPOTrainer._compute_advantage when verl imported it."""
    method = trainer_base.PPOTrainer._compute_advantage
    assert getattr(method, "__mapo_metrics_hook__", False), (
        "mapo metrics hook is not installed on verl.trainer.ppo.v1.trainer_base.PPOTrainer._compute_advantage"
    )
    from verl.trainer.ppo.v1 import get_trainer_cls

    for mode in ("sync", "colocate_async", "separate_async"):
        cls = get_trainer_cls(mode)
        assert cls._compute_advantage is method, f"trainer_mode={mode} overrides _compute_advantage: hook bypassed"


def test_verl_passes_the_logged_metrics_dict_to_compute_advantage():
    """The dict given to _compute_advantage is the one verl aggregates and logs (verl 0.9.1)."""
    original = inspect.unwrap(trainer_base.PPOTrainer._compute_advantage)
    assert list(inspect.signature(original).parameters)[:3] == ["self", "batch", "metrics"]
    step_once = inspect.getsource(trainer_base.PPOTrainer._step_once)
    assert "self._compute_advantage(batch, metrics=metrics)" in step_once
    step = inspect.getsource(trainer_base.PPOTrainer.step)
    assert "self._step_once(iter_metrics" in step and "add_step_metrics(iter_metrics" in step
    assert "metrics.update(metrics_aggregator.get_aggregated_metrics())" in step
    fit = inspect.getsource(trainer_base.PPOTrainer.fit)
    assert "self.step(metrics" in fit and "self.logger.log(data=metrics" in fit


def test_verl_calls_the_registered_estimator_inside_compute_advantage():
    """Advantages are computed in the same process, inside the wrapped method (verl 0.9.1)."""
    source = inspect.getsource(inspect.unwrap(trainer_base.PPOTrainer._compute_advantage))
    assert "compute_advantage_for_multi_trajectories(" in source and "config=self.config.algorithm" in source
    assert "return compute_advantage(" in inspect.getsource(v1_utils.compute_advantage_for_multi_trajectories)
    assert "core_algos.get_adv_estimator_fn(adv_estimator)" in inspect.getsource(ray_trainer.compute_advantage)


def test_wrapper_feeds_metrics_into_the_dict():
    """The wrapper itself, on a stand-in method with verl's signature."""

    def _compute_advantage(self, batch, metrics):
        verl_plugin.mapo_advantage(
            batch.batch["token_level_rewards"],
            batch.batch["response_mask"],
            batch.non_tensor_batch["uid"],
            _algorithm(),
        )
        return "out"

    wrapped = metrics._wrap(_compute_advantage)
    logged: dict = {"other": 1.0}
    metrics.SINK.add(torch.ones(len(metrics._FIELDS), dtype=torch.float64))  # stale: must be dropped
    assert wrapped(object(), _batch(), metrics=logged) == "out"
    assert logged["other"] == 1.0 and logged["mapo/num_groups"] == 4


def test_changed_verl_is_a_warning_not_a_crash(caplog):
    class Module:
        __name__ = "fake"

        class PPOTrainer:
            def _compute_advantage(self, batch):  # no metrics parameter
                return batch

    with pytest.raises(TypeError, match="no `metrics` parameter"):
        metrics.patch_trainer_module(Module)
    metrics._patch_or_warn(Module)
    assert "MAPO metrics are off" in caplog.text
