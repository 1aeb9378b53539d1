"""Objax's differentiation modules: ``GradValues``, ``Grad``, ``Jacobian``, ``Hessian``."""

from __future__ import annotations

import inspect
from typing import Any, Callable, List, Optional, Sequence, Tuple

from bridge import pure
from bridge.facades._differentiate import Differentiate
from bridge.facades._gather import declared_collection
from bridge.state import Module, TrainVar, VarCollection
from bridge.state._collection import as_collection
from bridge.state._repr import class_path, function_repr
from bridge.typing import JaxArray

__all__ = ["GradValues", "Grad", "Jacobian", "Hessian"]


def _objax_loss(output: Any) -> tuple[Any, list]:
    return pure.split_loss(output)


def _whole_output(output: Any) -> tuple[Any, None]:
    return output, None


def _signature(f: Callable, returns: Callable[[Any], Any]) -> Optional[inspect.Signature]:
    """``f``'s signature with the return annotation ``returns(f's return annotation)``."""
    try:
        signature = inspect.signature(f)
    except (TypeError, ValueError):  # some builtins have none
        return None
    result = signature.return_annotation
    return signature.replace(
        return_annotation=returns(Any if result is inspect.Signature.empty else result))


class _ObjaxDifferentiation(Module):
    """Shared construction: differentiate ``f`` w.r.t. ``input_argnums`` and the
    ``TrainVar``s of ``variables``; results are lists, inputs first."""

    _transform: Callable
    _split: Callable = staticmethod(_whole_output)
    # Return annotation of the facade given ``f``'s; None keeps ``f``'s signature as is.
    _returns: Optional[Callable[[Any], Any]] = None

    def __init__(self, f: Callable, variables: Optional[VarCollection] = None,
                 input_argnums: Optional[Sequence[int]] = None):
        if input_argnums is not None and not isinstance(input_argnums, (tuple, list)):
            raise TypeError(f"input_argnums must be a tuple of argument indices, got "
                            f"{input_argnums!r}.")
        self.f = f
        self.vc = variables = as_collection(variables, f"{type(self).__name__}: variables")
        self.input_argnums = tuple(input_argnums or ())
        self._engine = Differentiate(
            f, type(self)._transform, list(variables.subset(TrainVar)), self.input_argnums,
            list(declared_collection(f, variables)), type(self)._split,
            owner=f"{type(self).__name__}({getattr(f, '__qualname__', f)!r})")
        # ``inspect.signature(gv)`` shows f's arguments and what the facade returns, so
        # tools that read signatures (and Objax code that checks them) see the real call.
        returns = type(self)._returns
        signature = _signature(f, returns if returns is not None else lambda r: r)
        if signature is not None:
            self.__signature__ = signature

    def vars(self, scope: str = "") -> VarCollection:
        """The given ``variables``, then any other variable of ``f`` when it is a module.

        So ``Jit(GradValues(f, None, input_argnums=(0,)))`` declares what ``f`` reads.
        """
        return VarCollection((scope + k, v) for k, v in declared_collection(
            self.f, self.vc).items())

    def __repr__(self) -> str:
        f = repr(self.f) if isinstance(self.f, Module) else function_repr(self.f)
        return f"{class_path(self)}(f={f}, input_argnums={self.input_argnums or None})"


class GradValues(_ObjaxDifferentiation):
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

    Raises:
      TypeError: the differentiated value is not a scalar (the message gives its shape).

    Example::

        gv = bridge.GradValues(loss, model.vars())
        g, v = gv(x, y)          # g: list of arrays, v: [loss value]
    """

    _transform = staticmethod(pure.grad)
    _split = staticmethod(_objax_loss)
    _returns = staticmethod(lambda values: Tuple[List[JaxArray], values])

    def __call__(self, *args: Any, **kwargs: Any) -> tuple[list, list]:
        (g_vars, g_inputs), _, values = self._engine(*args, **kwargs)
        return list(g_inputs) + list(g_vars), values


class Grad(GradValues):
    """Like ``GradValues`` but returns only the gradients (a list)."""

    _returns = staticmethod(lambda values: List[JaxArray])

    def __call__(self, *args: Any, **kwargs: Any) -> list:  # type: ignore[override]
        return super().__call__(*args, **kwargs)[0]


class Jacobian(_ObjaxDifferentiation):
    """Jacobians of ``f``'s output with respect to inputs and ``TrainVar``s (a list, inputs
    first), computed in reverse mode.

    Example::

        jac = bridge.Jacobian(lambda x: model(x), model.vars(), input_argnums=(0,))
        dx, db, dw = jac(x)      # each of shape output.shape + input.shape
    """

    _transform = staticmethod(pure.jacobian)

    def __call__(self, *args: Any, **kwargs: Any) -> list:
        (j_vars, j_inputs), _, _ = self._engine(*args, **kwargs)
        return list(j_inputs) + list(j_vars)


class Hessian(_ObjaxDifferentiation):
    """Second derivatives of a scalar ``f`` with respect to inputs and ``TrainVar``s.

    Returns ``h`` as a list of lists: ``h[i][j]`` is the block for the i-th and j-th
    differentiated quantity, inputs first then variables, of shape
    ``shape_i + shape_j``.

    Example::

        h = bridge.Hessian(lambda x: (x ** 2).sum(), bridge.VarCollection(),
                           input_argnums=(0,))(x)
        # h[0][0] == 2 * eye for a vector x
    """

    _transform = staticmethod(pure.hessian)

    def __call__(self, *args: Any, **kwargs: Any) -> list:
        h, _, _ = self._engine(*args, **kwargs)
        # h[g][k][g'][k']: group g is 0 for variables, 1 for inputs; list inputs first.
        n_in = len(self.input_argnums)
        order = [(1, k) for k in range(n_in)] + [(0, k) for k in range(self._engine.n_diff)]
        return [[h[g][k][g2][k2] for g2, k2 in order] for g, k in order]
