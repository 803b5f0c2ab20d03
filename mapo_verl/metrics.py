"""MAPO's own training metrics, in every step's logged metrics (console, file, W&B, TensorBoard...).

verl 0.9.1 calls an advantage estimator without the step's ``metrics`` dict, so the route is:

1. verl's V1 trainer runs one training step as ``PPOTrainer.step(metrics, timing_raw)`` in the
   TaskRunner actor; ``fit`` logs ``metrics`` afterwards.  :func:`install_trainer_hook` wraps that
   method: the wrapper opens a :func:`collect` block around verl's unchanged ``step`` and, when it
   returns, adds the block's metrics to ``metrics``.  The wrap happens when verl imports
   ``verl.trainer.ppo.v1.trainer_base`` (a post-import hook), so ``import verl`` stays light.
2. Inside the step the ``mapo`` estimator (same process, same thread) calls :func:`record`,
   which adds a handful of sums for its batch to the innermost open :func:`collect` block, as one
   tensor: no host synchronisation in the estimator.  Outside any block it records nothing.

Blocks live in a :class:`contextvars.ContextVar`: overlapping steps in different threads or
asyncio tasks each collect only their own estimator calls, and a new thread starts with none.

Per-step semantics: verl runs ``trainer.v1.<mode>.parameter_sync_step`` iterations per step, each
calling the estimator once; the sums add up over all of them, so the step's metrics are exact:
``mapo/num_groups`` is the step's total number of groups, the group means are over all of them,
and the advantage means over all successful (failed) responses of the step.

Logged keys (per training step; means over the prompt groups of the step unless noted):

``mapo/lambda_mean``           mean certainty weight lambda(p)
``mapo/p_mean``                mean success ratio p
``mapo/groups_p0_frac``        share of groups with p = 0 (no response succeeded)
``mapo/groups_p1_frac``        share of groups with p = 1 (every response succeeded)
``mapo/groups_singleton_frac`` share of groups of a single response (advantage 0)
``mapo/adv_success_mean``      mean advantage over successful responses (absent if none)
``mapo/adv_failure_mean``      mean advantage over failed responses (absent if none)
``mapo/num_groups``            number of prompt groups in the step
``mapo/lambda_permuted``       share of the step's responses mixed with another group's lambda: 0 with
                               ``algorithm.mapo.lambda_assignment=group`` (the default), 1 with ``permuted``
                               (0 where a batch holds a single group: nothing to permute)

If verl changes so that the wrap cannot be applied, a warning says the metrics are off and
training is unaffected; ``tests/configs/test_metrics.py`` fails loudly instead.
"""

from __future__ import annotations

import contextlib
import contextvars
import functools
import inspect
import logging
from collections.abc import Iterator
from typing import Any

import torch

from mapo_verl.mixed_advantage import GroupIds, MixedAdvantageResult
from mapo_verl.post_import import call_after_import

logger = logging.getLogger(__name__)

PREFIX = "mapo/"
#: The module and method the hook wraps (verl 0.9.1's V1 trainer).
TRAINER_MODULE = "verl.trainer.ppo.v1.trainer_base"
TRAINER_CLASS = "PPOTrainer"
TRAINER_METHOD = "step"
HOOK_MARK = "__mapo_metrics_hook__"

# Order of the sums in one recorded vector.
_FIELDS = (
    "groups",
    "lambda_sum",
    "p_sum",
    "p0",
    "p1",
    "singleton",
    "success",
    "adv_success_sum",
    "failure",
    "adv_failure_sum",
    "responses",
    "permuted",
)


def batch_sums(result: MixedAdvantageResult, groups: GroupIds) -> torch.Tensor:
    """One float64 vector of the sums in ``_FIELDS`` for a batch (on the result's device)."""
    device = result.advantage.device
    sizes = torch.from_numpy(groups.sizes).to(device=device, dtype=torch.float64, non_blocking=True)
    ids = torch.from_numpy(groups.ids).to(device, non_blocking=True)
    # each response weighs 1/|group|: per-response sums become per-group sums (index_select, as the estimator)
    w = 1.0 / sizes.index_select(0, ids)
    p = result.success_ratio.to(torch.float64)
    lam = result.certainty_weight.to(torch.float64)
    adv = result.advantage.to(torch.float64)
    success = result.success
    fail = ~success
    zero = adv.new_zeros(())  # torch.where, not adv[mask]: boolean indexing would sync the host on CUDA
    return torch.stack(
        [
            torch.full((), float(groups.num_groups), dtype=torch.float64, device=device),  # a fill, not a copy
            (w * lam).sum(),
            (w * p).sum(),
            (w * (p == 0).to(torch.float64)).sum(),
            (w * (p == 1).to(torch.float64)).sum(),
            (w * result.singleton.to(torch.float64)).sum(),
            success.to(torch.float64).sum(),
            torch.where(success, adv, zero).sum(),
            fail.to(torch.float64).sum(),
            torch.where(fail, adv, zero).sum(),
            torch.full((), float(groups.ids.shape[0]), dtype=torch.float64, device=device),
            result.permuted.to(torch.float64).sum(),
        ]
    )


def sums_to_metrics(sums: list[float]) -> dict[str, float]:
    """The logged metrics from accumulated sums (keys without a denominator are left out)."""
    s = dict(zip(_FIELDS, sums, strict=True))
    n = s["groups"]
    if n <= 0:
        return {}
    out = {
        f"{PREFIX}lambda_mean": s["lambda_sum"] / n,
        f"{PREFIX}p_mean": s["p_sum"] / n,
        f"{PREFIX}groups_p0_frac": s["p0"] / n,
        f"{PREFIX}groups_p1_frac": s["p1"] / n,
        f"{PREFIX}groups_singleton_frac": s["singleton"] / n,
        f"{PREFIX}num_groups": n,
    }
    if s["responses"] > 0:
        out[f"{PREFIX}lambda_permuted"] = s["permuted"] / s["responses"]
    if s["success"] > 0:
        out[f"{PREFIX}adv_success_mean"] = s["adv_success_sum"] / s["success"]
    if s["failure"] > 0:
        out[f"{PREFIX}adv_failure_mean"] = s["adv_failure_sum"] / s["failure"]
    return out


class StepMetrics:
    """The sums of every estimator call recorded inside one :func:`collect` block."""

    def __init__(self) -> None:
        self._sums: torch.Tensor | None = None

    def add(self, sums: torch.Tensor) -> None:
        self._sums = sums if self._sums is None else self._sums + sums.to(self._sums.device)

    def metrics(self) -> dict[str, float]:
        """The logged metrics (one host sync); empty if the estimator was not called."""
        return {} if self._sums is None else sums_to_metrics(self._sums.tolist())


_ACTIVE: contextvars.ContextVar[StepMetrics | None] = contextvars.ContextVar("mapo_step_metrics", default=None)
_warned = False


@contextlib.contextmanager
def collect() -> Iterator[StepMetrics]:
    """Collect the MAPO metrics of every estimator call in this context until the block ends."""
    block = StepMetrics()
    token = _ACTIVE.set(block)
    try:
        yield block
    finally:
        _ACTIVE.reset(token)


def record(result: MixedAdvantageResult, groups: GroupIds) -> None:
    """Add one estimator call to the open :func:`collect` block, if any; never raises."""
    global _warned
    block = _ACTIVE.get()
    if block is None:
        return
    try:
        block.add(batch_sums(result, groups))
    except Exception as err:  # metrics must not break training
        if not _warned:
            _warned = True
            logger.warning("mapo: could not record MAPO metrics (training continues): %r", err)


# --------------------------------------------------------------------------------------- the hook
def wrap_step(step: Any) -> Any:
    """``PPOTrainer.step(metrics, ...)`` that also adds the step's MAPO metrics to ``metrics``."""
    signature = inspect.signature(step)
    if "metrics" not in signature.parameters:
        raise TypeError(f"{TRAINER_CLASS}.{TRAINER_METHOD}{signature} has no `metrics` parameter")

    @functools.wraps(step)
    def _step(self: Any, *args: Any, **kwargs: Any) -> Any:
        logged = signature.bind(self, *args, **kwargs).arguments["metrics"]
        with collect() as block:
            out = step(self, *args, **kwargs)
        logged.update(block.metrics())
        return out

    setattr(_step, HOOK_MARK, True)
    return _step


def _wrap_trainer(module: Any) -> None:
    """Wrap ``PPOTrainer.step`` of the imported trainer module (once); warn if verl changed."""
    try:
        cls = getattr(module, TRAINER_CLASS)
        method = getattr(cls, TRAINER_METHOD)
        if not getattr(method, HOOK_MARK, False):
            setattr(cls, TRAINER_METHOD, wrap_step(method))
    except Exception as err:
        logger.warning(
            "mapo: MAPO metrics are off: cannot wrap %s.%s.%s (%r); the estimator works without them",
            TRAINER_MODULE,
            TRAINER_CLASS,
            TRAINER_METHOD,
            err,
        )


def install_trainer_hook() -> None:
    """Wrap the trainer now if verl's trainer module is imported, else as soon as it is."""
    call_after_import(TRAINER_MODULE, _wrap_trainer)
