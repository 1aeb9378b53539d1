"""Variables: named slots that hold one array each and are owned by modules.

``TrainVar``
    a trainable parameter; gradients are taken with respect to it. Direct assignment
    (``v.value = x``) is refused so that parameters are not overwritten by accident: an
    optimizer writes through a ``TrainRef``, and deliberate code calls ``v.assign(x)``.
``StateVar``
    any other state (batch-norm statistics, optimizer moments, counters); assignable.
``RandomState``
    a ``StateVar`` holding a JAX PRNG key, with ``seed`` and ``split``.
``TrainRef``
    a state entry that points at a ``TrainVar``; writing it writes the ``TrainVar``.

Every assignment checks shape and dtype (at trace time when it happens inside a
transformation, so compiled code pays nothing).
"""

from __future__ import annotations

import operator
from typing import Any, Callable, Optional

import jax
import jax.numpy as jnp
import numpy as np

from bridge.state import _scope
from bridge.state._scope import _SCOPES

__all__ = [
    "BaseVar",
    "BaseState",
    "TrainVar",
    "StateVar",
    "RandomState",
    "TrainRef",
    "reduce_mean",
]

Array = jax.Array
Reducer = Callable[[Array], Array]


def reduce_mean(tensors: Array) -> Array:
    """Default ``Vectorize`` reduction: the mean over the batch axis, in the variable's dtype."""
    return jnp.mean(tensors, axis=0).astype(tensors.dtype)


def _as_array(x: Any, like: Optional[Array] = None) -> Array:
    if isinstance(x, jax.Array):  # includes tracers
        return x
    if isinstance(x, BaseVar):
        return x.value
    if like is not None and isinstance(x, (bool, int, float, complex)):
        # A Python scalar is weakly typed: it takes the variable's dtype, as in JAX arithmetic,
        # unless that would lose information (1.5 into an int variable).
        kind = np.dtype(like.dtype).kind
        lossy = (isinstance(x, complex) and kind != "c") or (
            isinstance(x, float) and kind in "biu")
        if lossy:
            raise ValueError(f"Cannot assign the Python {type(x).__name__} {x!r} to a "
                             f"variable of dtype {like.dtype}.")
        return jnp.asarray(x, dtype=like.dtype)
    return jnp.asarray(x)


class BaseVar:
    """Base class of all variables: holds one array and behaves like it.

    Variables support arithmetic (``v * 2``, ``v ** 2``), indexing (``v[0]``), the usual
    array attributes (``shape``, ``dtype``, ``ndim``, ``size``, ``T``) and reductions
    (``v.sum()``); ``jnp.asarray(v)`` returns the value. Pass ``v.value`` to other
    ``jax.numpy`` functions.
    """

    _value: Array
    _label: Optional[str] = None
    _reduce: Optional[Reducer] = None

    def __init__(self, tensor: Any, reduce: Optional[Reducer] = reduce_mean):
        self._value = _as_array(tensor)
        self._reduce = reduce
        _scope.register_new(self)

    def _storage(self) -> BaseVar:
        """The variable that actually holds the array (a ``TrainRef`` forwards to its target)."""
        return self

    @property
    def value(self) -> Array:
        """The current array."""
        if _SCOPES:
            _scope.check_read(self)
        return self._value

    @value.setter
    def value(self, tensor: Any) -> None:
        self.assign(tensor)

    def assign(self, tensor: Any, check: bool = True) -> None:
        """Set the value.

        Args:
          tensor: the new array; Python scalars take the variable's dtype.
          check: refuse a shape or dtype different from the current value's.

        Raises:
          ValueError: the shape or dtype differs (nothing is assigned).
        """
        storage = self._storage()
        tensor = _as_array(tensor, like=storage._value)
        if check:
            problem = mismatch(storage._value, tensor)
            if problem:
                raise ValueError(f"Cannot assign to {type(self).__name__}: {problem}.")
        if _SCOPES:
            _scope.check_write(self)
        storage._value = tensor

    def reduce(self, tensors: Array) -> None:
        """Set the value from per-example values stacked on axis 0 (used by ``Vectorize``)."""
        if self._reduce is not None:
            self.assign(self._reduce(tensors))

    # ----- array behaviour ------------------------------------------------------------
    def __jax_array__(self) -> Array:
        return self.value

    def __array__(self, dtype=None, copy=None) -> np.ndarray:
        return np.asarray(self.value, dtype=dtype)

    @property
    def shape(self) -> tuple[int, ...]:
        return self.value.shape

    @property
    def dtype(self) -> Any:
        return self.value.dtype

    @property
    def ndim(self) -> int:
        return self.value.ndim

    @property
    def size(self) -> int:
        return self.value.size

    @property
    def T(self) -> Array:
        return self.value.T

    def __len__(self) -> int:
        return len(self.value)

    def __getitem__(self, index: Any) -> Array:
        return self.value[index]

    def __iter__(self):
        return iter(self.value)

    def __bool__(self) -> bool:
        raise TypeError("A variable cannot be used as a Python bool (it is an array): write "
                        "`v is not None` to test presence, or `bool(v.value)` for its value.")

    def __float__(self) -> float:
        return float(self.value)

    def __int__(self) -> int:
        return int(self.value)

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self._storage()._value!r})"


def _forward_binary(op: Callable, reflected: bool) -> Callable:
    if reflected:
        def method(self, other):
            return op(_as_array(other), self.value)
    else:
        def method(self, other):
            return op(self.value, _as_array(other))
    return method


for _name, _op in [
    ("add", operator.add), ("sub", operator.sub), ("mul", operator.mul),
    ("truediv", operator.truediv), ("floordiv", operator.floordiv), ("mod", operator.mod),
    ("pow", operator.pow), ("matmul", operator.matmul), ("and", operator.and_),
    ("or", operator.or_), ("xor", operator.xor), ("lshift", operator.lshift),
    ("rshift", operator.rshift),
]:
    setattr(BaseVar, f"__{_name}__", _forward_binary(_op, reflected=False))
    setattr(BaseVar, f"__r{_name}__", _forward_binary(_op, reflected=True))

# Comparisons other than == / != (those keep identity semantics so variables stay hashable
# and usable in lists, sets and dicts).
for _name, _op in [("lt", operator.lt), ("le", operator.le), ("gt", operator.gt),
                   ("ge", operator.ge)]:
    setattr(BaseVar, f"__{_name}__", _forward_binary(_op, reflected=False))

for _name, _op in [("neg", operator.neg), ("pos", operator.pos), ("abs", operator.abs),
                   ("invert", operator.invert)]:
    setattr(BaseVar, f"__{_name}__", (lambda op: lambda self: op(self.value))(_op))

for _name in ["sum", "mean", "max", "min", "prod", "std", "var", "reshape", "astype",
              "transpose", "ravel", "flatten", "squeeze", "argmax", "argmin", "dot", "clip",
              "round", "any", "all", "conj", "item", "tolist"]:
    setattr(BaseVar, _name,
            (lambda n: lambda self, *a, **k: getattr(self.value, n)(*a, **k))(_name))


def mismatch(current: Any, new: Any) -> str:
    """Describe how ``new`` differs from ``current`` in shape or dtype ('' if it fits)."""
    cur_shape, new_shape = tuple(np.shape(current)), tuple(np.shape(new))
    if cur_shape != new_shape:
        return f"expected shape {cur_shape}, got {new_shape}"
    cur_dtype, new_dtype = jnp.result_type(current), jnp.result_type(new)
    if cur_dtype != new_dtype:
        return f"expected dtype {cur_dtype}, got {new_dtype}"
    return ""


class TrainVar(BaseVar):
    """A trainable variable: gradients are computed with respect to it.

    ``v.value = x`` raises: update it through a ``TrainRef`` (what optimizers do) or, when
    overwriting a parameter is really meant, with ``v.assign(x)``.

    Example::

        w = bridge.TrainVar(jnp.zeros((2, 3)))
        w.assign(w.value + 1)      # fine
        w.value = w.value + 1      # ValueError
    """

    @property
    def value(self) -> Array:
        if _SCOPES:
            _scope.check_read(self)
        return self._value

    @value.setter
    def value(self, tensor: Any) -> None:
        raise ValueError(
            "Direct assignment to a TrainVar is not allowed: write through "
            "`bridge.TrainRef(var).value = ...` (as optimizers do) or call `var.assign(...)`."
        )


class BaseState(BaseVar):
    """Base class of non-trainable variables (``StateVar``, ``RandomState``, ``TrainRef``)."""


class StateVar(BaseState):
    """A non-trainable, assignable variable (statistics, optimizer state, counters)."""


class RandomState(StateVar):
    """A PRNG key kept as state, advanced each time keys are drawn.

    Example::

        rs = bridge.RandomState(seed=0)
        k1, k2 = rs.split(2)       # two fresh keys; ``rs`` has moved on
    """

    def __init__(self, seed: int = 0):
        super().__init__(jax.random.PRNGKey(seed), reduce=None)

    def seed(self, seed: int = 0) -> None:
        """Reset the key from an integer seed."""
        self.assign(jax.random.PRNGKey(seed))

    def split(self, n: int) -> Array:
        """Return ``n`` new keys, shape ``(n, 2)``, and advance the state."""
        keys = jax.random.split(self.value, n + 1)
        self.assign(keys[0])
        return keys[1:]


class TrainRef(BaseState):
    """A reference to a ``TrainVar`` that may be assigned, writing through to it.

    Optimizers keep ``TrainRef``s so that their own state stays distinct from the
    parameters they update. Inside a collection, a ``TrainRef`` and its target are one
    variable (it is traced and assigned once).

    Example::

        ref = bridge.TrainRef(w)
        ref.value -= 0.1 * g       # updates ``w``
    """

    def __init__(self, ref: TrainVar):
        if not isinstance(ref, TrainVar):
            raise TypeError(f"TrainRef takes a TrainVar, got {type(ref).__name__}.")
        self.ref = ref
        _scope.register_new(self)

    def _storage(self) -> BaseVar:
        return self.ref

    @property
    def _label(self) -> Optional[str]:  # type: ignore[override]
        return self.ref._label

    @property
    def _reduce(self) -> Optional[Reducer]:  # type: ignore[override]
        return self.ref._reduce

    @property
    def value(self) -> Array:
        return self.ref.value

    @value.setter
    def value(self, tensor: Any) -> None:
        self.ref.assign(tensor)
