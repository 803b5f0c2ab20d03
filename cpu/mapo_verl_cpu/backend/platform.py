"""verl platform ``cpu``: device ``cpu``, collectives over gloo, no accelerator calls.

Selected with ``VERL_PLATFORM=cpu`` (verl's own switch, read in every process). Without it, verl on a machine
with no GPU falls back to ``nvidia`` (device ``cuda``, backend ``nccl``) and fails at the first device call.
Ray still needs an accelerator resource for verl's resource pools: start Ray with a logical GPU
(``+ray_kwargs.ray_init.num_gpus=1``); this platform reports that resource as ``GPU``, and nothing ever touches it.
"""

from __future__ import annotations

import os
import types
from contextlib import contextmanager
from typing import Any

import torch

from mapo_verl_cpu.backend import PLATFORM_NAME


def _no_op(*_args: Any, **_kwargs: Any) -> None:
    return None


def _host_memory() -> tuple[int, int]:
    """(free, total) bytes of host memory, what ``torch.cuda.mem_get_info`` reports for a GPU."""
    page = os.sysconf("SC_PAGE_SIZE")
    return page * os.sysconf("SC_AVPHYS_PAGES"), page * os.sysconf("SC_PHYS_PAGES")


def _cpu_device_module() -> types.ModuleType:
    """``torch.cpu`` plus no-op versions of the ``torch.cuda`` calls verl makes on its device module.

    verl calls e.g. ``empty_cache()``, ``synchronize()``, ``set_device(rank)``, ``memory_allocated()``,
    ``manual_seed(seed)`` and ``is_available()`` on ``get_torch_device()``; on CPU there is nothing to free or wait
    for, and the seed goes to torch's global generator.
    """
    module = types.ModuleType("mapo_verl_cpu_device")
    for name in dir(torch.cpu):
        if not name.startswith("__"):
            setattr(module, name, getattr(torch.cpu, name))
    for name in (
        "empty_cache",
        "synchronize",
        "set_device",
        "reset_peak_memory_stats",
        "ipc_collect",
        "reset_max_memory_allocated",
        "set_per_process_memory_fraction",
    ):
        setattr(module, name, _no_op)
    for name in ("memory_allocated", "memory_reserved", "max_memory_allocated", "max_memory_reserved"):
        setattr(module, name, lambda *_a, **_k: 0)
    module.mem_get_info = lambda *_a, **_k: _host_memory()
    module.get_device_name = lambda *_a, **_k: "CPU"
    module.memory_stats = lambda *_a, **_k: {}
    module.is_available = lambda: True
    module.device_count = lambda: 1
    module.current_device = lambda: PLATFORM_NAME
    module.manual_seed = torch.manual_seed
    module.manual_seed_all = torch.manual_seed
    module.get_rng_state = torch.get_rng_state
    module.set_rng_state = torch.set_rng_state
    module.Stream = torch.cpu.Stream
    module.Event = torch.cpu.Event
    module.stream = torch.cpu.stream
    module.current_stream = torch.cpu.current_stream
    return module


def make_platform_class() -> type:
    """Build the ``PlatformBase`` subclass (verl imported lazily, so that importing this module stays cheap)."""
    from verl.plugin.platform import PlatformBase

    device_module = _cpu_device_module()

    class PlatformCPU(PlatformBase):
        """verl on host CPUs only: gloo collectives, fp32/bf16 compute in host memory."""

        @property
        def device_name(self) -> str:
            return "cpu"

        @property
        def vendor_name(self) -> str:
            return "cpu"

        @property
        def device_module(self) -> types.ModuleType:
            return device_module

        def is_available(self) -> bool:
            return True

        def is_platform_available(self, use_smi_check: bool = False) -> bool:
            return False  # never auto-detected: only VERL_PLATFORM=cpu selects it

        def current_device(self) -> str:  # verl does model.to(current_device()); "cpu", not an accelerator index
            return "cpu"

        def device_count(self) -> int:
            return 1

        def set_device(self, device_index: int) -> None:
            return None

        def synchronize(self, device_index: int | None = None) -> None:
            return None

        def manual_seed(self, seed: int) -> None:
            torch.manual_seed(seed)

        def manual_seed_all(self, seed: int) -> None:
            torch.manual_seed(seed)

        def set_allocator_settings(self, settings: str) -> None:
            return None

        def empty_cache(self) -> None:
            return None

        def get_device_capability(self, device_index: int = 0) -> tuple[int | None, int | None]:
            return None, None

        def communication_backend_name(self) -> str:
            return "gloo"

        def visible_devices_envvar(self) -> str:
            return "CUDA_VISIBLE_DEVICES"

        @contextmanager
        def nvtx_range(self, msg: str):
            yield

        def profiler_start(self) -> None:
            return None

        def profiler_stop(self) -> None:
            return None

        def ray_resource_name(self) -> str:
            return "GPU"  # a logical resource: Ray is started with num_gpus=1 and nothing uses a device

        def ray_noset_envvars(self) -> list[str]:
            return ["RAY_EXPERIMENTAL_NOSET_CUDA_VISIBLE_DEVICES"]

        def is_ipc_supported(self) -> bool:
            return False

        def cudart(self) -> Any:
            return None

    PlatformCPU.__module__ = __name__
    return PlatformCPU


def register_platform() -> None:
    """Register ``cpu`` in verl's ``PlatformRegistry`` (idempotent; selection stays with ``VERL_PLATFORM``)."""
    from verl.plugin.platform import PlatformRegistry

    existing = PlatformRegistry.get(PLATFORM_NAME)
    if existing is not None and existing.__module__ == __name__:
        return
    PlatformRegistry.register(platform=PLATFORM_NAME)(make_platform_class())
