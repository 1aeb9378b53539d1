"""Properties of ``bridge.checkpoint`` over generated module trees.

Nested modules and module lists, shared weights, every dtype JAX has without 64-bit mode,
scalar and empty arrays, and attribute names with '/', '.', spaces, NUL, non-ASCII
characters and lone surrogates. Restored values are compared bit for bit with the NumPy
arrays the source variables were created from.
"""

from __future__ import annotations

import os
import tempfile

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

import bridge.checkpoint as ckpt

from .strategies import (
    assert_holds,
    attribute_names,
    build,
    flat_tree,
    same_array,
    trees,
)

FORMATS = ("msgpack", "npz")


def check_save_restore(tree, fmt):
    """save, then restore into a fresh model of the same structure: every variable equals
    the source's initial array bit for bit (dtype and shape too), or ``save`` refused with
    ``CheckpointError`` and left no file behind."""
    source, target = build(tree, salt=0), build(tree, salt=1)
    with tempfile.TemporaryDirectory() as directory:
        path = os.path.join(directory, "model.ckpt")
        try:
            ckpt.save(path, source.vars(), format=fmt)
        except ckpt.CheckpointError:
            assert os.listdir(directory) == [], "save refused but left files behind"
            return
        except Exception as e:
            left = os.listdir(directory)
            raise AssertionError(f"save raised {type(e).__name__}, not CheckpointError "
                                 f"(files left: {left}): {e}") from e
        ckpt.restore(path, target.vars())
    assert_holds(target, source.arrays)


@pytest.mark.parametrize("fmt", FORMATS)
@given(tree=trees())
def test_save_then_restore_gives_every_variable_back_bit_for_bit(fmt, tree):
    """save → restore is exact for every variable (value bits, dtype, shape), in both
    formats; a collection that cannot be saved is refused by ``save`` with
    ``CheckpointError`` before anything is written."""
    check_save_restore(tree, fmt)


@given(tree=trees())
def test_to_tree_then_from_tree_gives_every_variable_back_bit_for_bit(tree):
    """to_tree → host copies (what a pytree checkpointer stores) → from_tree is exact for
    every variable."""
    source, target = build(tree, salt=0), build(tree, salt=1)
    stored = {name: np.array(value) for name, value in ckpt.to_tree(source.vars()).items()}
    ckpt.from_tree(target.vars(), stored)
    assert_holds(target, source.arrays)


@given(tree=trees())
def test_to_tree_holds_each_variable_once_with_its_array(tree):
    """to_tree has one entry per distinct variable (a shared weight once), named by one of
    its collection names, holding that variable's array."""
    source = build(tree)
    vc = source.vars()
    saved = ckpt.to_tree(vc)
    uid_of = {id(v): uid for uid, v in source.variables.items()}
    uids = [uid_of[id(vc[name])] for name in saved]
    assert sorted(uids) == sorted(v.uid for v in tree.variables)
    for name, uid in zip(saved, uids):
        assert same_array(saved[name], source.arrays[uid]) is None, name


# ----- names that NumPy or UTF-8 cannot hold as they are ---------------------------------
# The general strategy produces these rarely; here every example has them.
_NUL_NAMES = attribute_names(max_size=3).map(lambda n: n + "\0")
_SURROGATE_NAMES = st.tuples(
    attribute_names(max_size=2),
    st.characters(min_codepoint=0xD800, max_codepoint=0xDFFF),
    attribute_names(max_size=2),
).map("".join)


@pytest.mark.parametrize("fmt", FORMATS)
@given(names=st.lists(_NUL_NAMES, min_size=1, max_size=3, unique=True))
def test_names_ending_in_nul_round_trip_or_are_refused(fmt, names):
    """Names that end with NUL (which NumPy's unicode arrays drop): save → restore is
    exact, or save refuses with CheckpointError and writes nothing."""
    check_save_restore(flat_tree(names), fmt)


@pytest.mark.parametrize("fmt", FORMATS)
@given(names=st.lists(_SURROGATE_NAMES, min_size=1, max_size=2, unique=True))
def test_names_with_lone_surrogates_round_trip_or_are_refused(fmt, names):
    """Names with a lone surrogate (a str that UTF-8 cannot encode): save → restore is
    exact, or save refuses with CheckpointError and writes nothing."""
    check_save_restore(flat_tree(names), fmt)
