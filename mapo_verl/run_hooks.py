"""MAPO's run features, switched on only in runs that select ``algorithm.adv_estimator=mapo``.

These features change verl objects: the step metrics (:mod:`mapo_verl.metrics` wraps the V1 trainer's ``step``), the
checkpoint guard (:mod:`mapo_verl.checkpoint_guard` wraps ``find_latest_ckpt_path``) and sessions of several outputs
(:mod:`mapo_verl.sessions` wraps ``compute_advantage_for_multi_trajectories``), and with them the declared success
field (:mod:`mapo_verl.success_field`, ``algorithm.mapo.success_key``). verl loads the plug-in in
every process of every run in the environment, a colleague's GRPO run included, so none is installed at import:
:func:`arm` waits for verl's trainer and installs them only for a run whose config selects ``mapo``. A GRPO run keeps
verl's own functions.

When a run is known (``MAPO_RUN_HOOKS``, default ``auto``):

``auto``  verl's V1 trainer module (``verl.trainer.ppo.v1.trainer_base``) is imported inside the TaskRunner's
          ``run(config)``, the process where advantages are computed and the checkpoint is read. Right after that
          import, the config being run is read from the importing call stack (the ``config`` of ``run``);
          ``algorithm.adv_estimator == "mapo"`` installs them. Where no config is on the stack (the
          legacy trainer, ``trainer.use_v1=false``, or a launcher of your own that imports the trainer first),
          nothing is installed: use one of the explicit switches below.
``1``     install them in every process that loads the plug-in (the switch for custom launchers).
``0``     never install them (the estimator itself still works; ``mapo/*`` metrics are then absent).

verl's own per-run extension point does the same explicitly: ``trainer.checkpoint_callback_class=
mapo_verl.run_hooks.MapoRunHooks`` is built by the trainer with the full config, before it reads a checkpoint, and
installs them when that config selects ``mapo``.
"""

from __future__ import annotations

import logging
import os
import sys
from typing import Any

from verl.trainer.ppo.checkpoint_callback import CheckpointCallback

from mapo_verl import checkpoint_guard, metrics, sessions, success_field
from mapo_verl.post_import import call_after_import
from mapo_verl.registry_probe import ESTIMATOR_NAME

logger = logging.getLogger(__name__)

ENV = "MAPO_RUN_HOOKS"
MODES = ("auto", "1", "0")
#: imported by verl's V1 trainer inside ``TaskRunnerV1.run(config)`` (verl/trainer/main_ppo.py)
TRIGGER_MODULE = "verl.trainer.ppo.v1.trainer_base"

_state: dict[str, Any] = {"decided": False, "installed": False}


def mode() -> str:
    """``MAPO_RUN_HOOKS``: ``auto`` (default), ``1`` or ``0``; anything else is an error naming the variable."""
    value = os.environ.get(ENV, "auto").strip().lower() or "auto"
    aliases = {"on": "1", "true": "1", "off": "0", "false": "0"}
    value = aliases.get(value, value)
    if value not in MODES:
        raise ValueError(f"{ENV}={os.environ.get(ENV)!r}: expected auto, 1 or 0")
    return value


def selects_mapo(config: Any) -> bool:
    """True when a full trainer config (or its ``algorithm`` section) selects the ``mapo`` estimator."""
    algorithm = _get(config, "algorithm", None)
    section = algorithm if algorithm is not None else config
    return str(_get(section, "adv_estimator", "")) == ESTIMATOR_NAME


def installed() -> bool:
    """Whether this process has MAPO's run hooks installed."""
    return bool(_state["installed"])


def install(reason: str) -> None:
    """Install the step metrics, the session path, the success field and the checkpoint guard here (once)."""
    _state["decided"] = True
    if _state["installed"]:
        return
    _state["installed"] = True
    metrics.install_trainer_hook()
    sessions.install()
    success_field.install()
    guard = checkpoint_guard.install()
    state = "on" if guard else "on, checkpoint guard off (see the warning above)"
    what = "step metrics, sessions and checkpoint guard"
    print(f"mapo: {what} {state} in this process ({reason})", file=sys.stderr, flush=True)


def _get(section: Any, key: str, default: Any) -> Any:
    if section is None:
        return default
    try:
        return section.get(key, default)
    except Exception:
        return getattr(section, key, default)


def _config_on_stack() -> Any:
    """The trainer config of the nearest caller that holds one in a local named ``config`` (None if none)."""
    frame = sys._getframe(1)
    while frame is not None:
        candidate = frame.f_locals.get("config")
        if candidate is not None and _get(candidate, "algorithm", None) is not None:
            return candidate
        frame = frame.f_back
    return None


def _on_trainer_import(_module: Any) -> None:
    if _state["decided"]:
        return
    config = _config_on_stack()
    if config is None:
        return  # imported outside a run (a test, a tool): wait for the next trigger or an explicit switch
    _state["decided"] = True
    if selects_mapo(config):
        install("algorithm.adv_estimator=mapo")
    else:
        estimator = _get(_get(config, "algorithm", None), "adv_estimator", "?")
        logger.info("mapo: algorithm.adv_estimator=%s: verl runs unchanged (no MAPO metrics, no guard)", estimator)


def arm() -> None:
    """Called by the plug-in on import: install now (``MAPO_RUN_HOOKS=1``), never (``0``), or per run (``auto``)."""
    try:
        chosen = mode()
    except ValueError as err:  # an import error here would only reach verl's debug log
        print(f"mapo: {err}; using auto", file=sys.stderr, flush=True)
        chosen = "auto"
    if chosen == "1":
        install(f"{ENV}=1")
    elif chosen == "auto":
        call_after_import(TRIGGER_MODULE, _on_trainer_import)


class MapoRunHooks(CheckpointCallback):
    """verl's per-run extension point (``trainer.checkpoint_callback_class=mapo_verl.run_hooks.MapoRunHooks``):
    built by the trainer with the full config before it reads a checkpoint; installs MAPO's step metrics and
    checkpoint guard when that config selects ``mapo`` (not with ``MAPO_RUN_HOOKS=0``). Its ``on_save`` does
    nothing."""

    def __init__(self, config: Any = None) -> None:
        super().__init__(config=config)
        if selects_mapo(config) and os.environ.get(ENV, "").strip() != "0":
            install("trainer.checkpoint_callback_class")
