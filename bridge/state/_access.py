"""How the layers above the state model read and write variables.

Facades, wrappers, optimizers, converters and checkpoint restores never touch a variable's
storage, its raw value or the scope stack themselves; they use this small API:

``storage_of`` / ``storages``
    the variable that holds the array (a ``TrainRef`` forwards to its ``TrainVar``);
``current``
    the stored array, unchecked (for shapes, names, display and export);
``set_label``
    how errors name a variable, for wrappers that name their variables themselves;
``tracing``
    whether a transformation is tracing object code right now;
``read`` / ``write_changes``
    the hot path of a compiled call: values out, changed values back (they were checked
    when the call was traced, so nothing is checked again);
``commit``
    **the one write path** for everything else: check every new value first (kind,
    shape, dtype, and that the enclosing transformation declares the variable), then
    assign them all, or raise one error that lists every problem and assign none;
``bind``
    hand variables traced values for the length of a trace, inside a scope that checks
    every read and write (what ``bridge.pure.functionalize`` is built on);
``outside_traces``
    create lazily made state (a generator's key) as if no transformation were tracing;
``split_key``
    what ``RandomState.split`` computes, without assigning, so that a key advances only
    when the call that drew from it succeeds.
"""

from __future__ import annotations

from typing import Any, Iterable, Mapping, Optional, Sequence

import jax

from bridge.state import _scope
from bridge.state._scope import _SCOPES, UndeclaredVariableError, bind, outside_traces
from bridge.state._variables import AssignmentError, BaseVar, describe, prepare

__all__ = ["storage_of", "storages", "current", "set_label", "tracing", "read", "write_changes",
           "commit", "bind", "outside_traces", "split_key"]

Array = jax.Array


def storage_of(var: BaseVar) -> BaseVar:
    """The variable that holds ``var``'s array: ``var`` itself, or a ``TrainRef``'s target."""
    return var._storage()


def storages(variables: Iterable[BaseVar]) -> list[BaseVar]:
    """``storage_of`` for each variable, in order."""
    return [v._storage() for v in variables]


def current(var: BaseVar) -> Array:
    """The stored array, without the read check a transformation applies to ``var.value``.

    For code that needs a shape, a dtype or a name, or exports values it does not trace.
    """
    return var._storage()._value


def set_label(var: BaseVar, label: str) -> None:
    """Name ``var`` in error messages (``describe``), e.g. ``'(FlaxModule).params/w'``."""
    var._storage()._label = label


def tracing() -> bool:
    """True while a transformation (``Jit``, ``GradValues``, ``functionalize``...) traces."""
    return bool(_SCOPES)


def read(variables: Sequence[BaseVar]) -> list:
    """The values of storage ``variables``: checked reads inside a trace, plain otherwise."""
    if _SCOPES:
        return [v.value for v in variables]
    return [v._value for v in variables]


def write_changes(variables: Sequence[BaseVar], changes: Mapping[int, Any]) -> None:
    """Write ``{index: value}`` returned by a transformed pure function.

    Every value was produced by an assignment that was checked while the function was
    traced, so a compiled call writes without checking again. Inside an enclosing trace
    the writes still go through the enclosing scope's declaration check.
    """
    if _SCOPES:
        undeclared = _scope.undeclared_writes([variables[i] for i in changes])
        if undeclared:
            raise UndeclaredVariableError(_scope.undeclared_write_message(undeclared))
    for i, value in changes.items():
        variables[i]._value = value


def commit(variables: Sequence[BaseVar], values: Sequence[Any], *, owner: str,
           names: Optional[Sequence[str]] = None, check: bool = True) -> None:
    """Assign ``values[i]`` to ``variables[i]`` for every ``i``, or nothing at all.

    Every value is checked before any is assigned: it must be an array of the variable's
    shape and exact dtype (Python scalars take the variable's dtype; ``check=False``
    skips shape and dtype, as Objax's reductions do), must not be a tracer outside a
    transformation, and, inside one, the variable must be declared by it.

    Args:
      variables: the variables to write (``TrainRef``s write their targets).
      values: one new value per variable.
      owner: how the error names the operation (``"Optax"``, ``"FlaxModule"``...).
      names: how the error names each variable (default: the name its module gave it).
      check: check shapes and dtypes.

    Raises:
      AssignmentError: the counts differ, or some values do not fit; the message lists
        every one of them and no variable was changed.
      UndeclaredVariableError: inside a transformation, some variables are not declared
        by it (all of them are listed); no variable was changed.

    Example::

        commit([model.w, model.b], [w2, b2], owner="my_update")
    """
    variables, values = list(variables), list(values)
    if len(variables) != len(values):
        raise AssignmentError(f"{owner}: {len(values)} values for {len(variables)} variables; "
                              "nothing was assigned.")
    planned, problems = [], []
    for i, (var, value) in enumerate(zip(variables, values)):
        storage, value, problem = prepare(var, value, check)
        if problem:
            name = names[i] if names is not None else describe(var)
            problems.append(f"  {name}: {problem}")
        planned.append((storage, value))
    if problems:
        raise AssignmentError(f"{owner}: nothing was assigned because:\n" + "\n".join(problems))
    if _SCOPES:
        undeclared = _scope.undeclared_writes(variables)
        if undeclared:
            raise UndeclaredVariableError(_scope.undeclared_write_message(undeclared))
    for storage, value in planned:
        storage._value = value


def split_key(key: Array, n: int) -> tuple[Array, Array]:
    """``(next key, n new keys of shape (n, 2))``: ``RandomState.split(n)`` as a pure function.

    Facades draw keys with it and commit the next key with the call's other writes, so a
    call that raises leaves every ``RandomState`` as it was.
    """
    keys = jax.random.split(key, n + 1)
    return keys[0], keys[1:]
