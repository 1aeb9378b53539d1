"""``Jit``: compile object code once per input signature."""

from __future__ import annotations

from typing import Any, Callable, Optional, Sequence

import jax

from bridge.facades._gather import as_module, read, split_flags, storages, write_changes
from bridge.pure import changed_entries, functionalize
from bridge.state import Module, VarCollection
from bridge.state._collection import as_collection
from bridge.state._repr import class_path

__all__ = ["Jit"]

class Jit(Module):
    """Compile ``f`` with ``jax.jit``; variables it changes are written back after each call.

    Args:
      f: a module, or a function together with ``vc``.
      vc: the variables ``f`` reads or writes (default: ``f.vars()``). Reading or writing
        any other variable inside raises ``UndeclaredVariableError`` at trace time.
      static_argnums: positional arguments that are compile-time constants.

    Each call passes the variables' current values to one compiled pure function
    ``(values, *args) -> (output, changed values)`` and assigns the changed values back;
    nothing is checked per call (checks run once, while tracing).

    Keyword arguments whose values are ``bool``, ``str`` or ``None`` (flags such as
    ``training=True``) are compile-time constants, so ``if training:`` works inside;
    every other keyword argument (arrays, numbers such as a learning rate) is traced.

    Example::

        train = bridge.Jit(train_step, model.vars() + opt.vars())
        loss = train(x, y)      # model and optimizer variables updated in place
    """

    def __init__(self, f: Callable, vc: Optional[VarCollection] = None,
                 static_argnums: Optional[Sequence[int]] = None):
        f = as_module(f, vc, "Jit")
        self.__wrapped__ = f
        self.static_argnums = tuple(sorted(static_argnums or ()))
        self.vc = as_collection(vc, "Jit: vc") if vc is not None else f.vars()
        self._storages = storages(self.vc)
        pure = functionalize(f, self._storages, owner=f"Jit({f!r})")

        def compiled(values, flags, *args, **kwargs):
            output, new_values = pure(values, *args, **dict(flags), **kwargs)
            return output, changed_entries(values, new_values)

        self._call = jax.jit(compiled, static_argnums=(1,) + tuple(
            i + 2 for i in self.static_argnums))

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        flags, kwargs = split_flags(kwargs) if kwargs else ((), kwargs)
        output, changes = self._call(read(self._storages), flags, *args, **kwargs)
        write_changes(self._storages, changes)
        return output

    def __repr__(self) -> str:
        return (f"{class_path(self)}(f={self.__wrapped__!r}, "
                f"static_argnums={self.static_argnums or None})")
