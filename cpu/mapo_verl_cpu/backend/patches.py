"""The fixes verl 0.9.1 needs to train on host CPUs, applied only when ``VERL_PLATFORM=cpu``.

Each :class:`Patch` names the verl source it changes and carries a guard: the exact source text the fix was
written against. :func:`apply_cpu_patches` checks every guard before changing anything and raises
:class:`VerlSourceChanged` naming the patch and the file when verl's source differs, so a new verl release fails
loudly instead of half-working; ``tests/e2e/test_cpu_patches.py`` checks the guards in CI.

The fixes (line numbers: verl 0.9.1):

* ``gloo``: ``utils/distributed.py`` builds the process-group backend ``f"cpu:gloo,{device}:{backend}"``, which on
  CPU is ``cpu:gloo,cpu:gloo`` ("Duplicate device type cpu"); the default of
  ``initialize_global_process_group_ray(backend=...)`` becomes ``"gloo"``.
* ``fsdp_engine_cpu``: ``workers/engine/fsdp/transformer_impl.py`` registers the FSDP/FSDP2 engines for devices
  ``cuda`` and ``npu`` only; the same classes are registered for ``cpu``.
* ``no_pinned_offload``: the forward-only reference model gets ``CPUOffloadPolicy(pin_memory=True)``, and pinning
  memory with no accelerator raises "Cannot access accelerator device". On CPU the parameters already live in host
  memory: no offload policy is used.
* ``qwen_vl_utils_without_torchvision``: ``qwen_vl_utils`` (every image prompt goes through its
  ``process_vision_info``) imports torchvision at module level for its video readers only. It is imported with a
  placeholder ``torchvision`` that exists during that import only and raises if a video reader is ever called.
"""

from __future__ import annotations

import importlib
import importlib.util
import inspect
import logging
import sys
import types
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

logger = logging.getLogger(__name__)


class VerlSourceChanged(RuntimeError):
    """verl's (or qwen_vl_utils') source no longer matches what a CPU patch was written against."""


@dataclass(frozen=True)
class Patch:
    """One fix: where it applies, the source text it relies on, and how to apply it."""

    name: str
    module: str
    expected_snippets: tuple[str, ...]
    apply: Callable[[], None]

    def source(self) -> str:
        """The module's source text, read from its file without importing it (or its package)."""
        top, *rest = self.module.split(".")
        spec = importlib.util.find_spec(top)
        if spec is None or not spec.submodule_search_locations:
            raise VerlSourceChanged(f"CPU patch {self.name!r}: package {top} not found")
        path = Path(next(iter(spec.submodule_search_locations)), *rest).with_suffix(".py")
        if not path.is_file():
            raise VerlSourceChanged(f"CPU patch {self.name!r}: {self.module} not found (no {path})")
        return path.read_text(encoding="utf-8")

    def problems(self) -> list[str]:
        """What no longer matches (empty when the patch still fits the installed source)."""
        try:
            text = self.source()
        except VerlSourceChanged as err:
            return [str(err)]
        return [
            f"CPU patch {self.name!r}: {self.module} no longer contains {snippet!r}"
            for snippet in self.expected_snippets
            if snippet not in text
        ]


# ------------------------------------------------------------------------------------------------ gloo
_GLOO_SNIPPET = 'backend = backend or f"cpu:gloo,{get_device_name()}:{get_nccl_backend()}"'


def _apply_gloo() -> None:
    from verl.utils import distributed

    fn = distributed.initialize_global_process_group_ray
    params = list(inspect.signature(fn).parameters)
    if params != ["timeout_second", "backend"]:
        raise VerlSourceChanged(
            f"CPU patch 'gloo': unexpected signature of initialize_global_process_group_ray {params}"
        )
    fn.__defaults__ = (None, "gloo")


# ------------------------------------------------------------------------------------------- FSDP engines
_ENGINE_SNIPPETS = (
    '@EngineRegistry.register(model_type="language_model", backend=["fsdp", "fsdp2"], device=["cuda", "npu"])',
    '@EngineRegistry.register(model_type="value_model", backend=["fsdp", "fsdp2"], device=["cuda", "npu"])',
)


def _apply_fsdp_engine_cpu() -> None:
    from verl.workers.engine.base import EngineRegistry
    from verl.workers.engine.fsdp import transformer_impl

    pairs = (
        ("language_model", transformer_impl.FSDPEngineWithLMHead),
        ("value_model", transformer_impl.FSDPEngineWithValueHead),
    )
    for model_type, engine_cls in pairs:
        for backend in ("fsdp", "fsdp2"):
            registry = EngineRegistry._engines.get(model_type, {}).get(backend, {})
            if registry.get("cuda") is not engine_cls:
                raise VerlSourceChanged(
                    f"CPU patch 'fsdp_engine_cpu': {model_type}/{backend}/cuda is not {engine_cls.__name__}"
                )
            if registry.get("cpu") is engine_cls:
                continue
            if "cpu" in registry:
                raise VerlSourceChanged(
                    f"CPU patch 'fsdp_engine_cpu': verl already registers {model_type}/{backend}/cpu"
                )
            registry["cpu"] = engine_cls


# --------------------------------------------------------------------------------------- pinned offload
_OFFLOAD_SNIPPET = "offload_policy = CPUOffloadPolicy(pin_memory=True)"


def _no_offload_policy(*_args, **_kwargs) -> None:
    """Stands in for ``CPUOffloadPolicy`` on CPU: parameters already live in host memory, nothing to offload."""
    return None


def _apply_no_pinned_offload() -> None:
    from verl.workers.engine.fsdp import transformer_impl

    if transformer_impl.CPUOffloadPolicy is _no_offload_policy:
        return
    transformer_impl.CPUOffloadPolicy = _no_offload_policy


# ----------------------------------------------------------------------------------------- qwen_vl_utils
_QWEN_VL_SNIPPETS = (
    "import torchvision\n",
    "from torchvision import io, transforms\n",
    "from torchvision.transforms import InterpolationMode\n",
)


def _torchvision_placeholder() -> dict[str, types.ModuleType]:
    """Modules named ``torchvision``, ``torchvision.io``, ``torchvision.transforms`` whose attributes raise."""

    class _Missing(types.ModuleType):
        def __getattr__(self, attr: str):
            if attr.startswith("__"):
                raise AttributeError(attr)
            raise RuntimeError(
                f"torchvision.{attr}: torchvision is not installed (the CPU backend of mapo_verl imported "
                "qwen_vl_utils without it; only its video readers need it, and videos are not supported on CPU)"
            )

    root, io_mod, transforms_mod = (
        _Missing("torchvision"),
        _Missing("torchvision.io"),
        _Missing("torchvision.transforms"),
    )
    root.__version__ = "0.0.0+missing"
    root.io, root.transforms = io_mod, transforms_mod
    transforms_mod.InterpolationMode = types.SimpleNamespace(BICUBIC="bicubic", BILINEAR="bilinear")
    return {"torchvision": root, "torchvision.io": io_mod, "torchvision.transforms": transforms_mod}


def _apply_qwen_vl_utils() -> None:
    if "qwen_vl_utils" in sys.modules or importlib.util.find_spec("torchvision") is not None:
        return
    placeholders = _torchvision_placeholder()
    sys.modules.update(placeholders)
    try:
        importlib.import_module("qwen_vl_utils")
    finally:
        for name in placeholders:
            sys.modules.pop(name, None)


PATCHES: tuple[Patch, ...] = (
    Patch("gloo", "verl.utils.distributed", (_GLOO_SNIPPET,), _apply_gloo),
    Patch("fsdp_engine_cpu", "verl.workers.engine.fsdp.transformer_impl", _ENGINE_SNIPPETS, _apply_fsdp_engine_cpu),
    Patch(
        "no_pinned_offload", "verl.workers.engine.fsdp.transformer_impl", (_OFFLOAD_SNIPPET,), _apply_no_pinned_offload
    ),
    Patch("qwen_vl_utils_without_torchvision", "qwen_vl_utils.vision_process", _QWEN_VL_SNIPPETS, _apply_qwen_vl_utils),
)


def guard_problems() -> list[str]:
    """Every mismatch between the installed sources and the CPU patches (empty: all patches fit)."""
    return [problem for patch in PATCHES for problem in patch.problems()]


_applied = False


def apply_cpu_patches() -> None:
    """Check every guard, then apply every patch (once per process). Raises :class:`VerlSourceChanged`."""
    global _applied
    if _applied:
        return
    problems = guard_problems()
    if problems:
        raise VerlSourceChanged(
            "the CPU backend of mapo_verl was written against verl 0.9.1 and no longer fits the installed source:\n  "
            + "\n  ".join(problems)
        )
    for patch in PATCHES:
        patch.apply()
    _applied = True
    logger.debug("mapo_verl_cpu.backend: applied %s", ", ".join(p.name for p in PATCHES))
