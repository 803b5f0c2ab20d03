"""Is ``mapo`` registered where verl looks it up? One answer for ``doctor``, ``check`` and the Ray probes.

Importing this module imports no verl: asking imports verl the way every verl process does (``import verl`` loads
the ``verl.plugins`` entry points), then looks in verl's estimator registry. It never imports the plug-in itself,
so a missing or disabled entry point shows as ``False`` instead of being papered over.
"""

from __future__ import annotations

#: The name MAPO is registered under in verl (``algorithm.adv_estimator=mapo``).
ESTIMATOR_NAME = "mapo"

#: Source for ``python -c``: prints the answer as a fresh interpreter that only imports verl sees it.
FRESH_INTERPRETER_PROBE = "from mapo_verl.registry_probe import mapo_registered\nprint(mapo_registered())\n"


def mapo_registered() -> bool:
    """True when verl's ``ADV_ESTIMATOR_REGISTRY`` holds ``mapo`` after ``import verl``."""
    import verl  # noqa: F401  (loads the verl.plugins entry points, as in every Ray actor)
    from verl.trainer.ppo.core_algos import ADV_ESTIMATOR_REGISTRY

    return ESTIMATOR_NAME in ADV_ESTIMATOR_REGISTRY
