"""``bridge.flax.NNXModule`` against native Flax NNX (``nnx.Optimizer`` + ``nnx.jit``)."""

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from flax import nnx

import bridge
from bridge.flax import NNXModule

TOL = 1e-5


class Model(nnx.Module):
    """Linear -> BatchNorm -> relu -> Dropout -> Linear."""

    def __init__(self, rngs: nnx.Rngs):
        self.linear = nnx.Linear(6, 16, rngs=rngs)
        self.bn = nnx.BatchNorm(16, momentum=0.9, rngs=rngs)
        self.dropout = nnx.Dropout(0.3, rngs=rngs)
        self.out = nnx.Linear(16, 3, rngs=rngs)

    def __call__(self, x):
        return self.out(self.dropout(nnx.relu(self.bn(self.linear(x)))))


def cross_entropy(logits, labels):
    return optax.softmax_cross_entropy_with_integer_labels(logits, labels).mean()


def leaves(state):
    """Leaves of an nnx.State, typed PRNG keys as their raw data (comparable numbers)."""
    return [jax.random.key_data(x) if jax.dtypes.issubdtype(x.dtype, jax.dtypes.prng_key)
            else x for x in jax.tree_util.tree_leaves(state)]


def max_diff(a, b):
    return max(float(jnp.max(jnp.abs(jnp.asarray(x, jnp.float32) - jnp.asarray(y, jnp.float32))))
               for x, y in zip(a, b))


@pytest.fixture(scope="module")
def data():
    kx, ky = jax.random.split(jax.random.PRNGKey(0))
    return jax.random.normal(kx, (10, 6)), jax.random.randint(ky, (10,), 0, 3)


def new_model():
    return Model(nnx.Rngs(params=0, dropout=1))


def test_variables_named_and_typed():
    native = new_model()
    m = NNXModule(native)
    vc = m.vars()
    assert list(vc.keys()) == [
        "(NNXModule).bn/bias", "(NNXModule).bn/mean", "(NNXModule).bn/scale",
        "(NNXModule).bn/var", "(NNXModule).dropout/rngs/count", "(NNXModule).dropout/rngs/key",
        "(NNXModule).linear/bias", "(NNXModule).linear/kernel", "(NNXModule).out/bias",
        "(NNXModule).out/kernel"]
    kinds = {k.split(".", 1)[1]: type(v) for k, v in vc.items()}
    assert kinds["linear/kernel"] is bridge.TrainVar and kinds["bn/scale"] is bridge.TrainVar
    assert kinds["bn/mean"] is bridge.StateVar and kinds["dropout/rngs/count"] is bridge.StateVar
    assert kinds["dropout/rngs/key"] is bridge.RandomState
    # arrays are shared, keys kept as their raw data
    assert vc["(NNXModule).linear/kernel"].value is native.linear.kernel.get_value()
    np.testing.assert_array_equal(vc["(NNXModule).dropout/rngs/key"].value,
                                  jax.random.key_data(native.dropout.rngs.key.get_value()))
    # and come back as an nnx.State / module
    state = nnx.state(native)
    assert all(a is b for a, b in zip(leaves(m.state)[:4], leaves(state)[:4]))
    assert m.merge().linear.kernel.get_value() is native.linear.kernel.get_value()


def test_rejects_linen_module():
    with pytest.raises(TypeError, match="nnx.Module"):
        NNXModule(bridge.nn.Linear(2, 2))


def test_forward_matches_native_and_keeps_updates(data):
    x, _ = data
    native, m = new_model(), NNXModule(new_model())
    for _ in range(2):
        np.testing.assert_allclose(m(x), native(x), atol=TOL)  # new mask each call
    assert max_diff(leaves(m.state), leaves(nnx.state(native))) <= TOL
    assert int(m.vars()["(NNXModule).dropout/rngs/count"].value) == 2


def test_view_shares_variables(data):
    x, _ = data
    m = NNXModule(new_model())
    eval_m = m.view(deterministic=True, use_running_average=True)
    assert list(eval_m.vars().values()) == list(m.vars().values())
    before = m.vars().tensors()
    a, b = eval_m(x), eval_m(x)
    np.testing.assert_array_equal(a, b)
    assert all(u is v for u, v in zip(before, m.vars().tensors()))
    m(x)  # training mode moves the statistics, seen by the eval view
    ref = nnx.view(m.merge(), deterministic=True, use_running_average=True)(x)
    np.testing.assert_allclose(eval_m(x), ref, atol=TOL)


def test_training_parity_with_nnx_optimizer(data):
    """Five Adam steps with BatchNorm and Dropout: losses, gradients, params, batch
    statistics and rng counters match ``nnx.Optimizer`` under ``nnx.jit``."""
    x, y = data
    tx = optax.adam(1e-2)

    native = new_model()
    optimizer = nnx.Optimizer(native, tx, wrt=nnx.Param)

    @nnx.jit
    def native_step(model, optimizer, x, y):
        loss, grads = nnx.value_and_grad(lambda model: cross_entropy(model(x), y))(model)
        optimizer.update(model, grads)
        return loss, grads

    m = NNXModule(new_model())
    opt = bridge.optimizer.Optax(m.vars(), tx)
    gv = bridge.GradValues(lambda x, y: cross_entropy(m(x), y), m.vars())

    def step(x, y):
        g, v = gv(x, y)
        opt(g)
        return v[0], g

    train = bridge.Jit(step, m.vars() + opt.vars())
    for _ in range(5):
        value, grads = train(x, y)
        ref_value, ref_grads = native_step(native, optimizer, x, y)
        assert abs(float(value) - float(ref_value)) <= TOL
        assert max_diff(grads, leaves(ref_grads)) <= TOL
    assert max_diff(leaves(m.state), leaves(nnx.state(native))) <= TOL
    assert int(m.vars()["(NNXModule).dropout/rngs/count"].value) == 5


def test_vectorize_gives_each_example_its_own_mask():
    class Drop(nnx.Module):
        def __init__(self):
            self.dropout = nnx.Dropout(0.5, rngs=nnx.Rngs(dropout=0))

        def __call__(self, x):
            return self.dropout(x)

    m = NNXModule(Drop())
    out = bridge.Vectorize(lambda x: m(x), m.vars(), batch_axis=(0,))(jnp.ones((5, 32)))
    assert len({tuple(np.asarray(r != 0)) for r in out}) == 5
