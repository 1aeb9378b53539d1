"""Run Objax's own test files against bridge, with ``objax`` imported as ``bridge``.

Usage (needs network access to PyPI, and scipy, which Objax's tests import; nothing is
kept in the repository)::

    python -m pip install -e ".[test]" scipy
    python scripts/run_objax_tests.py [--version 1.8.0] [pytest args...]

It downloads Objax's source distribution and wheel from PyPI into a temporary directory,
takes the test files the sdist ships (``tests/*.py``; 1.8.0 ships ``testio.py`` and
``testrandom.py``), and runs them with pytest in a fresh process where ``objax`` and its
submodules are aliases of ``bridge``'s. Objax's ``zoo`` models, which the tests build,
are loaded from the Objax wheel and run on bridge's layers. Exit code: pytest's.
"""

from __future__ import annotations

import argparse
import os
import pathlib
import re
import subprocess
import sys
import tarfile
import tempfile
import urllib.request
import zipfile

INDEX = "https://pypi.org/simple/objax/"

# Written into the temporary directory as sitecustomize.py, so that the pytest process
# resolves every `import objax...` to bridge before any test module is imported.
ALIASES = '''
import importlib, pathlib, sys, types
import bridge

sys.modules["objax"] = bridge
for name in ["constants", "functional", "io", "io.checkpoint", "nn", "optimizer",
             "privacy", "random", "typing", "util"]:
    sys.modules["objax." + name] = importlib.import_module("bridge." + name)

zoo = types.ModuleType("objax.zoo")
zoo.__path__ = [str(pathlib.Path(__file__).with_name("objax_wheel") / "objax" / "zoo")]
sys.modules["objax.zoo"] = zoo
bridge.zoo = zoo
'''


def download(version: str, suffix: str, into: pathlib.Path) -> pathlib.Path:
    page = urllib.request.urlopen(INDEX, timeout=60).read().decode()
    name = re.escape(f"objax-{version}") + re.escape(suffix)
    links = re.findall(rf'href="([^"#]*{name})[#"]', page)
    if not links:
        sys.exit(f"objax {version}: no {suffix} file on {INDEX}")
    target = into / links[0].rsplit("/", 1)[-1]
    urllib.request.urlretrieve(links[0], target)
    return target


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--version", default="1.8.0")
    args, pytest_args = parser.parse_known_args()
    root = pathlib.Path(__file__).resolve().parents[1]
    with tempfile.TemporaryDirectory() as tmp:
        tmp = pathlib.Path(tmp)
        with tarfile.open(download(args.version, ".tar.gz", tmp)) as sdist:
            members = [m for m in sdist.getmembers()
                       if re.fullmatch(r"[^/]+/tests/[^/]+\.py", m.name) and m.isfile()]
            for member in members:
                (tmp / pathlib.Path(member.name).name).write_bytes(
                    sdist.extractfile(member).read())
        with zipfile.ZipFile(download(args.version, "-py3-none-any.whl", tmp)) as wheel:
            wheel.extractall(tmp / "objax_wheel")
        (tmp / "sitecustomize.py").write_text(ALIASES)
        tests = sorted(str(tmp / pathlib.Path(m.name).name) for m in members)
        print(f"objax {args.version}: running {[pathlib.Path(t).name for t in tests]}")
        env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(tmp), str(root)])}
        return subprocess.call([sys.executable, "-m", "pytest", "-p", "no:cacheprovider",
                                "--rootdir", str(tmp), *tests, *pytest_args], env=env,
                               cwd=tmp)


if __name__ == "__main__":
    sys.exit(main())
