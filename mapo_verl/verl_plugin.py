"""verl glue: registers the ``mapo`` advantage estimator in verl's ``core_algos`` registry.

verl imports this module on every ``import verl`` through the ``verl.plugins`` entry point that
``pyproject.toml`` declares, in the driver and in every Ray actor, including the TaskRunner where
advantages are computed.  Where entry points are turned off (``VERL_USE_EXTERNAL_PLUGINS=none``),
``VERL_USE_EXTERNAL_MODULES=mapo_verl`` imports it instead.

All the math lives in :mod:`mapo_verl.mixed_advantage`; this module only adapts verl's
calling convention (token-level tensors, a uid array, the ``algorithm`` config section).
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from dataclasses import fields, replace
from typing import Any

import numpy as np
import torch
from verl.trainer.ppo import core_algos

from mapo_verl import metrics, run_hooks, success_field
from mapo_verl.mixed_advantage import (
    DEFAULTS,
    MapoSettings,
    MixedAdvantageResult,
    compute_mixed_advantage,
    group_ids_from_index,
    validate_settings,
)
from mapo_verl.registry_probe import ESTIMATOR_NAME

logger = logging.getLogger(__name__)
_warned_singleton = False

#: Why MAPO refuses reward shaping that moves correct answers off the success threshold (unless a success key says
#: which responses succeeded).
KL_IN_REWARD_ERROR = (
    "algorithm.use_kl_in_reward=true subtracts beta*KL from every score, so a correct answer lands just below "
    "algorithm.mapo.success_threshold: p = 0 in every group, lambda = 1, and MAPO silently becomes pure APD. "
    "Put the KL in the loss instead: algorithm.use_kl_in_reward=false actor_rollout_ref.actor.use_kl_loss=true; "
    "or declare the reward's correctness field, +algorithm.mapo.success_key=acc (and set algorithm.mapo.reward_min "
    "to the shaped reward's floor)"
)


#: the keys of ``algorithm.mapo`` (``norm_adv_by_std`` is verl's own ``algorithm.norm_adv_by_std_in_grpo``)
MAPO_KEYS = tuple(f.name for f in fields(MapoSettings) if f.name != "norm_adv_by_std")


def _get(section: Any, key: str, default: Any) -> Any:
    """Read ``key`` from a DictConfig, a dict, or a dataclass-like object; ``default`` if absent."""
    if section is None:
        return default
    if isinstance(section, Mapping) or hasattr(section, "get"):
        value = section.get(key, default)
    else:
        value = getattr(section, key, default)
    return default if value is None else value


def _config_key(key: str) -> str:
    return f"algorithm.mapo.{key}"


def settings_from_config(config: Any) -> MapoSettings:
    """Build :class:`MapoSettings` from the ``algorithm`` config section verl passes (or None).

    Raises ValueError naming the offending key for a ``algorithm.mapo`` that is not a mapping, unknown
    ``algorithm.mapo.*`` keys and explicit nulls (a typo would otherwise silently run the defaults), values out of
    range (:func:`mapo_verl.mixed_advantage.validate_settings`, shared with ``explain``), and
    ``algorithm.use_kl_in_reward=true`` (:data:`KL_IN_REWARD_ERROR`).
    """
    section = _get(config, "mapo", None)
    if section is not None and not (isinstance(section, Mapping) or hasattr(section, "keys")):
        raise ValueError(
            f"algorithm.mapo must be a mapping of its knobs ({', '.join(MAPO_KEYS)}), got {section!r}: set one "
            "knob at a time, e.g. +algorithm.mapo.lambda_fn=linear"
        )
    values: dict[str, Any] = {}
    if section is not None:
        unknown = sorted(str(k) for k in section if k not in MAPO_KEYS)
        if unknown:
            raise ValueError(
                f"unknown key(s) algorithm.mapo.{', algorithm.mapo.'.join(unknown)}; valid keys: {', '.join(MAPO_KEYS)}"
            )
        for key in section:
            value = section.get(key)
            if value is None and getattr(DEFAULTS, str(key)) is not None:
                raise ValueError(
                    f"{_config_key(key)} is null; remove the key for the default ({getattr(DEFAULTS, key)!r}) or set "
                    "a value"
                )
            values[str(key)] = value
    for key in ("success_threshold", "reward_min", "epsilon"):
        if key in values and not isinstance(values[key], bool):
            try:
                values[key] = float(values[key])
            except (TypeError, ValueError):
                raise ValueError(f"{_config_key(key)} must be a number, got {values[key]!r}") from None
    for key in ("lambda_fn", "lambda_assignment"):
        if key in values:
            values[key] = str(values[key])
    norm = bool(_get(config, "norm_adv_by_std_in_grpo", DEFAULTS.norm_adv_by_std))
    settings = validate_settings(replace(DEFAULTS, norm_adv_by_std=norm, **values), _config_key)
    if settings.success_key is None and bool(_get(config, "use_kl_in_reward", False)):
        raise ValueError(KL_IN_REWARD_ERROR)
    return settings


def _check_inputs(token_level_rewards: torch.Tensor, response_mask: torch.Tensor, index: Any) -> None:
    if token_level_rewards.ndim != 2:
        raise ValueError(
            f"token_level_rewards must be (batch, response_length), got shape {tuple(token_level_rewards.shape)}"
        )
    if response_mask.shape != token_level_rewards.shape:
        raise ValueError(
            f"response_mask shape {tuple(response_mask.shape)} does not match "
            f"token_level_rewards shape {tuple(token_level_rewards.shape)}"
        )
    if index is None:
        raise ValueError(
            "the mapo estimator needs `index` (verl passes data.non_tensor_batch['uid']): "
            "responses must be grouped by prompt; is `uid` missing from the batch?"
        )
    if len(index) != token_level_rewards.shape[0]:
        raise ValueError(
            f"index has {len(index)} entries but token_level_rewards has {token_level_rewards.shape[0]} rows"
        )


def compute_mapo_outcome_advantage(
    token_level_rewards: torch.Tensor,
    response_mask: torch.Tensor,
    index: np.ndarray | None = None,
    config: Any = None,
    **_: Any,
) -> tuple[torch.Tensor, torch.Tensor]:
    """MAPO outcome advantage in verl's estimator signature.

    s_i = sum_t token_level_rewards[i, t]; A_i from :func:`mapo_verl.mixed_advantage.compute_mixed_advantage`
    with knobs from ``config`` (``algorithm.mapo.*``, ``algorithm.norm_adv_by_std_in_grpo``).
    Returns ``(advantages, returns)``, both A_i broadcast over the tokens times ``response_mask``,
    in the rewards' dtype and device.  The batch's MAPO metrics go to :func:`mapo_verl.metrics.record`.
    """
    result = advantage_from_verl_batch(token_level_rewards, response_mask, index, config)
    advantages = result.advantage.unsqueeze(-1) * response_mask
    if advantages.dtype != token_level_rewards.dtype:
        advantages = advantages.to(token_level_rewards.dtype)
    return advantages, advantages


def advantage_from_verl_batch(
    token_level_rewards: torch.Tensor,
    response_mask: torch.Tensor,
    index: Any,
    config: Any,
    successes: torch.Tensor | None = None,
) -> MixedAdvantageResult:
    """Validate verl's inputs, run the pure-math estimator on the outcome scores, record metrics.

    With ``algorithm.mapo.success_key`` set, each response's success comes from ``successes`` or else from the
    reward field laid for this call (:mod:`mapo_verl.success_field`); neither is an error naming the key.
    """
    global _warned_singleton
    settings = settings_from_config(config)
    _check_inputs(token_level_rewards, response_mask, index)
    if settings.success_key is not None:
        successes = successes if successes is not None else success_field.rows()
        if successes is None:
            raise success_field.missing_key_error(settings.success_key, [], "the batch handed to the estimator")
        if successes.shape[0] != token_level_rewards.shape[0]:
            raise ValueError(
                f"algorithm.mapo.success_key={settings.success_key!r}: {successes.shape[0]} values for "
                f"{token_level_rewards.shape[0]} responses"
            )
    else:
        successes = None
    with torch.no_grad():
        scores = token_level_rewards.sum(dim=-1)
        groups = group_ids_from_index(index)
        if not _warned_singleton and bool((groups.sizes == 1).any()):
            _warned_singleton = True
            logger.warning(
                "mapo: %d of %d groups hold a single response and get advantage 0 (no relative signal); "
                "is actor_rollout_ref.rollout.n >= 2? (warned once per process)",
                int((groups.sizes == 1).sum()),
                groups.num_groups,
            )
        result = compute_mixed_advantage(
            scores,
            groups,
            success_threshold=settings.success_threshold,
            reward_min=settings.reward_min,
            lambda_fn=settings.lambda_fn,
            epsilon=settings.epsilon,
            norm_by_std=settings.norm_adv_by_std,
            lambda_assignment=settings.lambda_assignment,
            success=successes,
        )
        metrics.record(result, groups)
    return result


def _is_ours(fn: Any) -> bool:
    return (
        getattr(fn, "__module__", None) == __name__
        and getattr(fn, "__qualname__", None) == "compute_mapo_outcome_advantage"
    )


def register() -> None:
    """Put :func:`compute_mapo_outcome_advantage` in verl's registry under ``mapo``; harmless to call again.

    A stale copy of our own function (after ``importlib.reload``) is replaced; an unrelated
    estimator already named ``mapo`` is an error rather than silently overridden.
    """
    registry = core_algos.ADV_ESTIMATOR_REGISTRY
    existing = registry.get(ESTIMATOR_NAME)
    if existing is compute_mapo_outcome_advantage:
        return
    if existing is not None and not _is_ours(existing):
        raise ValueError(
            f"another advantage estimator is already registered as {ESTIMATOR_NAME!r}: "
            f"{getattr(existing, '__module__', '?')}.{getattr(existing, '__qualname__', existing)}"
        )
    registry.pop(ESTIMATOR_NAME, None)
    core_algos.register_adv_est(ESTIMATOR_NAME)(compute_mapo_outcome_advantage)


register()
# MAPO's step metrics (mapo_verl.metrics) and the checkpoint guard (mapo_verl.checkpoint_guard) change verl objects,
# so they are installed only in runs that select `mapo` (mapo_verl.run_hooks); every other run keeps verl's own.
run_hooks.arm()
