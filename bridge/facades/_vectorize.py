"""``Vectorize``: map object code over a batch axis."""

from __future__ import annotations

import functools
import inspect
from typing import Any, Callable, Optional, Sequence

import jax

from bridge.facades._gather import as_module, declared_collection, read, storages
from bridge.pure import changed_entries, functionalize
from bridge.state import Module, RandomState, VarCollection
from bridge.state._access import commit, split_key
from bridge.state._repr import class_path

__all__ = ["BatchAxisError", "Vectorize"]


class BatchAxisError(ValueError, AssertionError):
    """``batch_axis`` does not fit the function or the call (Objax asserted on this, hence
    also an ``AssertionError``)."""


def _positional_count(f: Callable) -> Optional[int]:
    try:
        params = inspect.signature(f).parameters.values()
    except (TypeError, ValueError):
        return None
    if any(p.kind is p.VAR_POSITIONAL for p in params):
        return None
    return sum(p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD) and p.default is p.empty
               for p in params)


class Vectorize(Module):
    """Map ``f`` over the batch axis of its arguments (``jax.vmap``), Objax style.

    Args:
      f: a module, or a function together with ``vc``.
      vc: the variables ``f`` uses (added to ``f.vars()`` when ``f`` is a module).
      batch_axis: one entry per positional argument: the axis to map over, or ``None`` to
        pass the argument unchanged to every example.

    Semantics:
      * outputs are stacked on axis 0;
      * variables are shared by all examples; a variable that ``f`` assigns is set
        afterwards to ``var.reduce(per_example_values)`` (the mean by default);
      * every ``RandomState`` gives each example its own key (split once per call).

    Example (per-example gradients)::

        gv = bridge.GradValues(loss, model.vars())
        per_example = bridge.Vectorize(gv, batch_axis=(0, 0))
        grads, values = per_example(x, y)     # each with a leading batch axis
    """

    def __init__(self, f: Callable, vc: Optional[VarCollection] = None,
                 batch_axis: Sequence[Optional[int]] = (0,)):
        f = as_module(f, vc, "Vectorize")
        self.batch_axis = tuple(batch_axis)
        if all(a is None for a in self.batch_axis):
            raise BatchAxisError(f"Vectorize: batch_axis={self.batch_axis} maps over no "
                                 "argument.")
        needed = _positional_count(f)
        if needed is not None and len(self.batch_axis) < needed:
            raise BatchAxisError(
                f"Vectorize: batch_axis={self.batch_axis} has {len(self.batch_axis)} entries "
                f"but {f!r} takes {needed} positional arguments; give one entry (an axis or "
                "None) per argument.")
        self.__wrapped__ = f
        self.vc = declared_collection(f, vc)
        self._storages = storages(self.vc)
        self._random = [i for i, v in enumerate(self._storages) if isinstance(v, RandomState)]
        self._pure = functionalize(f, self._storages, owner=f"Vectorize({f!r})")

    def _one_example(self, kwargs, values, keys, *args):
        values = list(values)
        for i, key in zip(self._random, keys):
            values[i] = key
        output, new_values = self._pure(values, *args, **kwargs)
        return output, changed_entries(values, new_values)

    def _batch_first(self, args: tuple) -> tuple:
        """``args`` with each mapped argument's batch axis moved to the front.

        Mapping over a leading axis computes each example exactly as the unbatched code
        would (mapping over an inner axis lets XLA reorder sums, e.g. in a matrix product,
        and round differently).
        """
        problems = []
        for position, (x, axis) in enumerate(zip(args, self.batch_axis)):
            if axis is None:
                continue
            for leaf in jax.tree_util.tree_leaves(x):
                shape = jax.numpy.shape(leaf)
                if not -len(shape) <= axis < len(shape):
                    problems.append(f"  argument {position}: batch_axis {axis} is out of range "
                                    f"for its shape {shape}")
                    break
        if problems:
            raise BatchAxisError(f"Vectorize(batch_axis={self.batch_axis}):\n"
                                 + "\n".join(problems))
        return tuple(x if a in (None, 0) else jax.tree_util.tree_map(
            lambda leaf, a=a: jax.numpy.moveaxis(leaf, a, 0), x)
            for x, a in zip(args, self.batch_axis))

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        if len(args) != len(self.batch_axis):
            raise BatchAxisError(f"Vectorize: got {len(args)} positional arguments but "
                                 f"batch_axis has {len(self.batch_axis)} entries.")
        args = self._batch_first(args)
        in_axes = tuple(None if a is None else 0 for a in self.batch_axis)
        n = jax.numpy.shape(jax.tree_util.tree_leaves(args[in_axes.index(0)])[0])[0]
        values = read(self._storages)
        # Keys are drawn without advancing the RandomStates: the next keys are committed
        # with the reductions, so a call that raises leaves every variable as it was.
        drawn = [split_key(values[i], n) for i in self._random]
        mapped = jax.vmap(functools.partial(self._one_example, kwargs),
                          in_axes=(None, 0) + in_axes)
        output, changes = mapped(values, [keys for _, keys in drawn], *args)
        random = set(self._random)
        targets, new_values = [self._storages[i] for i in self._random], [k for k, _ in drawn]
        for i, stacked in changes.items():
            value = None if i in random else self._storages[i].reduced(stacked)
            if value is not None:
                targets.append(self._storages[i])
                new_values.append(value)
        commit(targets, new_values, owner=f"Vectorize({self.__wrapped__!r}) reductions")
        return output

    def __repr__(self) -> str:
        return f"{class_path(self)}(f={self.__wrapped__!r}, batch_axis={self.batch_axis})"
