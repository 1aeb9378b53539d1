"""What every facade does around its pure function: gather values, write changes back.

Both helpers are on the hot path of a compiled call, so they do the least possible work
when no transformation is tracing (one truthiness test, then plain attribute access);
inside a trace they go through the checked accessors so that undeclared variables are
reported by the enclosing scope.
"""

from __future__ import annotations

from typing import Any, Optional, Sequence

from bridge.state import BaseVar, Module, VarCollection
from bridge.state._scope import _SCOPES

__all__ = ["declared_collection", "storages", "read", "write"]


def declared_collection(f: Any, vc: Optional[VarCollection]) -> VarCollection:
    """``vc`` together with ``f.vars()`` when ``f`` is a module (each variable once)."""
    out = VarCollection(vc or {})
    if isinstance(f, Module):
        present = {id(v._storage()) for v in out.values()}
        out.update((k, v) for k, v in f.vars().items() if id(v._storage()) not in present)
    return out


def storages(vc: VarCollection) -> list[BaseVar]:
    """The variables that hold arrays, in the collection's iteration order."""
    return [v._storage() for v in vc]


def read(variables: Sequence[BaseVar]) -> list:
    if _SCOPES:
        return [v.value for v in variables]
    return [v._value for v in variables]


def write(variables: Sequence[BaseVar], changes: dict[int, Any]) -> None:
    if _SCOPES:
        for i, value in changes.items():
            variables[i].assign(value, check=False)
    else:
        for i, value in changes.items():
            variables[i]._value = value
