"""The README's `make smoke` sample is the command's real output: the same lines, in order, up to numbers and paths
(the comparison itself: ``readme_smoke_sample`` in ``tests/e2e/conftest.py``)."""

from __future__ import annotations

import pytest

pytestmark = [pytest.mark.e2e, pytest.mark.slow, pytest.mark.ray]


def test_readme_make_smoke_sample_matches_the_real_output(smoke_mapo, readme_smoke_sample):
    """With ``../shared`` (real Geometry3K); ``tests/e2e/test_learnable_compare.py`` checks the same sample against
    the newcomer's smoke without it."""
    readme_smoke_sample(smoke_mapo.console)
