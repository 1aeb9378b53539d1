"""Object code as a pure function of its variables' values."""

from __future__ import annotations

from typing import Any, Callable, Iterable, Sequence

from bridge.state._access import bind, current
from bridge.state._access import storages as storages_of

__all__ = ["functionalize", "changed_entries"]

PureFunction = Callable[..., tuple[Any, list]]


def functionalize(
    f: Callable,
    variables: Iterable,
    *,
    strict_reads: bool = True,
    owner: str | None = None,
    direct_writes: Iterable = (),
) -> PureFunction:
    """Turn object code into a pure function of the variables' values.

    Args:
      f: any callable that reads and/or assigns ``variables`` (a module, a method, a
        function closing over modules).
      variables: a ``VarCollection`` (or any iterable of variables); ``values`` below are
        in its iteration order, i.e. what ``variables.tensors()`` returns.
      strict_reads: reading a variable that is not in ``variables`` raises
        ``UndeclaredVariableError`` (otherwise the enclosing transformation decides).
      owner: how error messages name the transformation.
      direct_writes: ``TrainVar``s among ``variables`` that ``f`` may assign with
        ``v.value = x`` (BrainPy's ``dyn_vars``); other ``TrainVar``s refuse it.

    Returns:
      ``pure(values, *args, **kwargs) -> (output, new_values)``: runs ``f(*args, **kwargs)``
      with each variable holding the matching entry of ``values`` and returns its output
      and the variables' values afterwards (a list, same order). The variables are left
      as they were, so ``pure`` can be used inside ``jax.jit``, ``jax.grad``, ``jax.vmap``.

    Example::

        model = bridge.nn.Linear(2, 1)
        vc = model.vars()
        apply = bridge.pure.functionalize(model, vc)
        loss = lambda values, x: (apply(values, x)[0] ** 2).mean()
        grads = jax.jit(jax.grad(loss))(vc.tensors(), x)    # list, like vc.tensors()
    """
    storages = storages_of(variables)
    direct = storages_of(direct_writes)
    label = owner or f"bridge.pure.functionalize({getattr(f, '__qualname__', f)!r})"

    def pure(values: Sequence[Any], *args: Any, **kwargs: Any) -> tuple[Any, list]:
        if len(values) != len(storages):
            raise ValueError(f"{label}: expected {len(storages)} values (one per variable), "
                             f"got {len(values)}.")
        with bind(storages, values, label, strict_reads, direct):
            output = f(*args, **kwargs)
            new_values = [current(v) for v in storages]
        return output, new_values

    return pure


def changed_entries(old: Sequence[Any], new: Sequence[Any]) -> dict[int, Any]:
    """``{index: new value}`` for the entries that ``new`` replaced (compared by identity).

    Called while tracing, so the result's keys are fixed per compiled signature and a
    transformation returns (and writes back) only what its function assigned.
    """
    return {i: n for i, (o, n) in enumerate(zip(old, new)) if n is not o}
