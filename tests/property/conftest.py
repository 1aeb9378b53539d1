"""Hypothesis settings profiles for ``tests/property``.

* ``ci`` (the default): a bounded, reproducible run. Few examples per test, no deadline
  (the first call of a JAX function compiles), derandomized so that every run checks the
  same examples, and no example database on disk.
* ``dev``: many more examples with fresh randomness each run, to look for new failures
  (Hypothesis keeps failing examples in ``.hypothesis/`` under the working directory).

Choose one with the environment variable ``HYPOTHESIS_PROFILE``::

    HYPOTHESIS_PROFILE=dev python -m pytest tests/property
"""

from __future__ import annotations

import os

from hypothesis import HealthCheck, Phase, settings

settings.register_profile(
    "ci",
    max_examples=30,
    deadline=None,
    derandomize=True,
    database=None,
    print_blob=True,
    suppress_health_check=[HealthCheck.too_slow],
    # no "explain" phase: it re-runs a failing test hundreds of times (seconds per xfail)
    phases=[Phase.explicit, Phase.reuse, Phase.generate, Phase.target, Phase.shrink],
)
settings.register_profile(
    "dev",
    max_examples=300,
    deadline=None,
    print_blob=True,
    suppress_health_check=[HealthCheck.too_slow],
)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "ci"))
