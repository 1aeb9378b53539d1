"""port() layer by layer: every common layer crosses Haiku, Linen and NNX with its outputs.

Each test builds the layer natively in two libraries, ports the weights of one into the
other (with ``like=`` the target's own init, as a user does), and compares the outputs of
the two native models; then ports back and checks the names and arrays are the original's.
"""

import flax.linen as nn
import haiku as hk
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from bridge.interop import port

KEY = jax.random.PRNGKey(0)


def flat(tree):
    return {jax.tree_util.keystr(p): v for p, v in jax.tree_util.tree_leaves_with_path(tree)}


def assert_same_tree(a, b):
    fa, fb = flat(a), flat(b)
    assert fa.keys() == fb.keys(), sorted(set(fa) ^ set(fb))
    for k in fa:
        assert np.shape(fa[k]) == np.shape(fb[k]) and np.asarray(fa[k]).dtype == \
            np.asarray(fb[k]).dtype, k
        np.testing.assert_array_equal(np.asarray(fa[k]), np.asarray(fb[k]), err_msg=k)


def jitter(tree, scale=0.1):
    """Non-trivial weights (zero biases would hide a misplaced bias)."""
    leaves, treedef = jax.tree_util.tree_flatten(tree)
    keys = jax.random.split(jax.random.PRNGKey(42), len(leaves))
    return treedef.unflatten([a + scale * jax.random.normal(k, a.shape, a.dtype)
                              for a, k in zip(leaves, keys)])


def haiku_model(fn):
    return hk.without_apply_rng(hk.transform(fn))


def linen_model(make):
    class M(nn.Module):
        @nn.compact
        def __call__(self, x):
            return make()(x)
    return M()


LAYERS = {
    # name: (haiku layer, linen layer, input shape)
    "conv1d": (lambda: hk.Conv1D(5, 3), lambda: nn.Conv(5, (3,)), (2, 7, 4)),
    "conv2d": (lambda: hk.Conv2D(5, 3), lambda: nn.Conv(5, (3, 3)), (2, 6, 6, 4)),
    "conv3d": (lambda: hk.Conv3D(5, 3), lambda: nn.Conv(5, (3, 3, 3)), (2, 4, 4, 4, 3)),
    "conv2d_transpose": (lambda: hk.Conv2DTranspose(5, 3, stride=2),
                         lambda: nn.ConvTranspose(5, (3, 3), strides=(2, 2)), (2, 5, 5, 4)),
    # Linen has no depthwise class (a grouped nn.Conv is one), so no automatic name to
    # translate: the Linen layer takes Haiku's name
    "depthwise": (lambda: hk.DepthwiseConv2D(2, 3),
                  lambda: nn.Conv(8, (3, 3), feature_group_count=4, name="depthwise_conv2_d"),
                  (2, 6, 6, 4)),
    "layer_norm": (lambda: hk.LayerNorm(-1, True, True, eps=1e-6),
                   lambda: nn.LayerNorm(), (2, 5, 8)),
    "group_norm": (lambda: hk.GroupNorm(2, eps=1e-6), lambda: nn.GroupNorm(2, epsilon=1e-6),
                   (2, 6, 6, 4)),
    "rms_norm": (lambda: hk.RMSNorm(-1, eps=1e-6), lambda: nn.RMSNorm(), (2, 5, 8)),
    "instance_norm": (lambda: hk.InstanceNorm(True, True, eps=1e-6),
                      lambda: nn.InstanceNorm(epsilon=1e-6), (2, 6, 6, 4)),
    "embed": (lambda: hk.Embed(11, 6), lambda: nn.Embed(11, 6), (2, 5)),
    "dense": (lambda: hk.Linear(3), lambda: nn.Dense(3), (2, 8)),
}


def inputs(shape):
    if len(shape) == 2 and shape == (2, 5):
        return jax.random.randint(KEY, shape, 0, 11)
    return jax.random.normal(KEY, shape)


@pytest.mark.parametrize("layer", sorted(LAYERS))
def test_haiku_layer_runs_in_linen_with_the_same_outputs_and_ports_back(layer):
    hk_layer, linen_layer, shape = LAYERS[layer]
    x = inputs(shape)
    ht, lm = haiku_model(lambda x: hk_layer()(x)), linen_model(linen_layer)
    params = jitter(ht.init(KEY, x))
    variables = port(params, "haiku", "linen", like=lm.init(KEY, x))
    np.testing.assert_allclose(lm.apply(variables, x), ht.apply(params, x), atol=1e-5)
    back, _ = port(variables, "linen", "haiku")
    assert_same_tree(back, params)


@pytest.mark.parametrize("layer", sorted(LAYERS))
def test_linen_layer_crosses_nnx_and_haiku_and_comes_back_unchanged(layer):
    hk_layer, linen_layer, shape = LAYERS[layer]
    x = inputs(shape)
    lm = linen_model(linen_layer)
    variables = jitter(lm.init(KEY, x))
    assert_same_tree(port(port(variables, "linen", "nnx"), "nnx", "linen"), variables)
    params, state = port(variables, "linen", "haiku")
    ht = haiku_model(lambda x: hk_layer()(x))
    np.testing.assert_allclose(ht.apply(params, x), lm.apply(variables, x), atol=1e-5)
    assert_same_tree(port((params, state), "haiku", "linen"), variables)


def test_automatic_names_translate_and_other_names_stay_as_written():
    def f(x):
        x = hk.Linear(4)(x)                       # automatic: linear <-> Dense_0
        x = hk.Linear(4)(x)                       # linear_1 <-> Dense_1
        x = hk.Linear(4, name="block_group_0")(x)  # a number in an explicit name
        x = hk.Linear(4, name="conv_0")(x)        # looks like nothing automatic
        x = hk.Linear(4, name="dense_0")(x)
        return hk.Linear(4, name="fc1")(x)

    params = haiku_model(f).init(KEY, jnp.ones((1, 4)))
    variables = port(params, "haiku", "linen")
    assert sorted(variables["params"]) == ["Dense_0", "Dense_1", "block_group_0", "conv_0",
                                           "dense_0", "fc1"]
    assert_same_tree(port(variables, "linen", "haiku")[0], params)


def test_names_that_look_automatic_in_the_other_library_are_swapped_losslessly():
    # a Haiku module explicitly named like a Linen automatic name, and a Linen module
    # explicitly named like a Haiku automatic name
    def f(x):
        return hk.Linear(3, name="Dense_0")(hk.Linear(3)(x))

    params = haiku_model(f).init(KEY, jnp.ones((1, 3)))
    variables = port(params, "haiku", "linen")
    assert sorted(variables["params"]) == ["Dense_0", "linear"]
    assert_same_tree(port(variables, "linen", "haiku")[0], params)

    class Named(nn.Module):
        @nn.compact
        def __call__(self, x):
            return nn.Dense(3, name="linear")(nn.Dense(3)(x))

    lv = Named().init(KEY, jnp.ones((1, 3)))
    assert_same_tree(port(port(lv, "linen", "haiku"), "haiku", "linen"), lv)


def test_batch_norm_is_recognised_by_its_state_whatever_its_name():
    f = hk.transform_with_state(
        lambda x, t: hk.BatchNorm(True, True, 0.9, name="batchnorm_0")(x, t))
    params, state = f.init(KEY, jnp.ones((2, 3, 3, 4)), True)
    variables = port((params, state), "haiku", "linen")
    assert set(variables["batch_stats"]["batchnorm_0"]) == {"mean", "var"}
    assert set(variables["params"]["batchnorm_0"]) == {"scale", "bias"}
    p2, s2 = port(variables, "linen", "haiku")
    assert_same_tree(p2, params)
    assert sorted(s2) == sorted(state)


def test_linen_leaf_with_a_slash_in_its_name_stays_one_leaf():
    class Slash(nn.Module):
        @nn.compact
        def __call__(self, x):
            return x * self.param("a/b", nn.initializers.ones, (3,))

    variables = Slash().init(KEY, jnp.ones(3))
    for scheme in ("haiku", "nnx"):
        back = port(port(variables, "linen", scheme), scheme, "linen")
        assert_same_tree(back, variables)
        assert list(back["params"]) == ["a/b"]


def test_haiku_attention_becomes_linen_attention_with_heads_from_like():
    x = jax.random.normal(KEY, (2, 5, 8))
    ht = haiku_model(lambda x: hk.MultiHeadAttention(
        2, 4, w_init=hk.initializers.VarianceScaling())(x, x, x))
    params = jitter(ht.init(KEY, x))
    lm = linen_model(lambda: nn.MultiHeadDotProductAttention(2, qkv_features=8,
                                                             out_features=8))
    with pytest.raises(ValueError, match="number of attention heads"):
        port(params, "haiku", "linen")
    variables = port(params, "haiku", "linen", like=lm.init(KEY, x))
    assert variables["params"]["MultiHeadDotProductAttention_0"]["query"]["kernel"].shape == \
        (8, 2, 4)
    np.testing.assert_allclose(lm.apply(variables, x), ht.apply(params, x), atol=1e-6)
    assert_same_tree(port(variables, "linen", "haiku")[0], params)


def test_haiku_lstm_becomes_a_linen_lstm_cell_with_the_same_outputs():
    x = jax.random.normal(KEY, (2, 5, 3))

    def f(x):
        core = hk.LSTM(7)
        out, _ = hk.dynamic_unroll(core, x, core.initial_state(2), time_major=False)
        return hk.Linear(2)(out[:, -1])

    class Classifier(nn.Module):
        @nn.compact
        def __call__(self, x):
            return nn.Dense(2)(nn.RNN(nn.LSTMCell(7))(x)[:, -1])

    ht = haiku_model(f)
    params = jitter(ht.init(KEY, x))
    variables = port(params, "haiku", "linen", like=Classifier().init(KEY, x))
    assert sorted(variables["params"]["LSTMCell_0"]) == ["hf", "hg", "hi", "ho", "if", "ig",
                                                         "ii", "io"]
    np.testing.assert_allclose(Classifier().apply(variables, x), ht.apply(params, x),
                               atol=1e-6)
    back = port(variables, "linen", "haiku")[0]
    # Linen's forget bias carries Haiku's built-in +1, so coming back it is b + 1 - 1:
    # equal up to the float32 rounding of b + 1; every other array is bit for bit the same
    np.testing.assert_allclose(back["lstm/linear"].pop("b"), params["lstm/linear"]["b"],
                               atol=1.2e-7, rtol=0)
    assert_same_tree(back, {**params, "lstm/linear": {"w": params["lstm/linear"]["w"]}})
    state = port(variables, "linen", "nnx")
    assert "if_" in state["LSTMCell_0"]          # nnx.LSTMCell's name for the gate
    assert_same_tree(port(state, "nnx", "linen"), variables)


def test_linen_to_nnx_gives_variables_of_the_right_types():
    class CNN(nn.Module):
        @nn.compact
        def __call__(self, x):
            return nn.BatchNorm(use_running_average=True)(nn.Conv(4, (3, 3))(x))

    variables = CNN().init(KEY, jnp.ones((1, 5, 5, 3)))
    state = port(variables, "linen", "nnx")
    assert isinstance(state["Conv_0"]["kernel"], nnx.Param)
    assert isinstance(state["BatchNorm_0"]["mean"], nnx.BatchStat)
    assert state["Conv_0"]["kernel"].get_value() is variables["params"]["Conv_0"]["kernel"]


def test_nnx_list_items_match_linen_list_names_through_like():
    class Stack(nnx.Module):
        def __init__(self, rngs):
            self.layers = nnx.List([nnx.Linear(3, 3, rngs=rngs) for _ in range(2)])

        def __call__(self, x):
            for layer in self.layers:
                x = layer(x)
            return x

    class LinenStack(nn.Module):
        def setup(self):
            self.layers = [nn.Dense(3) for _ in range(2)]

        def __call__(self, x):
            for layer in self.layers:
                x = layer(x)
            return x

    x = jnp.ones((1, 3))
    model = Stack(nnx.Rngs(0))
    like = LinenStack().init(KEY, x)
    variables = port(nnx.state(model), "nnx", "linen", like=like)
    assert sorted(variables["params"]) == ["layers_0", "layers_1"]
    np.testing.assert_allclose(LinenStack().apply(variables, x), model(x), atol=1e-6)


def test_an_entry_that_does_not_fit_like_is_listed_with_the_rest():
    params = haiku_model(lambda x: hk.Linear(3)(x)).init(KEY, jnp.ones((1, 4)))
    like = linen_model(lambda: nn.Dense(5)).init(KEY, jnp.ones((1, 4)))
    with pytest.raises(ValueError, match=r"(?s)mismatched: params/Dense_0/kernel .*expected "
                                         r"shape \(4, 5\), got \(4, 3\).*mismatched: "
                                         r"params/Dense_0/bias"):
        port(params, "haiku", "linen", like=like)


def test_jitted_linen_model_runs_on_ported_haiku_weights():
    x = jax.random.normal(KEY, (2, 6, 6, 4))
    ht = haiku_model(lambda x: hk.Conv2D(5, 3)(x))
    params = jitter(ht.init(KEY, x))
    lm = linen_model(lambda: nn.Conv(5, (3, 3)))
    variables = port(params, "haiku", "linen", like=lm.init(KEY, x))
    grads = jax.jit(jax.grad(lambda v: lm.apply(v, x).sum()))(variables)
    ref = jax.jit(jax.grad(lambda p: ht.apply(p, x).sum()))(params)
    np.testing.assert_allclose(grads["params"]["Conv_0"]["kernel"], ref["conv2_d"]["w"],
                               rtol=1e-5, atol=1e-5)


def test_dense_general_and_nnx_linear_general_keep_their_layout_everywhere():
    class General(nn.Module):
        @nn.compact
        def __call__(self, x):
            return nn.DenseGeneral((2, 4))(x)

    x = jax.random.normal(KEY, (3, 8))
    variables = jitter(General().init(KEY, x))
    assert_same_tree(port(port(variables, "linen", "haiku"), "haiku", "linen"), variables)
    state = port(variables, "linen", "nnx")
    assert state["DenseGeneral_0"]["kernel"].get_value().shape == (8, 2, 4)
    layer = nnx.LinearGeneral(8, (2, 4), rngs=nnx.Rngs(0))
    nnx.update(layer, port({"params": variables["params"]["DenseGeneral_0"]}, "linen", "nnx"))
    np.testing.assert_allclose(layer(x), General().apply(variables, x), atol=1e-6)
