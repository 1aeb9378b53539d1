"""What every facade works out around its pure function: which variables it declares,
in which order, and which keyword arguments are compile-time flags.

Reading the values and writing the changes back are the state layer's
(``bridge.state._access.read``/``write_changes``, re-exported here): they cost one
truthiness test per call when nothing is tracing.
"""

from __future__ import annotations

from typing import Any, Iterable, Mapping, Optional

from bridge.state import BaseVar, Function, Module, VarCollection
from bridge.state._access import read, storage_of, storages, write_changes
from bridge.state._collection import as_collection
from bridge.state._module import module_vars

__all__ = ["as_module", "declared_collection", "merge_once", "storages",
           "differentiated_first", "read", "write_changes", "split_flags"]

# Keyword values that a compiled facade treats as compile-time constants (``training=True``).
FLAG_TYPES = (bool, str, type(None))


def merge_once(*collections: Mapping[str, BaseVar]) -> VarCollection:
    """The collections merged, each variable once, under the first name it comes with."""
    out = VarCollection()
    present: set[int] = set()
    for collection in collections:
        for name, v in collection.items():
            key = id(storage_of(v))
            if key not in present:
                present.add(key)
                out.update({name: v})
    return out


def as_module(f: Any, vc: Optional[VarCollection], facade: str) -> Module:
    """``f`` itself when it is a module, else ``Function(f, vc)``; a plain function without
    its collection is an error that shows the call to write."""
    if isinstance(f, Module):
        return f
    if vc is None:
        raise ValueError(f"{facade} of a plain function needs the VarCollection it uses: "
                         f"{facade}(f, vc=model.vars()).")
    return Function(f, as_collection(vc, f"{facade}: vc"))


def declared_collection(f: Any, vc: Optional[VarCollection]) -> VarCollection:
    """``vc`` together with the variables of ``f`` when it is a module or a module's method."""
    return merge_once(as_collection(vc), module_vars(f))


def differentiated_first(diff_vars: Iterable[BaseVar],
                         other_vars: Iterable[BaseVar]) -> tuple[list[BaseVar], int]:
    """The storage variables, those to differentiate first, each once; and their count.

    A facade hands the first ``n`` values to the differentiated argument of its pure
    function and the rest (state and constants) to a non-differentiated one.
    """
    ordered: list[BaseVar] = []
    seen: set[int] = set()

    def add(group: Iterable[BaseVar]) -> None:
        for v in group:
            storage = storage_of(v)
            if id(storage) not in seen:
                seen.add(id(storage))
                ordered.append(storage)

    add(diff_vars)
    n = len(ordered)
    add(other_vars)
    return ordered, n


def split_flags(kwargs: dict) -> tuple[tuple, dict]:
    """``(flags, kwargs)``: the ``bool``/``str``/``None`` keyword arguments, sorted as
    ``(name, value)`` pairs (hashable, so ``jax.jit`` can take them as a static argument),
    and the rest (traced)."""
    if not kwargs:
        return (), kwargs
    flags = tuple(sorted((k, v) for k, v in kwargs.items() if isinstance(v, FLAG_TYPES)))
    if not flags:
        return (), kwargs
    return flags, {k: v for k, v in kwargs.items() if not isinstance(v, FLAG_TYPES)}
