"""A run description, built once and handed to a runner (local, Slurm, Ray) and to the summary.

A :class:`RunSpec` is everything a run of verl's ``main_ppo`` needs: which shipped config, the Hydra overrides,
the environment, the interpreter, and the output folder (``OUT/metrics.jsonl`` from verl's file logger,
``OUT/checkpoints``, ``OUT/main_ppo.log``, ``OUT/command.txt``). :func:`tiny_overrides` is the CPU shrink that
makes any shipped training config run with the tiny model (docs/cpu-smoke.md says why each override is there).
"""

from __future__ import annotations

import os
import shlex
import sys
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path

from mapo_verl.verl_log import METRICS_FILE
from mapo_verl_cpu.checkout import CONFIG_DIR, DEFAULT_CONFIG, REPO_ROOT

__all__ = ["CONFIG_DIR", "DEFAULT_CONFIG", "REPO_ROOT", "RunSpec"]


def override_key(override: str) -> str:
    """``+a.b=1`` / ``a.b=1`` / ``~a.b`` / ``++a.b=1`` -> ``a.b``."""
    return override.split("=", 1)[0].lstrip("+~")


def merge_overrides(base: Sequence[str], user: Sequence[str]) -> list[str]:
    """``base`` with every override whose key the user also sets removed, then the user's, in order."""
    user_keys = {override_key(o) for o in user}
    return [o for o in base if override_key(o) not in user_keys] + list(user)


def bad_overrides(overrides: Sequence[str]) -> list[str]:
    """The arguments that are not Hydra overrides (``key=value`` or ``~key``)."""
    return [o for o in overrides if "=" not in o and not o.startswith("~")]


def trainer_env(out: Path, extra: Mapping[str, str] | None = None) -> dict[str, str]:
    """The environment of a CPU run: the ``cpu`` platform, verl's file logger into ``OUT``, offline hubs."""
    env = {
        **os.environ,
        "VERL_PLATFORM": "cpu",
        "VERL_FILE_LOGGER_PATH": str(out / METRICS_FILE),
        "RAY_AUTH_MODE": os.environ.get("RAY_AUTH_MODE", "disabled"),
        "HF_DATASETS_OFFLINE": "1",
        "HF_HUB_OFFLINE": "1",
        "TOKENIZERS_PARALLELISM": "false",
        "PYTHONUNBUFFERED": "1",
        "RAY_DEDUP_LOGS": "0",
    }
    env.pop("RAY_ADDRESS", None)  # never attach to a cluster someone else started
    env.update(extra or {})
    return env


@dataclass(frozen=True)
class RunSpec:
    """One ``python -m verl.trainer.main_ppo`` run: config, overrides, environment, interpreter, output folder."""

    out: Path
    overrides: tuple[str, ...]
    steps: int
    config_name: str = DEFAULT_CONFIG
    config_dir: Path = CONFIG_DIR
    env: Mapping[str, str] = field(default_factory=dict)
    python: str = sys.executable
    #: substrings of trainer output -> progress message (first match wins), beyond the per-step lines
    markers: tuple[tuple[str, str], ...] = ()

    @property
    def metrics_path(self) -> Path:
        return self.out / METRICS_FILE

    @property
    def checkpoints(self) -> Path:
        return self.out / "checkpoints"

    @property
    def log_path(self) -> Path:
        return self.out / "main_ppo.log"

    def main_ppo_args(self) -> list[str]:
        """The arguments after ``python -m verl.trainer.main_ppo``."""
        return [f"--config-path={self.config_dir}", f"--config-name={self.config_name}", *self.overrides]

    def command(self) -> list[str]:
        return [self.python, "-m", "verl.trainer.main_ppo", *self.main_ppo_args()]

    def command_line(self) -> str:
        return shlex.join(self.command())

    def with_overrides(self, user: Sequence[str]) -> RunSpec:
        """This spec with ``user`` overrides replacing its own for the same keys."""
        return replace(self, overrides=tuple(merge_overrides(self.overrides, user)))


#: verl's ``ray.init`` arguments for a private Ray instance: ``address=local`` never attaches to a cluster already
#: running on the machine (nor to a stale ``/tmp/ray/ray_current_cluster``), which ``num_cpus``/``num_gpus`` would
#: make fail ("When connecting to an existing cluster, num_cpus and num_gpus must not be provided").
PRIVATE_RAY = (
    "ray_kwargs.ray_init.num_cpus=8",
    "+ray_kwargs.ray_init.num_gpus=1",
    "+ray_kwargs.ray_init.address=local",
)
#: keys a cluster launcher sets itself: the Ray cluster it starts and the trainer's node and GPU counts
CLUSTER_KEYS = frozenset({*(override_key(o) for o in PRIVATE_RAY), "trainer.nnodes", "trainer.n_gpus_per_node"})


def for_cluster(overrides: Sequence[str]) -> list[str]:
    """``overrides`` for a run that joins a launcher's Ray cluster: without :data:`CLUSTER_KEYS`."""
    return [o for o in overrides if override_key(o) not in CLUSTER_KEYS]


def tiny_overrides(
    *,
    model_dir: Path,
    data_dir: Path,
    out: Path,
    steps: int,
    estimator: str | None,
    prompts: int,
    n: int,
    lr: float = 1e-4,
    train_file: str = "train.parquet",
    val_file: str = "test.parquet",
) -> list[str]:
    """Shrink a shipped training config to the tiny model on the CPU platform (docs/cpu-smoke.md, "Overrides")."""
    estimator_override = [] if estimator is None else [f"algorithm.adv_estimator={estimator}"]
    return [
        *estimator_override,
        f"data.train_files={data_dir / train_file}",
        f"data.val_files={data_dir / val_file}",
        f"data.train_batch_size={prompts}",
        "data.max_prompt_length=320",
        "data.max_response_length=48",
        "data.dataloader_num_workers=0",
        "data.mm_processor_kwargs.min_pixels=3136",
        "data.mm_processor_kwargs.max_pixels=12544",
        f"actor_rollout_ref.model.path={model_dir}",
        "actor_rollout_ref.model.trust_remote_code=True",
        "+actor_rollout_ref.model.override_config.attn_implementation=sdpa",
        "actor_rollout_ref.model.use_remove_padding=False",
        "actor_rollout_ref.model.enable_gradient_checkpointing=False",
        f"actor_rollout_ref.actor.ppo_mini_batch_size={prompts}",
        "actor_rollout_ref.actor.ppo_max_token_len_per_gpu=8192",
        f"actor_rollout_ref.actor.optim.lr={lr:g}",
        "actor_rollout_ref.actor.strategy=fsdp2",
        "actor_rollout_ref.actor.fsdp_config.strategy=fsdp2",
        "actor_rollout_ref.ref.fsdp_config.strategy=fsdp2",
        "actor_rollout_ref.actor.fsdp_config.use_torch_compile=False",
        "actor_rollout_ref.ref.fsdp_config.use_torch_compile=False",
        f"actor_rollout_ref.rollout.n={n}",
        "actor_rollout_ref.rollout.tensor_model_parallel_size=1",
        "actor_rollout_ref.rollout.calculate_log_probs=True",
        "actor_rollout_ref.rollout.agent.num_workers=1",
        "reward.num_workers=1",
        "trainer.nnodes=1",
        "trainer.n_gpus_per_node=1",
        "trainer.device=cpu",
        f"trainer.total_training_steps={steps}",
        "trainer.total_epochs=1000",
        f"trainer.save_freq={steps}",
        f"trainer.test_freq={steps}",
        "trainer.val_before_train=True",
        "trainer.resume_mode=disable",
        "trainer.logger=[console,file]",
        "trainer.experiment_name=smoke",
        f"trainer.default_local_dir={out / 'checkpoints'}",
        *PRIVATE_RAY,
        "transfer_queue.backend.SimpleStorage.num_data_storage_units=1",
        f"hydra.run.dir={out / 'hydra'}",
    ]
