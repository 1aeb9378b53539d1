"""pytest configuration for the code blocks of the docs pages (run by pytest-markdown-docs).

The pages create their files with `tempfile` (checkpoints, a Flax checkpoint to load); here
`tempfile` is pointed at pytest's own temporary directory for each block, so that a test
run leaves nothing behind in the system's temporary directory. Nothing else changes: the
blocks run as a reader would run them.
"""

from __future__ import annotations

import tempfile

import pytest


@pytest.fixture(autouse=True)
def _docs_tempdir(tmp_path, monkeypatch):
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))
