"""The CPU fixes of ``mapo_verl_cpu.backend.patches``: each fits verl's source; only ``VERL_PLATFORM=cpu``
applies them."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from mapo_verl_cpu.backend import patches

PROBE = r"""
import json, sys
import verl
from verl.plugin.platform import PlatformRegistry
from verl.utils import distributed
from verl.workers.rollout.base import _ROLLOUT_REGISTRY
from verl.workers.rollout.replica import RolloutReplicaRegistry
state = {
    "cpu_registered": PlatformRegistry.get("cpu") is not None,
    "hf_adapter": _ROLLOUT_REGISTRY.get(("hf", "async")),
    "hf_replica": RolloutReplicaRegistry.get("hf").__name__,
    "gloo_default": distributed.initialize_global_process_group_ray.__defaults__,
    "torchvision_left_behind": "torchvision" in sys.modules,
}
if state["gloo_default"][1] == "gloo":
    from verl.utils.device import get_device_name, get_nccl_backend
    from verl.workers.engine import EngineRegistry
    from verl.workers.engine.fsdp import transformer_impl
    state["device"] = [get_device_name(), get_nccl_backend()]
    state["engine"] = EngineRegistry.get_engine_cls("language_model", "fsdp2").__name__
    state["offload_policy"] = transformer_impl.CPUOffloadPolicy(pin_memory=True)
    state["qwen_vl_utils"] = "qwen_vl_utils" in sys.modules
else:
    from verl.workers.engine.fsdp import transformer_impl
    state["offload_policy_class"] = getattr(transformer_impl.CPUOffloadPolicy, "__name__", "")
print("STATE" + json.dumps(state))
"""


@pytest.mark.parametrize("patch", patches.PATCHES, ids=lambda p: p.name)
def test_patch_still_fits_the_installed_source(patch):
    """Fails when verl (or qwen_vl_utils) changes the code a CPU fix was written against: re-check the fix."""
    assert patch.problems() == []


def test_a_changed_source_is_reported_by_name(monkeypatch):
    broken = patches.Patch("demo", "verl.utils.distributed", ("this text is not in verl",), lambda: None)
    monkeypatch.setattr(patches, "PATCHES", (*patches.PATCHES, broken))
    monkeypatch.setattr(patches, "_applied", False)
    with pytest.raises(patches.VerlSourceChanged, match=r"'demo'.*verl\.utils\.distributed"):
        patches.apply_cpu_patches()


def _probe(platform: str | None) -> dict:
    env = {k: v for k, v in os.environ.items() if k != "VERL_PLATFORM"}
    if platform:
        env["VERL_PLATFORM"] = platform
    out = subprocess.run(
        [sys.executable, "-c", PROBE], env=env, capture_output=True, text=True, timeout=300, check=True
    )
    line = next(x for x in out.stdout.splitlines() if x.startswith("STATE"))
    return json.loads(line[len("STATE") :])


@pytest.mark.slow
def test_without_the_cpu_platform_only_names_are_registered():
    state = _probe(None)
    assert state["cpu_registered"] and state["hf_replica"] == "HFReplica"
    assert state["hf_adapter"] == "mapo_verl_cpu.backend.hf_rollout.HFServerAdapter"
    assert state["gloo_default"] == [None, None]  # verl's own default: untouched
    assert state["offload_policy_class"] == "CPUOffloadPolicy"
    assert not state["torchvision_left_behind"]


@pytest.mark.slow
def test_the_cpu_platform_applies_every_fix():
    state = _probe("cpu")
    assert state["device"] == ["cpu", "gloo"]
    assert state["gloo_default"] == [None, "gloo"]
    assert state["engine"] == "FSDPEngineWithLMHead"
    assert state["offload_policy"] is None
    assert state["qwen_vl_utils"] and not state["torchvision_left_behind"]
