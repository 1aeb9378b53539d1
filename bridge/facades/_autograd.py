"""BrainPy-style differentiation of object code: ``grad``, ``vector_grad``, ``jacobian``,
``jacrev``, ``jacfwd``, ``hessian``.

Return formats (BrainPy's table):

==========================  ====================================================
given                       the gradients part
==========================  ====================================================
neither                     ``arg_grads`` of argument 0
``argnums`` only            ``arg_grads`` (one for an int, a tuple for a sequence)
``grad_vars`` only          ``var_grads`` (one for a variable, a tuple for a
                            sequence, a dict for a dict or ``VarCollection``)
both                        ``(var_grads, arg_grads)``
==========================  ====================================================

then ``grads``, ``(grads, value)`` with ``return_value``, ``(grads, aux)`` with ``has_aux``,
``(grads, value, aux)`` with both.
"""

from __future__ import annotations

import functools
from typing import Any, Callable, Mapping, Optional, Sequence, Union

from bridge import pure
from bridge.facades._differentiate import Differentiate
from bridge.facades._gather import merge_once
from bridge.state import BaseVar, Module, VarCollection
from bridge.state._access import storage_of
from bridge.state._collection import as_collection
from bridge.state._module import module_vars

__all__ = ["grad", "vector_grad", "jacobian", "jacrev", "jacfwd", "hessian"]

GradVars = Union[BaseVar, Sequence[BaseVar], Mapping[str, BaseVar], VarCollection, None]
ArgNums = Union[int, Sequence[int], None]


class _Layout:
    """How the user asked for variable gradients: one, a tuple, or a dict."""

    def __init__(self, grad_vars: GradVars):
        if grad_vars is None:
            self.kind, self.keys, self.variables = "none", [], []
        elif isinstance(grad_vars, BaseVar):
            self.kind, self.keys, self.variables = "single", [0], [grad_vars]
        elif isinstance(grad_vars, Mapping):
            self.kind = "dict"
            self.keys, self.variables = list(grad_vars.keys()), list(grad_vars.values())
        else:
            self.kind = "tuple"
            self.variables = list(grad_vars)
            self.keys = list(range(len(self.variables)))
        bad = [k for k, v in zip(self.keys, self.variables) if not isinstance(v, BaseVar)]
        if bad:
            raise TypeError(f"grad_vars must hold bridge variables; entries {bad} do not.")

    def arrange(self, per_storage: Sequence[Any], position: dict[int, int]) -> Any:
        items = [per_storage[position[id(storage_of(v))]] for v in self.variables]
        if self.kind == "single":
            return items[0]
        if self.kind == "dict":
            return dict(zip(self.keys, items))
        return tuple(items)


class _AutogradModule(Module):
    """A function differentiated BrainPy-style; a module whose ``vars()`` are the
    variables it uses, so it can be given to ``bridge.Jit``."""

    def __init__(self, transform: Callable, name: str, func: Callable, grad_vars: GradVars,
                 argnums: ArgNums, has_aux: bool, return_value: bool,
                 dyn_vars: Optional[Any]):
        self.func = func
        self.layout = _Layout(grad_vars)
        if argnums is None:
            self.argnums: tuple[int, ...] = (0,) if grad_vars is None else ()
            self.single_arg = grad_vars is None
        elif isinstance(argnums, int):
            self.argnums, self.single_arg = (argnums,), True
        else:
            self.argnums, self.single_arg = tuple(argnums), False
        self.has_aux, self.return_value = bool(has_aux), bool(return_value)
        # Each variable once; names from the module when it has them, else from the argument.
        dynamic = _collect(dyn_vars, "dyn_vars")
        self.vc = merge_once(
            module_vars(func),
            _collect(grad_vars, "grad_vars").rename(lambda k: "grad_vars" + k),
            dynamic.rename(lambda k: "dyn_vars" + k))
        split = _split_aux if self.has_aux else _no_aux
        # BrainPy lets the function assign its dyn_vars directly (``self.a.value = x``).
        self._engine = Differentiate(
            func, transform, self.layout.variables, self.argnums, list(self.vc), split,
            owner=f"{name}({getattr(func, '__qualname__', func)!r})",
            direct_writes=list(dynamic))
        self._position = {id(v): i for i, v in enumerate(self._engine.storages)}

    def _grads(self, var_part: Any, arg_part: Any) -> Any:
        arg_grads = arg_part[0] if self.single_arg else tuple(arg_part)
        if self.layout.kind == "none":
            return arg_grads
        var_grads = self.layout.arrange(var_part, self._position)
        return (var_grads, arg_grads) if self.argnums else var_grads

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        (var_part, arg_part), value, aux = self._engine(*args, **kwargs)
        return pure.package(self._grads(var_part, arg_part), value, aux,
                            self.return_value, self.has_aux)

    def vars(self, scope: str = "") -> VarCollection:
        return VarCollection((scope + k, v) for k, v in self.vc.items())


class _HessianModule(_AutogradModule):
    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        h, value, aux = self._engine(*args, **kwargs)
        # h[g][k][g2][k2]; g = 0 for variables, 1 for arguments. Arrange both axes alike.
        rows = self._grads(
            [self._grads(h[0][k][0], h[0][k][1]) for k in range(self._engine.n_diff)],
            [self._grads(h[1][k][0], h[1][k][1]) for k in range(len(self.argnums))])
        return pure.package(rows, value, aux, self.return_value, self.has_aux)


def _collect(variables: Any, what: str) -> VarCollection:
    if variables is None:
        return VarCollection()
    if isinstance(variables, VarCollection):
        return variables.rename(lambda name: f"[{name!r}]")
    return as_collection(variables, what)


def _split_aux(output: Any) -> tuple[Any, Any]:
    if not (isinstance(output, (tuple, list)) and len(output) == 2):
        raise TypeError("With has_aux=True the function must return a pair (output, aux).")
    return output[0], output[1]


def _no_aux(output: Any) -> tuple[Any, None]:
    return output, None


_DOC = """

    Args:
      func: a function, a module, or a module's method; the variables of the module are
        found automatically.
      grad_vars: variables to differentiate: one variable, a sequence (tuple of
        gradients) or a dict/``VarCollection`` (dict of gradients, same keys).
      argnums: positional arguments to differentiate (default 0 when ``grad_vars`` is not
        given): an int gives one gradient, a sequence a tuple.
      has_aux: ``func`` returns ``(output, aux)``; ``aux`` is returned as is.
      return_value: also return ``func``'s output.
      dyn_vars: further variables that ``func`` reads or assigns (assignments are kept).

    Returns:
      A callable module with ``func``'s signature returning the format in the
      ``bridge.facades._autograd`` table: ``grads``, ``(grads, value)``, ``(grads, aux)`` or
      ``(grads, value, aux)``, where ``grads`` is ``arg_grads``, ``var_grads`` or
      ``(var_grads, arg_grads)``.
"""


def _factory(transform: Callable, name: str, summary: str, example: str,
             module: type = _AutogradModule) -> Callable:
    def make(func: Callable, grad_vars: GradVars = None, argnums: ArgNums = None,
             has_aux: Optional[bool] = None, return_value: bool = False,
             dyn_vars: Optional[Any] = None) -> Module:
        return module(transform, name, func, grad_vars, argnums, bool(has_aux), return_value,
                      dyn_vars)

    make.__name__ = make.__qualname__ = name
    make.__doc__ = summary + _DOC + "\n    Example::\n\n" + example
    return make


grad = _factory(
    pure.grad, "grad",
    "Gradient of a scalar function with respect to arguments and/or variables.",
    "        bridge.grad(lambda a, b: a * 2 + b)(2., 1.)            # 2.0\n"
    "        bridge.grad(model, grad_vars=model.vars())(x)          # {name: grad}\n"
    "        var_g, arg_g = bridge.grad(model, grad_vars=[w, b], argnums=0)(x)\n")
vector_grad = _factory(
    pure.vector_grad, "vector_grad",
    "Gradient of ``sum(func(...))`` (VJP with a cotangent of ones), for non-scalar outputs.",
    "        bridge.vector_grad(lambda a, b: jnp.sin(b) * a, argnums=1)(a, b)  # a*cos(b)\n")
jacobian = _factory(
    pure.jacobian, "jacobian",
    "Jacobian (reverse mode) with respect to arguments and/or variables.",
    "        grads, value, aux = bridge.jacobian(f, return_value=True, has_aux=True)(x, y)\n")
jacrev = _factory(
    pure.jacobian, "jacrev", "Jacobian in reverse mode (same as ``jacobian``).",
    "        bridge.jacrev(f)(x)\n")
jacfwd = _factory(
    functools.partial(pure.jacobian, mode="forward"), "jacfwd",
    "Jacobian in forward mode (efficient for few inputs).",
    "        bridge.jacfwd(f)(x)\n")
hessian = _factory(
    pure.hessian, "hessian",
    "Hessian of a scalar function, nested like ``jax.hessian``: the gradients' layout, "
    "each entry holding its row in that same layout (with ``grad_vars=(w,)`` and "
    "``argnums=0``: ``((((Hww,), Hwx),), ((Hxw,), Hxx))``).",
    "        bridge.hessian(lambda x: x @ x)(jnp.ones(3))            # 2 * eye(3)\n",
    module=_HessianModule)
