"""Write Objax's public names, module by module, as JSON (for the compatibility test).

Run it with a Python that has Objax installed (Objax 1.8 needs jax 0.4.x, e.g. a scratch
virtual environment with ``jax==0.4.30 jaxlib==0.4.30 objax==1.8.0``)::

    python scripts/dump_objax_public_names.py > tests/compat/objax_public_names.json

For every module of the ``objax`` package it records the names its ``__all__`` lists (or,
without ``__all__``, the classes and functions it defines or, for a package, re-exports
from its submodules), and the public attributes of
those classes (``ForceArgs.ANY``, ``Function.auto_vars``, ...). Nothing of
Objax's code is written out: only names.
"""

from __future__ import annotations

import importlib
import inspect
import json
import pkgutil
import sys

SKIP = {"objax.util.objax2tf"}  # TensorFlow export: out of scope, and needs TensorFlow


def main() -> None:
    import objax

    modules = {"objax": objax}
    for info in pkgutil.walk_packages(objax.__path__, "objax."):
        if info.name in SKIP or info.name.split(".")[-1].startswith("_"):
            continue
        try:
            modules[info.name] = importlib.import_module(info.name)
        except ImportError as error:  # optional dependencies (TensorFlow)
            print(f"skipped {info.name}: {error}", file=sys.stderr)
    names: dict[str, list[str]] = {}
    for path, module in sorted(modules.items()):
        public = getattr(module, "__all__", None)
        if public is None:
            # The classes, functions and enums the module defines or, for a package,
            # re-exports from its own submodules; not what it imports from elsewhere.
            own = (path + ".") if hasattr(module, "__path__") else path
            public = [n for n, v in vars(module).items() if not n.startswith("_")
                      and (inspect.isclass(v) or inspect.isfunction(v))
                      and (v.__module__ == path or v.__module__.startswith(own))]
        names[path] = sorted(set(public))
        for name in names[path]:
            value = getattr(module, name, None)
            if inspect.isclass(value) and value.__module__.startswith("objax"):
                members = sorted(m for m in vars(value) if not m.startswith("_"))
                names[f"{path}.{name}"] = members
    json.dump({"objax_version": objax.__version__, "names": names}, sys.stdout, indent=1,
              sort_keys=True)
    print()


if __name__ == "__main__":
    main()
