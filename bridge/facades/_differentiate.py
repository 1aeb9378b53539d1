"""The one engine behind every object-style differentiation facade.

``GradValues``/``Grad``/``Jacobian``/``Hessian`` (Objax conventions) and ``grad``/
``vector_grad``/``jacobian``/``hessian`` (BrainPy conventions) differ only in which pure
transformation they apply and how they arrange its results. This class does the part
they share: find the variables, bind them with ``bridge.pure.functionalize``, hand
``(differentiated variable values, differentiated arguments)`` to the pure
transformation, and write back whatever the function assigned.
"""

from __future__ import annotations

from typing import Any, Callable, Sequence

from bridge.facades._gather import differentiated_first, read, write_changes
from bridge.pure import changed_entries, functionalize
from bridge.state import BaseVar

__all__ = ["Differentiate"]

# ``transform(fn, argnums=0, has_aux=True, return_value=True)`` -> g(...) -> (d, value, aux)
Transform = Callable[..., Callable]


class Differentiate:
    """Differentiate ``func`` with respect to variables and positional arguments.

    Args:
      func: object code; it may read/assign any of ``diff_vars`` and ``other_vars``.
      transform: a ``bridge.pure`` transformation with the shared return format.
      diff_vars: the variables to differentiate (each once, storage variables).
      argnums: the positional arguments to differentiate.
      other_vars: further variables ``func`` may use (constants; changes written back).
      split_output: ``func``'s output -> ``(differentiated value, aux)``.
      owner: how errors name the facade.
      direct_writes: ``TrainVar``s that ``func`` may assign with ``v.value = x``.

    Calling it returns ``(d, value, aux)`` where ``d = (var_part, arg_part)`` is the
    transformation's result for ``(tuple of variable values, tuple of arguments)``.
    """

    def __init__(self, func: Callable, transform: Transform, diff_vars: Sequence[BaseVar],
                 argnums: Sequence[int], other_vars: Sequence[BaseVar],
                 split_output: Callable[[Any], tuple[Any, Any]], owner: str,
                 direct_writes: Sequence[BaseVar] = ()):
        self.storages, self.n_diff = differentiated_first(diff_vars, other_vars)
        self.argnums = tuple(argnums)
        self.owner = owner
        pure = functionalize(func, self.storages, strict_reads=False, owner=owner,
                             direct_writes=direct_writes)
        nums = self.argnums

        def fn(d, other_values, args, kwargs):
            var_values, arg_values = d
            args = list(args)
            for i, x in zip(nums, arg_values):
                args[i] = x
            values = list(var_values) + list(other_values)
            output, new_values = pure(values, *args, **kwargs)
            value, aux = split_output(output)
            return value, (aux, changed_entries(values, new_values))

        self._transformed = transform(fn, argnums=0, has_aux=True, return_value=True)

    def __call__(self, *args: Any, **kwargs: Any) -> tuple[Any, Any, Any]:
        if self.argnums and len(args) <= max(self.argnums):
            raise TypeError(
                f"{self.owner}: differentiating positional arguments {self.argnums} "
                f"(input_argnums/argnums) but the call has {len(args)} positional "
                f"argument{'s' * (len(args) != 1)}.")
        values = read(self.storages)
        n = self.n_diff
        d = (tuple(values[:n]), tuple(args[i] for i in self.argnums))
        result, value, (aux, changes) = self._transformed(d, values[n:], args, kwargs)
        write_changes(self.storages, changes)
        return result, value, aux

