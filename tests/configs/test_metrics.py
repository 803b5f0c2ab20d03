"""MAPO's metrics reach verl's step metrics, exact per step; the hook's contract with verl 0.9.1."""

from __future__ import annotations

import inspect
import threading
import uuid

import numpy as np
import pytest
import torch
from omegaconf import OmegaConf
from transfer_queue import KVBatchMeta
from verl import DataProto
from verl.trainer.ppo import ray_trainer
from verl.trainer.ppo.v1 import trainer_base
from verl.trainer.ppo.v1.utils import compute_advantage_for_multi_trajectories

from mapo_verl import metrics

# groups: all succeed (p=1), none succeed (p=0), half (p=1/2), and a single response
GROUP_SCORES = [[1.0, 1.0, 1.0, 1.0], [0.0, 0.1, 0.9, 0.0], [1.0, 0.0, 0.9, 1.0], [1.0]]


def _batch(group_scores: list[list[float]] = GROUP_SCORES) -> DataProto:
    scores, uids = [], []
    for group in group_scores:
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
            "mapo": {"success_threshold": 1.0, "reward_min": 0.0, "lambda_fn": lambda_fn, "epsilon": 1e-6},
        }
    )


def test_metrics_from_verl_compute_advantage_on_a_dataproto():
    with metrics.collect() as block:
        data = ray_trainer.compute_advantage(_batch(), adv_estimator="mapo", num_repeat=4, config=_algorithm())
    got = block.metrics()
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


def test_no_success_means_no_success_key():
    data = _batch()
    data.batch["token_level_rewards"].zero_()
    with metrics.collect() as block:
        ray_trainer.compute_advantage(data, adv_estimator="mapo", config=_algorithm())
    got = block.metrics()
    assert "mapo/adv_success_mean" not in got and got["mapo/groups_p0_frac"] == 1.0


def test_outside_a_step_nothing_is_recorded_and_blocks_are_per_thread():
    with metrics.collect() as outer:
        seen: dict = {}

        def other_thread() -> None:  # a new thread starts outside any block: its calls are not ours
            ray_trainer.compute_advantage(_batch([[1.0, 0.0]]), adv_estimator="mapo", config=_algorithm())
            with metrics.collect() as own:
                ray_trainer.compute_advantage(_batch([[1.0, 0.0]] * 3), adv_estimator="mapo", config=_algorithm())
            seen.update(own.metrics())

        worker = threading.Thread(target=other_thread)
        worker.start()
        worker.join()
        ray_trainer.compute_advantage(_batch(), adv_estimator="mapo", config=_algorithm())
    assert outer.metrics()["mapo/num_groups"] == 4
    assert seen["mapo/num_groups"] == 3
    ray_trainer.compute_advantage(_batch(), adv_estimator="mapo", config=_algorithm())  # no block: no error
    assert metrics._ACTIVE.get() is None


def test_estimator_works_when_the_metrics_break(monkeypatch, caplog):
    def broken(*_a, **_k):
        raise RuntimeError("metrics broke")

    monkeypatch.setattr(metrics, "batch_sums", broken)
    monkeypatch.setattr(metrics, "_warned", False)
    with metrics.collect() as block:
        data = ray_trainer.compute_advantage(_batch(), adv_estimator="mapo", config=_algorithm())
    assert torch.isfinite(data.batch["advantages"]).all()
    assert block.metrics() == {}
    assert "could not record MAPO metrics" in caplog.text


# ------------------------------------------------------- verl's real PPOTrainer.step, several iterations
def _trainer(parameter_sync_step: int, batches: list[DataProto]) -> trainer_base.PPOTrainer:
    """verl's PPOTrainerSync (trainer_mode=sync) without its workers: the real (hooked) ``step`` with
    ``parameter_sync_step`` iterations, each computing advantages as verl's ``_compute_advantage`` does."""
    from verl.trainer.ppo.v1 import get_trainer_cls

    trainer = object.__new__(get_trainer_cls("sync"))
    trainer.config = OmegaConf.create(
        {"data": {"train_batch_size": 4 * parameter_sync_step}, "algorithm": _algorithm(), "actor_rollout_ref": {}}
    )
    trainer.parameter_sync_step = parameter_sync_step
    trainer.prepare_step = lambda: {}
    queue = list(batches)

    def step_once(iter_metrics: dict, timing_raw: dict, sample_batch_size: int) -> KVBatchMeta:
        data = queue.pop(0)
        keys = [f"{uid}_0_{i}" for i, uid in enumerate(data.non_tensor_batch["uid"])]
        compute_advantage_for_multi_trajectories(
            data, batch_keys=keys, adv_estimator=trainer.config.algorithm.adv_estimator, config=trainer.config.algorithm
        )
        iter_metrics["critic/score/mean"] = float(data.batch["token_level_rewards"].sum(-1).mean())
        return KVBatchMeta(partition_id="train", keys=keys, tags=[{} for _ in keys])

    trainer._step_once = step_once
    return trainer


def test_verl_step_logs_exact_per_step_metrics_over_several_iterations():
    first, second = GROUP_SCORES, [[0.0, 0.0, 1.0], [1.0, 1.0, 0.0], [0.0, 0.0, 0.0]]
    trainer = _trainer(2, [_batch(first), _batch(second)])
    logged: dict = {}
    trainer.step(logged, {})
    # the step's groups: 4 + 3 = 7; p: 1, 0, 1/2, 1 | 1/3, 2/3, 0
    assert logged["mapo/num_groups"] == 7
    assert logged["mapo/p_mean"] == pytest.approx((1 + 0 + 0.5 + 1 + 1 / 3 + 2 / 3 + 0) / 7)
    assert logged["mapo/groups_p0_frac"] == pytest.approx(2 / 7)
    with metrics.collect() as direct:  # the same numbers as one batch holding every group of the step
        ray_trainer.compute_advantage(_batch(first + second), adv_estimator="mapo", config=_algorithm())
    for key, value in direct.metrics().items():
        assert logged[key] == pytest.approx(value, abs=1e-9), key
    assert "critic/score/mean" in logged  # verl's own aggregation of the iterations still runs


def test_the_hook_is_on_verl_step_and_every_trainer_mode_inherits_it():
    """`import verl` loaded the plugin, which wrapped PPOTrainer.step when verl imported its trainer."""
    step = trainer_base.PPOTrainer.step
    assert getattr(step, metrics.HOOK_MARK, False), "mapo metrics hook is not installed on PPOTrainer.step"
    from verl.trainer.ppo.v1 import get_trainer_cls

    for mode in ("sync", "colocate_async", "separate_async"):
        assert get_trainer_cls(mode).step is step, f"trainer_mode={mode} overrides step: hook bypassed"


def test_verl_logs_the_dict_step_fills_and_computes_advantages_inside_step():
    """The contract with verl 0.9.1 that a stand-in cannot show: fit logs the dict it passes to step, and
    step's iterations compute advantages in the same thread (checked on verl's source)."""
    assert list(inspect.signature(inspect.unwrap(trainer_base.PPOTrainer.step)).parameters)[:2] == ["self", "metrics"]
    fit = inspect.getsource(trainer_base.PPOTrainer.fit)
    assert "self.step(metrics, self.timing_raw)" in fit and "self.logger.log(data=metrics" in fit
    assert "self._compute_advantage(batch, metrics=metrics)" in inspect.getsource(trainer_base.PPOTrainer._step_once)
    source = inspect.getsource(trainer_base.PPOTrainer._compute_advantage)
    assert "compute_advantage_for_multi_trajectories(" in source and "config=self.config.algorithm" in source


def test_a_changed_verl_is_a_warning_not_a_crash(caplog):
    class Module:
        class PPOTrainer:
            def step(self, timing_raw):  # no metrics parameter
                return timing_raw

    with pytest.raises(TypeError, match="no `metrics` parameter"):
        metrics.wrap_step(Module.PPOTrainer.step)
    metrics._wrap_trainer(Module)
    assert "MAPO metrics are off" in caplog.text
    assert not hasattr(Module.PPOTrainer.step, metrics.HOOK_MARK)
