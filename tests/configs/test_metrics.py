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

# What a run that selects mapo does in its TaskRunner (mapo_verl.run_hooks): these tests drive verl's step directly.
metrics.install_trainer_hook()

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


def _algorithm(lambda_fn: str = "tcr", lambda_assignment: str | None = None):
    mapo = {"success_threshold": 1.0, "reward_min": 0.0, "lambda_fn": lambda_fn, "epsilon": 1e-6}
    if lambda_assignment is not None:
        mapo["lambda_assignment"] = lambda_assignment
    return OmegaConf.create({"adv_estimator": "mapo", "norm_adv_by_std_in_grpo": True, "mapo": mapo})


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
    assert got["mapo/lambda_permuted"] == 0.0  # the default: each group's own lambda


def test_the_permuted_control_is_logged_and_keeps_the_groups_own_lambda_mean():
    with metrics.collect() as block:
        config = _algorithm(lambda_assignment="permuted")
        data = ray_trainer.compute_advantage(_batch(), adv_estimator="mapo", config=config)
    got = block.metrics()
    assert got["mapo/lambda_permuted"] == 1.0
    assert got["mapo/lambda_mean"] == pytest.approx((1 + 1 + 0 + 1) / 4)  # the groups' own lambdas, as logged above
    with metrics.collect():
        default = ray_trainer.compute_advantage(_batch(), adv_estimator="mapo", config=_algorithm())
    assert not torch.equal(data.batch["advantages"], default.batch["advantages"])


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
        keys = [f"{uid}_{i}_0" for i, uid in enumerate(data.non_tensor_batch["uid"])]  # one output per session
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
    """Installed (as in a run that selects mapo), the hook wraps PPOTrainer.step, which every trainer mode uses."""
    step = trainer_base.PPOTrainer.step
    assert getattr(step, metrics.HOOK_MARK, False), "mapo metrics hook is not installed on PPOTrainer.step"
    from verl.trainer.ppo.v1 import get_trainer_cls

    for mode in ("sync", "colocate_async", "separate_async"):
        assert get_trainer_cls(mode).step is step, f"trainer_mode={mode} overrides step: hook bypassed"


def test_verl_fit_logs_the_dict_it_passes_to_step():
    """The one link a test without GPUs cannot run: ``fit`` logs the dict it passes to ``step`` (verl's source)."""
    assert list(inspect.signature(inspect.unwrap(trainer_base.PPOTrainer.step)).parameters)[:2] == ["self", "metrics"]
    fit = inspect.getsource(trainer_base.PPOTrainer.fit)
    assert "self.step(metrics, self.timing_raw)" in fit and "self.logger.log(data=metrics" in fit


# ------------------------------------ verl's real step, _step_once and _compute_advantage on TransferQueue
@pytest.fixture(scope="module")
def transfer_queue():
    """A local Ray with verl's TransferQueue (controller + one storage unit), as the TaskRunner has it."""
    ray = pytest.importorskip("ray")
    import os

    import transfer_queue as tq

    os.environ.setdefault("RAY_AUTH_MODE", "disabled")
    # a Ray of its own (never one another test started), logical CPUs: controller + storage unit
    ray.init(address="local", num_cpus=3, include_dashboard=False, log_to_driver=False)
    try:
        tq.init(OmegaConf.create({"backend": {"SimpleStorage": {"num_data_storage_units": 1}}}))
        yield tq
        tq.close()
    finally:
        ray.shutdown()


def _put_rollouts(tq, group_scores: list[list[float]], partition: str = "train") -> KVBatchMeta:
    """Responses into TransferQueue in the agent loop's layout: key uid_session_index, ragged tensors."""
    from verl.utils.tensordict_utils import list_of_dict_to_tensordict

    keys, fields = [], []
    for group in group_scores:
        uid = str(uuid.uuid4())
        for session, score in enumerate(group):
            length = 2 + session % 3
            rm_scores = torch.zeros(length)
            rm_scores[-1] = score  # the outcome reward on the last response token
            keys.append(f"{uid}_{session}_0")
            fields.append({"uid": uid, "response_mask": torch.ones(length, dtype=torch.int64), "rm_scores": rm_scores})
    tags = [{"status": "success"} for _ in keys]
    tq.kv_batch_put(keys=keys, fields=list_of_dict_to_tensordict(fields), tags=tags, partition_id=partition)
    return KVBatchMeta(partition_id=partition, keys=keys, tags=tags)


@pytest.mark.ray
@pytest.mark.slow
def test_verl_step_and_compute_advantage_log_mapo_metrics_through_transfer_queue(transfer_queue):
    """verl's real ``step`` -> ``_step_once`` -> ``_compute_advantage`` (TransferQueue, verl's compute_advantage,
    the registered estimator) with two iterations; only the GPU workers' parts are stand-ins."""
    from verl.trainer.ppo.v1 import get_trainer_cls

    first, second = GROUP_SCORES, [[0.0, 0.0, 1.0], [1.0, 1.0, 0.0], [0.0, 0.0, 0.0]]
    batches = [_put_rollouts(transfer_queue, first), _put_rollouts(transfer_queue, second)]

    class ReplayBuffer:  # hands out what the agent loop put, as verl's replay buffer does
        def sample(self, global_steps: int, partition_id: str, batch_size: int):
            return batches.pop(0), {}

    class Idle:  # the rollout replicas and reward workers live on GPUs
        reward_loop_worker_handles = ("remote reward workers",)

        def sleep_replicas(self) -> None:
            return None

    trainer = object.__new__(get_trainer_cls("sync"))
    trainer.config = OmegaConf.create(
        {
            "data": {"train_batch_size": 8},
            "algorithm": {**_algorithm(), "use_kl_in_reward": False, "gamma": 1.0, "lam": 1.0},
            "actor_rollout_ref": {"rollout": {"n": 4, "temperature": 1.0}},
            "trainer": {"critic_warmup": 10**9},
        }
    )
    trainer.parameter_sync_step, trainer.global_steps, trainer.curr_step_profile = 2, 1, False
    trainer.replay_buffer, trainer.reward_loop_manager, trainer.checkpoint_manager = ReplayBuffer(), Idle(), Idle()
    trainer.use_reference_policy = trainer.use_critic = False
    trainer.prepare_step = lambda: {}
    trainer._balance_batch = trainer._compute_old_log_prob = lambda batch, metrics: batch  # GPU workers' steps

    logged: dict = {}
    trainer.step(logged, {})
    with metrics.collect() as direct:  # the same numbers as one batch holding every group of the step
        ray_trainer.compute_advantage(_batch(first + second), adv_estimator="mapo", config=_algorithm())
    assert logged["mapo/num_groups"] == 7
    for key, value in direct.metrics().items():
        assert logged[key] == pytest.approx(value, abs=1e-6), key
    assert not batches  # both iterations sampled


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
