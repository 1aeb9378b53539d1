"""bridge.nn: layers (Linear, Conv2D, BatchNorm*, Dropout, Sequential) and initializers."""

import functools
import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import bridge
from bridge import nn
from bridge.nn import init


def _randn(seed, *shape):
    return jax.random.normal(jax.random.PRNGKey(seed), shape)


# ----- Linear -------------------------------------------------------------------------------

def test_linear_equals_x_matmul_w_plus_b():
    layer = nn.Linear(3, 4)
    layer.b.assign(jnp.arange(4.0))
    x = _randn(0, 5, 3)
    expected = np.asarray(x) @ np.asarray(layer.w.value) + np.arange(4.0)
    np.testing.assert_allclose(layer(x), expected, rtol=1e-5, atol=1e-6)


def test_linear_variable_names_are_b_then_w():
    layer = nn.Linear(3, 4)
    assert list(layer.vars().keys()) == ["(Linear).b", "(Linear).w"]
    assert layer.b.shape == (4,) and layer.w.shape == (3, 4)
    assert all(isinstance(v, bridge.TrainVar) for v in layer.vars().values())


def test_linear_bias_starts_at_zero():
    np.testing.assert_array_equal(nn.Linear(3, 4).b.value, np.zeros(4))


def test_linear_without_bias_has_no_b_variable():
    layer = nn.Linear(3, 4, use_bias=False)
    assert layer.b is None
    assert list(layer.vars().keys()) == ["(Linear).w"]
    x = _randn(1, 2, 3)
    np.testing.assert_allclose(layer(x), np.asarray(x) @ np.asarray(layer.w.value), rtol=1e-5)


def test_linear_calls_w_init_with_nin_nout_shape():
    shapes = []

    def w_init(shape):
        shapes.append(shape)
        return jnp.full(shape, 2.0)

    layer = nn.Linear(3, 5, w_init=w_init)
    assert shapes == [(3, 5)]
    np.testing.assert_allclose(layer(jnp.ones((1, 3))), np.full((1, 5), 6.0))


# ----- Sequential ---------------------------------------------------------------------------

def test_sequential_names_variables_by_position():
    model = nn.Sequential([nn.Linear(2, 3), bridge.functional.relu, nn.Linear(3, 1)])
    assert list(model.vars().keys()) == [
        "(Sequential)[0](Linear).b", "(Sequential)[0](Linear).w",
        "(Sequential)[2](Linear).b", "(Sequential)[2](Linear).w",
    ]


def test_sequential_applies_layers_in_order():
    l1, l2 = nn.Linear(2, 3), nn.Linear(3, 1)
    model = nn.Sequential([l1, bridge.functional.relu, l2])
    x = _randn(2, 4, 2)
    np.testing.assert_allclose(model(x), l2(jnp.maximum(l1(x), 0)), rtol=1e-6)


def test_sequential_gives_each_layer_only_the_kwargs_it_accepts():
    seen = []

    def takes_training(x, training):
        seen.append(training)
        return x + 1

    model = nn.Sequential([nn.Linear(2, 2), takes_training, lambda x: x * 2])
    x = jnp.ones((1, 2))
    out = model(x, training=True)
    assert seen == [True]
    np.testing.assert_allclose(out, (model[0](x) + 1) * 2, rtol=1e-6)


def test_sequential_passes_tuple_output_as_positional_args():
    model = nn.Sequential([lambda x: (x, 2 * x), lambda a, b: a + b])
    np.testing.assert_allclose(model(jnp.array(1.5)), 4.5)


def test_sequential_returns_tuple_when_last_layer_returns_several_values():
    model = nn.Sequential([lambda x: x + 1, lambda x: (x, -x)])
    a, b = model(jnp.array(1.0))
    assert float(a) == 2.0 and float(b) == -2.0


def test_sequential_slice_is_a_sequential_of_the_same_layers():
    l1, l2 = nn.Linear(2, 3), nn.Linear(3, 1)
    head = nn.Sequential([l1, l2])[:1]
    assert isinstance(head, nn.Sequential) and head[0] is l1
    np.testing.assert_allclose(head(jnp.ones((1, 2))), l1(jnp.ones((1, 2))))


# ----- Conv2D -------------------------------------------------------------------------------

def _conv_reference_nchw(x, w, stride, pad):
    """Direct loop over output positions; w is HWIO, x NCHW, explicit symmetric padding."""
    x = np.pad(np.asarray(x), ((0, 0), (0, 0), (pad, pad), (pad, pad)))
    w = np.asarray(w)
    kh, kw, _, nout = w.shape
    n, _, h, wd = x.shape
    oh, ow = (h - kh) // stride + 1, (wd - kw) // stride + 1
    out = np.zeros((n, nout, oh, ow))
    for i in range(oh):
        for j in range(ow):
            patch = x[:, :, i * stride:i * stride + kh, j * stride:j * stride + kw]
            out[:, :, i, j] = np.einsum("nchw,hwco->no", patch, w)
    return out


def test_conv2d_valid_matches_direct_loop_reference():
    conv = nn.Conv2D(3, 4, 3, padding="VALID")
    x = _randn(3, 2, 3, 6, 7)
    np.testing.assert_allclose(conv(x), _conv_reference_nchw(x, conv.w.value, 1, 0),
                               rtol=1e-4, atol=1e-5)


def test_conv2d_stride_and_int_padding_match_direct_loop_reference():
    conv = nn.Conv2D(2, 3, 3, strides=2, padding=1)
    x = _randn(4, 1, 2, 7, 7)
    np.testing.assert_allclose(conv(x), _conv_reference_nchw(x, conv.w.value, 2, 1),
                               rtol=1e-4, atol=1e-5)


def test_conv2d_same_groups_dilation_match_lax_conv_in_nhwc():
    conv = nn.Conv2D(4, 6, (3, 2), strides=(1, 2), dilations=2, groups=2)
    conv.b.assign(_randn(5, 6, 1, 1))
    x = _randn(6, 2, 4, 9, 8)
    y_nhwc = jax.lax.conv_general_dilated(
        jnp.transpose(x, (0, 2, 3, 1)), conv.w.value, (1, 2), "SAME", rhs_dilation=(2, 2),
        feature_group_count=2, dimension_numbers=("NHWC", "HWIO", "NHWC"))
    expected = jnp.transpose(y_nhwc, (0, 3, 1, 2)) + conv.b.value
    np.testing.assert_allclose(conv(x), expected, rtol=1e-5, atol=1e-5)


def test_conv2d_variable_shapes_are_hwio_kernel_and_channel_bias():
    conv = nn.Conv2D(4, 6, (3, 5), groups=2)
    assert list(conv.vars().keys()) == ["(Conv2D).b", "(Conv2D).w"]
    assert conv.w.shape == (3, 5, 2, 6) and conv.b.shape == (6, 1, 1)


def test_conv2d_same_padding_output_size_is_ceil_of_input_over_stride():
    assert nn.Conv2D(3, 5, 3, strides=2)(jnp.ones((1, 3, 9, 10))).shape == (1, 5, 5, 5)


def test_conv2d_padding_forms_are_equivalent():
    x = _randn(7, 1, 2, 5, 5)
    outputs = []
    for padding in [nn.ConvPadding.SAME, "same", 1, (1, 1), [(1, 1), (1, 1)]]:
        conv = nn.Conv2D(2, 3, 3, padding=padding, w_init=lambda s: jnp.ones(s))
        outputs.append(conv(x))
    for out in outputs[1:]:
        np.testing.assert_allclose(out, outputs[0], rtol=1e-6)


def test_conv2d_without_bias_has_only_w():
    conv = nn.Conv2D(2, 3, 1, use_bias=False)
    assert conv.b is None and list(conv.vars().keys()) == ["(Conv2D).w"]


def test_conv2d_rejects_input_with_wrong_channel_count():
    with pytest.raises(ValueError, match="Conv2D expects"):
        nn.Conv2D(3, 4, 3)(jnp.ones((1, 4, 5, 5)))


def test_conv2d_rejects_channels_not_divisible_by_groups():
    with pytest.raises(ValueError, match="divisible"):
        nn.Conv2D(3, 4, 3, groups=2)


# ----- BatchNorm ----------------------------------------------------------------------------

def test_batchnorm_variables_order_types_and_initial_values():
    bn = nn.BatchNorm2D(3)
    vc = bn.vars()
    assert list(vc.keys()) == ["(BatchNorm2D).running_mean", "(BatchNorm2D).running_var",
                               "(BatchNorm2D).beta", "(BatchNorm2D).gamma"]
    assert [type(v) for v in vc.values()] == [bridge.StateVar, bridge.StateVar,
                                              bridge.TrainVar, bridge.TrainVar]
    assert all(v.shape == (1, 3, 1, 1) for v in vc.values())
    np.testing.assert_array_equal(bn.running_mean.value, 0)
    np.testing.assert_array_equal(bn.running_var.value, 1)


def test_batchnorm_running_stats_update_with_momentum_hand_computed():
    bn = nn.BatchNorm0D(1, momentum=0.9)
    x = jnp.array([[0.0], [4.0]])  # batch mean 2, batch variance 4
    bn(x, training=True)
    np.testing.assert_allclose(bn.running_mean.value, [[0.2]], rtol=1e-6)
    np.testing.assert_allclose(bn.running_var.value, [[1.3]], rtol=1e-6)  # 1 + 0.1 * (4 - 1)
    bn(x, training=True)
    np.testing.assert_allclose(bn.running_mean.value, [[0.38]], rtol=1e-6)
    np.testing.assert_allclose(bn.running_var.value, [[1.57]], rtol=1e-6)


def test_batchnorm_training_output_uses_batch_statistics():
    bn = nn.BatchNorm0D(1, eps=0.0)
    bn.gamma.assign(jnp.array([[3.0]]))
    bn.beta.assign(jnp.array([[1.0]]))
    y = bn(jnp.array([[0.0], [4.0]]), training=True)  # (x - 2) / 2 * 3 + 1
    np.testing.assert_allclose(y, [[-2.0], [4.0]], rtol=1e-6)


def test_batchnorm_eval_uses_running_statistics_and_does_not_update_them():
    bn = nn.BatchNorm0D(2, eps=0.0)
    bn.running_mean.assign(jnp.array([[1.0, -1.0]]))
    bn.running_var.assign(jnp.array([[4.0, 0.25]]))
    y = bn(jnp.array([[3.0, 0.0]]), training=False)
    np.testing.assert_allclose(y, [[1.0, 2.0]], rtol=1e-6)
    np.testing.assert_array_equal(bn.running_mean.value, [[1.0, -1.0]])
    np.testing.assert_array_equal(bn.running_var.value, [[4.0, 0.25]])


def test_batchnorm2d_normalizes_each_channel_over_batch_and_space():
    bn = nn.BatchNorm2D(3, eps=1e-6)
    x = np.asarray(_randn(8, 4, 3, 5, 5)) * np.array([1.0, 2.0, 5.0])[None, :, None, None]
    y = bn(jnp.asarray(x), training=True)
    mean = x.mean(axis=(0, 2, 3), keepdims=True)
    var = x.var(axis=(0, 2, 3), keepdims=True)
    np.testing.assert_allclose(y, (x - mean) / np.sqrt(var + 1e-6), rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(bn.running_var.value, 1 + 0.001 * (var - 1), rtol=1e-5)


def test_batchnorm1d_statistics_have_shape_1_nin_1():
    bn = nn.BatchNorm1D(4)
    assert bn(jnp.ones((2, 4, 7)), training=True).shape == (2, 4, 7)
    assert bn.running_mean.shape == (1, 4, 1) and bn.redux == (0, 2)


def test_batchnorm_updates_running_stats_inside_jit():
    bn = nn.BatchNorm0D(1, momentum=0.9)
    step = bridge.Jit(lambda x: bn(x, training=True), bn.vars())
    step(jnp.array([[0.0], [4.0]]))
    np.testing.assert_allclose(bn.running_mean.value, [[0.2]], rtol=1e-6)


# ----- Dropout ------------------------------------------------------------------------------

def test_dropout_is_identity_when_not_training():
    x = _randn(9, 10, 10)
    assert nn.Dropout(0.5)(x, training=False) is x


def test_dropout_is_identity_when_keep_is_one():
    x = _randn(10, 10, 10)
    np.testing.assert_array_equal(nn.Dropout(1.0)(x, training=True), x)


def test_dropout_zeroes_or_rescales_and_keeps_expectation():
    drop = nn.Dropout(0.7, generator=bridge.random.Generator(0))
    y = np.asarray(drop(jnp.ones((200, 500)), training=True))
    kept = y[y != 0]
    np.testing.assert_allclose(kept, 1 / 0.7, rtol=1e-6)
    assert abs((y > 0).mean() - 0.7) < 0.01
    assert abs(y.mean() - 1.0) < 0.015


def test_dropout_draws_a_new_mask_each_call():
    drop = nn.Dropout(0.5)
    x = jnp.ones((50, 50))
    assert not np.array_equal(drop(x, training=True), drop(x, training=True))


def test_dropout_keep_argument_overrides_keep_for_one_call():
    drop = nn.Dropout(0.9, generator=bridge.random.Generator(1))
    y = np.asarray(drop(jnp.ones((100, 100)), training=True, dropout_keep=0.5))
    assert abs((y > 0).mean() - 0.5) < 0.03
    np.testing.assert_allclose(y[y > 0], 2.0)


def test_dropout_generator_key_is_among_its_variables():
    gen = bridge.random.Generator(3)
    drop = nn.Dropout(0.5, generator=gen)
    assert drop.keygen is gen
    assert list(drop.vars().keys()) == ["(Dropout).keygen(Generator)._key"]


def test_dropout_masks_are_reproducible_from_the_generator_seed():
    x = jnp.ones((20, 20))
    a = nn.Dropout(0.5, generator=bridge.random.Generator(4))(x, training=True)
    b = nn.Dropout(0.5, generator=bridge.random.Generator(4))(x, training=True)
    np.testing.assert_array_equal(a, b)


def test_dropout_inside_jit_draws_a_new_mask_each_call():
    drop = nn.Dropout(0.5, generator=bridge.random.Generator(5))
    f = bridge.Jit(lambda x: drop(x, training=True), drop.vars())
    x = jnp.ones((50, 50))
    key_before = np.asarray(drop.keygen.key.value)
    a, b = f(x), f(x)
    assert not np.array_equal(a, b)
    assert not np.array_equal(drop.keygen.key.value, key_before)


def test_sequential_of_linear_batchnorm_dropout_trains_inside_jit():
    model = nn.Sequential([nn.Linear(3, 4), nn.BatchNorm0D(4), bridge.functional.relu,
                           nn.Dropout(0.5, generator=bridge.random.Generator(6))])
    f = bridge.Jit(lambda x: model(x, training=True), model.vars())
    y = f(_randn(11, 8, 3))
    assert y.shape == (8, 4)
    assert not np.array_equal(model[1].running_mean.value, np.zeros((1, 4)))


# ----- initializers -------------------------------------------------------------------------

def _std(a):
    return float(np.asarray(a).std())


def test_xavier_normal_std_is_sqrt_2_over_fan_in_plus_fan_out():
    w = init.xavier_normal((400, 600), generator=bridge.random.Generator(0))
    assert w.shape == (400, 600) and w.dtype == jnp.float32
    assert abs(_std(w) / math.sqrt(2 / 1000) - 1) < 0.01
    assert abs(float(w.mean())) < 1e-3


def test_xavier_normal_uses_last_axis_as_fan_out_for_conv_kernels():
    w = init.xavier_normal((3, 3, 64, 128), generator=bridge.random.Generator(1))
    assert abs(_std(w) / math.sqrt(2 / (3 * 3 * 64 + 128)) - 1) < 0.01


def test_xavier_normal_gain_multiplies_std():
    w = init.xavier_normal((400, 600), gain=3.0, generator=bridge.random.Generator(2))
    assert abs(_std(w) / (3 * math.sqrt(2 / 1000)) - 1) < 0.01


def test_xavier_normal_is_not_truncated():
    w = np.asarray(init.xavier_normal((1000, 1000), generator=bridge.random.Generator(3)))
    assert np.abs(w).max() > 3 * math.sqrt(2 / 2000)


def test_xavier_uniform_is_bounded_with_xavier_std():
    w = np.asarray(init.xavier_uniform((400, 600), generator=bridge.random.Generator(4)))
    bound = math.sqrt(6 / 1000)
    assert np.abs(w).max() <= bound and np.abs(w).max() > 0.99 * bound
    assert abs(w.std() / math.sqrt(2 / 1000) - 1) < 0.01


def test_kaiming_normal_std_is_sqrt_1_over_fan_in_of_hwio_kernel():
    w = init.kaiming_normal((3, 3, 64, 256), generator=bridge.random.Generator(5))
    assert abs(_std(w) / math.sqrt(1 / (3 * 3 * 64)) - 1) < 0.01


def test_kaiming_normal_gain_sqrt2_gives_he_relu_std():
    w = init.kaiming_normal((500, 500), gain=math.sqrt(2), generator=bridge.random.Generator(6))
    assert abs(_std(w) / math.sqrt(2 / 500) - 1) < 0.01


def test_kaiming_uniform_is_bounded_by_sqrt_3_over_fan_in():
    w = np.asarray(init.kaiming_uniform((300, 1000), generator=bridge.random.Generator(7)))
    bound = math.sqrt(3 / 300)
    assert np.abs(w).max() <= bound and np.abs(w).max() > 0.99 * bound
    assert abs(w.std() / math.sqrt(1 / 300) - 1) < 0.01


def test_truncated_normal_has_requested_std_and_bounds():
    w = np.asarray(init.truncated_normal((500, 500), stddev=0.5,
                                         generator=bridge.random.Generator(8)))
    truncated_std = 0.87962566103423978  # std of a unit normal truncated to [-2, 2]
    assert abs(w.std() / 0.5 - 1) < 0.01
    assert np.abs(w).max() <= 2 * 0.5 / truncated_std + 1e-6


def test_kaiming_truncated_normal_std_is_kaiming_std():
    w = init.kaiming_truncated_normal((3, 3, 32, 512), generator=bridge.random.Generator(9))
    assert abs(_std(w) * math.sqrt(3 * 3 * 32) - 1) < 0.01


def test_xavier_truncated_normal_std_is_xavier_std():
    w = init.xavier_truncated_normal((400, 600), generator=bridge.random.Generator(10))
    assert abs(_std(w) / math.sqrt(2 / 1000) - 1) < 0.01


def test_gain_helpers_hand_computed():
    assert init.xavier_normal_gain((3, 5)) == pytest.approx(0.5)
    assert init.kaiming_normal_gain((3, 3, 4, 8)) == pytest.approx(1 / 6)
    assert init.gain_leaky_relu(0.0) == pytest.approx(math.sqrt(2))
    assert init.gain_leaky_relu(1.0) == pytest.approx(1.0)


def test_orthogonal_columns_are_orthonormal_times_gain():
    w = np.asarray(init.orthogonal((64, 32), gain=2.0, generator=bridge.random.Generator(11)),
                   dtype=np.float64)
    np.testing.assert_allclose(w.T @ w, 4 * np.eye(32), atol=1e-4)


def test_identity_is_gain_times_rectangular_eye():
    np.testing.assert_array_equal(init.identity((2, 3), gain=2.0), [[2, 0, 0], [0, 2, 0]])


def test_initializers_draw_keys_from_the_default_generator():
    bridge.random.DEFAULT_GENERATOR.seed(123)
    a = init.xavier_normal((4, 4))
    b = init.xavier_normal((4, 4))
    bridge.random.DEFAULT_GENERATOR.seed(123)
    np.testing.assert_array_equal(init.xavier_normal((4, 4)), a)
    assert not np.array_equal(a, b)


def test_default_layer_initializers_are_xavier_for_linear_and_kaiming_for_conv():
    bridge.random.DEFAULT_GENERATOR.seed(7)
    linear = nn.Linear(400, 600)
    conv = nn.Conv2D(64, 256, 3)
    assert abs(_std(linear.w) / math.sqrt(2 / 1000) - 1) < 0.01
    assert abs(_std(conv.w) * math.sqrt(3 * 3 * 64) - 1) < 0.01


def test_w_init_partial_with_gain_is_accepted_by_layers():
    layer = nn.Linear(400, 600, w_init=functools.partial(init.kaiming_normal, gain=2.0))
    assert abs(_std(layer.w) / (2 / math.sqrt(400)) - 1) < 0.01


def test_truncated_normal_asymmetric_bounds_keep_std_and_range():
    w = np.asarray(init.truncated_normal((500, 500), lower=-1, upper=3, stddev=2.0,
                                         generator=bridge.random.Generator(12)))
    truncated_std = 0.7849469634044259  # std of a unit normal truncated to [-1, 3]
    scale = 2.0 / truncated_std
    assert abs(w.std() / 2.0 - 1) < 0.01
    assert w.min() >= -1 * scale - 1e-5 and w.max() <= 3 * scale + 1e-5
