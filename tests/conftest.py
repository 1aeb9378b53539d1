"""Shared pytest configuration: only a report header with the versions under test.

Nothing here changes how JAX runs (no platform forcing, no XLA_FLAGS): multi-device tests
set their own flags in a subprocess.
"""

from __future__ import annotations

import importlib.metadata
import platform


def _version(dist: str) -> str:
    try:
        return importlib.metadata.version(dist)
    except importlib.metadata.PackageNotFoundError:
        return "not installed"


def pytest_report_header(config) -> list[str]:
    import jax

    dists = ["jax", "jaxlib", "optax", "numpy", "flax", "dm-haiku"]
    versions = ", ".join(f"{d} {_version(d)}" for d in dists)
    return [
        f"python {platform.python_version()}; {versions}",
        f"jax backend: {jax.default_backend()}, devices: {jax.device_count()}",
    ]
