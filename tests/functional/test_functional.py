"""bridge.functional: activations, reshaping, pooling, resizing and losses."""

import math

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

import bridge
import bridge.functional as F
from bridge.functional import loss

X = jnp.array([-3.0, -1.0, -0.5, 0.0, 0.5, 2.0, 4.0])


def _sig(x):
    return 1 / (1 + np.exp(-x))


_SELU_ALPHA, _SELU_SCALE = 1.6732632423543772, 1.0507009873554805

ACTIVATIONS = {
    "relu": lambda x: np.maximum(x, 0),
    "sigmoid": _sig,
    "softplus": lambda x: np.log1p(np.exp(x)),
    "tanh": np.tanh,
    "elu": lambda x: np.where(x > 0, x, np.exp(x) - 1),
    "leaky_relu": lambda x: np.where(x >= 0, x, 0.01 * x),
    "log_sigmoid": lambda x: np.log(_sig(x)),
    "selu": lambda x: _SELU_SCALE * np.where(x > 0, x, _SELU_ALPHA * (np.exp(x) - 1)),
    "celu": lambda x: np.maximum(x, 0) + np.minimum(0, np.exp(x) - 1),
    "silu": lambda x: x * _sig(x),
    "swish": lambda x: x * _sig(x),
    "gelu": lambda x: 0.5 * x * (1 + np.tanh(np.sqrt(2 / np.pi) * (x + 0.044715 * x ** 3))),
}


@pytest.mark.parametrize("name", sorted(ACTIVATIONS))
def test_activation_matches_its_formula(name):
    x = np.asarray(X, dtype=np.float64)
    np.testing.assert_allclose(getattr(F, name)(X), ACTIVATIONS[name](x), rtol=1e-5, atol=1e-6)


def test_softmax_log_softmax_logsumexp_match_formulas_on_last_axis():
    x = np.array([[1.0, 2.0, 3.0], [0.0, 0.0, 0.0]])
    lse = np.log(np.exp(x).sum(-1))
    np.testing.assert_allclose(F.logsumexp(x, axis=-1), lse, rtol=1e-6)
    np.testing.assert_allclose(F.log_softmax(x), x - lse[:, None], rtol=1e-6)
    np.testing.assert_allclose(F.softmax(x), np.exp(x - lse[:, None]), rtol=1e-6)


def test_one_hot_puts_a_one_at_each_label():
    np.testing.assert_array_equal(F.one_hot(jnp.array([2, 0]), 3), [[0, 0, 1], [1, 0, 0]])


def test_rsqrt_is_reciprocal_square_root():
    np.testing.assert_allclose(F.rsqrt(jnp.array([4.0, 0.25])), [0.5, 2.0], rtol=1e-6)


def test_stop_gradient_blocks_the_gradient():
    assert float(jax.grad(lambda x: x * F.stop_gradient(x))(3.0)) == 3.0


# ----- reshaping ----------------------------------------------------------------------------

def test_flatten_keeps_the_batch_axis():
    x = jnp.arange(2 * 3 * 4 * 5).reshape(2, 3, 4, 5)
    y = F.flatten(x)
    assert y.shape == (2, 60)
    np.testing.assert_array_equal(y[1], np.arange(60, 120))


# ----- pooling ------------------------------------------------------------------------------

def _blocks(x, s):
    """Reshape NCHW into non-overlapping s×s blocks: (N, C, H/s, W/s, s*s)."""
    n, c, h, w = x.shape
    b = np.asarray(x).reshape(n, c, h // s, s, w // s, s).transpose(0, 1, 2, 4, 3, 5)
    return b.reshape(n, c, h // s, w // s, s * s)


def _image(seed=0, shape=(2, 3, 6, 6)):
    return jax.random.normal(jax.random.PRNGKey(seed), shape)


def test_max_pool_2d_matches_reshape_reference():
    x = _image()
    np.testing.assert_array_equal(F.max_pool_2d(x, 2), _blocks(x, 2).max(-1))


def test_average_pool_2d_matches_reshape_reference():
    x = _image(1)
    np.testing.assert_allclose(F.average_pool_2d(x, 3), _blocks(x, 3).mean(-1), rtol=1e-6)


def test_max_pool_2d_default_window_is_2_and_strides_default_to_size():
    y = F.max_pool_2d(jnp.arange(16.0).reshape(1, 1, 4, 4))
    np.testing.assert_array_equal(y, [[[[5.0, 7.0], [13.0, 15.0]]]])


def test_max_pool_2d_valid_drops_incomplete_windows():
    assert F.max_pool_2d(jnp.ones((1, 2, 7, 5)), 2).shape == (1, 2, 3, 2)


def test_max_pool_2d_overlapping_windows_with_padding_match_loop_reference():
    x = np.asarray(_image(2, (1, 2, 5, 5)))
    padded = np.pad(x, ((0, 0), (0, 0), (1, 1), (1, 1)), constant_values=-np.inf)
    expected = np.array([[[[padded[0, c, i:i + 3, j:j + 3].max() for j in range(5)]
                           for i in range(5)] for c in range(2)]])
    np.testing.assert_array_equal(F.max_pool_2d(x, 3, strides=1, padding=1), expected)
    np.testing.assert_array_equal(F.max_pool_2d(x, 3, strides=1, padding="SAME"), expected)


def test_max_pool_2d_rectangular_window_and_strides():
    x = _image(3, (1, 1, 4, 6))
    y = F.max_pool_2d(x, (2, 3), strides=(2, 3))
    ref = np.asarray(x).reshape(1, 1, 2, 2, 2, 3).max(axis=(3, 5))
    np.testing.assert_array_equal(y, ref)


def test_average_pool_2d_same_padding_counts_padded_zeros():
    y = F.average_pool_2d(jnp.ones((1, 1, 3, 3)), 2, padding=F.ConvPadding.SAME)
    np.testing.assert_allclose(y, [[[[1.0, 0.5], [0.5, 0.25]]]])


def test_pooling_rejects_non_nchw_input():
    with pytest.raises(ValueError, match="NCHW"):
        F.max_pool_2d(jnp.ones((4, 4)))


def test_pooling_rejects_unknown_padding_name():
    with pytest.raises(ValueError, match="padding"):
        F.max_pool_2d(jnp.ones((1, 1, 4, 4)), padding="REFLECT")


# ----- resizing -----------------------------------------------------------------------------

def test_upscale_nn_repeats_each_pixel_in_a_block():
    x = jnp.array([[[[1.0, 2.0], [3.0, 4.0]]]])
    expected = np.kron(np.array([[1.0, 2.0], [3.0, 4.0]]), np.ones((3, 3)))[None, None]
    np.testing.assert_array_equal(F.upscale_nn(x, 3), expected)


def test_upsample_2d_nearest_equals_pixel_repetition():
    x = _image(4, (2, 3, 4, 5))
    np.testing.assert_allclose(F.upsample_2d(x, 2, method="nearest"), F.upscale_nn(x, 2))


def test_upsample_2d_bilinear_keeps_constant_images_and_scales_shape():
    y = F.upsample_2d(jnp.full((1, 2, 3, 4), 7.0), (2, 3))
    assert y.shape == (1, 2, 6, 12)
    np.testing.assert_allclose(y, 7.0, rtol=1e-6)


# ----- losses -------------------------------------------------------------------------------

LOGITS = jnp.array([[2.0, -1.0, 0.5], [0.0, 3.0, -2.0]])


def _log_softmax(z):
    z = np.asarray(z, dtype=np.float64)
    return z - np.log(np.exp(z).sum(-1, keepdims=True))


def test_loss_module_is_an_attribute_of_functional():
    assert bridge.functional.loss.cross_entropy_logits is loss.cross_entropy_logits


def test_cross_entropy_logits_equals_minus_sum_labels_log_softmax():
    labels = jnp.array([[0.2, 0.3, 0.5], [0.0, 1.0, 0.0]])
    expected = -(np.asarray(labels) * _log_softmax(LOGITS)).sum(-1)
    np.testing.assert_allclose(loss.cross_entropy_logits(LOGITS, labels), expected, rtol=1e-6)


def test_cross_entropy_logits_of_uniform_logits_is_log_k():
    out = loss.cross_entropy_logits(jnp.zeros((2, 4)), F.one_hot(jnp.array([0, 3]), 4))
    np.testing.assert_allclose(out, [math.log(4)] * 2, rtol=1e-6)


def test_cross_entropy_logits_sparse_picks_the_labelled_log_probability():
    out = loss.cross_entropy_logits_sparse(LOGITS, jnp.array([2, 1]))
    lp = _log_softmax(LOGITS)
    np.testing.assert_allclose(out, [-lp[0, 2], -lp[1, 1]], rtol=1e-6)


def test_cross_entropy_logits_sparse_equals_dense_with_one_hot_labels():
    labels = jnp.array([0, 2])
    np.testing.assert_allclose(loss.cross_entropy_logits_sparse(LOGITS, labels),
                               loss.cross_entropy_logits(LOGITS, F.one_hot(labels, 3)),
                               rtol=1e-6)


def test_cross_entropy_logits_sparse_accepts_one_int_label_for_all_rows():
    lp = _log_softmax(LOGITS)
    np.testing.assert_allclose(loss.cross_entropy_logits_sparse(LOGITS, 1), -lp[:, 1],
                               rtol=1e-6)


def test_cross_entropy_logits_sparse_supports_extra_batch_axes():
    logits = jax.random.normal(jax.random.PRNGKey(0), (2, 5, 3))
    labels = jnp.arange(10).reshape(2, 5) % 3
    out = loss.cross_entropy_logits_sparse(logits, labels)
    expected = -np.take_along_axis(_log_softmax(logits), np.asarray(labels)[..., None], -1)
    np.testing.assert_allclose(out, expected[..., 0], rtol=1e-5)


def test_sigmoid_cross_entropy_logits_matches_stable_formula_elementwise():
    labels = jnp.array([[1.0, 0.0, 0.3], [0.0, 1.0, 1.0]])
    z, y = np.asarray(LOGITS, np.float64), np.asarray(labels, np.float64)
    expected = np.maximum(z, 0) - z * y + np.log1p(np.exp(-np.abs(z)))
    np.testing.assert_allclose(loss.sigmoid_cross_entropy_logits(LOGITS, labels), expected,
                               rtol=1e-6)


def test_sigmoid_cross_entropy_logits_agrees_with_optax():
    labels = jnp.array([[1.0, 0.0, 1.0], [0.0, 1.0, 0.0]])
    np.testing.assert_allclose(loss.sigmoid_cross_entropy_logits(LOGITS, labels),
                               optax.sigmoid_binary_cross_entropy(LOGITS, labels), rtol=1e-6)


def test_mean_squared_error_averages_all_but_the_batch_axis():
    x = jnp.arange(12.0).reshape(2, 3, 2)
    out = loss.mean_squared_error(x, jnp.zeros_like(x))
    assert out.shape == (2,)
    np.testing.assert_allclose(out, [np.mean(np.arange(6.0) ** 2),
                                     np.mean(np.arange(6.0, 12.0) ** 2)], rtol=1e-6)


def test_mean_squared_error_with_keep_axis_none_is_a_scalar():
    out = loss.mean_squared_error(jnp.array([[1.0, 2.0], [3.0, 4.0]]), jnp.zeros((2, 2)),
                                  keep_axis=None)
    assert out.shape == ()
    np.testing.assert_allclose(out, 7.5)


def test_mean_squared_error_keeps_several_and_negative_axes():
    x = jax.random.normal(jax.random.PRNGKey(1), (2, 3, 4))
    out = loss.mean_squared_error(x, 1.0, keep_axis=(0, -1))
    assert out.shape == (2, 4)
    np.testing.assert_allclose(out, ((np.asarray(x) - 1) ** 2).mean(1), rtol=1e-5)


def test_mean_absolute_error_averages_all_but_the_batch_axis():
    x = jnp.array([[1.0, -3.0], [0.5, 0.5]])
    np.testing.assert_allclose(loss.mean_absolute_error(x, jnp.zeros((2, 2))), [2.0, 0.5])


def test_mean_squared_log_error_compares_log1p_values():
    out = loss.mean_squared_log_error(jnp.zeros((1, 2)), (math.e - 1) * jnp.ones((1, 2)))
    np.testing.assert_allclose(out, [1.0], rtol=1e-6)


def test_l2_is_half_the_squared_norm():
    np.testing.assert_allclose(loss.l2(jnp.array([3.0, 4.0])), 12.5)


def test_loss_gradient_of_sparse_cross_entropy_is_softmax_minus_one_hot():
    labels = jnp.array([2, 1])
    g = jax.grad(lambda z: loss.cross_entropy_logits_sparse(z, labels).sum())(LOGITS)
    expected = np.exp(_log_softmax(LOGITS)) - np.eye(3)[np.asarray(labels)]
    np.testing.assert_allclose(g, expected, rtol=1e-5, atol=1e-6)
