"""Fixtures for the examples' tests: each example is imported by path (``examples/`` is
not a package), and its PNG is checked by its signature."""

from __future__ import annotations

import importlib.util
import pathlib
import sys

import pytest

EXAMPLES = pathlib.Path(__file__).resolve().parents[2] / "examples"
PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


def _load_example(name: str):
    """``examples/<name>.py`` as a fresh module (its ``__name__`` is not ``__main__``)."""
    spec = importlib.util.spec_from_file_location(f"{name}_example", EXAMPLES / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    # registered, as an import would: dataclasses (Flax modules) look their module up
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


def _assert_png(path) -> None:
    """``path`` exists and starts with the 8-byte PNG signature."""
    path = pathlib.Path(path)
    assert path.is_file(), path
    assert path.read_bytes()[:8] == PNG_SIGNATURE, path


@pytest.fixture(scope="session")
def load_example():
    """``load_example(name)``: ``examples/<name>.py`` imported by path, a fresh module."""
    return _load_example


@pytest.fixture(scope="session")
def assert_png():
    """``assert_png(path)``: the file exists and starts with the PNG signature."""
    return _assert_png
