"""Small helpers of Objax's ``objax.util``: attribute dicts, signatures, tuples, log2."""

from __future__ import annotations

import contextlib
import inspect
import math
from numbers import Number
from typing import Any, Callable, Iterable, TypeVar, Union

__all__ = [
    "EasyDict",
    "args_indexes",
    "dummy_context_mgr",
    "ilog2",
    "positional_args_names",
    "re_sign",
    "to_tuple",
]

_POSITIONAL = (inspect.Parameter.POSITIONAL_ONLY, inspect.Parameter.POSITIONAL_OR_KEYWORD)

F = TypeVar("F", bound=Callable)


class EasyDict(dict):
    """A ``dict`` whose entries are also attributes: ``d.lr`` is ``d['lr']``.

    Built like a ``dict`` (keywords, a mapping or ``(key, value)`` pairs). Setting or
    deleting an attribute sets or deletes the entry; reading a missing one raises
    ``AttributeError``. Keys that are ``dict`` method names (``items``, ``keys``, ...) are
    reachable only by indexing.

    Example::

        cfg = EasyDict(lr=0.1, batch=64)
        cfg.lr            # 0.1
        cfg.epochs = 10   # cfg == {'lr': 0.1, 'batch': 64, 'epochs': 10}
    """

    def __getattr__(self, name: str) -> Any:
        try:
            return self[name]
        except KeyError:
            raise AttributeError(f"EasyDict has no entry {name!r}") from None

    def __setattr__(self, name: str, value: Any) -> None:
        self[name] = value

    def __delattr__(self, name: str) -> None:
        try:
            del self[name]
        except KeyError:
            raise AttributeError(f"EasyDict has no entry {name!r}") from None

    def __dir__(self) -> list[str]:
        return sorted(set(super().__dir__()) | {k for k in self if isinstance(k, str)})


def positional_args_names(f: Callable) -> list[str]:
    """The names of the parameters of ``f`` that can be passed by position, in order.

    ``*args``, keyword-only parameters and ``**kwargs`` are left out.

    Example: for ``def f(a, b, c=1, *args, d, **kw)`` the result is ``['a', 'b', 'c']``.
    """
    return [p.name for p in inspect.signature(f).parameters.values() if p.kind in _POSITIONAL]


def args_indexes(f: Callable, args: Iterable[str]) -> list[int]:
    """The positions of the parameters named ``args`` among ``f``'s positional parameters.

    Raises:
      ValueError: a name is not a positional parameter of ``f`` (keyword-only parameters
        have no position).

    Example: for ``def f(a, b, c, d=1, *, e=2)``, ``args_indexes(f, ['a', 'd']) == [0, 3]``.
    """
    positions = {name: i for i, name in enumerate(positional_args_names(f))}
    out = []
    for name in args:
        if name not in positions:
            raise ValueError(f"{getattr(f, '__qualname__', f)!r} has no positional parameter "
                             f"named {name!r}; its positional parameters are "
                             f"{list(positions)}.")
        out.append(positions[name])
    return out


def ilog2(x: float) -> int:
    """The smallest integer ``n`` with ``2 ** n >= x``, for ``x > 0``.

    Example: ``ilog2(8) == 3``, ``ilog2(9) == 4``, ``ilog2(0.5) == -1``.
    """
    if not x > 0:
        raise ValueError(f"ilog2 needs a positive number, got {x!r}.")
    return math.ceil(math.log2(x))


def to_tuple(v: Union[Number, Iterable], n: int) -> tuple:
    """A number repeated ``n`` times; a tuple as it is; any other iterable as a tuple.

    Only a single number is expanded: sequences keep their own length, whatever ``n``.

    Example: ``to_tuple(3, 2) == (3, 3)``, ``to_tuple([1, 2], 3) == (1, 2)``.
    """
    if isinstance(v, tuple):
        return v
    if isinstance(v, Number):
        return (v,) * n
    return tuple(v)


def re_sign(f: Callable) -> Callable[[F], F]:
    """Decorator: give the decorated callable the signature of ``f`` (for ``inspect`` and help).

    Example::

        @re_sign(jnp.pad)
        def pad(*args, **kwargs):
            return jnp.pad(*args, **kwargs)

        inspect.signature(pad) == inspect.signature(jnp.pad)   # True
    """
    signature = inspect.signature(f)

    def decorate(op: F) -> F:
        op.__signature__ = signature
        return op

    return decorate


# A context manager that does nothing, for ``with (scope if cond else dummy_context_mgr()):``;
# entering it gives ``None``. The standard library's, under Objax's name.
dummy_context_mgr = contextlib.nullcontext
