"""How modules, variables and transformations print.

Objax's format, under bridge's public module paths: ``bridge.nn.Linear(nin=2, nout=3,
use_bias=True, w_init=xavier_normal(*, gain=1))``, ``bridge.Jit(f=bridge.Function(f=loss),
static_argnums=None)``. One home for the two rules every ``__repr__`` needs: the public name
of a class, and a short description of a function.
"""

from __future__ import annotations

import functools
import inspect
from typing import Any, Callable

__all__ = ["class_path", "function_repr", "arguments_repr"]

# Sub-packages whose classes are exported at the top level of ``bridge``.
_TOP_LEVEL = {"bridge.state", "bridge.facades"}


def class_path(obj: Any) -> str:
    """The public dotted name of ``obj``'s class: ``'bridge.nn.Linear'``, ``'bridge.TrainVar'``.

    Private modules (``bridge.nn._layers``) are dropped from the path, since users reach the
    class through the package that re-exports it; classes defined elsewhere keep their
    module (``'__main__.MyNet'``).
    """
    cls = type(obj)
    parts = [p for p in cls.__module__.split(".") if not p.startswith("_")]
    module = ".".join(parts) or cls.__module__
    if module in _TOP_LEVEL:
        module = "bridge"
    return f"{module}.{cls.__qualname__}"


def function_repr(f: Callable) -> str:
    """``name`` or ``name(*, keyword=default, ...)`` for a function or ``functools.partial``.

    The keywords are the parameters that have a default (as bound by a partial, if any),
    except keyword-only ones that no partial sets, so
    ``functools.partial(jax.nn.leaky_relu, negative_slope=0.5)`` prints as
    ``leaky_relu(*, negative_slope=0.5)``, ``bridge.nn.init.xavier_normal`` as
    ``xavier_normal(*, gain=1)`` and ``jnp.tanh`` as ``tanh``. A callable object without a
    name prints as its class name.
    """
    bound: set[str] = set()
    inner = f
    while isinstance(inner, functools.partial):
        bound.update(inner.keywords)
        inner = inner.func
    try:
        parameters = inspect.signature(f).parameters.values()
        # The function's own keyword-only options (``generator=`` of the initializers) are
        # not part of what it computes, so they are shown only when a partial sets them.
        options = {p.name for p in inspect.signature(inner).parameters.values()
                   if p.kind is p.KEYWORD_ONLY} - bound
        defaults = [f"{p.name}={p.default}" for p in parameters
                    if p.default is not inspect.Parameter.empty and p.name not in options]
    except (TypeError, ValueError):  # builtins without a signature
        defaults = []
    name = getattr(inner, "__name__", None) or type(inner).__name__
    return f"{name}(*, {', '.join(defaults)})" if defaults else name


def arguments_repr(**arguments: Any) -> str:
    """``'a=1, b=(2, 3)'``: constructor arguments as they appear inside a repr."""
    return ", ".join(f"{k}={v!r}" for k, v in arguments.items())
