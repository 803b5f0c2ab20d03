"""Compose a training config exactly as ``python -m verl.trainer.main_ppo`` does, without running it.

``compose(config_path, config_name, overrides)`` is the public entry point (used by
``python -m mapo_verl check`` and by launch scripts that need the composed values, e.g. the data
files): same search path, same defaults, same overrides, and the same refusal of a relative
``--config-path`` that ``main_ppo`` would resolve elsewhere.
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path
from typing import Any

#: The config module ``main_ppo`` composes from when no ``--config-path`` is given.
VERL_CONFIG_MODULE = "verl.trainer.config"


class ComposeError(Exception):
    """The config could not be composed at all (bad path or name, bad override)."""


def resolve_config_dir(config_path: str | None) -> Path | None:
    """The config directory ``main_ppo`` would use for ``--config-path`` (None: verl's own).

    Hydra resolves a relative ``--config-path`` against the directory of the script that declares
    ``@hydra.main`` (``verl/trainer/``), not the working directory; a relative path that only
    exists under the working directory is an error here because it is one for ``main_ppo``.
    """
    if config_path is None:
        return None
    path = Path(config_path).expanduser()
    if path.is_absolute():
        if not path.is_dir():
            raise ComposeError(f"--config-path {config_path}: no such directory")
        return path
    import verl.trainer.main_ppo as main_ppo

    as_main_ppo = Path(main_ppo.__file__).parent / path
    if as_main_ppo.is_dir():
        return as_main_ppo.resolve()
    hint = f" pass an absolute path: --config-path {Path.cwd() / path}" if (Path.cwd() / path).is_dir() else ""
    raise ComposeError(
        f"--config-path {config_path}: main_ppo resolves a relative config path against {as_main_ppo.parent}/, "
        f"where it does not exist;{hint or ' pass an absolute path'}"
    )


def compose(config_path: str | None, config_name: str, overrides: Iterable[str] = ()) -> Any:
    """Compose ``config_name`` with ``overrides`` as ``main_ppo`` does; returns the DictConfig.

    Raises :class:`ComposeError` with the directory, name and overrides when Hydra cannot.
    """
    from hydra import compose as hydra_compose
    from hydra import initialize_config_dir, initialize_config_module
    from hydra.core.global_hydra import GlobalHydra

    overrides = list(overrides)
    config_dir = resolve_config_dir(config_path)
    GlobalHydra.instance().clear()
    ctx = (
        initialize_config_module(VERL_CONFIG_MODULE, version_base=None)
        if config_dir is None
        else initialize_config_dir(config_dir=str(config_dir), version_base=None)
    )
    try:
        with ctx:
            return hydra_compose(config_name=config_name, overrides=overrides)
    except Exception as err:  # hydra's MissingConfigException, OverrideParseException, ConfigCompositionException
        where = f"{config_dir}/" if config_dir is not None else f"{VERL_CONFIG_MODULE}/"
        raise ComposeError(f"cannot compose {where}{config_name} with overrides {overrides}: {err}") from None
