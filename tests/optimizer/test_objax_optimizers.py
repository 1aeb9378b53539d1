"""Objax's optimizers: the update rules written out by hand with NumPy as the reference."""

import jax.numpy as jnp
import numpy as np
import pytest

import bridge

G = [np.array([0.5, -1.0, 2.0], np.float32), np.array([[0.1, 0.2], [-0.3, 0.4]], np.float32)]


def make_vars():
    w1 = bridge.TrainVar(jnp.array([1.0, 2.0, 3.0]))
    w2 = bridge.TrainVar(jnp.array([[1.0, -1.0], [0.5, 0.0]]))
    state = bridge.StateVar(jnp.zeros(()))  # not optimized
    return bridge.VarCollection({"w1": w1, "w2": w2, "s": state}), [w1, w2]


def grads(step):
    return [g * (1 + 0.5 * step) for g in G]


def test_sgd_subtracts_lr_times_gradient():
    vc, ws = make_vars()
    ref = [np.asarray(w.value) for w in ws]
    opt = bridge.optimizer.SGD(vc)
    for step in range(3):
        opt(0.1, grads(step))
        ref = [p - 0.1 * g for p, g in zip(ref, grads(step))]
    for w, r in zip(ws, ref):
        np.testing.assert_allclose(w.value, r, rtol=1e-6)


@pytest.mark.parametrize("nesterov", [False, True])
def test_momentum_matches_objax_rule(nesterov):
    vc, ws = make_vars()
    ref = [np.asarray(w.value) for w in ws]
    m = [np.zeros_like(p) for p in ref]
    opt = bridge.optimizer.Momentum(vc, momentum=0.8, nesterov=nesterov)
    for step in range(4):
        opt(0.05, grads(step))
        m = [g + 0.8 * mi for g, mi in zip(grads(step), m)]
        delta = [g + 0.8 * mi for g, mi in zip(grads(step), m)] if nesterov else m
        ref = [p - 0.05 * d for p, d in zip(ref, delta)]
    for w, r in zip(ws, ref):
        np.testing.assert_allclose(w.value, r, rtol=1e-5)


def test_momentum_override_applies_to_one_call():
    vc, ws = make_vars()
    opt = bridge.optimizer.Momentum(vc, momentum=0.9)
    opt(1.0, [np.ones(3, np.float32), np.zeros((2, 2), np.float32)], momentum=0.0)
    opt(1.0, [np.ones(3, np.float32), np.zeros((2, 2), np.float32)])
    # m1 = 1, m2 = 1 + 0.9 * 1 = 1.9; p = 1 - 1 - 1.9
    np.testing.assert_allclose(ws[0].value, np.array([1.0, 2.0, 3.0]) - 2.9, rtol=1e-6)


def test_adam_matches_objax_rule_with_eps_inside_the_root():
    vc, ws = make_vars()
    ref = [np.asarray(w.value, np.float64) for w in ws]
    m = [np.zeros_like(p) for p in ref]
    v = [np.zeros_like(p) for p in ref]
    b1, b2, eps, lr = 0.9, 0.999, 1e-3, 0.01
    opt = bridge.optimizer.Adam(vc, beta1=b1, beta2=b2, eps=eps)
    for step in range(1, 6):
        g = grads(step)
        opt(lr, g)
        m = [mi + (1 - b1) * (gi - mi) for mi, gi in zip(m, g)]
        v = [vi + (1 - b2) * (gi ** 2 - vi) for vi, gi in zip(v, g)]
        lr_t = lr * np.sqrt(1 - b2 ** step) / (1 - b1 ** step)
        ref = [p - lr_t * mi / np.sqrt(vi + eps) for p, mi, vi in zip(ref, m, v)]
    for w, r in zip(ws, ref):
        np.testing.assert_allclose(w.value, r, rtol=1e-5)


def test_optimizers_update_inside_jit_like_eagerly():
    vc_a, ws_a = make_vars()
    vc_b, ws_b = make_vars()
    eager, jitted = bridge.optimizer.Adam(vc_a), bridge.optimizer.Adam(vc_b)
    step = bridge.Jit(lambda lr, g: jitted(lr, g), jitted.vars())
    for i in range(3):
        eager(0.1, grads(i))
        step(0.1, grads(i))
    for a, b in zip(ws_a, ws_b):
        np.testing.assert_allclose(a.value, b.value, rtol=1e-6)


def test_wrong_number_of_gradients_is_an_error():
    vc, _ = make_vars()
    with pytest.raises(ValueError, match="1 gradients for 2 trainable"):
        bridge.optimizer.SGD(vc)(0.1, [G[0]])


def test_optimizer_vars_contain_refs_and_state_only():
    vc, ws = make_vars()
    opt = bridge.optimizer.Adam(vc)
    refs = [v for v in opt.vars().values() if isinstance(v, bridge.TrainRef)]
    assert [r.ref for r in refs] == ws
    assert all(isinstance(v, (bridge.TrainRef, bridge.StateVar)) for v in opt.vars().values())


@pytest.mark.parametrize("debias", [False, True])
def test_ema_matches_objax_rule(debias):
    vc, ws = make_vars()
    ema = bridge.optimizer.ExponentialMovingAverage(vc, momentum=0.9, debias=debias, eps=1e-6)
    avg = [np.zeros(3), np.zeros((2, 2))]
    sgd = bridge.optimizer.SGD(vc)
    for step in range(1, 4):
        sgd(0.1, grads(step))
        ema()
        avg = [a + 0.1 * (np.asarray(w.value) - a) for a, w in zip(avg, ws)]
    factor = 1 / (1 - (1 - 1e-6) * 0.9 ** 3) if debias else 1.0
    _, values = ema.refs_and_values()
    # refs order: non-trainable first (the StateVar), then the TrainVars.
    np.testing.assert_allclose(values[1], avg[0] * factor, rtol=1e-5)
    np.testing.assert_allclose(values[2], avg[1] * factor, rtol=1e-5)


def test_ema_replace_vars_runs_with_averages_and_restores():
    vc, ws = make_vars()
    ema = bridge.optimizer.ExponentialMovingAverage(vc, momentum=0.5)
    ema()
    seen = ema.replace_vars(lambda: np.asarray(ws[0].value))()
    np.testing.assert_allclose(seen, 0.5 * np.array([1.0, 2.0, 3.0]))
    np.testing.assert_allclose(ws[0].value, [1.0, 2.0, 3.0])
