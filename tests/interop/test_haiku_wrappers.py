"""``bridge.haiku.HaikuModule`` and ``bridge.haiku.to_haiku`` against native Haiku.

Parity runs on models Haiku ships (``hk.nets.MLP``, ``hk.nets.ResNet18`` with BatchNorm
state) against training loops written with plain ``jax.jit`` + optax.
"""

import functools

import haiku as hk
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

import bridge
from bridge.haiku import HaikuModule, to_haiku

TOL = 1e-5


def cross_entropy(logits, labels):
    return optax.softmax_cross_entropy_with_integer_labels(logits, labels).mean()


def max_diff(a, b):
    a, b = jax.tree_util.tree_leaves(a), jax.tree_util.tree_leaves(b)
    assert len(a) == len(b)
    return max(float(jnp.max(jnp.abs(jnp.asarray(x, jnp.float32) - jnp.asarray(y, jnp.float32))))
               for x, y in zip(a, b))


def object_train_step(m, tx, **kwargs):
    """GradValues + Optax inside Jit; returns the loss and the gradients."""
    opt = bridge.optimizer.Optax(m.vars(), tx)
    gv = bridge.GradValues(lambda x, y: cross_entropy(m(x, **kwargs), y), m.vars())

    def step(x, y):
        g, v = gv(x, y)
        opt(g)
        return v[0], g

    return bridge.Jit(step, m.vars() + opt.vars()), opt


# ----- hk.nets.MLP -------------------------------------------------------------------------
@pytest.fixture(scope="module")
def mlp():
    f = hk.transform(lambda x: hk.nets.MLP([32, 32, 5])(x))
    x = jax.random.normal(jax.random.PRNGKey(0), (16, 8))
    y = jax.random.randint(jax.random.PRNGKey(1), (16,), 0, 5)
    return f, f.init(jax.random.PRNGKey(2), x), x, y


def test_names_types_and_no_copy(mlp):
    f, params, x, _ = mlp
    m = HaikuModule(f, params)
    vc = m.vars()
    assert list(vc.keys()) == [
        "(HaikuModule).params/mlp/~/linear_0/b", "(HaikuModule).params/mlp/~/linear_0/w",
        "(HaikuModule).params/mlp/~/linear_1/b", "(HaikuModule).params/mlp/~/linear_1/w",
        "(HaikuModule).params/mlp/~/linear_2/b", "(HaikuModule).params/mlp/~/linear_2/w",
        "(HaikuModule).rng"]
    assert all(type(v) is bridge.TrainVar for k, v in vc.items() if "params/" in k)
    assert isinstance(vc["(HaikuModule).rng"], bridge.RandomState)
    assert vc["(HaikuModule).params/mlp/~/linear_0/w"].value is params["mlp/~/linear_0"]["w"]
    assert all(a is b for a, b in zip(jax.tree_util.tree_leaves(m.params),
                                      jax.tree_util.tree_leaves(params)))
    assert m.state == {}


def test_rejects_bad_arguments(mlp):
    f, params, _, _ = mlp
    with pytest.raises(TypeError, match="Transformed"):
        HaikuModule(lambda x: x, params)
    with pytest.raises(TypeError, match="transform_with_state"):
        HaikuModule(f, params, {"bn": {"mean": jnp.zeros(3)}})


@pytest.mark.parametrize("without_rng", [False, True])
def test_mlp_parity(mlp, without_rng):
    """Forward pass, gradients and four Adam steps equal the native loop's."""
    f, params, x, y = mlp
    if without_rng:
        f = hk.without_apply_rng(f)
    tx = optax.adam(1e-2)
    m = HaikuModule(f, params)
    rng_before = m.rng.value
    apply = f.apply if without_rng else functools.partial(f.apply, rng=None)
    np.testing.assert_allclose(m(x), apply(params, x=x), atol=TOL)
    train, opt = object_train_step(m, tx)

    @jax.jit
    def native(params, opt_state, x, y):
        loss, grads = jax.value_and_grad(lambda p: cross_entropy(apply(p, x=x), y))(params)
        updates, opt_state = tx.update(grads, opt_state, params)
        return optax.apply_updates(params, updates), opt_state, loss, grads

    p, o = params, tx.init(params)
    for _ in range(4):
        value, grads = train(x, y)
        p, o, ref_value, ref_grads = native(p, o, x, y)
        assert abs(float(value) - float(ref_value)) <= TOL
        assert max_diff(grads, ref_grads) <= TOL
    assert max_diff(m.params, p) <= TOL
    n = len(jax.tree_util.tree_leaves(p))
    assert max_diff(opt.vars().tensors()[n:], o) <= TOL
    if without_rng:  # no rng argument: no key is drawn
        assert m.rng.value is rng_before


# ----- hk.nets.ResNet18 with BatchNorm state ----------------------------------------------
@pytest.mark.slow
def test_resnet18_parity_with_state():
    """hk.nets.ResNet18, is_training=True: losses, gradients, params and the BatchNorm
    state after three Adam steps equal the native ``transform_with_state`` loop's."""
    f = hk.transform_with_state(lambda x, is_training: hk.nets.ResNet18(10)(x, is_training))
    x = jax.random.normal(jax.random.PRNGKey(0), (2, 32, 32, 3))
    y = jnp.array([3, 7])
    params, state = jax.jit(functools.partial(f.init, is_training=True))(jax.random.PRNGKey(1), x)
    tx = optax.adam(1e-3)

    m = HaikuModule(f, params, state)
    assert "(HaikuModule).state/res_net18/~/initial_batchnorm/~/mean_ema/average" in m.vars()
    assert isinstance(m.vars()["(HaikuModule).state/res_net18/~/initial_batchnorm/~/mean_ema/"
                               "counter"], bridge.StateVar)
    train, _ = object_train_step(m, tx, is_training=True)

    @jax.jit
    def native(params, state, opt_state, x, y):
        def loss(p):
            logits, new_state = f.apply(p, state, None, x, is_training=True)
            return cross_entropy(logits, y), new_state

        (value, state), grads = jax.value_and_grad(loss, has_aux=True)(params)
        updates, opt_state = tx.update(grads, opt_state, params)
        return optax.apply_updates(params, updates), state, opt_state, value, grads

    p, s, o = params, state, tx.init(params)
    for _ in range(3):
        value, grads = train(x, y)
        p, s, o, ref_value, ref_grads = native(p, s, o, x, y)
        assert abs(float(value) - float(ref_value)) <= TOL
        assert max_diff(grads, ref_grads) <= TOL
    assert max_diff(m.params, p) <= TOL
    assert max_diff(m.state, s) <= TOL
    counter = m.state["res_net18/~/initial_batchnorm/~/mean_ema"]["counter"]
    assert int(counter) == 3 and counter.dtype == s[
        "res_net18/~/initial_batchnorm/~/mean_ema"]["counter"].dtype


# ----- rng ---------------------------------------------------------------------------------
def _dropout_net(x, is_training=True):
    x = hk.Linear(16)(x)
    if is_training:
        x = hk.dropout(hk.next_rng_key(), 0.5, x)
    return hk.Linear(2)(x)


def test_a_call_that_uses_no_key_gets_none_and_leaves_rng_alone():
    """needs_rng=None: the eval call's jaxpr does not read the key, so rng=None is passed."""
    f = hk.transform(_dropout_net)
    x = jnp.ones((4, 3))
    params = f.init(jax.random.PRNGKey(0), x)
    m = HaikuModule(f, params, seed=3)
    rng = m.rng.value
    np.testing.assert_allclose(m(x, is_training=False), f.apply(params, None, x, False),
                               atol=TOL)
    assert m.rng.value is rng


def test_once_a_call_uses_the_key_every_call_draws_one():
    """A training call reads the key: it and every later call (eval too) draw
    ``m.rng, key = jax.random.split(m.rng)`` and pass ``key``."""
    f = hk.transform(_dropout_net)
    x = jnp.ones((4, 3))
    params = f.init(jax.random.PRNGKey(0), x)
    m = HaikuModule(f, params, seed=3)
    state, key = jax.random.split(jax.random.PRNGKey(3))
    np.testing.assert_allclose(m(x), f.apply(params, key, x), atol=TOL)
    np.testing.assert_array_equal(m.rng.value, state)
    m(x, is_training=False)
    np.testing.assert_array_equal(m.rng.value, jax.random.split(state)[0])


def test_a_deterministic_model_under_jit_draws_no_key():
    f = hk.transform(lambda x: hk.nets.MLP([4, 2])(x))
    x = jnp.ones((4, 3))
    m = HaikuModule(f, f.init(jax.random.PRNGKey(0), x))
    rng = m.rng.value
    step = bridge.Jit(lambda x: m(x), m.vars())
    np.testing.assert_allclose(step(x), f.apply(m.params, None, x), atol=TOL)
    step(x)
    assert m.rng.value is rng


def test_needs_rng_false_passes_none_and_leaves_rng_alone():
    f = hk.transform(_dropout_net)
    x = jnp.ones((4, 3))
    params = f.init(jax.random.PRNGKey(0), x)
    m = HaikuModule(f, params, needs_rng=False)
    rng = m.rng.value
    np.testing.assert_allclose(m(x, is_training=False), f.apply(params, None, x, False),
                               atol=TOL)
    assert m.rng.value is rng


def test_needs_rng_true_is_refused_for_an_apply_without_rng():
    f = hk.without_apply_rng(hk.transform(_dropout_net))
    params = f.init(jax.random.PRNGKey(0), jnp.ones((4, 3)))
    with pytest.raises(TypeError, match="needs_rng=True"):
        HaikuModule(f, params, needs_rng=True)


def test_a_model_without_rng_argument_that_draws_fails_as_in_haiku():
    f = hk.transform(_dropout_net)
    x = jnp.ones((4, 3))
    params = f.init(jax.random.PRNGKey(0), x)
    native = hk.without_apply_rng(f)
    with pytest.raises(ValueError) as expected:
        native.apply(params, x)
    with pytest.raises(type(expected.value)):
        HaikuModule(native, params)(x)


def test_vectorize_gives_each_example_its_own_rng():
    f = hk.transform(lambda x: hk.dropout(hk.next_rng_key(), 0.5, x))
    m = HaikuModule(f, f.init(jax.random.PRNGKey(0), jnp.ones(32)))
    jitted = bridge.Jit(bridge.Vectorize(lambda x: m(x), m.vars(), batch_axis=(0,)))
    out = jitted(jnp.ones((6, 32)))
    assert len({tuple(np.asarray(r != 0)) for r in out}) == 6
    assert not np.array_equal(out, jitted(jnp.ones((6, 32))))


# ----- object module -> Haiku --------------------------------------------------------------
class ObjectNet(bridge.Module):
    def __init__(self):
        self.l1 = bridge.nn.Linear(3, 8)
        self.bn = bridge.nn.BatchNorm0D(8, momentum=0.9)
        self.drop = bridge.nn.Dropout(0.5, generator=bridge.random.Generator(0))
        self.l2 = bridge.nn.Linear(8, 2)

    def __call__(self, x, training):
        x = jax.nn.relu(self.bn(self.l1(x), training=training))
        return self.l2(self.drop(x, training=training))


def test_to_haiku_init_returns_current_weights():
    model = ObjectNet()
    f = to_haiku(model)
    assert isinstance(f, hk.TransformedWithState)
    params, state = f.init(jax.random.PRNGKey(0), jnp.ones((2, 3)), training=False)
    assert params["(ObjectNet).l1(Linear)"]["w"] is model.l1.w.value
    assert params["(ObjectNet).bn(BatchNorm0D)"]["gamma"] is model.bn.gamma.value
    assert state["(ObjectNet).bn(BatchNorm0D)"]["running_mean"] is model.bn.running_mean.value
    assert len(jax.tree_util.tree_leaves((params, state))) == len(list(model.vars()))
    assert hk.data_structures.tree_size(params) == sum(
        v.size for v in model.vars().subset(bridge.TrainVar).values())


def test_to_haiku_apply_matches_object_and_is_pure():
    model = ObjectNet()
    x = jax.random.normal(jax.random.PRNGKey(0), (6, 3))
    f = to_haiku(model)
    params, state = f.init(None, x)
    before = model.vars().tensors()
    apply = jax.jit(f.apply, static_argnames="training")
    out, new_state = apply(params, state, None, x, training=False)
    np.testing.assert_allclose(out, model(x, training=False), atol=TOL)
    # training: BatchNorm statistics come back in the new state, the object is untouched
    out, new_state = apply(params, state, jax.random.PRNGKey(1), x, training=True)
    assert all(a is b for a, b in zip(before, model.vars().tensors()))
    bn = "(ObjectNet).bn(BatchNorm0D)"
    assert not np.allclose(new_state[bn]["running_mean"], state[bn]["running_mean"])
    ref = ObjectNet()
    ref.vars().assign(before)
    ref.bn(ref.l1(x), training=True)
    np.testing.assert_allclose(new_state[bn]["running_mean"], ref.bn.running_mean.value, atol=TOL)
    np.testing.assert_allclose(new_state[bn]["running_var"], ref.bn.running_var.value, atol=TOL)
    # with an rng the stored key is not advanced; different rngs, different masks
    [key_name] = [k for k, v in model.vars().items() if isinstance(v, bridge.RandomState)]
    mod, leaf = key_name.rsplit(".", 1)
    np.testing.assert_array_equal(new_state[mod][leaf], state[mod][leaf])
    out2, _ = apply(params, state, jax.random.PRNGKey(2), x, training=True)
    assert not np.allclose(out, out2)
    # without an rng the stored key is used and advanced in the returned state
    _, s1 = apply(params, state, None, x, training=True)
    assert not np.array_equal(s1[mod][leaf], state[mod][leaf])


def test_to_haiku_trains_natively_and_lifts_into_haiku():
    """The exported function inside a Haiku model (``hk.lift_with_state``), trained with
    plain ``jax.grad``; the object module is never written."""
    head = ObjectNet()
    exported = to_haiku(head)

    def net(x):
        h = jax.nn.relu(hk.Linear(3)(x))
        init, updater = hk.lift_with_state(exported.init, name="object")
        params, state = init(hk.next_rng_key(), h, training=True)
        out, new_state = exported.apply(params, state, hk.next_rng_key(), h, training=True)
        updater.update(new_state)  # the object's BatchNorm statistics, kept by Haiku
        return out

    f = hk.transform_with_state(net)
    x = jax.random.normal(jax.random.PRNGKey(0), (32, 4))
    y = (x[:, 0] > 0).astype(jnp.int32)
    params, state = f.init(jax.random.PRNGKey(1), x)
    lifted = [k for k in params if "object" in k]
    assert lifted and any(v is head.l1.w.value for k in lifted for v in params[k].values())
    w_before = head.l1.w.value

    @jax.jit
    def step(params, state, key):
        def loss(p):
            out, s = f.apply(p, state, key, x)
            return cross_entropy(out, y), s

        (value, state), g = jax.value_and_grad(loss, has_aux=True)(params)
        return jax.tree_util.tree_map(lambda a, b: a - 0.1 * b, params, g), state, value

    losses = []
    for i in range(30):
        params, state, value = step(params, state, jax.random.PRNGKey(i))
        losses.append(float(value))
    assert losses[-1] < losses[0]
    bn = [k for k in state if k.endswith("(BatchNorm0D)")]
    assert bn and not np.allclose(state[bn[0]]["running_mean"], head.bn.running_mean.value)
    assert head.l1.w.value is w_before
