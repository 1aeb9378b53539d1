"""The documentation site builds with ``mkdocs build --strict`` and has an API reference page
for every public module of the package.

The build runs in a subprocess, into a temporary directory (the repository's ``site/`` is
left alone). It needs the ``docs`` extra (mkdocs, mkdocs-material, mkdocstrings[python]);
without it the test is skipped.
"""

from __future__ import annotations

import importlib.util
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
REFERENCE = ROOT / "docs" / "reference"

# The public modules and the reference page that documents each (docs/reference/<page>.md).
PAGES = {
    "bridge": "bridge",
    "bridge.sharding": "sharding",
    "bridge.state": "state",
    "bridge.pure": "pure",
    "bridge.facades": "facades",
    "bridge.nn": "nn",
    "bridge.nn.init": "nn.init",
    "bridge.functional": "functional",
    "bridge.functional.loss": "functional.loss",
    "bridge.functional.divergence": "functional.divergence",
    "bridge.functional.parallel": "functional.parallel",
    "bridge.functional.core": "functional.core",
    "bridge.random": "random",
    "bridge.optimizer": "optimizer",
    "bridge.optimizer.scheduler": "optimizer.scheduler",
    "bridge.privacy": "privacy",
    "bridge.privacy.dpsgd": "privacy.dpsgd",
    "bridge.interop": "interop",
    "bridge.flax": "flax",
    "bridge.haiku": "haiku",
    "bridge.checkpoint": "checkpoint",
    "bridge.io": "io",
    "bridge.zoo": "zoo",
    "bridge.jaxboard": "jaxboard",
    "bridge.util": "util",
    "bridge.constants": "constants",
    "bridge.typing": "typing",
    "bridge.gradient": "gradient",
    "bridge.module": "module",
    "bridge.variable": "variable",
}

NEEDED = ("mkdocs", "material", "mkdocstrings", "mkdocstrings_handlers.python")


def _missing_docs_packages() -> list[str]:
    missing = []
    for name in NEEDED:
        try:
            found = importlib.util.find_spec(name) is not None
        except ModuleNotFoundError:  # a parent package is missing
            found = False
        if not found:
            missing.append(name)
    return missing


def _directives(page: str) -> list[str]:
    text = (REFERENCE / f"{page}.md").read_text(encoding="utf-8")
    return re.findall(r"^::: (\S+)", text, flags=re.MULTILINE)


def test_every_public_top_level_module_has_a_reference_page():
    """A new public module of ``bridge`` (``bridge/foo.py`` or ``bridge/foo/``) needs a page."""
    package = ROOT / "bridge"
    public = {
        p.stem if p.is_file() else p.name
        for p in package.iterdir()
        if not p.name.startswith("_")
        and ((p.is_file() and p.suffix == ".py") or (p / "__init__.py").is_file())
    }
    documented = {module.split(".")[1] for module in PAGES if module.count(".") >= 1}
    assert public - documented == set(), "modules without a reference page"


def test_reference_pages_document_their_modules():
    for module, page in PAGES.items():
        assert (REFERENCE / f"{page}.md").is_file(), f"docs/reference/{page}.md is missing"
        assert module in _directives(page), f"docs/reference/{page}.md lacks '::: {module}'"


@pytest.mark.slow
def test_mkdocs_build_strict(tmp_path):
    missing = _missing_docs_packages()
    if missing:
        pytest.skip(f"the docs extra is not installed (missing: {', '.join(missing)}); "
                    'pip install -e ".[docs]"')
    site = tmp_path / "site"
    env = dict(os.environ, NO_MKDOCS_2_WARNING="1")
    result = subprocess.run(
        [sys.executable, "-m", "mkdocs", "build", "--strict", "--site-dir", str(site)],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=600,
    )
    log = result.stdout + result.stderr
    assert result.returncode == 0, f"mkdocs build --strict failed:\n{log}"
    warnings = [line for line in log.splitlines() if line.startswith("WARNING")]
    assert warnings == [], "\n".join(warnings)

    for page in ("index", "getting-started", "concepts", "benchmarks", "reference"):
        html = site / ("index.html" if page == "index" else f"{page}/index.html")
        assert html.is_file(), f"{html.relative_to(site)} was not built"

    for module, page in PAGES.items():
        html = site / "reference" / page / "index.html"
        assert html.is_file(), f"no reference page for {module}"
        text = html.read_text(encoding="utf-8")
        assert f'id="{module}"' in text, f"reference/{page}/ does not document {module}"
    # A member rendered from its docstring, on the top-level page.
    top = (site / "reference" / "bridge" / "index.html").read_text(encoding="utf-8")
    assert 'id="bridge.Jit"' in top and "compiled" in top
