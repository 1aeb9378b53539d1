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
from typing import TYPE_CHECKING, Any, Iterator, Sequence

import jax

if TYPE_CHECKING:  # pragma: no cover
    from bridge.state._variables import BaseVar

__all__ = ["UndeclaredVariableError", "ExpiredValueError", "Scope", "bind",
           "active_scopes", "allows_direct_assignment"]


class UndeclaredVariableError(RuntimeError):
    """A variable was read or written inside a transformation that did not declare it."""


class ExpiredValueError(RuntimeError):
    """A variable created while a transformation traced was used after the trace ended.

    Its value was a tracer of that trace; the trace is gone, so the value does not exist.
    """


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

    __slots__ = ("owner", "declared", "strict_reads", "direct_writes", "created")

    def __init__(self, owner: str, declared: set[int], strict_reads: bool,
                 direct_writes: frozenset[int] = frozenset()):
        self.owner = owner
        self.declared = declared
        self.strict_reads = strict_reads
        self.direct_writes = direct_writes
        self.created: list[BaseVar] = []  # variables created while this scope traced


# Innermost scope last. Module-level so that the check in ``BaseVar.value`` is one lookup.
_SCOPES: list[Scope] = []


def active_scopes() -> list[Scope]:
    """The live scope stack (innermost last). Callers must not mutate it."""
    return _SCOPES


def _describe(var: BaseVar) -> str:
    from bridge.state._variables import describe  # _variables imports this module

    return describe(var)


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


def undeclared_writes(variables: Sequence[BaseVar]) -> list[BaseVar]:
    """Those of ``variables`` that the innermost scope does not let code assign."""
    scope = _SCOPES[-1]
    return [v for v in variables
            if id(v._storage()) not in scope.declared and not v._storage()._detached]


def undeclared_write_message(variables: Sequence[BaseVar]) -> str:
    owner = _SCOPES[-1].owner
    if len(variables) == 1:
        what = f"{_describe(variables[0])} was assigned inside {owner}, which does not declare it."
    else:
        what = (f"These variables were assigned inside {owner}, which does not declare them:\n"
                + "\n".join(f"  {_describe(v)}" for v in variables) + "\n")
    return (f"{what} The new value is a tracer that would leak out of the transformation. "
            "Add the variable to the VarCollection given to it (for example `model.vars() + "
            "opt.vars()`).")


def check_write(var: BaseVar) -> None:
    """Raise if ``var`` may not be written in the current (innermost) scope."""
    if undeclared_writes([var]):
        raise UndeclaredVariableError(undeclared_write_message([var]))


def allows_direct_assignment(var: BaseVar) -> bool:
    """Whether an active scope lets code write ``var.value = x`` on this ``TrainVar``."""
    key = id(var._storage())
    return any(key in scope.direct_writes for scope in _SCOPES)


def register_new(var: BaseVar) -> None:
    """Variables created while tracing belong to the innermost scope."""
    if _SCOPES:
        _SCOPES[-1].declared.add(id(var))
        _SCOPES[-1].created.append(var)


class _Expired:
    """What a variable created during a trace holds once the trace is over, in place of
    the tracer: it keeps the shape and dtype (so the variable still prints and can be
    assigned a real value) and raises ``ExpiredValueError`` on any other use."""

    __slots__ = ("shape", "dtype", "ndim", "label", "owner")

    def __init__(self, tracer: Any, label: str, owner: str):
        self.shape, self.dtype, self.ndim = tracer.shape, tracer.dtype, tracer.ndim
        self.label, self.owner = label, owner

    def _fail(self, *args: Any, **kwargs: Any) -> Any:
        raise ExpiredValueError(
            f"{self.label} was created inside {self.owner} while it traced, so it held a "
            "traced value, which no longer exists now that the trace is over. Create "
            "variables outside transformations (in the module's __init__, before the first "
            "call), or assign the variable a concrete value before using it.")

    def __getattr__(self, name: str) -> Any:
        self._fail()

    def __repr__(self) -> str:
        return f"<expired tracer {self.dtype}{list(self.shape)} from {self.owner}>"


for _name in ["__jax_array__", "__array__", "__bool__", "__float__", "__int__", "__index__",
              "__len__", "__iter__", "__getitem__", "__neg__", "__pos__", "__abs__",
              "__invert__", "__eq__", "__ne__", "__lt__", "__le__", "__gt__", "__ge__"] + [
        f"__{r}{op}__" for op in ["add", "sub", "mul", "truediv", "floordiv", "mod", "pow",
                                  "matmul", "and", "or", "xor", "lshift", "rshift"]
        for r in ("", "r")]:
    setattr(_Expired, _name, _Expired._fail)
_Expired.__hash__ = object.__hash__  # type: ignore[assignment]
jax.tree_util.register_pytree_node(
    _Expired, lambda e: e._fail(), lambda aux, leaves: None)  # type: ignore[arg-type]


def _expire_created(scope: Scope) -> None:
    """Replace the tracers held by variables created in ``scope`` (see ``_Expired``)."""
    for var in scope.created:
        value = getattr(var, "_value", None)  # a TrainRef holds no value of its own
        if isinstance(value, jax.core.Tracer):
            label = var._label or f"a {type(var).__name__}"
            var._value = _Expired(value, f"{type(var).__name__} {label}", scope.owner)


@contextlib.contextmanager
def outside_traces() -> Iterator[None]:
    """Run the block as if no transformation were tracing: no scope sees what it does, and
    JAX computes concretely (``jax.ensure_compile_time_eval``). For state that is created
    lazily (a generator's key) and must not belong to the trace that first needs it."""
    saved = _SCOPES[:]
    _SCOPES.clear()  # the same list object: other modules hold a reference to it
    try:
        with jax.ensure_compile_time_eval():
            yield
    finally:
        _SCOPES[:] = saved


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
        scope = _SCOPES.pop()
        if scope.created:
            _expire_created(scope)
        for var, value in zip(storages, originals):
            var._value = value
