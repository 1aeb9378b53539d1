"""bridge.functional pooling and block rearrangements: Objax's results, also under jit/grad."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import bridge.functional as F


def _arange(*shape, dtype=jnp.float32):
    return jnp.arange(np.prod(shape), dtype=dtype).reshape(shape)


# ----- pooling ------------------------------------------------------------------------------

def test_average_pool_2d_is_the_correctly_rounded_mean_of_the_zero_padded_windows():
    # Objax's test_pooling2d_padding: 2979 / 25 must round to 119.16, as numpy divides.
    # XLA on CPU multiplies by a rounded 1/25 instead, which gives 119.159996.
    x = _arange(2, 3, 10, 30)
    padded = np.pad(np.asarray(x), ((0, 0), (0, 0), (2, 3), (2, 3)))
    expected = padded.reshape(2, 3, 3, 5, 7, 5).mean((-3, -1))
    np.testing.assert_array_equal(F.average_pool_2d(x, size=5, padding=(2, 3)), expected)


def test_average_pool_2d_is_correctly_rounded_under_jit_too():
    x = _arange(2, 3, 10, 30)
    expected = np.pad(np.asarray(x), ((0, 0), (0, 0), (2, 3), (3, 2)))
    expected = expected.reshape(2, 3, 3, 5, 7, 5).mean((-3, -1))
    pool = jax.jit(lambda x: F.average_pool_2d(x, size=5, padding=((2, 3), (3, 2))))
    np.testing.assert_array_equal(pool(x), expected)


def test_average_pool_2d_matches_objax_numbers():
    # Computed with Objax 1.8 (jax 0.4.30): average_pool_2d(arange(2*3*10*30) reshaped,
    # size=5, padding=(2, 3))[0, 1, :, :3].
    x = _arange(2, 3, 10, 30)
    expected = [[119.16000366210938, 201.0, 204.0], [270.6000061035156, 455.0, 460.0],
                [133.44000244140625, 224.0, 226.0]]
    np.testing.assert_array_equal(F.average_pool_2d(x, 5, padding=(2, 3))[0, 1, :, :3],
                                  expected)


def test_average_pool_2d_same_padding_with_strides_matches_objax_numbers():
    # Computed with Objax 1.8: average_pool_2d(x, size=3, strides=2, padding='SAME') for the
    # x below. The window sums are rounded sums of sevenths, whose summation order differs
    # between XLA versions, hence the tolerance.
    x = _arange(2, 3, 10, 30)[:1, :1, :6, :6] / 7
    expected = [[[[4.428571701049805, 4.714285850524902, 3.2857143878936768],
                  [12.999999046325684, 13.285714149475098, 9.0],
                  [12.952381134033203, 13.142857551574707, 8.857142448425293]]]]
    np.testing.assert_allclose(F.average_pool_2d(x, 3, strides=2, padding="SAME"), expected,
                               rtol=3e-7)


def test_average_pool_2d_of_integers_is_a_float_mean():
    x = _arange(1, 1, 4, 4, dtype=jnp.int32)
    y = F.average_pool_2d(x)
    assert jnp.issubdtype(y.dtype, jnp.floating)
    np.testing.assert_array_equal(y, [[[[2.5, 4.5], [10.5, 12.5]]]])


def test_max_pool_2d_of_integers_and_booleans_keeps_the_dtype():
    x = _arange(1, 1, 4, 4, dtype=jnp.int32) - 20
    np.testing.assert_array_equal(F.max_pool_2d(x, padding=1),
                                  [[[[-20, -18, -17], [-12, -10, -9], [-8, -6, -5]]]])
    mask = F.max_pool_2d(_arange(1, 1, 4, 4) > 5)
    assert mask.dtype == jnp.bool_
    np.testing.assert_array_equal(mask, [[[[False, True], [True, True]]]])


def _plain_pool(x, init, op, size, strides, padding):
    return jax.lax.reduce_window(x, init, op, (1, 1, size, size), (1, 1, strides, strides),
                                 ((0, 0), (0, 0), padding, padding))


@pytest.mark.parametrize("pool, reference", [
    (F.max_pool_2d, lambda x: _plain_pool(x, -jnp.inf, jax.lax.max, 3, 2, (1, 1))),
    (F.average_pool_2d, lambda x: _plain_pool(x, 0.0, jax.lax.add, 3, 2, (1, 1)) / 9),
], ids=["max", "average"])
def test_pooling_gradient_under_jit_grad_matches_plain_reduce_window(pool, reference):
    # The regression: an initial value built as an array is a tracer under jit, and JAX's
    # generic reduce_window has no reverse-mode rule ("Linearization failed ...").
    x = jax.random.normal(jax.random.PRNGKey(0), (2, 3, 7, 7))
    weights = jax.random.normal(jax.random.PRNGKey(1), (2, 3, 4, 4))
    grad = jax.jit(jax.grad(lambda x: jnp.sum(pool(x, 3, 2, 1) * weights)))(x)
    expected = jax.jit(jax.grad(lambda x: jnp.sum(reference(x) * weights)))(x)
    np.testing.assert_allclose(grad, expected, rtol=1e-6, atol=1e-7)


def test_max_pool_2d_gradient_goes_to_the_window_maximum():
    x = jnp.array([[[[1.0, 5.0], [3.0, 2.0]]]])
    grad = jax.jit(jax.grad(lambda x: F.max_pool_2d(x).sum()))(x)
    np.testing.assert_array_equal(grad, [[[[0.0, 1.0], [0.0, 0.0]]]])


def test_average_pool_2d_gradient_is_one_over_the_window_area_per_window():
    grad = jax.jit(jax.grad(lambda x: F.average_pool_2d(x, 3, 1).sum()))(jnp.ones((1, 1, 4, 4)))
    counts = np.array([1, 2, 2, 1])   # windows covering each row/column
    np.testing.assert_allclose(grad[0, 0], np.outer(counts, counts) / 9, rtol=1e-6)


@pytest.mark.parametrize("pool", [F.max_pool_2d, F.average_pool_2d], ids=["max", "average"])
def test_pooling_under_vmap_matches_the_batched_call(pool):
    x = jax.random.normal(jax.random.PRNGKey(2), (3, 2, 1, 6, 6))
    batched = jax.vmap(lambda x: pool(x, 3, 3))(x)
    expected = pool(x.reshape(6, 1, 6, 6), 3, 3).reshape(3, 2, 1, 2, 2)
    np.testing.assert_allclose(batched, expected, rtol=1e-6)


def test_pooling_names_the_function_when_input_is_not_nchw():
    with pytest.raises(ValueError, match=r"average_pool_2d expects an NCHW tensor.*\(4, 4\)"):
        F.average_pool_2d(jnp.ones((4, 4)))


# ----- space / batch / channel rearrangements ------------------------------------------------

def test_space_to_batch2d_puts_block_offsets_in_the_batch_axis_like_objax():
    # Computed with Objax 1.8: space_to_batch2d(arange(16).reshape(1, 2, 2, 4), (1, 2)).
    x = _arange(1, 2, 2, 4, dtype=jnp.int32)
    expected = [[[[0, 2], [4, 6]], [[8, 10], [12, 14]]],
                [[[1, 3], [5, 7]], [[9, 11], [13, 15]]]]
    np.testing.assert_array_equal(F.space_to_batch2d(x, (1, 2)), expected)


def test_space_to_channel2d_puts_block_offsets_after_each_channel_like_objax():
    # Computed with Objax 1.8: space_to_channel2d(arange(16).reshape(1, 2, 2, 4), (1, 2)).
    x = _arange(1, 2, 2, 4, dtype=jnp.int32)
    expected = [[[[0, 2], [4, 6]], [[1, 3], [5, 7]], [[8, 10], [12, 14]], [[9, 11], [13, 15]]]]
    np.testing.assert_array_equal(F.space_to_channel2d(x, (1, 2)), expected)


@pytest.mark.parametrize("size, batch_shape, channel_shape", [
    (5, (50, 3, 2, 6), (2, 75, 2, 6)),
    ((2, 3), (12, 3, 5, 10), (2, 18, 5, 10)),
])
def test_space_rearrangements_have_objax_shapes_and_inverses(size, batch_shape, channel_shape):
    x = _arange(2, 3, 10, 30)
    to_batch = F.space_to_batch2d(x, size)
    to_channel = F.space_to_channel2d(x, size)
    assert to_batch.shape == batch_shape and to_channel.shape == channel_shape
    np.testing.assert_array_equal(F.batch_to_space2d(to_batch, size), x)
    np.testing.assert_array_equal(F.channel_to_space2d(to_channel, size), x)


def test_space_to_batch2d_blocks_match_numpy_slicing():
    x = np.asarray(_arange(2, 1, 4, 6))
    y = np.asarray(F.space_to_batch2d(jnp.asarray(x), (2, 3)))
    for i in range(2):
        for a in range(2):
            for b in range(3):
                np.testing.assert_array_equal(y[(i * 2 + a) * 3 + b], x[i, :, a::2, b::3])


@pytest.mark.parametrize("f, shape, message", [
    (F.space_to_batch2d, (1, 1, 5, 4), r"axis 2 of shape \(1, 1, 5, 4\) is not divisible by 2"),
    (F.space_to_channel2d, (1, 1, 4, 5), r"axis 3 of shape \(1, 1, 4, 5\) is not divisible by 2"),
    (F.batch_to_space2d, (3, 1, 2, 2), r"batch size 3 is not divisible by 2 \* 2"),
    (F.channel_to_space2d, (1, 6, 2, 2), r"6 channels are not divisible by 2 \* 2"),
])
def test_space_rearrangements_name_the_axis_that_does_not_divide(f, shape, message):
    with pytest.raises(ValueError, match=message):
        f(jnp.zeros(shape), 2)
