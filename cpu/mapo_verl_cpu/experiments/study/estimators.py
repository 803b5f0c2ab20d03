"""The advantage estimators the study compares, each called through verl's registry.

Every estimator is looked up with ``verl.trainer.ppo.core_algos.get_adv_estimator_fn`` and
called on verl-shaped tensors, exactly as ``ray_trainer.compute_advantage`` calls it:

* ``grpo``    verl's ``grpo`` with ``norm_adv_by_std_in_grpo=True``:   A_i = (s_i - mu) / (sigma + eps)
* ``drgrpo``  verl's ``grpo`` with ``norm_adv_by_std_in_grpo=False``:  A_i = s_i - mu   (Dr.GRPO's advantage)
* ``apd``     ``mapo`` with ``lambda_fn=one``:                          A_i = (s_i - mu) / (mu - r_min + eps), r_min = 0
* ``mapo_tcr``, ``mapo_linear``  ``mapo`` with lambda(p) = (2p - 1)^2 or |2p - 1|:
  A_i = (1 - lambda(p)) (s_i - mu) / (sigma + eps) + lambda(p) (s_i - mu) / (mu - r_min + eps)

``zero`` (A = 0, no registry call) is the control for "a policy without signal does not learn".
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

#: Length of the fake response: the outcome reward sits on its last token, as verl's reward
#: managers put it.  Outcome estimators sum over tokens, so any length gives the same result.
RESPONSE_LENGTH = 4


@dataclass(frozen=True)
class EstimatorSpec:
    """One estimator: a registry name and the knobs the trainer would pass to it."""

    key: str
    label: str
    registry_name: str | None  # None: the zero-advantage control
    norm_by_std: bool = True
    lambda_fn: str | None = None
    color: str = "black"

    def call_kwargs(self) -> dict[str, Any]:
        """Keyword arguments beyond the tensors, as verl's ``compute_advantage`` builds them."""
        if self.registry_name == "grpo":
            return {"norm_adv_by_std_in_grpo": self.norm_by_std}
        if self.registry_name == "mapo":
            from omegaconf import OmegaConf

            return {
                "config": OmegaConf.create(
                    {"norm_adv_by_std_in_grpo": self.norm_by_std, "mapo": {"lambda_fn": self.lambda_fn}}
                )
            }
        return {}


ESTIMATORS: dict[str, EstimatorSpec] = {
    spec.key: spec
    for spec in (
        EstimatorSpec("grpo", "GRPO", "grpo", norm_by_std=True, color="tab:blue"),
        EstimatorSpec("drgrpo", "Dr.GRPO (no std)", "grpo", norm_by_std=False, color="tab:cyan"),
        EstimatorSpec("apd", "APD (λ=1)", "mapo", lambda_fn="one", color="tab:gray"),
        EstimatorSpec("mapo_tcr", "MAPO tcr", "mapo", lambda_fn="tcr", color="tab:red"),
        EstimatorSpec("mapo_linear", "MAPO linear", "mapo", lambda_fn="linear", color="tab:orange"),
        EstimatorSpec("zero", "zero advantage", None, color="black"),
    )
}

#: The estimators a default run compares (``zero`` is a test control).
DEFAULT_ESTIMATORS: tuple[str, ...] = ("grpo", "drgrpo", "apd", "mapo_tcr", "mapo_linear")


def get_spec(key: str) -> EstimatorSpec:
    try:
        return ESTIMATORS[key]
    except KeyError:
        raise ValueError(f"unknown estimator {key!r}; choose from {', '.join(ESTIMATORS)}") from None


def verl_batch(scores: torch.Tensor, index: np.ndarray) -> tuple[torch.Tensor, torch.Tensor, np.ndarray]:
    """Outcome scores (n,) -> (token_level_rewards (n, T), response_mask (n, T), uid object array)."""
    n = scores.shape[0]
    rewards = torch.zeros(n, RESPONSE_LENGTH, dtype=torch.float32)
    rewards[:, -1] = scores.to(torch.float32)
    mask = torch.ones(n, RESPONSE_LENGTH, dtype=torch.float32)
    return rewards, mask, np.asarray(index, dtype=object)


def group_uids(num_groups: int, group_size: int, prefix: str = "g") -> np.ndarray:
    """verl-style uid strings, one per response, for contiguous groups of ``group_size``."""
    return np.repeat(np.array([f"{prefix}{i}" for i in range(num_groups)], dtype=object), group_size)


def compute_advantages(spec: EstimatorSpec, scores: torch.Tensor, index: np.ndarray) -> torch.Tensor:
    """Per-response advantage A_i (n,) from verl's registered estimator ``spec.registry_name``."""
    if spec.registry_name is None:
        return torch.zeros(scores.shape[0], dtype=torch.float32)
    from verl.trainer.ppo.core_algos import get_adv_estimator_fn

    rewards, mask, uid = verl_batch(scores, index)
    fn = get_adv_estimator_fn(spec.registry_name)
    advantages, _returns = fn(token_level_rewards=rewards, response_mask=mask, index=uid, **spec.call_kwargs())
    # The advantage is broadcast over the response's tokens; read it back as the masked mean.
    return (advantages * mask).sum(-1) / mask.sum(-1)
