"""Trace scopes: which variables a transformation may touch while it traces.

Object code reads and writes variables as Python attributes. When a transformation
(``Jit``, ``Vectorize``, ``GradValues``, ``bridge.pure.functionalize``) traces that code, the
declared variables temporarily hold tracers. A variable that was *not* declared would
either be baked into the compiled program as a stale constant (a read) or keep a tracer
after the trace ends (a write). Objax lets both happen silently; we refuse them with an
error that names the variable.

The bookkeeping happens only while tracing: outside any scope the checks reduce to one
truthiness test of an empty list, and a compiled call never enters a scope.
"""

from __future__ import annotations

import contextlib
from typing import TYPE_CHECKING, Iterator, Sequence

if TYPE_CHECKING:  # pragma: no cover
    from bridge.state._variables import BaseVar

__all__ = ["UndeclaredVariableError", "Scope", "bind", "active_scopes",
           "allows_direct_assignment"]


class UndeclaredVariableError(RuntimeError):
    """A variable was read or written inside a transformation that did not declare it."""


class Scope:
    """One active transformation trace.

    Attributes:
      owner: a short description of the transformation, used in error messages.
      declared: ``id``s of the storage variables the transformation traces.
      strict_reads: if True, reading an undeclared variable is an error. If False the read
        is judged by the enclosing scope (``GradValues`` treats undeclared variables as
        constants, which is only wrong if an enclosing ``Jit`` did not declare them).
      direct_writes: ``id``s of the ``TrainVar``s that code may assign with
        ``v.value = x`` inside this scope (BrainPy's ``dyn_vars``); elsewhere a
        ``TrainVar`` only takes ``assign`` or a ``TrainRef``.
    """

    __slots__ = ("owner", "declared", "strict_reads", "direct_writes")

    def __init__(self, owner: str, declared: set[int], strict_reads: bool,
                 direct_writes: frozenset[int] = frozenset()):
        self.owner = owner
        self.declared = declared
        self.strict_reads = strict_reads
        self.direct_writes = direct_writes


# Innermost scope last. Module-level so that the check in ``BaseVar.value`` is one lookup.
_SCOPES: list[Scope] = []


def active_scopes() -> list[Scope]:
    """The live scope stack (innermost last). Callers must not mutate it."""
    return _SCOPES


def _describe(var: BaseVar) -> str:
    label = getattr(var, "_label", None) or "<unnamed>"
    value = var._storage()._value
    return f"{type(var).__name__} {label} (shape {tuple(value.shape)}, {value.dtype})"


def check_read(var: BaseVar) -> None:
    """Raise if ``var`` may not be read in the current scope stack."""
    storage = var._storage()
    if storage._detached:
        return
    key = id(storage)
    for scope in reversed(_SCOPES):
        if key in scope.declared:
            return
        if scope.strict_reads:
            raise UndeclaredVariableError(
                f"{_describe(var)} was read inside {scope.owner}, which does not declare it. "
                "Its current value would be frozen into the traced program and later updates "
                "ignored. Declare it: pass a VarCollection that contains it (for example "
                "`model.vars() + opt.vars()`), or wrap the function with "
                "`bridge.Function.with_vars(...)`."
            )


def check_write(var: BaseVar) -> None:
    """Raise if ``var`` may not be written in the current (innermost) scope."""
    scope = _SCOPES[-1]
    storage = var._storage()
    if id(storage) not in scope.declared and not storage._detached:
        raise UndeclaredVariableError(
            f"{_describe(var)} was assigned inside {scope.owner}, which does not declare it. "
            "The new value is a tracer that would leak out of the transformation. Add the "
            "variable to the VarCollection given to it (for example `model.vars() + "
            "opt.vars()`)."
        )


def allows_direct_assignment(var: BaseVar) -> bool:
    """Whether an active scope lets code write ``var.value = x`` on this ``TrainVar``."""
    key = id(var._storage())
    return any(key in scope.direct_writes for scope in _SCOPES)


def register_new(var: BaseVar) -> None:
    """Variables created while tracing belong to the innermost scope."""
    if _SCOPES:
        _SCOPES[-1].declared.add(id(var))


@contextlib.contextmanager
def bind(
    storages: Sequence[BaseVar], values: Sequence, owner: str, strict_reads: bool = True,
    direct_writes: Sequence[BaseVar] = (),
) -> Iterator[None]:
    """Give ``storages`` the ``values`` for the duration of the block, inside a new scope.

    ``direct_writes`` are variables that may be assigned with ``v.value = x`` (see
    ``Scope``). The original values are restored on exit, whatever happens, so no tracer
    outlives the trace.
    """
    originals = [v._value for v in storages]
    for var, value in zip(storages, values):
        var._value = value
    direct = frozenset(id(v._storage()) for v in direct_writes)
    _SCOPES.append(Scope(owner, {id(v) for v in storages}, strict_reads, direct))
    try:
        yield
    finally:
        _SCOPES.pop()
        for var, value in zip(storages, originals):
            var._value = value
