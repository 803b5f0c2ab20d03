"""A declared correctness signal (``algorithm.mapo.success_key``): each response's success read from a reward field.

MAPO's certainty p = N / G needs to know which responses succeeded. By default that is s_i >= success_threshold on
the scalar reward the advantage uses; a shaped reward (KL in the reward, DAPO's overlong penalty, a format bonus)
moves correct answers off the threshold. With ``algorithm.mapo.success_key=acc`` the success of each response is
read from the reward's own ``acc`` field (1: success, 0: failure) and only lambda(p) uses it; GRPO's deviation and
APD keep the shaped scalar reward.

verl hands a registered estimator only rewards, mask, uid and config, so the field reaches the estimator through
this module, in runs that select ``mapo`` (:mod:`mapo_verl.run_hooks` installs it):

* ``ray_trainer.compute_advantage(data, ...)`` (the legacy trainer, and tests): :func:`from_batch` reads
  ``data.non_tensor_batch[KEY]``, where verl puts every reward field, for the estimator call inside it;
* the V1 trainer's ``PPOTrainer._compute_advantage(batch, metrics)``: the fields of each trajectory are in
  TransferQueue, ``extra_fields["reward_extra_info"]`` (where DAPO's group filter reads them);
  :func:`around_v1_compute_advantage` fetches them for the batch's keys, and :mod:`mapo_verl.sessions` lays them
  into the batch's ``non_tensor_batch`` in row order before the advantage is computed.

A missing field is an error at step 1 naming the key and the fields that are present; a value other than 1/0
(True/False) is an error naming the rows.
"""

from __future__ import annotations

import contextlib
import contextvars
import functools
import inspect
from collections.abc import Iterator, Sequence
from typing import Any

import numpy as np
import torch

#: per row of the next estimator call, whether the response succeeded (None: threshold the reward)
_ROWS: contextvars.ContextVar[torch.Tensor | None] = contextvars.ContextVar("mapo_success_rows", default=None)
#: the V1 trainer's trajectory key -> its reward fields, for the batch whose advantage is being computed
_FIELDS: contextvars.ContextVar[dict[str, dict] | None] = contextvars.ContextVar("mapo_reward_fields", default=None)


def as_successes(values: Sequence[Any], key: str) -> torch.Tensor:
    """1/True -> success, 0/False -> failure, as a bool tensor; anything else a ValueError naming key and rows."""
    out = np.zeros(len(values), dtype=bool)
    bad = []
    for row, value in enumerate(values):
        if isinstance(value, (bool, np.bool_)):
            out[row] = bool(value)
        elif isinstance(value, (int, float, np.integer, np.floating)) and float(value) in (0.0, 1.0):
            out[row] = float(value) == 1.0
        else:
            bad.append(row)
    if bad:
        shown = [values[r] for r in bad[:5]]
        raise ValueError(
            f"algorithm.mapo.success_key={key!r} must be 1 (success) or 0 (failure) for every response; rows "
            f"{bad[:5]} hold {shown} ({len(bad)} such rows)"
        )
    return torch.from_numpy(out)


def missing_key_error(key: str, present: Sequence[str], where: str) -> ValueError:
    return ValueError(
        f"algorithm.mapo.success_key={key!r}: {where} carries no {key!r} field (present: {sorted(present)}); "
        "does the reward return it (a dict with 'score' and this key)? Unset the key to threshold the reward"
    )


def rows() -> torch.Tensor | None:
    """The successes laid for the current estimator call (None when none were)."""
    return _ROWS.get()


@contextlib.contextmanager
def _bound(var: contextvars.ContextVar, value: Any) -> Iterator[None]:
    token = var.set(value)
    try:
        yield
    finally:
        var.reset(token)


def successes_for(values: torch.Tensor | None) -> contextlib.AbstractContextManager[None]:
    """Within the block, the successes of the rows of the estimator's call."""
    return _bound(_ROWS, values)


def from_batch(data: Any, key: str) -> torch.Tensor:
    """The successes in ``data.non_tensor_batch[key]`` (a DataProto), or an error naming the fields present."""
    batch = getattr(data, "non_tensor_batch", {}) or {}
    if key not in batch:
        raise missing_key_error(key, list(batch), "the batch's non_tensor_batch")
    return as_successes(list(batch[key]), key)


def reward_fields_for(fields: dict[str, dict]) -> contextlib.AbstractContextManager[None]:
    """Within the block, trajectory key -> its reward fields (what the V1 trainer's TransferQueue holds)."""
    return _bound(_FIELDS, fields)


def reward_fields(keys: Sequence[str]) -> list[dict] | None:
    """The reward fields of the V1 trainer's trajectories ``keys`` (None outside such a call)."""
    fields = _FIELDS.get()
    if fields is None:
        return None
    return [fields.get(str(k), {}) for k in keys]


def _fields_from_queue(batch: Any) -> dict[str, dict]:
    import transfer_queue as tq

    data = tq.kv_batch_get(keys=batch.keys, partition_id=batch.partition_id, select_fields=["extra_fields"])
    found = {}
    for key, value in zip(batch.keys, list(data["extra_fields"]), strict=True):
        extra = getattr(value, "data", value)
        info = extra.get("reward_extra_info", {}) if isinstance(extra, dict) else {}
        found[str(key)] = dict(info) if isinstance(info, dict) else {}
    return found


def _key_of(config: Any) -> str | None:
    from mapo_verl.verl_plugin import settings_from_config

    return settings_from_config(config).success_key


def around_compute_advantage(original: Any) -> Any:
    """verl's ``ray_trainer.compute_advantage`` that lays ``data.non_tensor_batch[success_key]`` for ``mapo``."""

    signature = inspect.signature(original)

    @functools.wraps(original)
    def compute_advantage(*args: Any, **kwargs: Any) -> Any:
        call = signature.bind(*args, **kwargs)
        estimator, config = call.arguments.get("adv_estimator"), call.arguments.get("config")
        key = _key_of(config) if str(getattr(estimator, "value", estimator)) == "mapo" else None
        if key is None:
            return original(*args, **kwargs)
        with successes_for(from_batch(call.arguments["data"], key)):
            return original(*args, **kwargs)

    compute_advantage._mapo_success_field = True  # type: ignore[attr-defined]
    return compute_advantage


def around_v1_compute_advantage(original: Any) -> Any:
    """``PPOTrainer._compute_advantage(batch, metrics)`` with the batch's reward fields fetched from TransferQueue
    when the run declares ``algorithm.mapo.success_key``."""

    @functools.wraps(original)
    def _compute_advantage(self: Any, batch: Any, metrics: dict) -> Any:
        algorithm = self.config.algorithm
        if str(algorithm.adv_estimator) != "mapo" or _key_of(algorithm) is None:
            return original(self, batch, metrics)
        with reward_fields_for(_fields_from_queue(batch)):
            return original(self, batch, metrics)

    _compute_advantage._mapo_success_field = True  # type: ignore[attr-defined]
    return _compute_advantage


def install() -> None:
    """Put the wrappers in front of verl's ``compute_advantage`` and the V1 trainer's ``_compute_advantage``."""
    from mapo_verl.post_import import call_after_import, replace_function

    def wrap_function(module: Any) -> None:
        if not getattr(getattr(module, "compute_advantage", None), "_mapo_success_field", False):
            replace_function(module, "compute_advantage", around_compute_advantage)

    def wrap_method(module: Any) -> None:
        cls = module.PPOTrainer
        if not getattr(cls._compute_advantage, "_mapo_success_field", False):
            cls._compute_advantage = around_v1_compute_advantage(cls._compute_advantage)

    call_after_import("verl.trainer.ppo.ray_trainer", wrap_function)
    call_after_import("verl.trainer.ppo.v1.trainer_base", wrap_method)
