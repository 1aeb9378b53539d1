"""Porting checkpoints between Haiku, Linen and bridge.nn: same architecture, same outputs."""

import flax.linen as nn
import haiku as hk
import jax
import jax.numpy as jnp
import numpy as np
import pytest

import bridge
from bridge.flax import load_linen_variables, to_linen_variables
from bridge.haiku import load_haiku_params, to_haiku_params
from bridge.interop import HAIKU_EMA_COUNTER, Rule, port
from bridge.nn import BatchNorm2D, Conv2D, Linear, Sequential

X = jax.random.normal(jax.random.PRNGKey(0), (5, 3))
IMAGES = jax.random.normal(jax.random.PRNGKey(1), (4, 6, 6, 3))


# ----- the MLP: hk.nets.MLP([16, 8, 4]) / Linen compact Dense_0.. / bridge Sequential ------
hk_mlp = hk.without_apply_rng(hk.transform(lambda x: hk.nets.MLP([16, 8, 4])(x)))


class LinenMLP(nn.Module):
    @nn.compact
    def __call__(self, x):
        for i, width in enumerate([16, 8, 4]):
            x = nn.Dense(width)(x)
            if i < 2:
                x = nn.relu(x)
        return x


def bridge_mlp():
    relu = bridge.functional.relu
    return Sequential([Linear(3, 16), relu, Linear(16, 8), relu, Linear(8, 4)])


def test_haiku_mlp_checkpoint_runs_in_linen_and_bridge_with_the_same_outputs():
    params = hk_mlp.init(jax.random.PRNGKey(2), X)
    reference = hk_mlp.apply(params, X)
    variables = port(params, "haiku", "linen", rules="mlp")
    np.testing.assert_allclose(LinenMLP().apply(variables, X), reference, atol=1e-6)
    model = bridge_mlp()
    load_linen_variables(model.vars(), variables)
    np.testing.assert_allclose(model(X), reference, atol=1e-6)
    model2 = bridge_mlp()
    load_haiku_params(model2.vars(), params)
    np.testing.assert_allclose(model2(X), reference, atol=1e-6)


def test_linen_mlp_checkpoint_runs_in_haiku_with_the_same_outputs():
    variables = LinenMLP().init(jax.random.PRNGKey(3), X)
    like = hk_mlp.init(jax.random.PRNGKey(0), X)
    params, state = port(variables, "linen", "haiku", like=like)
    assert state == {} and sorted(params) == sorted(like)
    np.testing.assert_allclose(hk_mlp.apply(params, X), LinenMLP().apply(variables, X), atol=1e-6)
    params2, _ = port(variables, "linen", "haiku", rules="mlp")
    assert sorted(params2) == ["mlp/~/linear_0", "mlp/~/linear_1", "mlp/~/linear_2"]


def test_bridge_mlp_runs_in_haiku_and_linen_with_the_same_outputs():
    model = bridge_mlp()
    params, _ = to_haiku_params(model.vars(), rules="mlp")
    np.testing.assert_allclose(hk_mlp.apply(params, X), model(X), atol=1e-6)
    variables = to_linen_variables(model.vars(), rules="compact")
    np.testing.assert_allclose(LinenMLP().apply(variables, X), model(X), atol=1e-6)


# ----- the CNN: hk.Conv2D + hk.BatchNorm / nn.Conv + nn.BatchNorm / bridge (NCHW) ----------
def hk_cnn_fn(x, is_training=False):
    x = hk.Conv2D(4, 3)(x)
    x = hk.BatchNorm(True, True, 0.9)(x, is_training)
    x = jax.nn.relu(x)
    return hk.Conv2D(2, 3)(x)


hk_cnn = hk.transform_with_state(hk_cnn_fn)


class LinenCNN(nn.Module):
    train: bool = False

    @nn.compact
    def __call__(self, x):
        x = nn.Conv(4, (3, 3))(x)
        x = nn.BatchNorm(use_running_average=not self.train, momentum=0.9, epsilon=1e-5)(x)
        x = nn.relu(x)
        return nn.Conv(2, (3, 3))(x)


def bridge_cnn():
    return Sequential([Conv2D(3, 4, 3), BatchNorm2D(4, momentum=0.9, eps=1e-5),
                       bridge.functional.relu, Conv2D(4, 2, 3)])


def trained_haiku_cnn():
    params, state = hk_cnn.init(jax.random.PRNGKey(4), IMAGES, True)
    params = jax.tree_util.tree_map(
        lambda a: a + 0.1 * jax.random.normal(jax.random.PRNGKey(5), a.shape), params)
    for i in range(3):
        _, state = hk_cnn.apply(params, state, None, IMAGES * (i + 2) + 1, True)
    return params, state


def test_haiku_cnn_checkpoint_runs_in_linen_and_bridge_with_the_same_outputs():
    params, state = trained_haiku_cnn()
    reference, _ = hk_cnn.apply(params, state, None, IMAGES, False)
    variables = port((params, state), "haiku", "linen")
    assert variables["batch_stats"]["BatchNorm_0"]["mean"].shape == (4,)
    np.testing.assert_allclose(LinenCNN().apply(variables, IMAGES), reference, atol=1e-5)
    model = bridge_cnn()
    load_linen_variables(model.vars(), variables)
    out = model(IMAGES.transpose(0, 3, 1, 2), training=False).transpose(0, 2, 3, 1)
    np.testing.assert_allclose(out, reference, atol=1e-5)


def test_linen_cnn_checkpoint_runs_in_haiku_with_the_same_outputs():
    variables = LinenCNN().init(jax.random.PRNGKey(6), IMAGES)
    variables = jax.tree_util.tree_map(
        lambda a: a + jax.random.uniform(jax.random.PRNGKey(7), a.shape), variables)
    params, state = port(variables, "linen", "haiku")
    out, _ = hk_cnn.apply(params, state, None, IMAGES, False)
    np.testing.assert_allclose(out, LinenCNN().apply(variables, IMAGES), atol=1e-5)


def test_ported_haiku_state_continues_training_like_linen():
    variables = LinenCNN().init(jax.random.PRNGKey(6), IMAGES)
    variables = jax.tree_util.tree_map(
        lambda a: a + jax.random.uniform(jax.random.PRNGKey(7), a.shape), variables)
    params, state = port(variables, "linen", "haiku")
    _, new_state = hk_cnn.apply(params, state, None, IMAGES, True)
    _, updates = LinenCNN(train=True).apply(variables, IMAGES, mutable=["batch_stats"])
    np.testing.assert_allclose(new_state["batch_norm/~/mean_ema"]["average"].ravel(),
                               updates["batch_stats"]["BatchNorm_0"]["mean"], atol=1e-6)
    np.testing.assert_allclose(new_state["batch_norm/~/var_ema"]["average"].ravel(),
                               updates["batch_stats"]["BatchNorm_0"]["var"], atol=1e-5)


def leaves_equal(a, b):
    la, lb = jax.tree_util.tree_leaves_with_path(a), jax.tree_util.tree_leaves_with_path(b)
    assert [p for p, _ in la] == [p for p, _ in lb]
    for (path, x), (_, y) in zip(la, lb):
        assert x.dtype == y.dtype and x.shape == y.shape, path
        np.testing.assert_array_equal(np.asarray(x), np.asarray(y), err_msg=str(path))


def test_haiku_linen_haiku_round_trip_is_exact():
    params, state = trained_haiku_cnn()
    p2, s2 = port(port((params, state), "haiku", "linen"), "linen", "haiku")
    leaves_equal(p2, params)
    for ema in ("batch_norm/~/mean_ema", "batch_norm/~/var_ema"):
        # the debiased average is kept bit for bit; hidden and counter are re-derived from it
        leaves_equal(s2[ema]["average"], state[ema]["average"])
        assert s2[ema]["hidden"] is s2[ema]["average"]
        assert int(s2[ema]["counter"]) == HAIKU_EMA_COUNTER
    p3, s3 = port(port((p2, s2), "haiku", "linen"), "linen", "haiku")
    leaves_equal((p3, s3), (p2, s2))  # from then on the whole tree is a fixed point


@pytest.mark.parametrize("dtype", [jnp.float32, jnp.bfloat16, jnp.float16, jnp.int32, jnp.bool_,
                                   jnp.complex64])
def test_haiku_linen_haiku_round_trip_is_exact_for_every_dtype(dtype):
    params = {"linear": {"w": (jnp.arange(6).reshape(2, 3) % 3).astype(dtype),
                         "b": (jnp.arange(3) % 2).astype(dtype)},
              "batch_norm": {"scale": (jnp.arange(3) % 2).reshape(1, 3).astype(dtype)}}
    back, _ = port(port((params, {}), "haiku", "linen"), "linen", "haiku", like=(params, {}))
    leaves_equal(back, params)


def test_object_haiku_object_through_linen_keeps_the_outputs():
    model = bridge_cnn()
    for v in model.vars():
        v.assign(v.value + jax.random.uniform(jax.random.PRNGKey(8), v.shape))
    params, state = to_haiku_params(model.vars())
    variables = port((params, state), "haiku", "linen")
    other = bridge_cnn()
    load_linen_variables(other.vars(), variables)
    for a, b in zip(model.vars().tensors(), other.vars().tensors()):
        np.testing.assert_array_equal(a, b)


def test_user_rule_ports_a_named_haiku_module():
    def f(x):
        x = jax.nn.relu(hk.Linear(8)(x))
        return hk.Linear(2, name="head")(x)

    t = hk.without_apply_rng(hk.transform(f))
    params = t.init(jax.random.PRNGKey(9), X)

    class Linen(nn.Module):
        @nn.compact
        def __call__(self, x):
            x = nn.relu(nn.Dense(8)(x))
            return nn.Dense(2)(x)

    rules = [Rule("params/head/w", "params/Dense_1/kernel"),
             Rule("params/head/b", "params/Dense_1/bias")]
    like = Linen().init(jax.random.PRNGKey(0), X)
    with pytest.raises(ValueError, match=r"(?s)missing: params/Dense_1/kernel.*unexpected: "
                                         r"params/head/kernel \(from params/head/w\)"):
        port(params, "haiku", "linen", like=like)
    variables = port(params, "haiku", "linen", rules=rules, like=like)
    np.testing.assert_allclose(Linen().apply(variables, X), t.apply(params, X), atol=1e-6)


def test_unmatched_name_shows_the_nearest_candidates():
    params = hk_mlp.init(jax.random.PRNGKey(2), X)
    like = jax.tree_util.tree_map(lambda a: a, port(params, "haiku", "linen", rules="mlp"))
    like["params"]["Dense_2"]["kernal"] = like["params"]["Dense_2"].pop("kernel")
    with pytest.raises(ValueError) as info:
        port(params, "haiku", "linen", like=like)
    msg = str(info.value)
    assert "missing: params/Dense_2/kernal; nearest: 'params/Dense_2/kernel'" in msg
    assert "unexpected: params/Dense_2/kernel (from params/mlp/~/linear_2/w); nearest: " \
           "'params/Dense_2/kernal'" in msg
