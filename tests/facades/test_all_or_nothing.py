"""Every facade and optimizer writes all of its results or none: a failure injected at
each write site leaves every variable, and every RandomState, as it was."""

import jax.numpy as jnp
import numpy as np
import optax
import pytest

import bridge


class Noisy(bridge.Module):
    """Assigns a state variable and draws a key, then (optionally) fails."""

    def __init__(self, fail=False, reduce=bridge.state.reduce_mean):
        self.w = bridge.TrainVar(jnp.ones(3))
        self.count = bridge.StateVar(jnp.zeros(3), reduce=reduce)
        self.first = bridge.StateVar(jnp.zeros(3))
        self.rs = bridge.RandomState(0)
        self.fail = fail

    def __call__(self, x):
        # x is one example (3,) or, under PrivateGradValues, a microbatch (1, 3).
        self.first.value = self.first.value + x.reshape(-1, 3).sum(0)
        self.count.value = self.count.value + 1
        key = self.rs.split(1)[0]
        if self.fail:
            raise RuntimeError("injected failure")
        return (self.w.value * x).sum() + 0 * key[0]


def snapshot(module):
    return [np.asarray(v) for v in module.vars().tensors()]


def assert_unchanged(module, before):
    for old, new in zip(before, module.vars().tensors()):
        np.testing.assert_array_equal(old, np.asarray(new))


@pytest.mark.parametrize("jit", [False, True], ids=["eager", "jit"])
def test_vectorize_that_raises_leaves_keys_and_state_unchanged(jit):
    m = Noisy(fail=True)
    before = snapshot(m)
    f = bridge.Vectorize(m, batch_axis=(0,))
    if jit:
        f = bridge.Jit(f)
    with pytest.raises(RuntimeError, match="injected failure"):
        f(jnp.ones((4, 3)))
    assert_unchanged(m, before)


@pytest.mark.parametrize("jit", [False, True], ids=["eager", "jit"])
def test_vectorize_reduction_of_the_wrong_shape_reduces_nothing(jit):
    m = Noisy(reduce=lambda stacked: stacked)  # keeps the batch axis: wrong shape
    before = snapshot(m)
    f = bridge.Vectorize(m, batch_axis=(0,))
    if jit:
        f = bridge.Jit(f)
    with pytest.raises(bridge.AssignmentError, match=r"\(Noisy\).count.*expected shape \(3,\)"):
        f(jnp.ones((4, 3)))
    assert_unchanged(m, before)


def test_vectorize_writes_reductions_and_next_key_after_success():
    m = Noisy()
    key_before = np.asarray(m.rs.value)
    bridge.Vectorize(m, batch_axis=(0,))(jnp.ones((4, 3)))
    reference = bridge.RandomState(0)
    reference.split(4)
    np.testing.assert_array_equal(m.rs.value, reference.value)
    assert not np.array_equal(m.rs.value, key_before)
    np.testing.assert_array_equal(m.count.value, np.ones(3))


@pytest.mark.parametrize("jit", [False, True], ids=["eager", "jit"])
def test_grad_values_that_raises_leaves_state_unchanged(jit):
    m = Noisy(fail=True)
    before = snapshot(m)
    gv = bridge.GradValues(m, m.vars())
    if jit:
        gv = bridge.Jit(gv)
    with pytest.raises(RuntimeError, match="injected failure"):
        gv(jnp.ones(3))
    assert_unchanged(m, before)


def test_jit_that_raises_while_tracing_leaves_state_unchanged():
    m = Noisy(fail=True)
    before = snapshot(m)
    with pytest.raises(RuntimeError, match="injected failure"):
        bridge.Jit(m)(jnp.ones(3))
    assert_unchanged(m, before)


def test_private_grad_values_that_raises_leaves_every_key_unchanged():
    m = Noisy(fail=True)
    keygen = bridge.random.Generator(7)
    gv = bridge.privacy.dpsgd.PrivateGradValues(m, m.vars(), noise_multiplier=1.0,
                                                l2_norm_clip=1.0, microbatch=1,
                                                keygen=keygen)
    before, key_before = snapshot(m), np.asarray(keygen.key.value)
    with pytest.raises(RuntimeError, match="injected failure"):
        gv(jnp.ones((4, 3)))
    assert_unchanged(m, before)
    np.testing.assert_array_equal(keygen.key.value, key_before)


def test_private_grad_values_advances_keys_as_random_state_split_would():
    m = Noisy()
    keygen = bridge.random.Generator(7)
    gv = bridge.privacy.dpsgd.PrivateGradValues(m, m.vars(), noise_multiplier=1.0,
                                                l2_norm_clip=1.0, microbatch=1,
                                                keygen=keygen)
    gv(jnp.ones((4, 3)))
    model_key, noise_key = bridge.RandomState(0), bridge.RandomState(7)
    model_key.split(4)
    noise_key.split(1)
    np.testing.assert_array_equal(m.rs.value, model_key.value)
    np.testing.assert_array_equal(keygen.key.value, noise_key.value)


def bad_state_transformation():
    """An optax transformation whose new state has the wrong dtype."""

    def init(params):
        return [jnp.zeros((), jnp.float32)]

    def update(updates, state, params=None):
        return updates, [state[0].astype(jnp.float16)]

    return optax.GradientTransformation(init, update)


def test_optax_step_whose_new_state_does_not_fit_updates_nothing():
    model = bridge.nn.Linear(3, 2)
    opt = bridge.optimizer.Optax(model.vars(), bad_state_transformation())
    before = snapshot(model) + [np.asarray(s.value) for s in opt.state]
    with pytest.raises(bridge.AssignmentError, match="expected dtype float32, got float16"):
        opt([jnp.ones(2), jnp.ones((3, 2))])
    after = [np.asarray(v) for v in model.vars().tensors()] + [np.asarray(s.value)
                                                               for s in opt.state]
    for old, new in zip(before, after):
        np.testing.assert_array_equal(old, new)


def test_optax_refuses_a_mis_shaped_second_gradient_before_updating_the_first():
    model = bridge.nn.Linear(3, 2)
    opt = bridge.optimizer.Optax(model.vars(), optax.adam(0.1))
    before = snapshot(model) + [np.asarray(s.value) for s in opt.state]
    with pytest.raises(ValueError, match=r"\(Linear\).w: gradient of shape \(5,\)"):
        opt([jnp.ones(2), jnp.ones(5)])
    after = snapshot(model) + [np.asarray(s.value) for s in opt.state]
    for old, new in zip(before, after):
        np.testing.assert_array_equal(old, new)


def test_optax_refuses_scalar_gradients_for_a_weight_matrix():
    model = bridge.nn.Linear(3, 2)
    opt = bridge.optimizer.Optax(model.vars(), optax.sgd(0.1))
    with pytest.raises(ValueError, match=r"\(Linear\).w: gradient of shape \(\)"):
        opt([jnp.float32(1), jnp.float32(1)])


@pytest.mark.parametrize("name", ["SGD", "Momentum", "Adam", "LARS"])
def test_objax_optimizer_with_bad_gradients_updates_nothing(name):
    model = bridge.nn.Linear(3, 2)
    opt = getattr(bridge.optimizer, name)(model.vars())
    before = snapshot(model) + [np.asarray(v) for v in opt.vars().tensors()]
    with pytest.raises(ValueError, match="nothing was updated"):
        opt(0.1, [jnp.ones(2), jnp.ones((2, 3))])
    after = snapshot(model) + [np.asarray(v) for v in opt.vars().tensors()]
    for old, new in zip(before, after):
        np.testing.assert_array_equal(old, new)


def test_optax_called_objax_style_explains_the_call():
    model = bridge.nn.Linear(3, 2)
    opt = bridge.optimizer.Optax(model.vars(), optax.sgd(0.1))
    with pytest.raises(TypeError, match=r"called as opt\(grads\).*inject_hyperparams"):
        opt(0.1, [jnp.ones(2), jnp.ones((3, 2))])


def test_undeclared_optimizer_step_counter_is_named():
    model = bridge.nn.Linear(3, 1)
    opt = bridge.optimizer.Optax(model.vars(), optax.adam(0.1))
    gv = bridge.GradValues(lambda x: model(x).sum(), model.vars())

    def step(x):
        g, v = gv(x)
        opt(g)
        return v[0]

    with pytest.raises(bridge.UndeclaredVariableError, match=r"\(Optax\).state\[\d\]"):
        bridge.Jit(step, model.vars())(jnp.ones((2, 3)))


def test_vectorize_names_an_out_of_range_batch_axis():
    f = bridge.Vectorize(lambda x: x, bridge.VarCollection(), batch_axis=(3,))
    with pytest.raises(bridge.facades.BatchAxisError,
                       match=r"argument 0: batch_axis 3 is out of range for its shape \(2, 3\)"):
        f(jnp.ones((2, 3)))


def test_grad_values_names_an_out_of_range_input_argnum():
    gv = bridge.GradValues(lambda x: x.sum(), bridge.VarCollection(), input_argnums=(2,))
    with pytest.raises(TypeError, match=r"positional arguments \(2,\).*has 1 positional"):
        gv(jnp.ones(3))


def test_grad_values_given_a_module_asks_for_its_vars():
    model = bridge.nn.Sequential([bridge.nn.Linear(2, 1)])
    with pytest.raises(TypeError, match=r"got the Sequential module itself.*model.vars\(\)"):
        bridge.GradValues(lambda x: model(x).sum(), model)


def test_non_scalar_loss_hint_speaks_grad_values_conventions():
    model = bridge.nn.Linear(3, 2)
    gv = bridge.GradValues(lambda x: model(x), model.vars())
    with pytest.raises(TypeError, match=r"shape \(1, 2\)") as info:
        gv(jnp.ones((1, 3)))
    assert "has_aux" not in str(info.value)
    assert "return loss, extra" in str(info.value)
