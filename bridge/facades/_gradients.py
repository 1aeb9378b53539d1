"""``GradValues`` and ``Grad``: Objax's gradient modules over ``bridge.pure.grad_values``."""

from __future__ import annotations

from typing import Any, Callable, Optional, Sequence

from bridge.facades._gather import declared_collection, read, storages, write
from bridge.pure import changed_entries, functionalize, grad_values
from bridge.state import Module, TrainVar, VarCollection

__all__ = ["GradValues", "Grad"]


class GradValues(Module):
    """Gradients of ``f`` with respect to some of its inputs and the ``TrainVar``s in
    ``variables``, together with ``f``'s values.

    Args:
      f: the loss: a module or a function. It returns a scalar, or a tuple/list whose first
        element is the scalar to differentiate (the rest are extra values).
      variables: the variables to differentiate; only its ``TrainVar``s get gradients.
        Other variables ``f`` uses are constants; changes ``f`` makes to any variable
        (``StateVar``s such as batch-norm statistics) are written back.
      input_argnums: positional arguments of ``f`` to differentiate too (order kept).

    Returns (when called like ``f``):
      ``(gradients, values)``: ``gradients`` is a list, input gradients first (in
      ``input_argnums`` order) then one per ``TrainVar`` in ``variables`` order; ``values``
      is the list of everything ``f`` returned.

    Example::

        gv = bridge.GradValues(loss, model.vars())
        g, v = gv(x, y)          # g: list of arrays, v: [loss value]
    """

    def __init__(self, f: Callable, variables: VarCollection,
                 input_argnums: Optional[Sequence[int]] = None):
        self.f = f
        self.vc = variables
        self.input_argnums = tuple(input_argnums or ())
        declared = declared_collection(f, variables)
        train = storages(variables.subset(TrainVar))
        train_ids = {id(v) for v in train}
        self._storages = train + [v for v in storages(declared) if id(v) not in train_ids]
        self._n_train = len(train)
        pure = functionalize(f, self._storages, strict_reads=False,
                             owner=f"GradValues({getattr(f, '__qualname__', f)!r})")
        argnums = self.input_argnums

        def loss(train_values, inputs, other_values, args, kwargs):
            args = list(args)
            for i, x in zip(argnums, inputs):
                args[i] = x
            values = list(train_values) + list(other_values)
            output, new_values = pure(values, *args, **kwargs)
            return output, changed_entries(values, new_values)

        self._grad = grad_values(loss, argnums=(0, 1), has_aux=True)

    def __call__(self, *args: Any, **kwargs: Any) -> tuple[list, list]:
        values = read(self._storages)
        n = self._n_train
        inputs = [args[i] for i in self.input_argnums]
        (g_train, g_inputs), outputs, changes = self._grad(
            values[:n], inputs, values[n:], args, kwargs)
        write(self._storages, changes)
        return list(g_inputs) + list(g_train), outputs

    def vars(self, scope: str = "") -> VarCollection:
        return VarCollection((scope + k, v) for k, v in self.vc.items())

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.f!r}, input_argnums={self.input_argnums})"


class Grad(GradValues):
    """Like ``GradValues`` but returns only the gradients (a list)."""

    def __call__(self, *args: Any, **kwargs: Any) -> list:  # type: ignore[override]
        return super().__call__(*args, **kwargs)[0]
