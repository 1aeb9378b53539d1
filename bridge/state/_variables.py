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
import re
from typing import Any, Callable, Optional

import jax
import jax.numpy as jnp
import numpy as np

from bridge.state import _scope
from bridge.state._repr import class_path, function_repr
from bridge.state._scope import _SCOPES

__all__ = [
    "AssignmentError",
    "describe",
    "dtype_of",
    "mismatch",
    "prepare",
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
            raise ValueError(f"the Python {type(x).__name__} {x!r} does not fit dtype "
                             f"{like.dtype}")
        return jnp.asarray(x, dtype=like.dtype)
    return jnp.asarray(x)


def describe(var: BaseVar) -> str:
    """``TrainVar (Linear).w (shape (2, 3), float32)``: how errors name a variable."""
    storage = var._storage()
    label = storage._label or "<unnamed: not yet listed by any module's vars()>"
    value = storage._value
    return (f"{type(var).__name__} {label} (shape {tuple(np.shape(value))}, "
            f"{getattr(value, 'dtype', '?')})")


def prepare(var: BaseVar, tensor: Any, check: bool = True) -> tuple[BaseVar, Any, str]:
    """Everything a write of ``tensor`` to ``var`` needs checked, without writing:
    ``(storage variable, value as stored, problem or '')``.

    A value must be an array (or a Python scalar, which takes the variable's dtype) of the
    variable's shape and exact dtype (``mismatch``); with ``check=False`` only its kind is
    checked (``Vectorize`` reductions, as in Objax). Outside every transformation a traced
    value is refused: it would be a tracer leaking out of its trace.
    """
    storage = var._storage()
    current = storage._value
    if isinstance(tensor, BaseVar):
        tensor = tensor.value
    if isinstance(tensor, jax.core.Tracer) and not _SCOPES:
        return storage, tensor, (
            "the value is a JAX tracer but no bridge transformation is tracing, so the "
            "variable would keep it after the trace ends. Under jax.jit/grad/vmap/eval_shape "
            "go through bridge.Jit/GradValues/Vectorize or bridge.pure.functionalize, which "
            "hand the variables traced values and take the new ones back")
    # An array is checked as it comes (NumPy's float64 is not float32); Python scalars and
    # lists are converted as JAX converts them, then checked.
    checked = check and _is_array(tensor)
    if checked:
        problem = mismatch(current, tensor)
        if problem:
            return storage, tensor, problem
    try:
        value = _as_array(tensor, like=current)
    except (TypeError, ValueError) as e:
        return storage, tensor, f"expected an array, got {type(tensor).__name__} ({e})"
    if not check or (checked and value is tensor):  # a JAX array is stored as it came
        return storage, value, ""
    return storage, value, mismatch(current, value)


def _is_array(x: Any) -> bool:
    return hasattr(x, "shape") and hasattr(x, "dtype")


class AssignmentError(ValueError, AssertionError):
    """A value of the wrong shape or dtype was assigned to a variable; nothing was assigned.

    It is a ``ValueError`` and, because Objax asserted on bad assignments, also an
    ``AssertionError``, so code written for either keeps working.
    """


class BaseVar:
    """Base class of all variables: holds one array and behaves like it.

    A variable can be used wherever an array can: arithmetic and comparisons
    (``v * 2``, ``v == 0``, elementwise as for arrays), indexing (``v[0]``), array
    attributes and methods (``v.shape``, ``v.T``, ``v.sum()``, ``v.argsort()``), Python's
    ``round(v)``, ``float(v)``, and any ``jax.numpy`` function (``jnp.dot(x, v)``,
    ``jnp.tile(v, 2)``). Each of these reads ``v.value``, so inside a transformation an
    undeclared variable is still reported.

    Variables are also pytrees whose one leaf is the value, so they can be passed to
    ``jax.jit``, ``jax.grad`` or ``jax.tree_util`` functions directly. What those
    transformations hand back is a detached copy of the same class holding the new leaf
    (``jax.grad(f)(w)`` returns a ``TrainVar`` holding the gradient), not the original
    variable: to change a variable, assign to it.

    Variables hash by identity, so they can be dictionary keys and set members even though
    ``==`` is elementwise.
    """

    _value: Array
    _label: Optional[str] = None
    _reduce: Optional[Reducer] = None
    # True for the detached copies that JAX builds when it unflattens a variable (see the
    # pytree registration below): they are not model state, so scopes do not check them.
    _detached: bool = False

    def __init__(self, tensor: Any, reduce: Optional[Reducer] = reduce_mean):
        self._value = _as_array(tensor)
        self._reduce = reduce
        _scope.register_new(self)

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        _register_pytree(cls)

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
          AssignmentError: the shape or dtype differs (nothing is assigned).
        """
        storage, value, problem = prepare(self, tensor, check)
        if problem:
            raise AssignmentError(f"Cannot assign to {describe(self)}: {problem}. Nothing "
                                  "was assigned.")
        if _SCOPES:
            _scope.check_write(self)
        storage._value = value

    def reduced(self, tensors: Array) -> Optional[Array]:
        """What ``reduce(tensors)`` would assign, without assigning: the variable's
        ``reduce`` function applied to ``tensors``, or ``None`` when it has none (then the
        variable keeps its value). Facades compute every reduction first and commit them
        together."""
        return None if self._reduce is None else self._reduce(tensors)

    def reduce(self, tensors: Array) -> None:
        """Set the value from per-example values stacked on axis 0 (used by ``Vectorize``).

        The result of the variable's ``reduce`` function is assigned without a shape check
        (as in Objax): the stacked values are usually one dimension larger than the value.
        """
        value = self.reduced(tensors)
        if value is not None:
            self.assign(value, check=False)

    # ----- array behaviour ------------------------------------------------------------
    # Python looks special methods up on the class, so each operator is defined below;
    # ordinary array attributes and methods are forwarded by ``__getattr__``.
    def __jax_array__(self) -> Array:
        return self.value

    def __array__(self, dtype=None, copy=None) -> np.ndarray:
        return np.asarray(self.value, dtype=dtype)

    def __getattr__(self, name: str) -> Any:
        # Only called when normal lookup fails. Private and special names are never
        # forwarded: copy, pickle and hasattr probes must see a plain object.
        if name.startswith("_"):
            raise AttributeError(name)
        value = self.value
        try:
            return getattr(value, name)
        except AttributeError:
            raise AttributeError(
                f"{type(self).__name__} has no attribute {name!r}, and neither has its "
                f"value ({type(value).__name__})."
            ) from None

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

    def __complex__(self) -> complex:
        return complex(self.value)

    def __index__(self) -> int:
        return operator.index(self.value)

    def __round__(self, ndigits: Optional[int] = None) -> Array:
        return self.value.__round__(ndigits)

    __hash__ = object.__hash__

    def __repr__(self) -> str:
        # Arrays of 3 or more dimensions print blank lines between blocks; drop them so a
        # variable prints compactly inside a module's repr (as Objax did).
        value = re.sub(r"\n+", "\n", repr(self._storage()._value))
        text = f"{class_path(self)}({value}"
        if self._reduce is not None:
            text += f", reduce={function_repr(self._reduce)}"
        return text + ")"


def _unwrap(x: Any) -> Any:
    return x.value if isinstance(x, BaseVar) else x


def _forward_binary(name: str) -> Callable:
    def method(self, other):
        return getattr(self.value, name)(_unwrap(other))
    method.__name__ = name
    return method


def _forward_unary(name: str) -> Callable:
    def method(self):
        return getattr(self.value, name)()
    method.__name__ = name
    return method


for _name in ["add", "sub", "mul", "truediv", "floordiv", "mod", "divmod", "pow", "matmul",
              "and", "or", "xor", "lshift", "rshift"]:
    setattr(BaseVar, f"__{_name}__", _forward_binary(f"__{_name}__"))
    setattr(BaseVar, f"__r{_name}__", _forward_binary(f"__r{_name}__"))
for _name in ["eq", "ne", "lt", "le", "gt", "ge"]:
    setattr(BaseVar, f"__{_name}__", _forward_binary(f"__{_name}__"))
for _name in ["neg", "pos", "abs", "invert"]:
    setattr(BaseVar, f"__{_name}__", _forward_unary(f"__{_name}__"))
# Python 2's names for true division, which Objax variables also answered to.
BaseVar.__div__ = BaseVar.__truediv__
BaseVar.__rdiv__ = BaseVar.__rtruediv__


def _flatten(var: BaseVar) -> tuple[tuple[Array], None]:
    return (var.value,), None


def _detached(cls: type, leaf: Any) -> BaseVar:
    """A copy of class ``cls`` holding ``leaf``, outside any module or scope."""
    var = object.__new__(cls)
    if issubclass(cls, TrainRef):
        var.ref = _detached(TrainVar, leaf)
    else:
        var._value = leaf
    var._detached = True
    return var


def _register_pytree(cls: type) -> None:
    jax.tree_util.register_pytree_node(
        cls, _flatten, lambda _, leaves: _detached(cls, leaves[0]))


_register_pytree(BaseVar)


def dtype_of(x: Any) -> Any:
    """The dtype a value brings with it: an array's own (NumPy's included, not cast), or
    JAX's for Python scalars and lists."""
    dtype = getattr(x, "dtype", None)
    return dtype if dtype is not None else jnp.result_type(x)


def mismatch(current: Any, new: Any) -> str:
    """Describe how ``new`` differs from ``current`` in shape or dtype ('' if it fits).

    The library's one rule for every write (assignments, optimizer steps, converters,
    checkpoint restores): an array must have the variable's exact dtype. NumPy arrays are
    compared by their own dtype, so a float64 NumPy array does not fit a float32 variable
    even where JAX would cast it silently; cast it with ``.astype`` first. Python scalars
    are weakly typed and take the variable's dtype (see ``BaseVar.assign``).
    """
    cur_shape, new_shape = tuple(np.shape(current)), tuple(np.shape(new))
    if cur_shape != new_shape:
        return f"expected shape {cur_shape}, got {new_shape}"
    cur_dtype, new_dtype = dtype_of(current), dtype_of(new)
    if cur_dtype != new_dtype:
        return f"expected dtype {cur_dtype}, got {new_dtype}"
    return ""


class TrainVar(BaseVar):
    """A trainable variable: gradients are computed with respect to it.

    ``v.value = x`` raises: update it through a ``TrainRef`` (what optimizers do) or, when
    overwriting a parameter is really meant, with ``v.assign(x)``. The one exception is
    BrainPy's: inside ``bridge.grad`` (and the other BrainPy-style transformations) a
    ``TrainVar`` listed in ``dyn_vars`` may be assigned directly.

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
        # BrainPy's ``dyn_vars`` declare TrainVars that the differentiated code updates in
        # place; only inside such a call is ``v.value = x`` an assignment.
        if _SCOPES and _scope.allows_direct_assignment(self):
            self.assign(tensor)
            return
        raise ValueError(
            "Direct assignment to a TrainVar is not allowed: write through "
            "`bridge.TrainRef(var).value = ...` (as optimizers do) or call `var.assign(...)`. "
            "(Inside `bridge.grad` and friends, variables listed in `dyn_vars` may be "
            "assigned directly.)"
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

    def reduced(self, tensors: Array) -> None:
        """``None``: the target ``TrainVar`` reduces itself (as in Objax)."""
        return None

    def reduce(self, tensors: Array) -> None:
        """Does nothing: the target ``TrainVar`` reduces itself (as in Objax)."""

    @property
    def value(self) -> Array:
        return self.ref.value

    @value.setter
    def value(self, tensor: Any) -> None:
        self.ref.assign(tensor)

    def __repr__(self) -> str:
        return f"{class_path(self)}(ref={self.ref!r})"
