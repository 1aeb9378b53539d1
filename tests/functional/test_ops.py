"""bridge.functional operations Objax exposes: interpolate, pad, scan, divergence.kl, the
argument converters, Objax's module paths and pickling."""

import functools
import pickle

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import bridge
import bridge.functional as F
from bridge.constants import ConvPadding, Interpolate
from bridge.functional._interpolate import to_interpolate
from bridge.functional._padding import to_padding

METHODS = ["nearest", "linear", "bilinear", "trilinear", "triangle", "cubic", "bicubic",
           "tricubic", "lanczos3", "lanczos5"]


# ----- interpolate / upsample_2d -------------------------------------------------------------

def test_interpolate_bilinear_values_match_objax():
    # Computed with Objax 1.8: interpolate(arange(6.).reshape(1, 1, 2, 3), size=(3, 4)).
    x = jnp.arange(6.0).reshape(1, 1, 2, 3)
    expected = [[[[0.0, 0.625, 1.375, 2.0], [1.5, 2.125, 2.875, 3.5],
                  [3.0, 3.625, 4.375, 5.0]]]]
    np.testing.assert_allclose(F.interpolate(x, size=(3, 4)), expected, atol=1e-6)


@pytest.mark.parametrize("kwargs, shape", [
    (dict(size=5), (1, 3, 2, 3, 10, 5)),                      # an int: the last axis
    (dict(size=(2, 2, 2)), (1, 3, 2, 2, 2, 2)),               # k sizes: the last k axes
    (dict(scale_factor=2), (1, 6, 4, 6, 20, 60)),             # a number: all but axis 0
    (dict(scale_factor=(2, 2, 2)), (1, 3, 2, 6, 20, 60)),     # k factors: the last k axes
    (dict(scale_factor=(1, 2, 1, 2, 1)), (1, 3, 4, 3, 20, 30)),
])
def test_interpolate_output_shape_follows_objax_rules(kwargs, shape):
    x = jnp.zeros((1, 3, 2, 3, 10, 30))
    assert F.interpolate(x, mode="nearest", **kwargs).shape == shape


@pytest.mark.parametrize("method", METHODS)
def test_interpolate_is_jax_image_resize_with_the_named_method(method):
    x = jax.random.normal(jax.random.PRNGKey(0), (2, 3, 5, 7))
    expected = jax.image.resize(x, (2, 3, 10, 14), method=method)
    np.testing.assert_array_equal(F.interpolate(x, scale_factor=(2, 2), mode=method), expected)
    np.testing.assert_array_equal(F.interpolate(x, size=(10, 14), mode=Interpolate[
        method.upper()]), expected)


@pytest.mark.parametrize("kwargs, message", [
    (dict(), "exactly one of size and scale_factor"),
    (dict(size=3, scale_factor=2), "exactly one of size and scale_factor"),
    (dict(size=(2, 2, 2, 2, 2)), r"5 sizes or scale factors for an input of shape \(2, 3, 4, 5\)"),
    (dict(size=3, mode="bilinearr"), "Unknown interpolation 'bilinearr'"),
])
def test_interpolate_rejects_bad_arguments_with_a_clear_error(kwargs, message):
    with pytest.raises(ValueError, match=message):
        F.interpolate(jnp.zeros((2, 3, 4, 5)), **kwargs)


@pytest.mark.parametrize("method", METHODS)
def test_upsample_2d_matches_resize_in_nhwc_bit_for_bit(method):
    # Objax resizes NHWC and transposes back; resizing NCHW must give the same numbers.
    x = jnp.arange(2 * 3 * 10 * 30, dtype=jnp.float32).reshape(2, 3, 10, 30)
    expected = jax.image.resize(x.transpose(0, 2, 3, 1), (2, 20, 90, 3), method=method)
    np.testing.assert_array_equal(F.upsample_2d(x, (2, 3), method),
                                  expected.transpose(0, 3, 1, 2))


def test_upsample_2d_accepts_an_interpolate_and_matches_objax_nearest():
    # Computed with Objax 1.8: upsample_2d(arange(6.).reshape(1, 1, 2, 3), (2, 1),
    # method=Interpolate.NEAREST).
    y = F.upsample_2d(jnp.arange(6.0).reshape(1, 1, 2, 3), (2, 1), method=Interpolate.NEAREST)
    np.testing.assert_array_equal(y, [[[[0, 1, 2], [0, 1, 2], [3, 4, 5], [3, 4, 5]]]])


def test_upsample_2d_asks_for_interpolate_when_input_is_not_nchw():
    with pytest.raises(ValueError, match="use interpolate"):
        F.upsample_2d(jnp.zeros((2, 3, 4)), 2)


# ----- pad, scan and the JAX aliases ---------------------------------------------------------

def test_pad_scan_and_aliases_are_the_jax_functions():
    assert F.pad is jnp.pad
    assert F.scan is jax.lax.scan
    assert F.one_hot is jax.nn.one_hot
    assert F.dynamic_slice is jax.lax.dynamic_slice
    assert F.top_k is jax.lax.top_k


def test_scan_carries_and_stacks_like_objax_test():
    def cell(carry, x):
        return 2 * carry * x, 3 * carry * x

    carry, stacked = F.scan(cell, jnp.ones(2), jnp.ones(3))
    np.testing.assert_array_equal(carry, [8.0, 8.0])
    np.testing.assert_array_equal(stacked, [[3.0, 3.0], [6.0, 6.0], [12.0, 12.0]])


# ----- divergence ---------------------------------------------------------------------------

def test_kl_matches_objax_numbers():
    # Computed with Objax 1.8: kl([.1, .2, .7], [.3, .3, .4]) and kl([1, 0], [.5, .5]).
    kl = F.divergence.kl
    np.testing.assert_allclose(kl(jnp.array([0.1, 0.2, 0.7]), jnp.array([0.3, 0.3, 0.4])),
                               0.20077864825725555, rtol=1e-6)
    np.testing.assert_allclose(kl(jnp.array([1.0, 0.0]), jnp.array([0.5, 0.5])),
                               0.6931395530700684, rtol=1e-6)


def test_kl_is_the_eps_smoothed_formula_per_row_of_a_batch():
    p = jax.nn.softmax(jax.random.normal(jax.random.PRNGKey(1), (4, 5)))
    q = jax.nn.softmax(jax.random.normal(jax.random.PRNGKey(2), (4, 5)))
    eps = 2.0 ** -17
    expected = (np.asarray(p) * (np.log(np.asarray(p) + eps) - np.log(np.asarray(q) + eps))).sum(1)
    np.testing.assert_allclose(F.divergence.kl(p, q), expected, rtol=1e-5)
    np.testing.assert_allclose(F.divergence.kl(p, p), np.zeros(4), atol=1e-7)


# ----- argument converters and constants ----------------------------------------------------

@pytest.mark.parametrize("value, expected", [
    (Interpolate.BICUBIC, "bicubic"), ("Bicubic", "bicubic"), ("NEAREST", "nearest"),
    ("lanczos5", "lanczos5"),
])
def test_to_interpolate_gives_the_jax_method_name(value, expected):
    assert to_interpolate(value) == expected


def test_to_interpolate_names_the_accepted_methods_or_types():
    with pytest.raises(ValueError, match="'nearest', 'linear'"):
        to_interpolate("closest")
    with pytest.raises(TypeError, match="int 3"):
        to_interpolate(3)


@pytest.mark.parametrize("value, expected", [
    (ConvPadding.SAME, "SAME"), ("valid", "VALID"), (2, ((2, 2), (2, 2))),
    ((1, 0), ((1, 0), (1, 0))), ([(1, 0), (0, 2)], ((1, 0), (0, 2))),
])
def test_to_padding_follows_objax_forms(value, expected):
    assert to_padding(value, 2) == expected


def test_constants_hold_objax_enums_with_objax_values():
    assert bridge.constants.__all__ == ["ConvPadding", "Interpolate"]
    assert [m.value for m in Interpolate] == METHODS
    assert F.Interpolate is Interpolate and bridge.nn.ConvPadding is ConvPadding


# ----- Objax's module paths -----------------------------------------------------------------

@pytest.mark.parametrize("module, names", [
    ("activation", ["celu", "elu", "leaky_relu", "log_sigmoid", "log_softmax", "logsumexp",
                    "relu", "selu", "sigmoid", "softmax", "softplus", "swish", "tanh"]),
    ("ops", ["dynamic_slice", "flatten", "interpolate", "one_hot", "pad", "rsqrt", "scan",
             "stop_gradient", "top_k", "upsample_2d", "upscale_nn"]),
    ("pooling", ["average_pool_2d", "batch_to_space2d", "channel_to_space2d", "max_pool_2d",
                 "space_to_batch2d", "space_to_channel2d"]),
])
def test_functional_core_submodules_hold_objax_names_as_the_same_functions(module, names):
    # Objax's __all__ of objax/functional/core/{module}.py; bridge may hold more.
    sub = getattr(F.core, module)
    for name in names:
        assert getattr(sub, name) is getattr(F, name) is getattr(F.core, name), name


def test_functional_core_is_importable_by_objax_paths():
    from bridge.functional.core import ops, pooling
    from bridge.functional.core.ops import upsample_2d

    assert upsample_2d is ops.upsample_2d is F.upsample_2d
    assert pooling.max_pool_2d is F.max_pool_2d


# ----- pickling -----------------------------------------------------------------------------

ACTIVATIONS = ["celu", "elu", "gelu", "leaky_relu", "log_sigmoid", "log_softmax", "logsumexp",
               "relu", "selu", "sigmoid", "silu", "softmax", "softplus", "swish", "tanh"]


@pytest.mark.parametrize("name", ACTIVATIONS)
def test_activation_survives_pickling_and_is_jax_function(name):
    # Objax redefined relu because jax.nn.relu does not pickle; on current JAX most of
    # jax.nn's activations do not.
    f = getattr(F, name)
    assert pickle.loads(pickle.dumps(f)) is f
    x = jnp.linspace(-3, 3, 12).reshape(3, 4)
    reference = jnp.tanh if name == "tanh" else getattr(jax.nn, name)
    np.testing.assert_array_equal(f(x), reference(x))


def test_activations_keep_jax_signatures_for_keyword_arguments():
    x = jnp.array([-2.0, 3.0])
    np.testing.assert_allclose(F.leaky_relu(x, negative_slope=0.5), [-1.0, 3.0])
    np.testing.assert_allclose(F.log_softmax(jnp.ones((2, 2)), axis=0),
                               np.full((2, 2), np.log(0.5)))
    partial = functools.partial(F.elu, alpha=2.0)
    assert pickle.loads(pickle.dumps(partial))(jnp.array(-100.0)) == -2.0
