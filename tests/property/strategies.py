"""Generated models for the property tests, and the independent references they are checked
against.

A model is first drawn as a plain description (``Tree``: ``Node`` modules, ``Items`` module
lists, ``Var`` variables, ``Ref`` second names of a trainable variable), which Hypothesis
prints when a property fails; ``build`` turns it into ``bridge`` modules. Every variable
starts from a NumPy array made from its description alone (``initial_array``): those arrays
are the references that restored or converted values are compared with, bit for bit.
"""

from __future__ import annotations

import dataclasses
import itertools
import math
from typing import Any, Callable, Optional, Union

import jax.numpy as jnp
import numpy as np
from hypothesis import strategies as st

import bridge

# ----- the variables ---------------------------------------------------------------------
# float64 needs jax_enable_x64, which these tests leave off.
DTYPES = ("float16", "bfloat16", "float32", "int8", "int32", "uint8", "uint32", "bool",
          "complex64")
SHAPES = ((), (0,), (2, 0), (1,), (3,), (2, 3))
KINDS = ("train", "state", "random")


@dataclasses.dataclass(frozen=True)
class Var:
    """A variable: ``TrainVar`` ("train"), ``StateVar`` ("state") or ``RandomState``
    ("random", whose value is a raw ``uint32[2]`` key). ``uid`` tells variables apart."""

    uid: int
    kind: str
    dtype: str
    shape: tuple[int, ...]


@dataclasses.dataclass(frozen=True)
class Ref:
    """The trainable variable ``uid`` once more, under another name (a shared weight)."""

    uid: int


@dataclasses.dataclass(frozen=True)
class Items:
    """A ``bridge.ModuleList`` of modules and variables."""

    items: tuple[Any, ...]


@dataclasses.dataclass(frozen=True)
class Node:
    """A ``bridge.Module`` of class ``cls`` whose attributes are set in this order."""

    cls: str
    attrs: tuple[tuple[str, Any], ...]


@dataclasses.dataclass(frozen=True)
class Tree:
    """A whole model: the root module and every distinct variable in it."""

    root: Node
    variables: tuple[Var, ...]


Spec = Union[Var, Ref, Items, Node]

# One subclass per class name (the class name is part of every variable's name).
CLASSES = {name: type(name, (bridge.Module,), {"__module__": __name__})
           for name in ("Root", "Block", "Cell")}
# Attribute names that would shadow what a module needs (``vars``, ``__dict__``, ...).
RESERVED = frozenset(dir(bridge.Module)) | frozenset(dir(bridge.ModuleList))

# ----- attribute names -------------------------------------------------------------------
# Brackets and parentheses are left out: '(Class)' and '[i]' are how a collection spells
# nesting, so such names could make two different variables share a collection name.
_SPECIAL = "/. \0~_-éü字ß\u200b\U0001f600"
_EXCLUDED = "()[]"


def attribute_names(*, surrogates: bool = True, min_size: int = 0,
                    max_size: int = 6) -> st.SearchStrategy[str]:
    """Attribute names: ASCII, the separators ``/`` ``.`` ``~``, spaces, NUL (trailing too),
    non-ASCII, the empty name, and with ``surrogates`` lone surrogates (a valid ``str``
    that UTF-8 cannot encode)."""
    codec = None if surrogates else "utf-8"
    chars = st.one_of(st.sampled_from("abxy0" + _SPECIAL),
                      st.characters(codec=codec, exclude_characters=_EXCLUDED))
    names = st.text(chars, min_size=min_size, max_size=max_size)
    return names.filter(lambda n: n not in RESERVED and not n.startswith("__"))


ANY_NAMES = attribute_names()


# ----- trees -----------------------------------------------------------------------------
@st.composite
def trees(draw: Callable, names: st.SearchStrategy[str] = ANY_NAMES, max_depth: int = 2,
          max_width: int = 4, min_root: int = 1) -> Tree:
    """A ``Tree``: modules and module lists nested up to ``max_depth`` levels below the
    root, each with up to ``max_width`` entries (the root has at least ``min_root``),
    variables of every kind, dtype and shape, and some trainable variables reachable under
    a second name."""
    uids = itertools.count()
    variables: list[Var] = []

    def var() -> Var:
        kind = draw(st.sampled_from(KINDS))
        if kind == "random":
            dtype, shape = "uint32", (2,)
        else:
            dtype, shape = draw(st.sampled_from(DTYPES)), draw(st.sampled_from(SHAPES))
        v = Var(next(uids), kind, dtype, shape)
        variables.append(v)
        return v

    def child(depth: int) -> Spec:
        choices = ["var"]
        if any(v.kind == "train" for v in variables):
            choices.append("ref")
        if depth < max_depth:
            choices += ["node", "items"]
        choice = draw(st.sampled_from(choices))
        if choice == "var":
            return var()
        if choice == "ref":
            trainable = [v.uid for v in variables if v.kind == "train"]
            return Ref(draw(st.sampled_from(trainable)))
        if choice == "node":
            return node(draw(st.sampled_from(("Block", "Cell"))), depth + 1, 0)
        count = draw(st.integers(0, max_width))
        return Items(tuple(child(depth + 1) for _ in range(count)))

    def node(cls: str, depth: int, min_size: int) -> Node:
        attrs = draw(st.lists(names, min_size=min_size, max_size=max(max_width, min_size),
                              unique=True))
        return Node(cls, tuple((name, child(depth)) for name in attrs))

    root = node("Root", 0, min_root)
    # A shared weight's second name may come before its first one.
    root = Node("Root", tuple(draw(st.permutations(root.attrs))))
    return Tree(root, tuple(variables))


def flat_tree(names: list[str], kind: str = "train", dtype: str = "float32",
              shape: tuple[int, ...] = (1,)) -> Tree:
    """A root module with one variable per name, in this order."""
    variables = tuple(Var(i, kind, dtype, shape) for i in range(len(names)))
    return Tree(Node("Root", tuple(zip(names, variables))), variables)


# ----- building --------------------------------------------------------------------------
def initial_array(var: Var, salt: int) -> np.ndarray:
    """The array a variable starts with: random bits (so NaN payloads, infinities, -0.0 and
    subnormals occur), a function of the variable's ``uid`` and ``salt`` only."""
    rng = np.random.default_rng([var.uid, salt])
    dtype = jnp.dtype(var.dtype)
    if dtype == np.bool_:
        return rng.integers(0, 2, size=var.shape).astype(np.bool_)
    raw = rng.integers(0, 256, size=math.prod(var.shape) * dtype.itemsize, dtype=np.uint8)
    return raw.view(dtype).reshape(var.shape)


@dataclasses.dataclass
class Built:
    """A built model: the root module, each variable by uid, and its initial array."""

    module: bridge.Module
    variables: dict[int, bridge.BaseVar]
    arrays: dict[int, np.ndarray]

    def vars(self) -> bridge.VarCollection:
        return self.module.vars()


def _variable(var: Var, array: np.ndarray) -> bridge.BaseVar:
    if var.kind == "train":
        return bridge.TrainVar(jnp.asarray(array))
    if var.kind == "state":
        return bridge.StateVar(jnp.asarray(array))
    rs = bridge.RandomState(0)
    rs.assign(jnp.asarray(array))
    return rs


def build(tree: Tree, salt: int = 0) -> Built:
    """The modules of ``tree``; ``salt`` changes the initial values, not the structure."""
    arrays = {v.uid: initial_array(v, salt) for v in tree.variables}
    variables = {v.uid: _variable(v, arrays[v.uid]) for v in tree.variables}

    def make(spec: Spec) -> Any:
        if isinstance(spec, (Var, Ref)):
            return variables[spec.uid]
        if isinstance(spec, Items):
            return bridge.ModuleList([make(item) for item in spec.items])
        module = CLASSES[spec.cls]()
        for name, child in spec.attrs:
            setattr(module, name, make(child))
        return module

    return Built(make(tree.root), variables, arrays)


# ----- comparisons -----------------------------------------------------------------------
def raw_bytes(x: Any) -> np.ndarray:
    """The bytes of an array, C order (NaN payloads and the sign of zero included)."""
    return np.ascontiguousarray(np.asarray(x)).reshape(-1).view(np.uint8)


def same_array(actual: Any, expected: np.ndarray) -> Optional[str]:
    """Why ``actual`` is not ``expected`` bit for bit (dtype and shape too), or None."""
    if jnp.dtype(actual.dtype) != expected.dtype:
        return f"dtype {actual.dtype}, expected {expected.dtype}"
    if tuple(actual.shape) != expected.shape:
        return f"shape {tuple(actual.shape)}, expected {expected.shape}"
    if not np.array_equal(raw_bytes(actual), raw_bytes(expected)):
        return f"bits differ: {np.asarray(actual)!r} != {expected!r}"
    return None


def assert_holds(built: Built, expected: dict[int, np.ndarray]) -> None:
    """Every variable of ``built`` holds exactly ``expected[uid]``."""
    problems = {uid: same_array(built.variables[uid].value, array)
                for uid, array in expected.items()}
    problems = {uid: p for uid, p in problems.items() if p}
    assert not problems, f"variables that differ (by uid): {problems}"


# ----- errors ----------------------------------------------------------------------------
def assert_clear_refusal(error: BaseException, function: str, vc: bridge.VarCollection) -> None:
    """A refusal is a ``ValueError``/``TypeError`` (not a ``KeyError``/``IndexError``/
    ``AttributeError`` from inside the library) whose message names the function or one
    of the variables concerned."""
    assert isinstance(error, (ValueError, TypeError)), f"{type(error).__name__}: {error}"
    assert not isinstance(error, (KeyError, IndexError, AttributeError)), repr(error)
    message = str(error)
    named = function in message or any(
        name in message or repr(name) in message for name in vc.keys())
    assert named, (f"{type(error).__name__} names neither {function} nor a variable: "
                   f"{message}")


# ----- small MLPs ------------------------------------------------------------------------
@dataclasses.dataclass(frozen=True)
class MLPSpec:
    """``widths[0]`` inputs, one ``Linear`` per following width, tanh between layers; with
    ``shared``, a scalar gain reachable under two names scales the first layer's output
    (first name) and the last layer's output (second name)."""

    widths: tuple[int, ...]
    shared: bool
    seed: int


mlps = st.builds(MLPSpec,
                 widths=st.lists(st.integers(1, 4), min_size=2, max_size=4).map(tuple),
                 shared=st.booleans(),
                 seed=st.integers(0, 2**16))
BATCH = 3


class MLP(bridge.Module):
    def __init__(self, spec: MLPSpec):
        rng = np.random.default_rng(spec.seed)
        self.layers = bridge.ModuleList()
        for nin, nout in zip(spec.widths[:-1], spec.widths[1:]):
            layer = bridge.nn.Linear(nin, nout)
            layer.w.assign(jnp.asarray(rng.normal(size=(nin, nout)).astype(np.float32)))
            layer.b.assign(jnp.asarray(rng.normal(size=(nout,)).astype(np.float32)))
            self.layers.append(layer)
        if spec.shared:
            self.gain = bridge.TrainVar(jnp.asarray(rng.normal(), jnp.float32))
            self.gain_again = self.gain

    def __call__(self, x):
        for i, layer in enumerate(self.layers):
            x = layer(x)
            if i == 0 and hasattr(self, "gain"):
                x = x * self.gain.value
            if i + 1 < len(self.layers):
                x = jnp.tanh(x)
        if hasattr(self, "gain_again"):
            x = x * self.gain_again.value
        return x


def mlp_params(model: MLP) -> dict[str, Any]:
    """The model's arrays as a plain pytree, for the hand-written reference."""
    params: dict[str, Any] = {"layers": [{"w": layer.w.value, "b": layer.b.value}
                                         for layer in model.layers]}
    if hasattr(model, "gain"):
        params["gain"] = model.gain.value
    return params


def mlp_variables(model: MLP) -> dict[int, tuple]:
    """``{id(variable): path in mlp_params}`` for each trainable variable of ``model``."""
    out: dict[int, tuple] = {}
    for i, layer in enumerate(model.layers):
        out[id(layer.w)] = ("layers", i, "w")
        out[id(layer.b)] = ("layers", i, "b")
    if hasattr(model, "gain"):
        out[id(model.gain)] = ("gain",)
    return out


def reference_mlp(params: dict[str, Any], x: Any) -> Any:
    """The MLP written out in plain jax.numpy (one example or a batch)."""
    layers = params["layers"]
    gain = params.get("gain")
    for i, layer in enumerate(layers):
        x = jnp.dot(x, layer["w"]) + layer["b"]
        if i == 0 and gain is not None:
            x = x * gain
        if i + 1 < len(layers):
            x = jnp.tanh(x)
    if gain is not None:
        x = x * gain
    return x


def reference_loss(params: dict[str, Any], x: Any, y: Any) -> Any:
    return jnp.mean((reference_mlp(params, x) - y) ** 2)


def mlp_data(spec: MLPSpec) -> tuple[np.ndarray, np.ndarray]:
    """An input batch and a target batch for the MLP."""
    rng = np.random.default_rng(spec.seed + 1)
    x = rng.normal(size=(BATCH, spec.widths[0])).astype(np.float32)
    y = rng.normal(size=(BATCH, spec.widths[-1])).astype(np.float32)
    return x, y


def at(tree: Any, path: tuple) -> Any:
    for key in path:
        tree = tree[key]
    return tree
