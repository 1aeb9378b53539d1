"""Properties of the converters (Linen variables, Haiku params/state, NNX state) over
generated module trees.

The same trees as the checkpoint properties: nested modules and module lists, shared
weights, every dtype, scalar and empty arrays, odd attribute names. A conversion either
works both ways exactly (compared bit for bit with the arrays the variables were created
from) or is refused with a ``ValueError``/``TypeError`` that says what it refuses, and a
refused load changes no variable.
"""

from __future__ import annotations

import dataclasses
from typing import Any, Callable

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx
from hypothesis import assume, event, given
from hypothesis import strategies as st

import bridge
from bridge.flax import load_linen_variables, load_nnx_state, to_linen_variables, to_nnx_state
from bridge.haiku import load_haiku_params, to_haiku_params

from .strategies import (
    DTYPES,
    assert_clear_refusal,
    assert_holds,
    build,
    flat_tree,
    raw_bytes,
    trees,
)


# ----- the three converters, seen as leaves at paths -------------------------------------
@dataclasses.dataclass(frozen=True)
class Scheme:
    name: str  # as bridge.interop.translate names it
    export_name: str
    load_name: str
    export: Callable[[bridge.VarCollection], Any]
    load: Callable[[bridge.VarCollection, Any], Any]
    leaves: Callable[[Any], dict[tuple, Any]]  # exported -> {path: leaf}
    rebuild: Callable[[dict[tuple, Any]], Any]  # {path: leaf} -> exported
    wrap: Callable[[Any, Any], Any]  # (old leaf, new array) -> new leaf
    value: Callable[[Any], Any]  # leaf -> array (a PRNG key as its raw data)


def _nested_leaves(tree: Any, prefix: tuple = ()) -> dict[tuple, Any]:
    out: dict[tuple, Any] = {}
    for key, value in tree.items():
        if isinstance(value, dict):
            out.update(_nested_leaves(value, prefix + (key,)))
        else:
            out[prefix + (key,)] = value
    return out


def _nested(leaves: dict[tuple, Any]) -> dict:
    out: dict = {}
    for path, value in leaves.items():
        node = out
        for key in path[:-1]:
            node = node.setdefault(key, {})
        node[path[-1]] = value
    return out


def _haiku_leaves(exported: tuple[dict, dict]) -> dict[tuple, Any]:
    params, state = exported
    return {(coll, module, name): value
            for coll, tree in (("params", params), ("state", state))
            for module, leaves in tree.items() for name, value in leaves.items()}


def _haiku_rebuild(leaves: dict[tuple, Any]) -> tuple[dict, dict]:
    trees_ = {"params": {}, "state": {}}
    for (coll, module, name), value in leaves.items():
        trees_[coll].setdefault(module, {})[name] = value
    return trees_["params"], trees_["state"]


def _is_key(x: Any) -> bool:
    return jax.dtypes.issubdtype(getattr(x, "dtype", None), jax.dtypes.prng_key)


def _key_data(x: Any) -> Any:
    return jax.random.key_data(x) if _is_key(x) else x


SCHEMES = {
    "linen": Scheme(
        "linen", "to_linen_variables", "load_linen_variables",
        to_linen_variables, load_linen_variables,
        _nested_leaves, _nested, lambda old, new: new, _key_data),
    "haiku": Scheme(
        "haiku", "to_haiku_params", "load_haiku_params",
        to_haiku_params, lambda vc, exported: load_haiku_params(vc, *exported),
        _haiku_leaves, _haiku_rebuild, lambda old, new: new, _key_data),
    "nnx": Scheme(
        "nnx", "to_nnx_state", "load_nnx_state",
        to_nnx_state, load_nnx_state,
        lambda state: dict(nnx.to_flat_state(state)), nnx.from_flat_state,
        lambda old, new: type(old)(new), lambda leaf: _key_data(leaf.get_value())),
}


def check_round_trip(scheme: Scheme, tree) -> None:
    """Export refuses clearly and changes nothing, or load takes the export back into a
    fresh model of the same structure and every variable equals the source's initial
    array bit for bit."""
    source, target = build(tree, salt=0), build(tree, salt=1)
    vc = source.vars()
    try:
        exported = scheme.export(vc)
    except Exception as e:
        event(f"{scheme.export_name} refused")
        assert_clear_refusal(e, scheme.export_name, vc)
        assert_holds(source, source.arrays)
        return
    event("round trip")
    scheme.load(target.vars(), exported)
    assert_holds(target, source.arrays)


SCHEME_NAMES = list(SCHEMES)


# ----- round trips -----------------------------------------------------------------------
@pytest.mark.parametrize("scheme", SCHEME_NAMES)
@given(tree=trees())
def test_export_then_load_is_exact_or_export_refuses_clearly(scheme, tree):
    """object → library tree → load back gives every variable back bit for bit (dtype,
    shape, value), or the export refuses with a ValueError/TypeError naming the problem
    and changes nothing. What an export accepts, the load takes back."""
    check_round_trip(SCHEMES[scheme], tree)


def _signature(array: Any) -> tuple:
    array = np.asarray(array)
    return str(array.dtype), array.shape, raw_bytes(array).tobytes()


@pytest.mark.parametrize("scheme", SCHEME_NAMES)
@given(tree=trees())
def test_export_holds_each_variable_once(scheme, tree):
    """An export has one leaf per distinct variable (a shared weight once), holding that
    variable's array (a RandomState's key data for NNX's typed key)."""
    scheme = SCHEMES[scheme]
    source = build(tree)
    try:
        exported = scheme.export(source.vars())
    except (ValueError, TypeError):
        assume(False)  # refusals: see the round-trip property
    leaves = scheme.leaves(exported)
    got = sorted(_signature(scheme.value(leaf)) for leaf in leaves.values())
    want = sorted(_signature(a) for a in source.arrays.values())
    assert got == want


# ----- refused loads ---------------------------------------------------------------------
_PLAIN_NAMES = st.text("abxyz_", min_size=1, max_size=4).filter(lambda n: not n.startswith("__"))


def _perturbed(scheme: Scheme, exported: Any, data: st.DataObject) -> Any:
    """The export with one change a strict load must refuse: a leaf dropped, an entry no
    variable takes added, or a leaf of another shape or dtype."""
    leaves = scheme.leaves(exported)
    # typed PRNG keys (NNX's RngKey) are only dropped: they have no zeros of another dtype
    plain = sorted((p for p, leaf in leaves.items() if not _is_key(
        leaf.get_value() if isinstance(leaf, nnx.Variable) else leaf)), key=repr)
    changes = ["extra"] + (["drop"] if leaves else []) + (["shape", "dtype"] if plain else [])
    change = data.draw(st.sampled_from(changes), label="change")
    if change == "extra":
        extra = jnp.zeros((1,), jnp.float32)
        path = {"linen": ("params", "__extra__"), "haiku": ("params", "__extra__", "w"),
                "nnx": ("__extra__",)}[scheme.name]
        leaves[path] = nnx.Param(extra) if scheme.name == "nnx" else extra
    elif change == "drop":
        path = data.draw(st.sampled_from(sorted(leaves, key=repr)), label="path")
        del leaves[path]
    else:
        path = data.draw(st.sampled_from(plain), label="path")
        old = scheme.value(leaves[path])
        if change == "shape":
            new = jnp.zeros(old.shape + (1,), old.dtype)
        else:
            dtype = data.draw(st.sampled_from([d for d in DTYPES if d != old.dtype.name]),
                              label="dtype")
            new = jnp.zeros(old.shape, dtype)
        leaves[path] = scheme.wrap(leaves[path], new)
    return scheme.rebuild(leaves)


@pytest.mark.parametrize("scheme", SCHEME_NAMES)
@given(tree=trees(names=_PLAIN_NAMES), data=st.data())
def test_a_refused_load_changes_no_variable(scheme, tree, data):
    """A strict load of a tree that does not fit (a leaf missing, an unexpected entry, a
    wrong shape or dtype) raises a ValueError/TypeError naming the problem and leaves
    every variable as it was."""
    scheme = SCHEMES[scheme]
    source, target = build(tree, salt=0), build(tree, salt=1)
    try:
        exported = scheme.export(source.vars())
    except (ValueError, TypeError):
        assume(False)
    perturbed = _perturbed(scheme, exported, data)
    vc = target.vars()
    with pytest.raises(Exception) as info:
        scheme.load(vc, perturbed)
    assert_clear_refusal(info.value, scheme.load_name, vc)
    assert_holds(target, target.arrays)


# ----- names that nest or look like numbers ----------------------------------------------
_SEGMENTS = st.text("abxyz_ é", min_size=1, max_size=3).filter(
    lambda n: not n.startswith("__"))


@pytest.mark.parametrize("scheme", SCHEME_NAMES)
@given(a=_SEGMENTS, b=_SEGMENTS, longer_first=st.booleans())
def test_a_name_that_extends_another_round_trips_or_is_refused_clearly(
        scheme, a, b, longer_first):
    """Two attributes of one module, 'a' and 'a/b' (in either order): the round trip is
    exact, or the export refuses clearly."""
    names = [a + "/" + b, a] if longer_first else [a, a + "/" + b]
    check_round_trip(SCHEMES[scheme], flat_tree(names))


_DIGIT_LIKE = st.one_of(
    st.text("0123456789", min_size=1, max_size=2).map(lambda s: "0" + s),  # '01', '007'
    st.tuples(st.sampled_from("²³¹٣١۵०߁"), st.text("0123456789", max_size=2)).map("".join),
)


@pytest.mark.parametrize("scheme", SCHEME_NAMES)
@given(names=st.lists(_DIGIT_LIKE, min_size=1, max_size=3, unique=True))
def test_digit_like_attribute_names_round_trip_or_are_refused_clearly(scheme, names):
    """Attribute names made of digits that are not canonical ASCII integers ('01', '²',
    '٣'): the round trip is exact, or the export refuses clearly."""
    check_round_trip(SCHEMES[scheme], flat_tree(names))


@pytest.mark.parametrize("scheme", SCHEME_NAMES)
@given(digits=st.text("0123456789", min_size=1, max_size=2), word=_SEGMENTS,
       digits_first=st.booleans())
def test_a_digit_attribute_name_beside_another_name_round_trips_or_is_refused_clearly(
        scheme, digits, word, digits_first):
    """A module with an attribute named by digits ('0') and one that is not ('a'): the
    round trip is exact, or the export refuses clearly."""
    names = [digits, word] if digits_first else [word, digits]
    check_round_trip(SCHEMES[scheme], flat_tree(names))

