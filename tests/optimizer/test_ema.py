"""Objax's exponential moving averages: ``ExponentialMovingAverage`` and
``ExponentialMovingAverageModule`` against averages computed with NumPy."""

import jax.numpy as jnp
import numpy as np
import pytest

import bridge

G = [np.array([0.5, -1.0, 2.0], np.float32), np.array([[0.1, 0.2], [-0.3, 0.4]], np.float32)]


def make_vars():
    w1 = bridge.TrainVar(jnp.array([1.0, 2.0, 3.0]))
    w2 = bridge.TrainVar(jnp.array([[1.0, -1.0], [0.5, 0.0]]))
    state = bridge.StateVar(jnp.zeros(()))
    return bridge.VarCollection({"w1": w1, "w2": w2, "s": state}), [w1, w2]


def grads(step):
    return [g * (1 + 0.5 * step) for g in G]


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


def test_ema_state_has_objax_names_and_a_uint32_step():
    vc, _ = make_vars()
    ema = bridge.optimizer.ExponentialMovingAverage(vc)
    assert list(ema.vars().keys()) == [
        "(ExponentialMovingAverage).step",
        "(ExponentialMovingAverage).refs(ModuleList)[0]",   # the StateVar, non-trainable first
        "(ExponentialMovingAverage).refs(ModuleList)[1]",
        "(ExponentialMovingAverage).refs(ModuleList)[2]",
        "(ExponentialMovingAverage).m(ModuleList)[0]",
        "(ExponentialMovingAverage).m(ModuleList)[1]",
        "(ExponentialMovingAverage).m(ModuleList)[2]"]
    assert ema.step.value.dtype == jnp.uint32
    ema()
    assert int(ema.step.value) == 1


def test_ema_skips_random_states():
    gen = bridge.random.Generator(0)
    vc, _ = make_vars()
    ema = bridge.optimizer.ExponentialMovingAverage(vc + gen.vars())
    assert len(ema.refs) == 3


def test_ema_updates_inside_jit_like_eagerly():
    vc_a, ws_a = make_vars()
    vc_b, ws_b = make_vars()
    eager = bridge.optimizer.ExponentialMovingAverage(vc_a, momentum=0.8, debias=True)
    jitted = bridge.optimizer.ExponentialMovingAverage(vc_b, momentum=0.8, debias=True)
    step = bridge.Jit(jitted)
    for i in range(3):
        for ws in (ws_a, ws_b):
            for w, g in zip(ws, grads(i)):
                w.assign(w.value - 0.1 * g)
        eager()
        step()
    (_, averages), (_, jitted_averages) = eager.refs_and_values(), jitted.refs_and_values()
    for a, b in zip(averages, jitted_averages):
        np.testing.assert_allclose(a, b, rtol=1e-6)


class Affine(bridge.Module):
    def __init__(self):
        self.w = bridge.TrainVar(jnp.array([1.0, -2.0]))
        self.shift = bridge.StateVar(jnp.array([0.5, 0.5]))

    def __call__(self, x, scale=1.0):
        return scale * x * self.w.value + self.shift.value


@pytest.mark.parametrize("debias", [False, True])
def test_ema_module_runs_the_module_with_averaged_variables(debias):
    model = Affine()
    ema_model = bridge.optimizer.ExponentialMovingAverageModule(model, momentum=0.9,
                                                               debias=debias, eps=1e-3)
    f32 = np.float32
    history = [(np.array([1.0, -2.0], f32), np.array([0.5, 0.5], f32)),
               (np.array([3.0, 0.0], f32), np.array([-1.0, 2.0], f32))]
    w_avg, s_avg = np.zeros(2), np.zeros(2)
    for w, s in history:
        model.w.assign(w)
        model.shift.assign(s)
        ema_model.update_ema()
        w_avg += 0.1 * (w - w_avg)
        s_avg += 0.1 * (s - s_avg)
    factor = 1 / (1 - (1 - 1e-3) * 0.9 ** 2) if debias else 1.0
    x = np.array([2.0, 3.0])
    expected = 0.5 * x * w_avg * factor + s_avg * factor
    np.testing.assert_allclose(ema_model(x, scale=0.5), expected, rtol=1e-6)
    # The module's own variables are back to their current values.
    np.testing.assert_allclose(model(x), x * history[-1][0] + history[-1][1], rtol=1e-6)


def test_ema_module_vars_are_the_module_then_the_averages():
    model = Affine()
    ema_model = bridge.optimizer.ExponentialMovingAverageModule(model)
    names = list(ema_model.vars().keys())
    assert names[:2] == ["(ExponentialMovingAverageModule)(Affine).w",
                         "(ExponentialMovingAverageModule)(Affine).shift"]
    assert "(ExponentialMovingAverageModule).ema(ExponentialMovingAverage).step" in names


def test_ema_module_under_jit():
    model = Affine()
    ema_model = bridge.optimizer.ExponentialMovingAverageModule(model, momentum=0.5)
    update = bridge.Jit(ema_model.update_ema, ema_model.vars())
    predict = bridge.Jit(ema_model)
    update()
    np.testing.assert_allclose(predict(jnp.ones(2)), 0.5 * np.array([1.0, -2.0]) + 0.25,
                               rtol=1e-6)
    np.testing.assert_allclose(model.w.value, [1.0, -2.0])
