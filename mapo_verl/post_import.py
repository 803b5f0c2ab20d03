"""Run a function on a module right after its first import (or now, if it is already imported).

The plug-in adjusts a few of verl's (and, on CPU, vLLM's) objects: the trainer's ``step`` for MAPO's metrics, the
checkpoint reader, vLLM's CPU weight packing. Those modules are imported later than the plug-in, in every process,
so the adjustment waits for them: a finder on ``sys.meta_path`` wraps the module's loader for that one name and
calls the function once the module's code has run. It asks the other finders for the spec and otherwise stays
out of the way.
"""

from __future__ import annotations

import importlib.abc
import importlib.machinery
import sys
from collections.abc import Callable, Sequence
from types import ModuleType
from typing import Any

Callback = Callable[[ModuleType], None]


class _AfterImportFinder(importlib.abc.MetaPathFinder):
    """Calls the callbacks registered for a module name right after that module is executed."""

    def __init__(self) -> None:
        self.callbacks: dict[str, list[Callback]] = {}

    def find_spec(
        self, fullname: str, path: Sequence[str] | None, target: ModuleType | None = None
    ) -> importlib.machinery.ModuleSpec | None:
        callbacks = self.callbacks.get(fullname)
        if not callbacks:
            return None
        for finder in sys.meta_path:
            if finder is self or not hasattr(finder, "find_spec"):
                continue
            spec = finder.find_spec(fullname, path, target)
            if spec is None or spec.loader is None:
                continue
            run_module = spec.loader.exec_module

            def exec_then_call(module: Any, _run: Callable[[Any], None] = run_module) -> None:
                _run(module)
                for callback in list(callbacks):
                    callback(module)

            spec.loader.exec_module = exec_then_call  # type: ignore[method-assign]
            return spec
        return None


def _finder() -> _AfterImportFinder:
    for finder in sys.meta_path:
        if isinstance(finder, _AfterImportFinder):
            return finder
    finder = _AfterImportFinder()
    sys.meta_path.insert(0, finder)
    return finder


def call_after_import(module_name: str, callback: Callback) -> None:
    """``callback(module)`` now if ``module_name`` is imported, else right after its first import (once per
    registration; registering the same callback twice for a name is a no-op)."""
    module = sys.modules.get(module_name)
    if module is not None:
        callback(module)
        return
    callbacks = _finder().callbacks.setdefault(module_name, [])
    if callback not in callbacks:
        callbacks.append(callback)


def replace_function(module: ModuleType, name: str, make_wrapper: Callable[[Any], Any]) -> bool:
    """``module.name = make_wrapper(module.name)``, and the same in every ``verl.*`` module that imported the
    original by name before (``from module import name``); False when ``module`` has no ``name``."""
    original = getattr(module, name, None)
    if original is None:
        return False
    wrapper = make_wrapper(original)
    setattr(module, name, wrapper)
    for other_name, other in list(sys.modules.items()):
        if other_name.startswith("verl.") and other is not module and vars(other).get(name) is original:
            setattr(other, name, wrapper)
    return True
