"""mapo-verl: MAPO (Mixed Advantage Policy Optimization, arXiv 2509.18849) for verl.

The math is in :mod:`mapo_verl.mixed_advantage` (PyTorch, with numpy/pandas to number the groups; no verl
import); the verl estimator ``mapo`` is registered by :mod:`mapo_verl.verl_plugin`, which verl >= 0.9 imports
through the ``verl.plugins`` entry point.

Importing this package stays light (no verl import) unless verl is already being imported: that is the case
for ``VERL_USE_EXTERNAL_MODULES=mapo_verl`` (honoured by verl 0.9.1 as by older versions; the shipped
``scripts/runtime_env.yaml`` uses it where mapo-verl is not pip-installed), which imports this package from
inside ``import verl``, and then we register the estimator too.
"""

import sys

__version__ = "0.1.0"

if "verl" in sys.modules:
    from mapo_verl import verl_plugin  # noqa: F401  (registers the `mapo` estimator)
