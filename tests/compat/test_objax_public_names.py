"""Every public name of Objax 1.8 exists in bridge, at the same path or in its package.

``objax_public_names.json`` lists, module by module, the names in Objax 1.8's ``__all__``
and the public attributes of its classes; it was written by
``scripts/dump_objax_public_names.py`` run against Objax 1.8.0 (with jax 0.4.30).

Objax's implementation modules (``objax.nn.layers``, ``objax.optimizer.adam``, ...) have no
module of the same name in bridge; their names are looked up in the package that exports
them (``bridge.nn``, ``bridge.optimizer``), which is where Objax code reaches them too
(``objax.nn.Linear``).
"""

import importlib
import inspect
import json
import pathlib

import pytest

import bridge

OBJAX = json.loads((pathlib.Path(__file__).with_name("objax_public_names.json")).read_text())
NAMES = OBJAX["names"]

# Objax modules that are implementation files; bridge exports their names from the parent.
IMPLEMENTATION_MODULES = {
    "objax.io.ops", "objax.nn.layers", "objax.optimizer.adam", "objax.optimizer.ema",
    "objax.optimizer.lars", "objax.optimizer.momentum", "objax.optimizer.sgd",
    "objax.privacy.dpsgd.gradient", "objax.privacy.dpsgd.privacyaccountant",
    "objax.random.random", "objax.util.util",
}


# Names bridge does not provide, with the reason (also in docs/objax-migration.md).
NOT_PROVIDED = {
    "objax.util": {"Objax2Tf"},  # export to TensorFlow SavedModel: needs TensorFlow
}


def _is_module_entry(path: str) -> bool:
    return path.split(".")[-1][:1].islower()


def _bridge_module(path: str):
    """The bridge module that holds the names of Objax module ``path``."""
    if path in IMPLEMENTATION_MODULES:
        path = path.rsplit(".", 1)[0]
    return importlib.import_module("bridge" + path[len("objax"):])


MODULES = sorted(p for p in NAMES if _is_module_entry(p))
CLASSES = sorted(p for p in NAMES if not _is_module_entry(p)
                 and p.rsplit(".", 1)[1] not in NOT_PROVIDED.get(p.rsplit(".", 1)[0], ()))


def test_the_names_file_is_objax_1_8():
    assert OBJAX["objax_version"] == "1.8.0"


@pytest.mark.parametrize("path", MODULES)
def test_every_public_name_of_the_objax_module_exists(path):
    module = _bridge_module(path)
    missing = [name for name in NAMES[path]
               if not hasattr(module, name) and name not in NOT_PROVIDED.get(path, ())]
    assert not missing, f"{module.__name__} lacks {missing} (Objax: {path})"


@pytest.mark.parametrize("path", CLASSES)
def test_every_public_member_of_the_objax_class_exists(path):
    module_path, class_name = path.rsplit(".", 1)
    cls = getattr(_bridge_module(module_path), class_name)
    missing = [m for m in NAMES[path] if not hasattr(cls, m)]
    assert not missing, f"{cls} lacks {missing} (Objax: {path})"


@pytest.mark.parametrize("path", [p for p in MODULES if p not in IMPLEMENTATION_MODULES])
def test_objax_module_paths_import_under_bridge(path):
    assert inspect.ismodule(_bridge_module(path))


def test_bridge_top_level_exports_objax_top_level():
    assert set(NAMES["objax"]) <= set(bridge.__all__)
