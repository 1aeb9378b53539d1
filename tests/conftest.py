"""Shared pytest configuration: only a report header with the versions under test.

Nothing here changes how JAX runs (no platform forcing, no XLA_FLAGS): multi-device tests
set their own flags in a subprocess.
"""

from __future__ import annotations

import importlib.metadata
import platform

import pytest


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


# ----- the quick loop (`-m "not slow"`) ---------------------------------------------------
# Besides tests marked one by one, these are slow as a whole: they build real models
# (ResNet-50, a Transformer, a PyTorch-named ResNet-18), train the examples, or start a
# process with 8 devices. CI runs them all; `-m "not slow"` leaves them out.
_SLOW_FILES = {
    "tests/interop/test_real_models.py",
    "tests/interop/test_port_layers.py",
    "tests/examples/test_quickstart.py",
    "tests/examples/test_port.py",
    "tests/examples/test_dp_sgd.py",
    "tests/examples/test_gan_mixed.py",
    "tests/bench/test_bench_command.py",
    "tests/parallel/test_data_parallel.py",
}
# Fixtures that run something heavy: the 8-device sharding worker, ResNet-18 forward passes.
_SLOW_FIXTURES = {"runs", "torch_logits", "linen_like"}
# The migration guides train and compare two libraries block by block.
_SLOW_PAGES = {"docs/from-linen.md", "docs/from-nnx.md", "docs/from-haiku.md"}


def pytest_collection_modifyitems(config, items) -> None:
    root = config.rootpath
    for item in items:
        path = item.path.relative_to(root).as_posix() if item.path.is_relative_to(root) \
            else ""
        if path in _SLOW_FILES or path in _SLOW_PAGES or _SLOW_FIXTURES & set(
                getattr(item, "fixturenames", ())):
            item.add_marker(pytest.mark.slow)
