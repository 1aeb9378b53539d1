"""bridge.nn layers Objax 1.8 has beyond the basics: ConvTranspose2D, GroupNorm*,
MovingAverage, ExponentialMovingAverage, and Sequential's run_layer and call rules."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import bridge
from bridge import nn

# ----- ConvTranspose2D ----------------------------------------------------------------------

# Kernel (kh, kw, nout, nin) = (2, 2, 3, 2) and input (1, 2, 3, 3) of the Objax 1.8 numbers.
CT_W = (jnp.arange(2 * 2 * 3 * 2, dtype=jnp.float32).reshape(2, 2, 3, 2) - 6) / 7
CT_X = jnp.arange(18, dtype=jnp.float32).reshape(1, 2, 3, 3) / 10 - 0.5


def _ct(**kwargs):
    return nn.ConvTranspose2D(2, 3, 2, w_init=lambda shape: CT_W, **kwargs)


def test_conv_transpose_2d_with_stride_matches_objax_numbers():
    # Computed with Objax 1.8: ConvTranspose2D(2, 3, 2, strides=2, w_init=...)(CT_X)[0, 0].
    expected = [[0.142857, 0.057143, -0.014286, 0.071429, -0.171429, 0.085714],
                [-0.028571, -0.114286, 0.157143, 0.242857, 0.342857, 0.6],
                [-0.328572, 0.1, -0.485714, 0.114286, -0.642857, 0.128571],
                [0.528572, 0.957143, 0.714286, 1.314286, 0.9, 1.671428],
                [-0.8, 0.142857, -0.957143, 0.157143, -1.114286, 0.171429],
                [1.085714, 2.028571, 1.271429, 2.385714, 1.457143, 2.742857]]
    np.testing.assert_allclose(_ct(strides=2)(CT_X)[0, 0], expected, atol=2e-6)


def test_conv_transpose_2d_with_int_padding_and_dilation_matches_objax_numbers():
    # Computed with Objax 1.8: ConvTranspose2D(2, 3, 2, padding=1, dilations=2, ...)(CT_X).
    expected = [[[-0.485714, -0.542857, 0.114286], [-0.8, -0.742857, 0.4],
                 [0.714286, 1.857143, 1.314286]],
                [[-0.285714, -0.142857, 0.314286], [-0.4, 0.057143, 0.8],
                 [0.914286, 2.257143, 1.514286]],
                [[-0.085714, 0.257143, 0.514286], [0.0, 0.857143, 1.2],
                 [1.114286, 2.657143, 1.714286]]]
    np.testing.assert_allclose(_ct(padding=1, dilations=2)(CT_X)[0], expected, atol=2e-6)


def test_conv_transpose_2d_with_asymmetric_padding_matches_objax_numbers():
    # Computed with Objax 1.8: ConvTranspose2D(2, 3, 2, strides=(2, 1),
    # padding=((1, 0), (0, 1)), ...)(CT_X)[0, 2].
    y = _ct(strides=(2, 1), padding=((1, 0), (0, 1)))(CT_X)
    expected = [[0.042857, 0.128571, 0.257143], [0.042857, 0.814286, 0.771429],
                [0.3, 0.385714, 0.642857], [2.357143, 3.128571, 2.185714],
                [0.557143, 0.642857, 1.028572]]
    assert y.shape == (1, 3, 5, 3)
    np.testing.assert_allclose(y[0, 2], expected, atol=3e-6)


@pytest.mark.parametrize("padding", ["SAME", "VALID"])
def test_conv_transpose_2d_is_the_input_gradient_of_the_conv_it_transposes(padding):
    # A transposed convolution maps y to the vector-Jacobian product of Conv2D(nout, nin)
    # with the same kernel: the independent reference here is jax.vjp of lax's convolution.
    layer = nn.ConvTranspose2D(4, 3, 3, strides=2, padding=padding, use_bias=False)
    x = jax.random.normal(jax.random.PRNGKey(0), (2, 4, 5, 5))
    y = layer(x)
    forward = lambda z: jax.lax.conv_general_dilated(  # noqa: E731
        z, layer.w.value, (2, 2), padding, dimension_numbers=("NCHW", "HWIO", "NCHW"))
    _, vjp = jax.vjp(forward, jnp.zeros(y.shape))
    np.testing.assert_allclose(y, vjp(x)[0], rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("padding, size", [("SAME", 10), ("VALID", 11)])
def test_conv_transpose_2d_output_size_is_stride_times_input_or_plus_kernel(padding, size):
    # SAME: H * stride; VALID: (H - 1) * stride + k.
    layer = nn.ConvTranspose2D(4, 3, 3, strides=2, padding=padding)
    assert layer(jnp.zeros((2, 4, 5, 5))).shape == (2, 3, size, size)


def test_conv_transpose_2d_variables_are_bias_then_kernel_of_the_transposed_conv():
    shapes = []

    def w_init(shape):
        shapes.append(shape)
        return jnp.ones(shape)

    layer = nn.ConvTranspose2D(4, 3, (2, 5), w_init=w_init)
    assert shapes == [(2, 5, 3, 4)]          # (kh, kw, nout, nin), as in Objax
    assert list(layer.vars().keys()) == ["(ConvTranspose2D).b", "(ConvTranspose2D).w"]
    assert layer.b.value.shape == (3, 1, 1)
    assert isinstance(layer, nn.Conv2D) and layer.groups == 1


def test_conv_transpose_2d_adds_the_bias_per_output_channel():
    layer = nn.ConvTranspose2D(2, 3, 2, w_init=lambda shape: CT_W)
    no_bias = nn.ConvTranspose2D(2, 3, 2, use_bias=False, w_init=lambda shape: CT_W)
    assert no_bias.b is None and list(no_bias.vars().keys()) == ["(ConvTranspose2D).w"]
    layer.b.assign(jnp.array([1.0, 2.0, 3.0]).reshape(3, 1, 1))
    np.testing.assert_allclose(layer(CT_X) - no_bias(CT_X),
                               np.broadcast_to([[[[1.0]], [[2.0]], [[3.0]]]], (1, 3, 3, 3)),
                               rtol=1e-6)


def test_conv_transpose_2d_rejects_input_with_wrong_channel_count():
    with pytest.raises(ValueError, match=r"ConvTranspose2D expects input of shape \(N, 2, H, W\)"):
        _ct()(jnp.zeros((1, 3, 4, 4)))


# ----- GroupNorm ----------------------------------------------------------------------------

GN_X = jnp.arange(2 * 4 * 2 * 3, dtype=jnp.float32).reshape(2, 4, 2, 3) ** 1.5 / 10


def _group_norm_reference(x, groups, eps, gamma=1.0, beta=0.0):
    x = np.asarray(x, np.float64)
    n, c = x.shape[:2]
    g = x.reshape(n, groups, -1)
    g = (g - g.mean(-1, keepdims=True)) / np.sqrt(g.var(-1, keepdims=True) + eps)
    return g.reshape(x.shape) * gamma + beta


def test_group_norm_2d_matches_objax_numbers():
    # Computed with Objax 1.8: GroupNorm2D(4, groups=2)(GN_X)[0, 1] and [1, 3].
    y = nn.GroupNorm2D(4, groups=2)(GN_X)
    np.testing.assert_allclose(y[0, 1], [[-0.019656, 0.303349, 0.650333],
                                         [1.019742, 1.410287, 1.820881]], atol=3e-6)
    np.testing.assert_allclose(y[1, 3], [[0.124507, 0.417759, 0.714441],
                                         [1.014513, 1.317939, 1.62468]], atol=3e-6)


def test_group_norm_0d_matches_objax_numbers():
    # Computed with Objax 1.8: GroupNorm0D(6, groups=3, eps=1e-3)([[1, 2, 4, 8, -1, 3]]).
    y = nn.GroupNorm0D(6, groups=3, eps=1e-3)(jnp.array([[1.0, 2.0, 4.0, 8.0, -1.0, 3.0]]))
    np.testing.assert_allclose(y, [[-0.998006, 0.998006, -0.999875, 0.999875, -0.999875,
                                    0.999875]], atol=1e-6)


@pytest.mark.parametrize("layer, shape", [
    (nn.GroupNorm0D(8, groups=4), (5, 8)),
    (nn.GroupNorm1D(8, groups=2), (5, 8, 7)),
    (nn.GroupNorm2D(6, groups=3), (5, 6, 4, 3)),
    (nn.GroupNorm(6, rank=5, groups=2), (2, 6, 3, 2, 2)),
])
def test_group_norm_normalizes_each_group_of_each_example(layer, shape):
    x = jax.random.normal(jax.random.PRNGKey(1), shape) * 3 + 1
    np.testing.assert_allclose(layer(x), _group_norm_reference(x, layer.groups, layer.eps),
                               rtol=1e-4, atol=1e-5)


def test_group_norm_scales_and_shifts_per_channel():
    layer = nn.GroupNorm2D(4, groups=2)
    gamma = jnp.arange(1.0, 5.0).reshape(1, 4, 1, 1)
    beta = -jnp.arange(4.0).reshape(1, 4, 1, 1)
    layer.gamma.assign(gamma)
    layer.beta.assign(beta)
    np.testing.assert_allclose(layer(GN_X), _group_norm_reference(GN_X, 2, 1e-5, gamma, beta),
                               rtol=1e-4, atol=1e-5)


def test_group_norm_variables_are_gamma_then_beta_with_objax_shapes():
    layer = nn.GroupNorm1D(6, groups=3)
    assert list(layer.vars().keys()) == ["(GroupNorm1D).gamma", "(GroupNorm1D).beta"]
    assert all(isinstance(v, bridge.TrainVar) for v in layer.vars().values())
    assert layer.gamma.value.shape == layer.beta.value.shape == (1, 6, 1)
    np.testing.assert_array_equal(layer.gamma.value, 1)
    np.testing.assert_array_equal(layer.beta.value, 0)


def test_group_norm_defaults_are_32_groups_capped_at_nin_and_eps_1e_5():
    assert (nn.GroupNorm2D(64).groups, nn.GroupNorm2D(64).eps) == (32, 1e-5)
    assert nn.GroupNorm2D(8).groups == 8


def test_group_norm_ignores_training_so_it_can_replace_batch_norm():
    layer = nn.GroupNorm2D(4, groups=2)
    np.testing.assert_array_equal(layer(GN_X, training=True), layer(GN_X, training=False))
    np.testing.assert_array_equal(layer(GN_X), layer(GN_X, training=False))


def test_group_norm_rejects_channels_not_divisible_by_groups():
    with pytest.raises(ValueError, match=r"nin \(6\) must be divisible by groups \(4\)"):
        nn.GroupNorm2D(6, groups=4)


def test_group_norm_rejects_input_of_the_wrong_rank_or_channels():
    with pytest.raises(ValueError, match=r"rank 4 with 4 channels.*\(2, 4, 6\)"):
        nn.GroupNorm2D(4, groups=2)(jnp.ones((2, 4, 6)))


# ----- MovingAverage / ExponentialMovingAverage ---------------------------------------------

def test_moving_average_matches_objax_sequence():
    # Computed with Objax 1.8: MovingAverage((2,), buffer_size=3, init_value=1.).
    ma = nn.MovingAverage((2,), buffer_size=3, init_value=1.0)
    outputs = [ma(jnp.array(v)) for v in ([3.0, 6.0], [0.0, 3.0], [9.0, -3.0], [1.0, 1.0])]
    np.testing.assert_allclose(outputs, [[5 / 3, 8 / 3], [4 / 3, 10 / 3], [4.0, 2.0],
                                         [10 / 3, 1 / 3]], rtol=1e-6)


def test_moving_average_buffer_is_a_state_of_the_last_inputs():
    ma = nn.MovingAverage((1, 3), buffer_size=2, init_value=100)
    assert list(ma.vars().keys()) == ["(MovingAverage).buffer"]
    assert isinstance(ma.buffer, bridge.StateVar) and ma.buffer.value.shape == (2, 1, 3)
    np.testing.assert_allclose(ma(jnp.array([[0, 1, 2]])), [[50, 50.5, 51]])   # int input
    np.testing.assert_allclose(ma(jnp.array([[0, 0, 0]])), [[0, 0.5, 1]])
    assert ma.buffer.value.dtype == jnp.float32


def test_moving_average_rejects_input_of_another_shape():
    with pytest.raises(ValueError, match=r"MovingAverage of shape \(2,\) got .* \(3,\)"):
        nn.MovingAverage((2,), 4)(jnp.zeros(3))


def test_exponential_moving_average_matches_objax_sequence():
    # Computed with Objax 1.8: ExponentialMovingAverage((2,), momentum=0.9, init_value=1.).
    ema = nn.ExponentialMovingAverage((2,), momentum=0.9, init_value=1.0)
    outputs = [ema(jnp.array(v)) for v in ([3.0, 6.0], [0.0, 3.0], [9.0, -3.0])]
    np.testing.assert_allclose(outputs, [[1.2, 1.5], [1.08, 1.65], [1.872, 1.185]], rtol=1e-6)


def test_exponential_moving_average_is_momentum_weighted_and_stateful():
    ema = nn.ExponentialMovingAverage((1, 3), init_value=100, momentum=0.8)
    assert list(ema.vars().keys()) == ["(ExponentialMovingAverage).avg"]
    assert isinstance(ema.avg, bridge.StateVar)
    np.testing.assert_allclose(ema(jnp.array([[0, 100, 200]])), [[80, 100, 120]])
    np.testing.assert_allclose(ema.avg.value, [[80, 100, 120]])
    assert ema.avg.value.dtype == jnp.float32


@pytest.mark.parametrize("build", [
    lambda: nn.MovingAverage((3,), buffer_size=4, init_value=0.5),
    lambda: nn.ExponentialMovingAverage((3,), momentum=0.7, init_value=0.5),
], ids=["MovingAverage", "ExponentialMovingAverage"])
def test_moving_averages_inside_jit_update_their_state_like_eager_calls(build):
    eager, compiled = build(), build()
    jitted = bridge.Jit(compiled)
    for i in range(4):
        x = jnp.array([i, -2.0 * i, i * i])
        np.testing.assert_allclose(jitted(x), eager(x), rtol=1e-6)
    for a, b in zip(eager.vars().tensors(), compiled.vars().tensors()):
        np.testing.assert_allclose(a, b, rtol=1e-6)


# ----- Sequential ---------------------------------------------------------------------------

def test_sequential_run_layer_calls_a_layer_with_the_kwargs_it_accepts():
    seen = {}

    def layer(x, training):
        seen["training"] = training
        return x + 1

    assert nn.Sequential.run_layer(0, layer, (1,), {"training": True, "other": 3}) == 2
    assert seen == {"training": True}


def test_sequential_error_keeps_its_type_and_message_and_names_the_layer():
    model = nn.Sequential([nn.Linear(2, 3), nn.BatchNorm0D(3), nn.Linear(3, 2)])
    with pytest.raises(TypeError, match="missing 1 required positional argument: 'training'") \
            as info:
        model(jnp.ones((4, 2)))
    assert info.value.__notes__ == [
        "in Sequential layer[1]: bridge.nn.BatchNorm0D(nin=3, momentum=0.999, eps=1e-06)"]


def test_nested_sequential_errors_name_the_path_of_layers():
    def fail(x):
        raise ValueError("bad input")

    model = nn.Sequential([lambda x: x, nn.Sequential([fail])])
    with pytest.raises(ValueError, match="bad input") as info:
        model(1)
    assert info.value.__notes__ == ["in Sequential layer[0]: fail",
                                    "in Sequential layer[1]: bridge.nn.Sequential(\n  [0] fail\n)"]


def test_empty_sequential_returns_its_arguments():
    assert nn.Sequential()(3) == 3
    assert nn.Sequential()(3, 4) == (3, 4)


def test_sequential_returns_the_last_layer_output_as_it_is():
    model = nn.Sequential([lambda x: x + 1, lambda x: (x,)])
    assert model(1) == (2,)
