"""bridge.util.check: Objax's assignment check (AssertionError, shapes compared, not dtypes)."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from bridge.util.check import assert_assigned_type_and_shape_match as check


def test_same_shape_array_passes_whatever_its_dtype():
    check(jnp.zeros(3), jnp.ones(3, dtype=jnp.int32))


def test_non_jax_value_is_refused_by_type_name():
    # Objax 1.8 also raises AssertionError for a NumPy array.
    with pytest.raises(AssertionError, match="ndarray"):
        check(jnp.zeros(3), np.zeros(3))


def test_shape_change_is_refused_with_both_shapes():
    with pytest.raises(AssertionError, match=r"\(3,\).*\(4,\)"):
        check(jnp.zeros(3), jnp.zeros(4))


def test_traced_value_with_extra_leading_axes_passes():
    jax.jit(lambda t: check(jnp.zeros(3), t))(jnp.zeros((2, 3)))


def test_traced_value_with_other_trailing_axes_is_refused():
    with pytest.raises(AssertionError, match="shape"):
        jax.jit(lambda t: check(jnp.zeros(3), t))(jnp.zeros((3, 2)))
