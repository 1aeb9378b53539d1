"""Run Objax's own test suite against bridge, with ``objax`` imported as ``bridge``.

Usage (needs a local checkout of google/objax; nothing of it is copied into this
repository)::

    git clone https://github.com/google/objax /tmp/objax
    python -m pip install -e ".[test,objax-tests]"
    python scripts/run_objax_tests.py --objax-src /tmp/objax [pytest args...]
    python scripts/run_objax_tests.py --objax-src /tmp/objax --only conv.py,jit.py -x

The script copies Objax's ``tests/*.py`` (all but ``objax2tf.py``, which exports to
TensorFlow) into a temporary directory beside a ``conftest.py`` that

* resolves ``objax`` and every ``objax.*`` module to ``bridge`` and ``bridge.*`` (a
  ``sys.meta_path`` finder, so ``from objax.zoo.dnnet import DNNet`` finds
  ``bridge.zoo.dnnet``);
* applies the shims for what current JAX changed *in the test files themselves*, and
  nothing else: ``jax.core.ConcretizationTypeError`` (now in ``jax.errors``);
  ``jax_threefry_partitionable=False`` (the tests hard-code random numbers drawn before
  JAX 0.5 changed that default); ``jnp.fix`` (now ``jnp.trunc``); ``jax.Array.__div__`` and
  ``__rdiv__`` (Python 2 names the tests compare against); a stub ``tensorflow`` module so
  that ``resnet_v2.py`` can be collected. Its 7 Keras comparisons
  (``TestResNetV2Pretrained``) need TensorFlow and downloaded weights and are deselected.

``normalization.py`` and ``parallel.py`` ask for 8 CPU devices by setting ``XLA_FLAGS``
when they are imported, which only works before JAX starts; the script sets the same flag
for the whole run, in its own process.

It then runs pytest and prints, per test file, how many tests passed, followed by every
test that did not pass. Exit code: 0 if every test passed, else pytest's.
"""

from __future__ import annotations

import argparse
import collections
import os
import pathlib
import shutil
import subprocess
import sys
import tempfile
import xml.etree.ElementTree as ElementTree

LEFT_OUT = {"objax2tf.py"}
DESELECTED = ["resnet_v2.py::TestResNetV2Pretrained"]

CONFTEST = '''
"""Written by bridge's scripts/run_objax_tests.py: objax -> bridge, and the JAX shims."""
import importlib
import importlib.abc
import importlib.util
import sys
import types

import jax
import jax.numpy as jnp


class _ObjaxAsBridge(importlib.abc.MetaPathFinder, importlib.abc.Loader):
    """``objax[.x.y]`` is the already imported module ``bridge[.x.y]``."""

    def find_spec(self, fullname, path=None, target=None):
        if fullname != "objax" and not fullname.startswith("objax."):
            return None
        return importlib.util.spec_from_loader(fullname, self)

    def create_module(self, spec):
        return importlib.import_module("bridge" + spec.name[len("objax"):])

    def exec_module(self, module):
        pass


sys.meta_path.insert(0, _ObjaxAsBridge())

# What current JAX changed in the test files' own code.
jax.config.update("jax_threefry_partitionable", False)
jax.core.ConcretizationTypeError = jax.errors.ConcretizationTypeError
if not hasattr(jnp, "fix"):
    jnp.fix = jnp.trunc
_array_type = type(jnp.zeros(()))
_array_type.__div__ = _array_type.__truediv__
_array_type.__rdiv__ = _array_type.__rtruediv__
sys.modules.setdefault("tensorflow", types.ModuleType("tensorflow"))
'''


def copy_tests(objax_src: pathlib.Path, into: pathlib.Path, only: list[str]) -> list[str]:
    tests_dir = objax_src / "tests"
    files = sorted(p for p in tests_dir.glob("*.py") if p.name not in LEFT_OUT)
    if not files:
        sys.exit(f"{tests_dir}: no test files; --objax-src must be a checkout of google/objax")
    unknown = sorted(set(only) - {p.name for p in files})
    if unknown:
        sys.exit(f"--only: no such test file(s) in {tests_dir}: {', '.join(unknown)}")
    if only:
        files = [p for p in files if p.name in only]
    for path in files:
        shutil.copy(path, into / path.name)
    (into / "conftest.py").write_text(CONFTEST)
    return [p.name for p in files]


def summarize(junit_xml: pathlib.Path, files: list[str]) -> tuple[str, int, int]:
    """A per-file table of passed/total, and the failures; returns (text, passed, total)."""
    counts = collections.OrderedDict((name, [0, 0]) for name in files)
    failures, uncollected = [], []
    for case in ElementTree.parse(junit_xml).iter("testcase"):
        if case.find("skipped") is not None:
            continue
        if not case.get("classname"):  # the file itself failed to import
            uncollected.append(case.get("name") + ".py")
            problem = case.find("error")
            message = (problem.get("message") or "") if problem is not None else ""
            failures.append(f"{case.get('name')}.py: not collected: {message[:150]}")
            continue
        module = case.get("classname").split(".")[0] + ".py"
        counts.setdefault(module, [0, 0])
        counts[module][1] += 1
        problem = case.find("failure")
        if problem is None:
            problem = case.find("error")
        if problem is None:
            counts[module][0] += 1
        else:
            message = (problem.get("message") or "").splitlines()
            failures.append(f"{module}::{case.get('classname').split('.', 1)[-1]}::"
                            f"{case.get('name')}: {message[0][:150] if message else ''}")
    lines = [f"{'file':26} {'passed':>6} / total"]
    for name, (ok, total) in counts.items():
        note = "  (not collected)" if name in uncollected else ""
        lines.append(f"{name:26} {ok:6d} / {total}{note}")
    passed = sum(ok for ok, _ in counts.values())
    total = sum(t for _, t in counts.values())
    lines.append(f"{'all':26} {passed:6d} / {total}")
    if failures:
        lines.append("\nnot passed:")
        lines.extend(f"  {f}" for f in failures)
    return "\n".join(lines), passed, total


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--objax-src", required=True, type=pathlib.Path,
                        help="a checkout of https://github.com/google/objax")
    parser.add_argument("--only", default="",
                        help="comma-separated test files to run (default: all)")
    args, pytest_args = parser.parse_known_args()
    root = pathlib.Path(__file__).resolve().parents[1]
    with tempfile.TemporaryDirectory() as tmp:
        tmp = pathlib.Path(tmp)
        only = [name if name.endswith(".py") else name + ".py"
                for name in args.only.split(",") if name]
        files = copy_tests(args.objax_src.expanduser().resolve(), tmp, only)
        junit = tmp / "results.xml"
        env = dict(os.environ)
        env["PYTHONPATH"] = os.pathsep.join(
            [str(root)] + ([env["PYTHONPATH"]] if env.get("PYTHONPATH") else []))
        env["XLA_FLAGS"] = " ".join(
            [env.get("XLA_FLAGS", ""), "--xla_force_host_platform_device_count=8"]).strip()
        deselect = [f"--deselect={d}" for d in DESELECTED if d.split("::")[0] in files]
        command = [sys.executable, "-m", "pytest", "-p", "no:cacheprovider",
                   "--rootdir", str(tmp), "--continue-on-collection-errors",
                   f"--junitxml={junit}", *deselect, *files, *pytest_args]
        code = subprocess.call(command, env=env, cwd=tmp)
        if junit.exists():
            text, passed, total = summarize(junit, files)
            print(text)
        return code


if __name__ == "__main__":
    sys.exit(main())
