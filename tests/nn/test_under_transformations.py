"""Every bridge.nn layer under ``jax.jit(jax.grad(...))`` and inside
``bridge.Jit(bridge.GradValues(...))`` gives the outputs, gradients and state updates of the
same layer written in plain JAX (``lax.conv_general_dilated``, ``lax.reduce_window``, ...),
and a small CNN trains to the same numbers as its plain-JAX twin.
"""

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from jax import lax

import bridge
import bridge.functional as F
from bridge import nn

NCHW = ("NCHW", "HWIO", "NCHW")


def _normal(seed, *shape):
    return jax.random.normal(jax.random.PRNGKey(seed), shape)


# ----- plain-JAX layers: reference(params, x) -> (output, new state) -------------------------
# ``params`` maps the layer's variable names to values.

def _linear(p, x, name="(Linear)"):
    return x @ p[f"{name}.w"] + p[f"{name}.b"]


def _conv(p, x, strides, padding, dilation=(1, 1), groups=1, name="(Conv2D)"):
    y = lax.conv_general_dilated(x, p[f"{name}.w"], strides, padding, rhs_dilation=dilation,
                                 feature_group_count=groups, dimension_numbers=NCHW)
    return y + p[f"{name}.b"]


def _conv_transpose(p, x):
    # The input gradient of the convolution that ConvTranspose2D(4, 3, 3, strides=2) undoes.
    w = p["(ConvTranspose2D).w"]
    shape = (x.shape[0], w.shape[2], 2 * x.shape[2], 2 * x.shape[3])
    conv = lambda z: lax.conv_general_dilated(z, w, (2, 2), "SAME",  # noqa: E731
                                              dimension_numbers=NCHW)
    return jax.vjp(conv, jnp.zeros(shape))[1](x)[0] + p["(ConvTranspose2D).b"]


def _batch_norm_train(p, x, name, axes, momentum=0.999, eps=1e-6):
    mean = x.mean(axes, keepdims=True)
    var = ((x - mean) ** 2).mean(axes, keepdims=True)
    y = p[f"{name}.gamma"] * (x - mean) / jnp.sqrt(var + eps) + p[f"{name}.beta"]
    rm, rv = p[f"{name}.running_mean"], p[f"{name}.running_var"]
    return y, {f"{name}.running_mean": momentum * rm + (1 - momentum) * mean,
               f"{name}.running_var": momentum * rv + (1 - momentum) * var}


def _batch_norm_eval(p, x, name, eps=1e-6):
    mean, var = p[f"{name}.running_mean"], p[f"{name}.running_var"]
    return p[f"{name}.gamma"] * (x - mean) / jnp.sqrt(var + eps) + p[f"{name}.beta"]


def _group_norm(p, x, name, groups, eps=1e-5):
    g = x.reshape(x.shape[0], groups, -1)
    g = (g - g.mean(-1, keepdims=True)) / jnp.sqrt(g.var(-1, keepdims=True) + eps)
    return g.reshape(x.shape) * p[f"{name}.gamma"] + p[f"{name}.beta"]


def _cnn(p, x):
    h = jax.nn.relu(_conv(p, x, (1, 1), "SAME", name="(Sequential)[0](Conv2D)"))
    h = lax.reduce_window(h, -jnp.inf, lax.max, (1, 1, 2, 2), (1, 1, 2, 2), "VALID")
    return _linear(p, h.reshape(h.shape[0], -1), name="(Sequential)[4](Linear)")


def _stateless(reference):
    return lambda p, x: (reference(p, x), {})


def _with_random_state(layer):
    """Give batch-norm running statistics non-trivial values (eval mode uses them)."""
    for i, v in enumerate(layer.vars().subset(is_a=bridge.StateVar).values()):
        v.assign(jnp.abs(_normal(100 + i, *v.value.shape)) + 0.5)
    return layer


# name: (build the layer, input, call kwargs, plain-JAX reference)
CASES = {
    "Linear": (lambda: nn.Linear(6, 3), _normal(1, 4, 6), {}, _stateless(_linear)),
    "Conv2D": (lambda: nn.Conv2D(4, 6, 3, strides=2, groups=2, padding=1),
               _normal(2, 2, 4, 7, 7), {},
               _stateless(lambda p, x: _conv(p, x, (2, 2), ((1, 1), (1, 1)), groups=2))),
    "Conv2D-dilated": (lambda: nn.Conv2D(3, 4, (3, 2), dilations=2), _normal(3, 2, 3, 8, 8), {},
                       _stateless(lambda p, x: _conv(p, x, (1, 1), "SAME", (2, 2)))),
    "ConvTranspose2D": (lambda: nn.ConvTranspose2D(4, 3, 3, strides=2), _normal(4, 2, 4, 5, 5),
                        {}, _stateless(_conv_transpose)),
    "BatchNorm-train": (lambda: nn.BatchNorm((1, 3, 1), (0, 2)), _normal(5, 6, 3, 4),
                        {"training": True},
                        lambda p, x: _batch_norm_train(p, x, "(BatchNorm)", (0, 2))),
    "BatchNorm0D-train": (lambda: nn.BatchNorm0D(5, momentum=0.9), _normal(6, 8, 5),
                          {"training": True},
                          lambda p, x: _batch_norm_train(p, x, "(BatchNorm0D)", (0,), 0.9)),
    "BatchNorm1D-eval": (lambda: _with_random_state(nn.BatchNorm1D(3)), _normal(7, 4, 3, 5),
                         {"training": False},
                         _stateless(lambda p, x: _batch_norm_eval(p, x, "(BatchNorm1D)"))),
    "BatchNorm2D-train": (lambda: nn.BatchNorm2D(3), _normal(8, 4, 3, 5, 5), {"training": True},
                          lambda p, x: _batch_norm_train(p, x, "(BatchNorm2D)", (0, 2, 3))),
    "GroupNorm": (lambda: nn.GroupNorm(6, rank=3, groups=3), _normal(9, 4, 6, 5), {},
                  _stateless(lambda p, x: _group_norm(p, x, "(GroupNorm)", 3))),
    "GroupNorm0D": (lambda: nn.GroupNorm0D(8, groups=2), _normal(10, 4, 8), {},
                    _stateless(lambda p, x: _group_norm(p, x, "(GroupNorm0D)", 2))),
    "GroupNorm1D": (lambda: nn.GroupNorm1D(4, groups=2), _normal(11, 4, 4, 6),
                    {"training": True},
                    _stateless(lambda p, x: _group_norm(p, x, "(GroupNorm1D)", 2))),
    "GroupNorm2D": (lambda: nn.GroupNorm2D(6, groups=3), _normal(12, 2, 6, 4, 4), {},
                    _stateless(lambda p, x: _group_norm(p, x, "(GroupNorm2D)", 3))),
    "MovingAverage": (lambda: nn.MovingAverage((2, 3), buffer_size=3, init_value=0.5),
                      _normal(13, 2, 3), {},
                      lambda p, x: (
                          jnp.concatenate([p["(MovingAverage).buffer"][1:], x[None]]).mean(0),
                          {"(MovingAverage).buffer":
                           jnp.concatenate([p["(MovingAverage).buffer"][1:], x[None]])})),
    "ExponentialMovingAverage": (
        lambda: nn.ExponentialMovingAverage((2, 3), momentum=0.8, init_value=0.5),
        _normal(14, 2, 3), {},
        lambda p, x: (0.8 * p["(ExponentialMovingAverage).avg"] + 0.2 * x,
                      {"(ExponentialMovingAverage).avg":
                       0.8 * p["(ExponentialMovingAverage).avg"] + 0.2 * x})),
    "Sequential": (lambda: nn.Sequential([nn.Conv2D(2, 4, 3), F.relu, F.max_pool_2d,
                                          F.flatten, nn.Linear(4 * 3 * 3, 5)]),
                   _normal(15, 3, 2, 6, 6), {}, _stateless(_cnn)),
}
# Dropout is random: it has its own tests below, against its mask.
NOT_COVERED_HERE = {"Dropout"}


def test_every_layer_has_a_case():
    covered = {name.split("-")[0] for name in CASES} | NOT_COVERED_HERE
    public = {name for name in nn.__all__
              if isinstance(getattr(nn, name), type) and issubclass(getattr(nn, name),
                                                                   bridge.Module)}
    # SyncedBatchNorm* need a Parallel; their own tests run them under it.
    assert public - {n for n in public if n.startswith("Synced")} == covered


def _setup(name):
    build, x, kwargs, reference = CASES[name]
    layer = build()
    vc = layer.vars()
    params = {k: v.value for k, v in vc.items()}
    output, _ = reference(params, x)
    weights = _normal(99, *output.shape)

    def reference_loss(params, x):
        output, state = reference(params, x)
        return jnp.sum(output * weights), (output, state)

    return layer, vc, x, kwargs, weights, params, reference_loss


def _assert_state(vc, expected_state, new_values):
    names = list(vc.keys())
    for key, value in expected_state.items():
        np.testing.assert_allclose(new_values[names.index(key)], value, rtol=1e-5, atol=1e-6,
                                   err_msg=key)


@pytest.mark.parametrize("name", sorted(CASES))
def test_layer_functionalized_under_jax_jit_grad_matches_plain_jax(name):
    layer, vc, x, kwargs, weights, params, reference_loss = _setup(name)
    apply = bridge.pure.functionalize(layer, vc)

    def loss(values, x):
        output, new_values = apply(values, x, **kwargs)
        return jnp.sum(output * weights), (output, new_values)

    (grad_values, grad_x), (output, new_values) = jax.jit(
        jax.grad(loss, argnums=(0, 1), has_aux=True))(vc.tensors(), x)
    (grad_params, grad_x_ref), (output_ref, state_ref) = jax.jit(
        jax.grad(reference_loss, argnums=(0, 1), has_aux=True))(params, x)

    np.testing.assert_allclose(output, output_ref, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(grad_x, grad_x_ref, rtol=1e-5, atol=1e-6)
    for key, grad in zip(vc.keys(), grad_values):
        np.testing.assert_allclose(grad, grad_params[key], rtol=1e-5, atol=1e-6, err_msg=key)
    _assert_state(vc, state_ref, new_values)


@pytest.mark.parametrize("name", sorted(CASES))
def test_layer_inside_bridge_jit_gradvalues_matches_plain_jax(name):
    layer, vc, x, kwargs, weights, params, reference_loss = _setup(name)
    step = bridge.Jit(bridge.GradValues(lambda x: jnp.sum(layer(x, **kwargs) * weights), vc,
                                        input_argnums=(0,)))
    grads, (value,) = step(x)
    (grad_params, grad_x_ref), (output_ref, state_ref) = jax.jit(
        jax.grad(reference_loss, argnums=(0, 1), has_aux=True))(params, x)

    np.testing.assert_allclose(value, jnp.sum(output_ref * weights), rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(grads[0], grad_x_ref, rtol=1e-5, atol=1e-6)
    train_names = list(vc.subset(is_a=bridge.TrainVar).keys())
    assert len(grads) == 1 + len(train_names)
    for key, grad in zip(train_names, grads[1:]):
        np.testing.assert_allclose(grad, grad_params[key], rtol=1e-5, atol=1e-6, err_msg=key)
    _assert_state(vc, state_ref, vc.tensors())   # state written back by Jit


READ_ONLY = ["BatchNorm1D-eval", "Conv2D", "Conv2D-dilated", "ConvTranspose2D", "GroupNorm",
             "GroupNorm0D", "GroupNorm1D", "GroupNorm2D", "Linear", "Sequential"]


@pytest.mark.parametrize("name", READ_ONLY)
def test_read_only_layer_closed_over_in_jax_jit_grad_matches_plain_jax(name):
    # Layers that write no state can be called directly in plain jax code.
    layer, vc, x, kwargs, weights, params, reference_loss = _setup(name)
    grad_x = jax.jit(jax.grad(lambda x: jnp.sum(layer(x, **kwargs) * weights)))(x)
    grad_x_ref = jax.jit(jax.grad(lambda x: reference_loss(params, x)[0]))(x)
    np.testing.assert_allclose(grad_x, grad_x_ref, rtol=1e-5, atol=1e-6)


# ----- Dropout ------------------------------------------------------------------------------

def test_dropout_inside_bridge_jit_gradvalues_passes_gradient_through_kept_entries():
    drop = nn.Dropout(0.6, generator=bridge.random.Generator(3))
    x, weights = _normal(20, 50, 40) + 3, _normal(21, 50, 40)   # no x is 0: 0 out = dropped

    def loss(x):
        output = drop(x, training=True)
        return jnp.sum(output * weights), output

    step = bridge.Jit(bridge.GradValues(loss, drop.vars(), input_argnums=(0,)))
    key_before = drop.keygen.key.value
    (grad_x,), (_, output) = step(x)
    kept = np.asarray(output) != 0
    assert 0.5 < kept.mean() < 0.7
    np.testing.assert_allclose(np.asarray(output)[kept], np.asarray(x)[kept] / 0.6, rtol=1e-6)
    np.testing.assert_allclose(grad_x, np.where(kept, weights / 0.6, 0), rtol=1e-6)
    assert not np.array_equal(drop.keygen.key.value, key_before)    # the key advanced


def test_dropout_functionalized_under_jax_jit_grad_scales_kept_entries():
    drop = nn.Dropout(0.5, generator=bridge.random.Generator(4))
    vc = drop.vars()
    apply = bridge.pure.functionalize(drop, vc)
    x = _normal(22, 30, 30) + 3           # no entry is 0, so a 0 output means dropped

    def loss(values, x):
        output, new_values = apply(values, x, training=True)
        return jnp.sum(output), (output, new_values)

    grad_x, (output, new_values) = jax.jit(jax.grad(loss, argnums=1, has_aux=True))(
        vc.tensors(), x)
    kept = np.asarray(output) != 0
    assert 0.4 < kept.mean() < 0.6
    np.testing.assert_allclose(grad_x, np.where(kept, 2.0, 0.0))
    np.testing.assert_allclose(np.asarray(output)[kept], np.asarray(x)[kept] * 2, rtol=1e-6)
    assert not np.array_equal(new_values[0], vc.tensors()[0])    # a new key is returned


def test_dropout_in_evaluation_is_the_identity_under_jax_jit_grad():
    drop = nn.Dropout(0.5)
    x = _normal(23, 4, 5)
    grad = jax.jit(jax.grad(lambda x: jnp.sum(drop(x, training=False) * x)))(x)
    np.testing.assert_allclose(grad, 2 * x, rtol=1e-6)


# ----- a small CNN trained with bridge.Jit against the same CNN in plain JAX -----------------

def _plain_cnn_loss(params, x, labels, pool):
    h = lax.conv_general_dilated(x, params["w1"], (1, 1), "SAME", dimension_numbers=NCHW)
    h = jax.nn.relu(h + params["b1"])
    window = (1, 1, 2, 2)
    if pool == "max":
        h = lax.reduce_window(h, -jnp.inf, lax.max, window, window, "VALID")
    else:
        h = lax.reduce_window(h, 0.0, lax.add, window, window, "VALID") / 4
    logits = h.reshape(h.shape[0], -1) @ params["w2"] + params["b2"]
    return optax.softmax_cross_entropy_with_integer_labels(logits, labels).mean()


@pytest.mark.parametrize("pool", ["max", "average"])
def test_cnn_with_pooling_trains_under_bridge_jit_like_plain_jax(pool):
    x, labels = _normal(30, 16, 2, 8, 8), jax.random.randint(jax.random.PRNGKey(31), (16,), 0, 3)
    pooling = {"max": F.max_pool_2d, "average": F.average_pool_2d}[pool]
    model = nn.Sequential([nn.Conv2D(2, 4, 3), F.relu, pooling, F.flatten,
                           nn.Linear(4 * 4 * 4, 3)])
    conv, linear = model[0], model[4]
    params = {"w1": conv.w.value, "b1": conv.b.value, "w2": linear.w.value, "b2": linear.b.value}
    lr = 0.5

    def loss(x, labels):
        return F.loss.cross_entropy_logits_sparse(model(x), labels).mean()

    grad_values = bridge.GradValues(loss, model.vars())
    train_vars = list(model.vars().subset(is_a=bridge.TrainVar).values())

    def train_step(x, labels):
        grads, (value,) = grad_values(x, labels)
        for var, grad in zip(train_vars, grads):
            var.assign(var.value - lr * grad)
        return value

    train_step = bridge.Jit(train_step, model.vars())

    @jax.jit
    def plain_step(params, x, labels):
        value, grads = jax.value_and_grad(_plain_cnn_loss)(params, x, labels, pool)
        return {k: params[k] - lr * grads[k] for k in params}, value

    first = None
    for _ in range(5):
        value = train_step(x, labels)
        params, plain_value = plain_step(params, x, labels)
        np.testing.assert_allclose(value, plain_value, rtol=1e-6)
        first = value if first is None else first
    assert value < first
    for var, key in [(conv.w, "w1"), (conv.b, "b1"), (linear.w, "w2"), (linear.b, "b2")]:
        np.testing.assert_allclose(var.value, params[key], rtol=1e-5, atol=1e-6)
