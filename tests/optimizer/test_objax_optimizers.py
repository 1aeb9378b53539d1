"""Objax's optimizers: the update rules written out by hand with NumPy as the reference, and
trajectories computed with Objax 1.8 (jax 0.4.30) where stated."""

import jax
import jax.numpy as jnp
import numpy as np
import optax
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


def trajectory(opt, steps, lr=0.1):
    for step in range(steps):
        opt(lr, grads(step))


def values(ws):
    return [np.asarray(w.value) for w in ws]


# ----------------------------------------------------------------------------- LARS

def lars_reference(ref, steps, lr, momentum, wd, tc, eps):
    m = [np.zeros_like(p) for p in ref]
    for step in range(steps):
        for i, (p, g) in enumerate(zip(ref, grads(step))):
            p_norm, g_norm = np.linalg.norm(p), np.linalg.norm(g)
            ratio = tc * p_norm / (g_norm + wd * p_norm + eps)
            factor = max(1.0, ratio) if p_norm == 0 or g_norm == 0 else ratio
            m[i] = momentum * m[i] + lr * factor * (g + wd * p)
            ref[i] = p - m[i]
    return ref


def test_lars_matches_objax_rule():
    vc, ws = make_vars()
    opt = bridge.optimizer.LARS(vc, momentum=0.8, weight_decay=1e-2, tc=0.05, eps=1e-5)
    ref = lars_reference(values(ws), 4, 0.5, 0.8, 1e-2, 0.05, 1e-5)
    trajectory(opt, 4, lr=0.5)
    for w, r in zip(ws, ref):
        np.testing.assert_allclose(w.value, r, rtol=1e-5)


def test_lars_matches_objax_1_8_numbers():
    vc, ws = make_vars()
    opt = bridge.Jit(bridge.optimizer.LARS(vc, momentum=0.8, weight_decay=1e-2, tc=0.05,
                                           eps=1e-5))
    trajectory(opt, 4, lr=0.5)
    # Computed with Objax 1.8 (jax 0.4.30): the same variables, gradients and settings.
    objax = [[0.8355996608734131, 2.3194515705108643, 2.344736099243164],
             [[0.9403918981552124, -1.1073088645935059],
              [0.6649325489997864, -0.22255611419677734]]]
    for w, r in zip(ws, objax):
        np.testing.assert_allclose(w.value, r, rtol=1e-6)


def test_lars_zero_weights_step_by_at_least_the_learning_rate():
    # With ||p|| = 0 the trust ratio is 0; Objax then uses a factor of max(1, ratio) = 1.
    p = bridge.TrainVar(jnp.zeros(3))
    opt = bridge.optimizer.LARS(bridge.VarCollection({"p": p}), momentum=0.0)
    opt(0.1, [jnp.array([1.0, -2.0, 0.5])])
    np.testing.assert_allclose(p.value, [-0.1, 0.2, -0.05], rtol=1e-6)


# ----------------------------------------------------------------------------- overrides

def test_momentum_override_is_positional_like_objax():
    vc, ws = make_vars()
    ref = [np.asarray(w.value) for w in ws]
    m = [np.zeros_like(p) for p in ref]
    opt = bridge.optimizer.Momentum(vc, momentum=0.9)
    for step in range(3):
        mu = 0.5 + 0.1 * step
        opt(0.1, grads(step), mu)
        m = [g + mu * mi for g, mi in zip(grads(step), m)]
        ref = [p - 0.1 * mi for p, mi in zip(ref, m)]
    for w, r in zip(ws, ref):
        np.testing.assert_allclose(w.value, r, rtol=1e-5)


def test_momentum_override_under_jit_is_traced_and_matches_objax_1_8():
    vc, ws = make_vars()
    opt = bridge.optimizer.Momentum(vc, nesterov=True)
    step_fn = bridge.Jit(lambda lr, g, mu: opt(lr, g, momentum=mu), opt.vars())
    for step in range(3):
        step_fn(0.1, grads(step), jnp.float32(0.5 + 0.1 * step))   # one compilation
    # Objax 1.8: Jit(Momentum(vc, nesterov=True))(0.1, grads(step), 0.5 + 0.1 * step).
    objax = [[0.5655500292778015, 2.8689000606536865, 1.2621999979019165],
             [[0.9131100177764893, -1.1737799644470215],
              [0.7606700658798218, -0.34756001830101013]]]
    for w, r in zip(ws, objax):
        np.testing.assert_allclose(w.value, r, rtol=1e-6)
    assert opt.momentum == 0.9    # the override did not stick


def test_adam_overrides_beta1_and_beta2_for_one_call():
    vc, ws = make_vars()
    ref = [np.asarray(w.value, np.float64) for w in ws]
    m = [np.zeros_like(p) for p in ref]
    v = [np.zeros_like(p) for p in ref]
    opt = bridge.optimizer.Adam(vc)
    betas = [(0.5, 0.9), (None, None), (0.8, None)]
    for step, (b1, b2) in enumerate(betas, start=1):
        g = grads(step)
        opt(0.01, g, b1, b2)
        b1, b2 = b1 or 0.9, b2 or 0.999
        m = [mi + (1 - b1) * (gi - mi) for mi, gi in zip(m, g)]
        v = [vi + (1 - b2) * (gi ** 2 - vi) for vi, gi in zip(v, g)]
        lr_t = 0.01 * np.sqrt(1 - b2 ** step) / (1 - b1 ** step)
        ref = [p - lr_t * mi / np.sqrt(vi + 1e-8) for p, mi, vi in zip(ref, m, v)]
    for w, r in zip(ws, ref):
        np.testing.assert_allclose(w.value, r, rtol=1e-5)


def test_adam_overrides_under_jit_match_objax_1_8():
    vc, ws = make_vars()
    opt = bridge.Jit(bridge.optimizer.Adam(vc))
    for step in range(3):
        opt(0.1, grads(step), 0.5, 0.9)     # traced positional overrides
    # Objax 1.8: Adam(vc)(0.1, grads(step), 0.5, 0.9) for step in 0, 1, 2.
    objax = [[0.688503623008728, 2.3114962577819824, 2.6885037422180176],
             [[0.6885042786598206, -1.3114962577819824],
              [0.811496376991272, -0.31149643659591675]]]
    for w, r in zip(ws, objax):
        np.testing.assert_allclose(w.value, r, rtol=1e-6)


def test_unused_overrides_leave_no_trace_in_the_step():
    # Without an override the step is the constructor's transformation: the jaxpr of a
    # Momentum step is that of optax.sgd(lr, momentum) on the same values.
    vc, ws = make_vars()
    opt = bridge.optimizer.Momentum(vc, momentum=0.9)
    f = bridge.pure.functionalize(lambda lr, g: opt(lr, g), list(opt.vars()))
    ours = jax.make_jaxpr(f)(opt.vars().tensors(), 0.1, grads(0))
    tx = optax.sgd(0.1, momentum=0.9)

    def plain(values, lr, g):
        params, m = values[:2], values[2:]
        state = tx.init(params)
        state = (state[0]._replace(trace=m), state[1])
        updates, state = tx.update(g, state, params)
        return [p + u for p, u in zip(params, updates)] + list(state[0].trace)

    theirs = jax.make_jaxpr(plain)(opt.vars().tensors(), 0.1, grads(0))
    count = lambda jaxpr: sum(e.primitive.name not in ("convert_element_type",)
                              for e in jaxpr.jaxpr.eqns)
    assert count(ours) <= count(theirs)


# ----------------------------------------------------------------------------- state

@pytest.mark.parametrize("name, make, expected", [
    ("SGD", bridge.optimizer.SGD, ["(SGD).train_vars(ModuleList)[0]",
                                   "(SGD).train_vars(ModuleList)[1]"]),
    ("Momentum", bridge.optimizer.Momentum, [
        "(Momentum).train_vars(ModuleList)[0]", "(Momentum).train_vars(ModuleList)[1]",
        "(Momentum).m(ModuleList)[0]", "(Momentum).m(ModuleList)[1]"]),
    ("Adam", bridge.optimizer.Adam, [
        "(Adam).step", "(Adam).train_vars(ModuleList)[0]", "(Adam).train_vars(ModuleList)[1]",
        "(Adam).m(ModuleList)[0]", "(Adam).m(ModuleList)[1]", "(Adam).v(ModuleList)[0]",
        "(Adam).v(ModuleList)[1]"]),
    ("LARS", bridge.optimizer.LARS, [
        "(LARS).train_vars(ModuleList)[0]", "(LARS).train_vars(ModuleList)[1]",
        "(LARS).m(ModuleList)[0]", "(LARS).m(ModuleList)[1]"]),
])
def test_state_variables_have_objax_names_and_dtypes(name, make, expected):
    # Objax 1.8 names these variables the same way (so its checkpoints restore), and holds
    # Adam's step as uint32; no hyper-parameter is kept as state.
    vc, _ = make_vars()
    opt_vars = make(vc).vars()
    assert list(opt_vars.keys()) == expected
    dtypes = {k: v.value.dtype for k, v in opt_vars.items()}
    assert all(d == jnp.float32 for k, d in dtypes.items() if k != "(Adam).step")
    if name == "Adam":
        assert dtypes["(Adam).step"] == jnp.uint32


@pytest.mark.parametrize("make", [bridge.optimizer.SGD, bridge.optimizer.Momentum,
                                  bridge.optimizer.Adam, bridge.optimizer.LARS])
@pytest.mark.parametrize("jit", [False, True])
def test_bad_gradients_raise_and_write_nothing(make, jit):
    vc, ws = make_vars()
    opt = make(vc)
    trajectory(opt, 1)
    before = opt.vars().tensors()
    call = bridge.Jit(opt) if jit else opt
    bad = [G[0], np.zeros((3, 2), np.float32)]
    with pytest.raises(ValueError, match=r"w2: gradient of shape \(3, 2\) for a variable of "
                                         r"shape \(2, 2\)"):
        call(0.1, bad)
    with pytest.raises(ValueError, match="w1: gradient of dtype bool"):
        call(0.1, [np.ones(3, bool), G[1]])
    for a, b in zip(opt.vars().tensors(), before):
        np.testing.assert_array_equal(a, b)


def test_gradients_take_the_variables_dtype():
    w = bridge.TrainVar(jnp.ones(2, jnp.bfloat16))
    opt = bridge.optimizer.Momentum(bridge.VarCollection({"w": w}))
    opt(0.5, [jnp.array([1.0, 2.0], jnp.float32)])
    assert w.value.dtype == jnp.bfloat16 and opt.m[0].value.dtype == jnp.bfloat16
    np.testing.assert_allclose(w.value.astype(np.float32), [0.5, 0.0])


# ----------------------------------------------------------------------------- repr

def test_repr_is_objax_format_under_bridge_path():
    vc = bridge.VarCollection()
    assert repr(bridge.optimizer.Adam(vc)) == \
        "bridge.optimizer.Adam(beta1=0.9, beta2=0.999, eps=1e-08)"
    assert repr(bridge.optimizer.LARS(vc)) == \
        "bridge.optimizer.LARS(momentum=0.9, weight_decay=0.0001, tc=0.001, eps=1e-05)"
    assert repr(bridge.optimizer.Momentum(vc)) == \
        "bridge.optimizer.Momentum(momentum=0.9, nesterov=False)"
    assert repr(bridge.optimizer.SGD(vc)) == "bridge.optimizer.SGD()"
    assert repr(bridge.optimizer.ExponentialMovingAverage(vc)) == \
        "bridge.optimizer.ExponentialMovingAverage(momentum=0.999, debias=False, eps=1e-06)"
    assert repr(bridge.optimizer.ExponentialMovingAverageModule(bridge.Module())) == \
        "bridge.optimizer.ExponentialMovingAverageModule(momentum=0.999, debias=False, eps=1e-06)"


def test_public_names_cover_objax_optimizer_module():
    # objax.optimizer's names (Objax 1.8): the five optimizers, the EMA module and scheduler.
    objax_names = {"Adam", "ExponentialMovingAverage", "ExponentialMovingAverageModule",
                   "LARS", "Momentum", "SGD", "scheduler"}
    assert objax_names <= set(bridge.optimizer.__all__)
    assert {"LinearAnnealing", "StepDecay"} <= set(bridge.optimizer.scheduler.__all__)
