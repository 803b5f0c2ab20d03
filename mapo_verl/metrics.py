"""MAPO's own training metrics, in every step's logged metrics (console, file, W&B, TensorBoard...).

verl 0.9.1 calls an advantage estimator without the step's ``metrics`` dict, so the route is:

1. :func:`record` (called by the ``mapo`` estimator) accumulates a handful of sums for the batch
   in a process-local :data:`SINK`, as tensors: no host synchronisation in the estimator.
2. The V1 trainer computes advantages in ``PPOTrainer._compute_advantage(batch, metrics)``, inside
   the TaskRunner actor, the same process as the estimator.  :func:`install_trainer_hook` wraps
   that one method: it empties the sink, runs verl's method unchanged, then adds
   :func:`SINK.drain() <MetricsSink.drain>` to ``metrics``, the dict verl aggregates and logs.
   The wrap happens when verl imports ``verl.trainer.ppo.v1.trainer_base`` (a post-import hook), so
   nothing heavy is imported by ``import verl``.

If the wrap cannot be applied (verl changed), a warning is logged and training is unaffected: the
estimator never depends on this module.  ``tests/configs/test_metrics.py`` fails loudly instead.

Logged keys (per training step; means over the prompt groups of the step unless noted):

``mapo/lambda_mean``          mean certainty weight lambda(p)
``mapo/p_mean``               mean success ratio p
``mapo/groups_p0_frac``       share of groups with p = 0 (no response succeeded)
``mapo/groups_p1_frac``       share of groups with p = 1 (every response succeeded)
``mapo/groups_singleton_frac`` share of groups of a single response (advantage 0)
``mapo/adv_success_mean``     mean advantage of successful responses (absent if none)
``mapo/adv_failure_mean``     mean advantage of failed responses (absent if none)
``mapo/num_groups``           number of prompt groups
"""

from __future__ import annotations

import functools
import importlib.abc
import importlib.machinery
import inspect
import logging
import sys
import threading
from typing import Any

import torch

from mapo_verl.mixed_advantage import GroupIds, MixedAdvantage

logger = logging.getLogger(__name__)

PREFIX = "mapo/"
#: The module and method the hook wraps (verl 0.9.1's V1 trainer).
TRAINER_MODULE = "verl.trainer.ppo.v1.trainer_base"
TRAINER_CLASS = "PPOTrainer"
TRAINER_METHOD = "_compute_advantage"
_HOOK_MARK = "__mapo_metrics_hook__"

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
)


def batch_sums(result: MixedAdvantage, groups: GroupIds) -> torch.Tensor:
    """One float64 vector of the sums in ``_FIELDS`` for a batch (on the result's device)."""
    device = result.advantage.device
    sizes = torch.from_numpy(groups.sizes).to(device=device, dtype=torch.float64)
    ids = torch.from_numpy(groups.ids).to(device)
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
            torch.tensor(float(groups.num_groups), dtype=torch.float64, device=device),
            (w * lam).sum(),
            (w * p).sum(),
            (w * (p == 0).to(torch.float64)).sum(),
            (w * (p == 1).to(torch.float64)).sum(),
            (w * result.singleton.to(torch.float64)).sum(),
            success.to(torch.float64).sum(),
            torch.where(success, adv, zero).sum(),
            fail.to(torch.float64).sum(),
            torch.where(fail, adv, zero).sum(),
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
    if s["success"] > 0:
        out[f"{PREFIX}adv_success_mean"] = s["adv_success_sum"] / s["success"]
    if s["failure"] > 0:
        out[f"{PREFIX}adv_failure_mean"] = s["adv_failure_sum"] / s["failure"]
    return out


def compute_metrics(result: MixedAdvantage, groups: GroupIds) -> dict[str, float]:
    """MAPO's metrics for one batch, directly (one host sync)."""
    return sums_to_metrics(batch_sums(result, groups).tolist())


class MetricsSink:
    """Process-local accumulator between the estimator and the trainer hook (thread-safe)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._pending: torch.Tensor | None = None

    def add(self, sums: torch.Tensor) -> None:
        with self._lock:
            self._pending = sums if self._pending is None else self._pending + sums.to(self._pending.device)

    def clear(self) -> None:
        with self._lock:
            self._pending = None

    def drain(self) -> dict[str, float]:
        """The metrics of everything recorded since the last clear/drain; empties the sink."""
        with self._lock:
            pending, self._pending = self._pending, None
        return {} if pending is None else sums_to_metrics(pending.tolist())


SINK = MetricsSink()
_warned = False


def record(result: MixedAdvantage, groups: GroupIds) -> None:
    """Add one estimator call to :data:`SINK`; never raises (metrics must not break training)."""
    global _warned
    try:
        SINK.add(batch_sums(result, groups))
    except Exception as err:  # pragma: no cover - defensive
        if not _warned:
            _warned = True
            logger.warning("mapo: could not record MAPO metrics (training continues): %r", err)


# --------------------------------------------------------------------------------------- the hook
def _wrap(method: Any) -> Any:
    signature = inspect.signature(method)
    if "metrics" not in signature.parameters:
        raise TypeError(f"{TRAINER_CLASS}.{TRAINER_METHOD}{signature} has no `metrics` parameter")

    @functools.wraps(method)
    def _compute_advantage(self: Any, *args: Any, **kwargs: Any) -> Any:
        SINK.clear()
        out = method(self, *args, **kwargs)
        metrics = signature.bind(self, *args, **kwargs).arguments.get("metrics")
        drained = SINK.drain()
        if isinstance(metrics, dict):
            metrics.update(drained)
        return out

    setattr(_compute_advantage, _HOOK_MARK, True)
    return _compute_advantage


def patch_trainer_module(module: Any) -> bool:
    """Wrap ``PPOTrainer._compute_advantage`` of an imported trainer module; True if (already) wrapped."""
    cls = getattr(module, TRAINER_CLASS, None)
    method = getattr(cls, TRAINER_METHOD, None) if cls is not None else None
    if method is None:
        raise AttributeError(f"{module.__name__}.{TRAINER_CLASS}.{TRAINER_METHOD} not found")
    if getattr(method, _HOOK_MARK, False):
        return True
    setattr(cls, TRAINER_METHOD, _wrap(method))
    return True


def is_installed() -> bool:
    """Whether the trainer method is wrapped (imports the trainer module)."""
    import importlib

    module = importlib.import_module(TRAINER_MODULE)
    return bool(getattr(getattr(getattr(module, TRAINER_CLASS), TRAINER_METHOD), _HOOK_MARK, False))


def _patch_or_warn(module: Any) -> None:
    try:
        patch_trainer_module(module)
    except Exception as err:
        logger.warning(
            "mapo: MAPO metrics are off: cannot wrap %s.%s.%s (%r); the estimator works without them",
            TRAINER_MODULE,
            TRAINER_CLASS,
            TRAINER_METHOD,
            err,
        )


class _PostImportLoader(importlib.abc.Loader):
    def __init__(self, loader: importlib.abc.Loader) -> None:
        self._loader = loader

    def create_module(self, spec: importlib.machinery.ModuleSpec) -> Any:
        return self._loader.create_module(spec)

    def exec_module(self, module: Any) -> None:
        self._loader.exec_module(module)
        _patch_or_warn(module)


class _PostImportFinder(importlib.abc.MetaPathFinder):
    """Patches the trainer module right after its first import; otherwise out of the way."""

    def find_spec(self, fullname: str, path: Any, target: Any = None) -> importlib.machinery.ModuleSpec | None:
        if fullname != TRAINER_MODULE:
            return None
        spec = importlib.machinery.PathFinder.find_spec(fullname, path)
        if spec is None or spec.loader is None:
            return None
        spec.loader = _PostImportLoader(spec.loader)
        return spec


def install_trainer_hook() -> None:
    """Wrap the trainer method now if verl's trainer is imported, else as soon as it is."""
    module = sys.modules.get(TRAINER_MODULE)
    if module is not None:
        _patch_or_warn(module)
        return
    if not any(isinstance(f, _PostImportFinder) for f in sys.meta_path):
        sys.meta_path.insert(0, _PostImportFinder())
