"""Every Python block of the README and of docs/ is run by the test suite.

pytest-markdown-docs (`--markdown-docs` in pyproject's addopts, with "docs" and
"README.md" in testpaths) turns each ```python block of a Markdown page into a test. These
tests make sure that stays true: a block whose info string the plugin does not read as
Python (`Python`, `pycon`, `py3`, a typo) would otherwise be skipped without a word, and
so would a page outside the configured paths. A block that is deliberately not run is
marked `notest`; there are at most MAX_NOTEST of them.

They also check that the test command of the README is the one CI runs and the one
CONTRIBUTING.md gives.
"""

from __future__ import annotations

import collections
import pathlib
import re
import subprocess
import sys
import tomllib

import pytest

ROOT = pathlib.Path(__file__).resolve().parents[2]

# The number of `notest` blocks in README.md and docs/ (raise it only with a reason: a
# block that cannot run in the test process, such as one that needs several hosts).
MAX_NOTEST = 1

# The info-string words pytest-markdown-docs reads as Python (its `extract_fence_tests`).
PLUGIN_LANGS = {"py", "python", "python3"}

TEST_COMMAND_PREFIX = 'python -m pip install -e ".[test]" && python -m pytest'


def markdown_pages() -> list[pathlib.Path]:
    return [ROOT / "README.md", *sorted((ROOT / "docs").rglob("*.md"))]


def fences(path: pathlib.Path) -> list[tuple[int, str]]:
    """(line, info string) of every fenced code block of a page, nested ones excluded.

    A plain scanner, independent of the Markdown parser the plugin uses: an opening line is
    3 or more backticks or tildes (after any indentation, as in list items), and the block
    ends at a line of at least as many of the same character.
    """
    found = []
    open_fence = None
    for number, line in enumerate(path.read_text(encoding="utf8").splitlines(), 1):
        match = re.match(r"^\s*(`{3,}|~{3,})(.*)$", line)
        if open_fence is None:
            if match and not (match.group(1)[0] == "`" and "`" in match.group(2)):
                open_fence = match.group(1)
                found.append((number, match.group(2).strip()))
        elif match and match.group(1)[0] == open_fence[0] \
                and len(match.group(1)) >= len(open_fence) and not match.group(2).strip():
            open_fence = None
    return found


def plugin_words(info: str) -> list[str]:
    """The info string as the plugin reads it with `--markdown-docs-syntax=superfences`:
    `python continuation` or `{.python continuation}`, language first."""
    from pytest_markdown_docs.plugin import parse_superfences_block_info

    return parse_superfences_block_info(info)


def python_fences() -> list[tuple[pathlib.Path, int, str, str]]:
    """(page, line, info, kind) of every block that looks like Python, kind being `run`,
    `notest` or `missed` (looks like Python, but the plugin would not run it)."""
    result = []
    for page in markdown_pages():
        for line, info in fences(page):
            if not re.search(r"(^|[^a-z])(i?py|python)", info.lower()):
                continue
            words = plugin_words(info)
            if not words or words[0] not in PLUGIN_LANGS:
                kind = "missed"
            elif "notest" in words[1:]:
                kind = "notest"
            else:
                kind = "run"
            result.append((page, line, info, kind))
    return result


def test_pytest_runs_the_markdown_pages():
    options = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["pytest"][
        "ini_options"]
    addopts = options["addopts"].split()
    assert "--markdown-docs" in addopts
    assert "--markdown-docs-syntax=superfences" in addopts
    assert {"tests", "docs", "README.md"} <= set(options["testpaths"])


def test_every_python_block_is_run_or_marked_notest():
    missed = [f"{page.relative_to(ROOT)}:{line}: ```{info}"
              for page, line, info, kind in python_fences() if kind == "missed"]
    assert not missed, (
        "these blocks look like Python but pytest-markdown-docs does not run them; write "
        "```python (add `continuation` or `notest` after it if needed):\n" + "\n".join(missed))


def test_few_blocks_are_notest():
    notest = [f"{page.relative_to(ROOT)}:{line}"
              for page, line, info, kind in python_fences() if kind == "notest"]
    assert len(notest) <= MAX_NOTEST, (
        f"{len(notest)} blocks are marked notest (at most {MAX_NOTEST}): {notest}. Make the "
        "new ones run (define what they use, or continue the previous block with "
        "`continuation`), or raise MAX_NOTEST with a reason.")


def test_the_plugin_collects_every_block_that_should_run():
    """What `pytest --collect-only` collects from README.md and docs/ (with the project's
    configuration) is exactly one test per block of kind `run`, page by page."""
    expected = collections.Counter(
        str(page.relative_to(ROOT)) for page, _, _, kind in python_fences() if kind == "run")
    process = subprocess.run(
        [sys.executable, "-m", "pytest", "--collect-only", "-q", "-p", "no:cacheprovider",
         "README.md", "docs"],
        cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert process.returncode == 0, process.stdout + process.stderr
    collected = collections.Counter(
        line.split("::")[0] for line in process.stdout.splitlines()
        if "::" in line and "[CodeFence#" in line)
    assert collected == expected


def test_no_python_file_under_the_test_paths_has_a_code_block():
    """`--markdown-docs` also collects the ```python blocks of the docstrings of every .py
    file pytest visits (tests/, docs/conftest.py; not bridge/, which is outside testpaths):
    there are none, and a new one would become a test by accident."""
    offenders = [str(path.relative_to(ROOT))
                 for folder in ("tests", "docs")
                 for path in sorted((ROOT / folder).rglob("*.py"))
                 if re.search(r"^\s*(```|~~~)\s*\{?\.?(py|python|python3)\b",
                              path.read_text(encoding="utf8"), re.MULTILINE)]
    assert not offenders


def _test_commands(text: str) -> list[str]:
    return [line.strip() for line in text.splitlines()
            if line.strip().startswith(TEST_COMMAND_PREFIX)]


@pytest.mark.parametrize("other", [".ci/run", "CONTRIBUTING.md"])
def test_the_readme_test_command_is_the_one_ci_runs(other):
    readme = _test_commands((ROOT / "README.md").read_text(encoding="utf8"))
    assert len(set(readme)) == 1, readme
    theirs = _test_commands((ROOT / other).read_text(encoding="utf8"))
    assert theirs and set(theirs) == set(readme), (other, theirs, readme)
    if other == ".ci/run":  # and it is the script's last command (see the script)
        lines = [line.strip() for line in (ROOT / other).read_text().splitlines()
                 if line.strip() and not line.strip().startswith("#")]
        assert lines[-1] == readme[0]
