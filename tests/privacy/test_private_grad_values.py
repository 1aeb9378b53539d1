"""``bridge.privacy.PrivateGradValues`` (Objax's DP-SGD module) against a hand-written
reference: ``jax.vmap(jax.grad)`` over microbatches of a pure copy of the model, each
gradient clipped to ``C`` with ``C / max(norm, C)``, then averaged."""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import bridge
from bridge.privacy import PrivateGradValues
from bridge.pure import _privacy

TOL = dict(rtol=1e-5, atol=1e-5)
F = bridge.functional


def make_model(seed=0):
    bridge.random.DEFAULT_GENERATOR.seed(seed)
    return bridge.nn.Sequential([bridge.nn.Linear(12, 16), F.relu, bridge.nn.Linear(16, 16),
                                 F.relu, bridge.nn.Linear(16, 4)])


def data(batch=16, seed=1):
    kx, ky = jax.random.split(jax.random.PRNGKey(seed))
    return 2 * jax.random.normal(kx, (batch, 12)), jax.random.randint(ky, (batch,), 0, 4)


def pure_params(model):
    """The model's TrainVars as ``[(w, b), ...]``, read by name."""
    vc = model.vars()
    return [(vc[f"(Sequential)[{i}](Linear).w"].value, vc[f"(Sequential)[{i}](Linear).b"].value)
            for i in (0, 2, 4)]


def pure_loss(params, x, y):
    for i, (w, b) in enumerate(params):
        x = jnp.dot(x, w) + b
        if i < len(params) - 1:
            x = jax.nn.relu(x)
    logz = jax.nn.logsumexp(x, axis=-1)
    return jnp.mean(logz - jnp.take_along_axis(x, y[:, None], axis=-1)[:, 0])


@functools.partial(jax.jit, static_argnums=(3, 4))
def reference(params, x, y, clip, microbatch):
    xs = x.reshape(-1, microbatch, *x.shape[1:])
    ys = y.reshape(-1, microbatch)
    losses, grads = jax.vmap(jax.value_and_grad(pure_loss), in_axes=(None, 0, 0))(params, xs, ys)
    leaves = jax.tree_util.tree_leaves(grads)
    norms = jnp.sqrt(sum(jnp.sum(g.reshape(g.shape[0], -1) ** 2, axis=1) for g in leaves))
    factor = clip / jnp.maximum(norms, clip)
    mean = jax.tree_util.tree_map(
        lambda g: jnp.mean(g * factor.reshape((-1,) + (1,) * (g.ndim - 1)), axis=0), grads)
    return mean, losses.mean()


def in_vc_order(model, grads_by_layer):
    """Reference gradients ``[(gw, gb), ...]`` in ``model.vars()`` TrainVar order."""
    by_name = {}
    for i, (gw, gb) in zip((0, 2, 4), grads_by_layer):
        by_name[f"(Sequential)[{i}](Linear).w"] = gw
        by_name[f"(Sequential)[{i}](Linear).b"] = gb
    return [by_name[k] for k, v in model.vars().items() if isinstance(v, bridge.TrainVar)]


def loss_for(model):
    def loss(x, y):
        return F.loss.cross_entropy_logits_sparse(model(x), y).mean()
    return loss


@pytest.fixture
def no_materialization(monkeypatch):
    def boom(*args, **kwargs):
        raise AssertionError("the materialised path ran")

    monkeypatch.setattr(_privacy, "_clipped_materialized", boom)


@pytest.mark.parametrize("microbatch", [1, 2])
def test_matches_reference_inside_jit(microbatch, no_materialization):
    model = make_model()
    x, y = data()
    clip = 1.5
    gv = PrivateGradValues(loss_for(model), model.vars(), noise_multiplier=0.0,
                           l2_norm_clip=clip, microbatch=microbatch)
    step = bridge.Jit(gv, gv.vars())
    grads, values = step(x, y)
    expected, loss = reference(pure_params(model), x, y, clip, microbatch)
    assert isinstance(grads, list) and isinstance(values, list) and len(values) == 1
    assert len(grads) == 6
    for g, e in zip(grads, in_vc_order(model, expected)):
        np.testing.assert_allclose(g, e, **TOL)
    np.testing.assert_allclose(values[0], loss, **TOL)


def test_eager_call_and_materialize_method_match_reference():
    model = make_model(3)
    x, y = data(batch=8)
    expected, _ = reference(pure_params(model), x, y, 0.7, 1)
    eager = PrivateGradValues(loss_for(model), model.vars(), 0.0, 0.7)
    plain = PrivateGradValues(loss_for(model), model.vars(), 0.0, 0.7, method="materialize")
    for grads, _ in (eager(x, y), bridge.Jit(plain, plain.vars())(x, y)):
        for g, e in zip(grads, in_vc_order(model, expected)):
            np.testing.assert_allclose(g, e, **TOL)


def test_training_loop_with_optimizer_lowers_the_loss():
    model = make_model(1)
    x, y = data(batch=32)
    gv = PrivateGradValues(loss_for(model), model.vars(), noise_multiplier=0.1,
                           l2_norm_clip=1.0, keygen=bridge.random.Generator(7))
    opt = bridge.optimizer.SGD(model.vars())

    def train_op(x, y):
        g, v = gv(x, y)
        opt(0.5, g)
        return v[0]

    train_op = bridge.Jit(train_op, gv.vars() + opt.vars())
    losses = [float(train_op(x, y)) for _ in range(30)]
    assert losses[-1] < 0.7 * losses[0]


def test_noise_std_and_keygen():
    model = make_model(2)
    x, y = data(batch=32)
    gen = bridge.random.Generator(5)
    clip, z, microbatch = 0.5, 3.0, 4
    noisy = PrivateGradValues(loss_for(model), model.vars(), z, clip, microbatch=microbatch,
                              keygen=gen)
    exact = PrivateGradValues(loss_for(model), model.vars(), 0.0, clip, microbatch=microbatch)
    names = [k for k, v in noisy.vars().items() if v is gen.key]
    assert len(names) == 1 and names[0].startswith("(PrivateGradValues).keygen(Generator).")
    step = bridge.Jit(noisy, noisy.vars())
    key_before = np.asarray(gen.key.value)
    g1, _ = step(x, y)
    assert not np.array_equal(np.asarray(gen.key.value), key_before)   # keygen advanced
    g2, _ = step(x, y)
    g0, _ = bridge.Jit(exact, exact.vars())(x, y)
    noise = np.concatenate([np.ravel(a - b) for a, b in zip(g1, g0)])
    expected_std = z * clip / (32 // microbatch)
    assert noise.size > 500
    assert abs(noise.std() / expected_std - 1) < 0.1
    assert not np.allclose(g1[1], g2[1])
    gen.seed(5)
    again, _ = step(x, y)
    for a, b in zip(g1, again):
        np.testing.assert_array_equal(a, b)


def test_state_changes_are_written_back_as_microbatch_means():
    class Tracked(bridge.Module):
        def __init__(self):
            self.lin = bridge.nn.Linear(3, 1)
            self.calls = bridge.StateVar(jnp.zeros(()))
            self.seen = bridge.StateVar(jnp.zeros(()))

        def __call__(self, x):
            self.calls.value += 1
            self.seen.value = x.sum()
            return self.lin(x)

    model = Tracked()
    x = jnp.arange(24.0).reshape(8, 3)

    def loss(x):
        return (model(x) ** 2).mean()

    gv = PrivateGradValues(loss, model.vars(), 0.0, 1.0, microbatch=2)
    bridge.Jit(gv, gv.vars())(x)
    np.testing.assert_allclose(model.calls.value, 1.0)
    np.testing.assert_allclose(model.seen.value, x.sum() / 4)   # mean of 4 microbatch sums


def test_each_microbatch_gets_its_own_random_key():
    gen = bridge.random.Generator(0)
    draws = bridge.StateVar(jnp.zeros(()), reduce=lambda stacked: jnp.std(stacked))
    lin = bridge.nn.Linear(3, 1)

    def loss(x):
        draws.value = jax.random.uniform(gen())
        return (lin(x) ** 2).mean()

    vc = lin.vars() + gen.vars() + bridge.VarCollection({"draws": draws})
    gv = PrivateGradValues(loss, vc, 0.0, 1.0)
    bridge.Jit(gv, gv.vars())(jnp.ones((16, 3)))
    assert float(draws.value) > 0.1   # 16 different uniforms (std ~0.29), not one


def test_extra_values_and_objax_module_path():
    model = make_model(4)
    x, y = data(batch=8)

    def loss(x, y):
        logits = model(x)
        return (F.loss.cross_entropy_logits_sparse(logits, y).mean(),
                (jnp.argmax(logits, -1) == y).mean())

    gv = bridge.privacy.dpsgd.PrivateGradValues(loss, model.vars(), 0.0, 0.9,
                                               batch_axis=(0, 0))
    assert bridge.privacy.dpsgd.gradient.PrivateGradValues is PrivateGradValues
    grads, (l, acc) = bridge.Jit(gv, gv.vars())(x, y)
    expected, loss_ref = reference(pure_params(model), x, y, 0.9, 1)
    for g, e in zip(grads, in_vc_order(model, expected)):
        np.testing.assert_allclose(g, e, **TOL)
    np.testing.assert_allclose(l, loss_ref, **TOL)
    np.testing.assert_allclose(acc, (jnp.argmax(model(x), -1) == y).mean(), **TOL)


@pytest.mark.parametrize("batch_axis", [(1,), (None,), (0, 1), (0, None)])
def test_batch_axis_other_than_zero_is_refused_as_in_objax(batch_axis):
    model = make_model()
    with pytest.raises(ValueError, match=r"batch_axis=.*every entry 0"):
        PrivateGradValues(loss_for(model), model.vars(), 0.0, 1.0, batch_axis=batch_axis)


def test_more_batch_axis_entries_than_arguments_is_an_error():
    model = make_model()
    x, _ = data(batch=4)
    gv = PrivateGradValues(lambda x: (model(x) ** 2).mean(), model.vars(), 0.0, 1.0,
                           batch_axis=(0, 0))
    with pytest.raises(ValueError, match="2 entries for 1 arguments"):
        gv(x)


@pytest.mark.parametrize("noise_multiplier", [0.0, 1.0])
def test_zero_clip_gives_zero_gradients_and_the_loss(noise_multiplier):
    # Every microbatch gradient is clipped to norm 0, and the noise std is z * 0 / U = 0.
    model = make_model(5)
    x, y = data(batch=8)
    gv = PrivateGradValues(loss_for(model), model.vars(), noise_multiplier, 0.0,
                           microbatch=2)
    grads, (loss,) = bridge.Jit(gv, gv.vars())(x, y)
    for g in grads:
        np.testing.assert_array_equal(g, np.zeros_like(g))
    _, loss_ref = reference(pure_params(model), x, y, 1.0, 2)
    np.testing.assert_allclose(loss, loss_ref, **TOL)


def test_pure_clipped_grad_accepts_zero_clip_and_keeps_zero_gradients_finite():
    # A microbatch whose gradient is exactly zero keeps it (no 0 / 0).
    params = {"w": jnp.array([1.0, 2.0])}
    x = jnp.array([[1.0, 1.0], [0.0, 0.0]])
    loss = lambda p, x: jnp.sum(x @ p["w"])
    for method in ("auto", "materialize"):
        grads, _ = jax.jit(bridge.pure.clipped_grad(loss, 0.0, method=method))(params, x)
        np.testing.assert_array_equal(grads["w"], [0.0, 0.0])


def test_reshape_microbatch_groups_consecutive_examples():
    model = make_model()
    gv = PrivateGradValues(loss_for(model), model.vars(), 1.0, 1.0, microbatch=3)
    x = np.arange(6 * 2 * 5).reshape(6, 2, 5)
    out = gv.reshape_microbatch(jnp.asarray(x))
    assert out.shape == (2, 3, 2, 5)
    np.testing.assert_array_equal(out[1, 0], x[3])
    with pytest.raises(ValueError, match="a batch of 7 is not a multiple of microbatch=3"):
        gv.reshape_microbatch(jnp.zeros((7, 2)))


def test_repr_is_objax_format_under_bridge_path():
    def myloss(x):
        return (x ** 2).mean()

    gv = bridge.privacy.dpsgd.PrivateGradValues(myloss, bridge.VarCollection(),
                                               noise_multiplier=1., l2_norm_clip=0.5,
                                               microbatch=1)
    assert repr(gv) == ("bridge.privacy.dpsgd.gradient.PrivateGradValues(f=myloss, "
                        "noise_multiplier=1.0, l2_norm_clip=0.5, microbatch=1, "
                        "batch_axis=(0,))")


def test_failed_call_leaves_random_states_unchanged():
    gen = bridge.random.Generator(3)
    lin = bridge.nn.Linear(3, 1)

    def loss(x):
        return (lin(x) ** 2).mean() + 0 * jax.random.uniform(gen())

    gv = PrivateGradValues(loss, lin.vars() + gen.vars(), 1.0, 1.0, microbatch=4, keygen=gen)
    before = np.asarray(gen.key.value)
    with pytest.raises(ValueError, match="multiple of microbatch"):
        gv(jnp.ones((6, 3)))
    np.testing.assert_array_equal(gen.key.value, before)


def test_bad_arguments():
    model = make_model()
    x, y = data(batch=6)
    with pytest.raises(ValueError, match="multiple of microbatch"):
        PrivateGradValues(loss_for(model), model.vars(), 0.0, 1.0, microbatch=4)(x, y)
    with pytest.raises(ValueError, match="l2_norm_clip"):
        PrivateGradValues(loss_for(model), model.vars(), 0.0, -1.0)
    with pytest.raises(TypeError, match="scalar"):
        PrivateGradValues(lambda x, y: model(x), model.vars(), 0.0, 1.0)(x, y)


@pytest.mark.parametrize("jit", [False, True])
def test_noise_is_the_pure_noise_for_the_keygen_key(jit):
    # The facade draws one key from its keygen (``split(key, 2)[1]``, the next state being
    # ``[0]``) and clipped_grad adds ``_privacy._noise`` for that key: noisy - exact must
    # be exactly that tensor, eagerly and under bridge.Jit.
    model = make_model(3)
    x, y = data(batch=16)
    clip, z = 0.5, 2.0
    gen = bridge.random.Generator(9)
    noisy = PrivateGradValues(loss_for(model), model.vars(), z, clip, keygen=gen)
    exact = PrivateGradValues(loss_for(model), model.vars(), 0.0, clip)
    train = [v.value for v in model.vars().values() if isinstance(v, bridge.TrainVar)]
    key = jax.random.split(gen.key.value, 2)[1]
    expected_noise = _privacy._noise(train, key, z * clip / 16)
    if jit:
        noisy, exact = bridge.Jit(noisy, noisy.vars()), bridge.Jit(exact, exact.vars())
    g1, _ = noisy(x, y)
    g0, _ = exact(x, y)
    for a, b, n in zip(g1, g0, expected_noise):
        np.testing.assert_allclose(np.asarray(a) - np.asarray(b), n, rtol=1e-4, atol=1e-6)
