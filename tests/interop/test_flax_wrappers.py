"""``bridge.flax.FlaxModule`` and ``bridge.flax.to_linen`` against native Flax Linen.

The reference is always Linen itself: ``module.apply`` and a training loop written with
plain ``jax.jit`` + ``jax.value_and_grad`` + optax over the variables dict.
"""

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from flax.core import freeze

import bridge
from bridge.flax import FlaxModule, to_linen

TOL = 1e-5


class CNN(nn.Module):
    """A small Linen CNN with every feature the wrapper must handle: BatchNorm state,
    Dropout randomness and a ``train`` flag."""

    @nn.compact
    def __call__(self, x, train: bool):
        x = nn.Conv(8, (3, 3))(x)
        x = nn.BatchNorm(use_running_average=not train, momentum=0.9)(x)
        x = nn.relu(x)
        x = nn.avg_pool(x, (2, 2), strides=(2, 2))
        x = nn.Dropout(0.25, deterministic=not train)(x)
        x = x.reshape((x.shape[0], -1))
        x = nn.Dense(16)(x)
        x = nn.relu(x)
        return nn.Dense(4)(x)


def cross_entropy(logits, labels):
    return optax.softmax_cross_entropy_with_integer_labels(logits, labels).mean()


def max_diff(a, b):
    return max(float(jnp.max(jnp.abs(jnp.asarray(x, jnp.float32) - jnp.asarray(y, jnp.float32))))
               for x, y in zip(jax.tree_util.tree_leaves(a), jax.tree_util.tree_leaves(b)))


@pytest.fixture(scope="module")
def data():
    kx, ky = jax.random.split(jax.random.PRNGKey(42))
    x = jax.random.normal(kx, (8, 12, 12, 3))
    y = jax.random.randint(ky, (8,), 0, 4)
    return x, y


@pytest.fixture(scope="module")
def cnn_variables(data):
    return jax.jit(lambda k, x: CNN().init(k, x, train=False))(jax.random.PRNGKey(0), data[0])


# ----- structure ---------------------------------------------------------------------------
def test_variables_named_typed_and_not_copied(cnn_variables):
    m = FlaxModule(CNN(), cnn_variables)
    vc = m.vars()
    flat = jax.tree_util.tree_flatten_with_path(cnn_variables)[0]
    expected = ["(FlaxModule)." + "/".join(k.key for k in path) for path, _ in flat]
    assert list(vc.keys()) == expected + ["(FlaxModule).rng"]
    assert "(FlaxModule).params/Dense_0/kernel" in vc
    assert "(FlaxModule).batch_stats/BatchNorm_0/mean" in vc
    for name, var in vc.items():
        if ".params/" in name:
            assert type(var) is bridge.TrainVar, name
        elif name.endswith(".rng"):
            assert isinstance(var, bridge.RandomState)
        else:
            assert type(var) is bridge.StateVar, name
    # the wrapper holds the very arrays it was given, and gives them back
    for (_, leaf), var in zip(flat, vc.values()):
        assert var.value is leaf
    given = jax.tree_util.tree_leaves(cnn_variables)
    assert all(a is b for a, b in zip(jax.tree_util.tree_leaves(m.variables), given))
    assert jax.tree_util.tree_structure(m.variables) == jax.tree_util.tree_structure(cnn_variables)
    # scope prefix as for any module
    assert all(k.startswith("net.(FlaxModule).") for k in m.vars("net.").keys())


def test_frozen_dict_variables(cnn_variables, data):
    m = FlaxModule(CNN(), freeze(cnn_variables))
    out = m(data[0], train=False)
    np.testing.assert_allclose(out, CNN().apply(cnn_variables, data[0], train=False), atol=TOL)


def test_rejects_wrong_module_and_mutable():
    with pytest.raises(TypeError, match="flax.linen.Module"):
        FlaxModule(bridge.nn.Linear(2, 2), {})
    m = FlaxModule(nn.Dense(2), nn.Dense(2).init(jax.random.PRNGKey(0), jnp.ones((1, 3))))
    with pytest.raises(TypeError, match="mutable"):
        m(jnp.ones((1, 3)), mutable=["batch_stats"])


# ----- forward pass ------------------------------------------------------------------------
def test_eval_forward_matches_apply_and_changes_nothing(cnn_variables, data):
    m = FlaxModule(CNN(), cnn_variables)
    before = m.vars().tensors()
    out = m(data[0], train=False)
    ref = CNN().apply(cnn_variables, data[0], train=False)
    np.testing.assert_allclose(out, ref, atol=TOL)
    assert all(a is b for a, b in zip(before, m.vars().tensors()))  # no rng drawn, no state


def test_train_forward_keeps_batch_stats_and_draws_dropout_keys(cnn_variables, data):
    x = data[0]
    m = FlaxModule(CNN(), cnn_variables, seed=7)
    out = m(x, train=True)
    rng, key = jax.random.split(jax.random.PRNGKey(7))   # the documented derivation
    ref, updates = CNN().apply(cnn_variables, x, train=True, rngs={"dropout": key},
                               mutable=["batch_stats"])
    np.testing.assert_allclose(out, ref, atol=TOL)
    assert max_diff(m.variables["batch_stats"], updates["batch_stats"]) <= TOL
    np.testing.assert_array_equal(m.rng.value, rng)
    # a second call: new dropout mask, statistics moved again
    out2 = m(x, train=True)
    assert not np.allclose(out, out2)
    _, key2 = jax.random.split(rng)
    ref2, _ = CNN().apply({"params": cnn_variables["params"], **updates}, x, train=True,
                          rngs={"dropout": key2}, mutable=["batch_stats"])
    np.testing.assert_allclose(out2, ref2, atol=TOL)


def test_explicit_rngs_leave_rng_alone(cnn_variables, data):
    m = FlaxModule(CNN(), cnn_variables)
    rng = m.rng.value
    key = jax.random.PRNGKey(3)
    out = m(data[0], train=True, rngs={"dropout": key})
    ref, _ = CNN().apply(cnn_variables, data[0], train=True, rngs={"dropout": key},
                         mutable=["batch_stats"])
    np.testing.assert_allclose(out, ref, atol=TOL)
    assert m.rng.value is rng


def test_params_only_model_and_method_kwarg():
    class Encoder(nn.Module):
        @nn.compact
        def __call__(self, x):
            return self.encode(x) * 2

        @nn.compact
        def encode(self, x):
            return nn.Dense(3)(x)

    x = jnp.ones((2, 5))
    variables = Encoder().init(jax.random.PRNGKey(0), x)
    m = FlaxModule(Encoder(), variables)
    np.testing.assert_allclose(m(x), Encoder().apply(variables, x), atol=TOL)
    np.testing.assert_allclose(m(x, method="encode"),
                               Encoder().apply(variables, x, method="encode"), atol=TOL)
    jit_encode = bridge.Jit(lambda x: m(x, method="encode"), m.vars())
    np.testing.assert_allclose(jit_encode(x), Encoder().apply(variables, x, method="encode"),
                               atol=TOL)


def test_undeclared_wrapper_in_jit_is_reported(cnn_variables, data):
    m = FlaxModule(CNN(), cnn_variables)
    other = bridge.nn.Linear(2, 2)
    f = bridge.Jit(lambda x: m(x, train=False), other.vars())
    with pytest.raises(bridge.UndeclaredVariableError, match=r"\(FlaxModule\)\.batch_stats"):
        f(data[0])


# ----- training parity ---------------------------------------------------------------------
def test_training_parity_with_native_loop(cnn_variables, data):
    """Gradients, parameters, batch statistics and losses of five Adam steps with dropout
    match a native ``jax.jit`` loop that draws its dropout keys the same way."""
    x, y = data
    tx = optax.adam(1e-2)
    net = CNN()

    m = FlaxModule(net, cnn_variables, seed=5)
    opt = bridge.optimizer.Optax(m.vars(), tx)
    gv = bridge.GradValues(lambda x, y: cross_entropy(m(x, train=True), y), m.vars())

    def step(x, y):
        g, v = gv(x, y)
        opt(g)
        return v[0], g

    train = bridge.Jit(step, m.vars() + opt.vars())

    @jax.jit
    def native(params, batch_stats, opt_state, rng, x, y):
        rng, key = jax.random.split(rng)

        def loss(p):
            out, upd = net.apply({"params": p, "batch_stats": batch_stats}, x, train=True,
                                 rngs={"dropout": key}, mutable=["batch_stats"])
            return cross_entropy(out, y), upd["batch_stats"]

        (value, batch_stats), grads = jax.value_and_grad(loss, has_aux=True)(params)
        updates, opt_state = tx.update(grads, opt_state, params)
        return optax.apply_updates(params, updates), batch_stats, opt_state, rng, value, grads

    params, stats = cnn_variables["params"], cnn_variables["batch_stats"]
    opt_state, rng = tx.init(params), jax.random.PRNGKey(5)
    train_names = [k for k, v in m.vars().items() if isinstance(v, bridge.TrainVar)]
    for _ in range(5):
        value, grads = train(x, y)
        params, stats, opt_state, rng, ref_value, ref_grads = native(
            params, stats, opt_state, rng, x, y)
        assert abs(float(value) - float(ref_value)) <= TOL
        ref_flat = jax.tree_util.tree_leaves(ref_grads)  # sorted order == wrapper order
        assert len(grads) == len(ref_flat) == len(train_names)
        assert max_diff(grads, ref_flat) <= TOL
    assert max_diff(m.variables, {"batch_stats": stats, "params": params}) <= TOL
    np.testing.assert_array_equal(m.rng.value, rng)
    # the optimizer state too
    assert max_diff(opt.vars().tensors()[len(train_names):],
                    jax.tree_util.tree_leaves(opt_state)) <= TOL


def test_vectorize_gives_each_example_its_own_dropout_keys():
    class Drop(nn.Module):
        @nn.compact
        def __call__(self, x):
            return nn.Dropout(0.5, deterministic=False)(x)

    m = FlaxModule(Drop(), {})
    per_example = bridge.Vectorize(lambda x: m(x), m.vars(), batch_axis=(0,))
    out = per_example(jnp.ones((6, 32)))
    assert out.shape == (6, 32)
    rows = {tuple(np.asarray(r != 0)) for r in out}
    assert len(rows) == 6  # six different masks
    rng = m.rng.value
    out2 = per_example(jnp.ones((6, 32)))
    assert not np.array_equal(out, out2) and m.rng.value is not rng


def test_vectorize_reduces_batch_stats(cnn_variables):
    """Per-example state updates are averaged, as for any StateVar in Vectorize."""
    class BN(nn.Module):
        @nn.compact
        def __call__(self, x):
            return nn.BatchNorm(use_running_average=False, momentum=0.5)(x)

    x = jax.random.normal(jax.random.PRNGKey(0), (4, 3, 5))
    variables = BN().init(jax.random.PRNGKey(1), x[0])
    m = FlaxModule(BN(), variables)
    bridge.Vectorize(lambda x: m(x), m.vars(), batch_axis=(0,))(x)
    means = [BN().apply(variables, xi, mutable=["batch_stats"])[1]["batch_stats"]["BatchNorm_0"]
             ["mean"] for xi in x]
    np.testing.assert_allclose(m.variables["batch_stats"]["BatchNorm_0"]["mean"],
                               np.mean(means, axis=0), atol=TOL)


# ----- object module -> Linen --------------------------------------------------------------
class ObjectNet(bridge.Module):
    def __init__(self):
        self.conv = bridge.nn.Conv2D(3, 4, 3)
        self.bn = bridge.nn.BatchNorm2D(4, momentum=0.9)
        self.drop = bridge.nn.Dropout(0.5, generator=bridge.random.Generator(1))
        self.fc = bridge.nn.Linear(4, 2)

    def __call__(self, x, training):
        x = jax.nn.relu(self.bn(self.conv(x), training=training))
        x = self.drop(x, training=training)
        return self.fc(x.mean((2, 3)))


def test_to_linen_init_returns_current_weights():
    model = ObjectNet()
    x = jnp.ones((2, 3, 6, 6))
    lin = to_linen(model)
    assert isinstance(lin, nn.Module)
    variables = lin.init(jax.random.PRNGKey(0), x, training=False)
    names = model.vars().names()
    for v in model.vars():
        collection = "params" if isinstance(v, bridge.TrainVar) else "batch_stats"
        assert variables[collection][names[id(v)]] is v.value
    assert set(variables) == {"params", "batch_stats"}
    n = sum(1 for _ in jax.tree_util.tree_leaves(variables))
    assert n == len(list(model.vars()))


def test_to_linen_apply_matches_object_and_is_pure():
    model = ObjectNet()
    x = jax.random.normal(jax.random.PRNGKey(0), (2, 3, 6, 6))
    lin = to_linen(model)
    variables = lin.init(jax.random.PRNGKey(0), x, training=False)
    before = model.vars().tensors()
    out = jax.jit(lambda v, x: lin.apply(v, x, training=False))(variables, x)
    np.testing.assert_allclose(out, model(x, training=False), atol=TOL)
    # training: statistics come back through `mutable`, the object is untouched
    out, updates = lin.apply(variables, x, training=True, rngs={"dropout": jax.random.PRNGKey(1)},
                             mutable=["batch_stats"])
    assert all(a is b for a, b in zip(before, model.vars().tensors()))
    ref_model = ObjectNet()
    ref_model.vars().assign(before)
    ref_model.bn(ref_model.conv(x), training=True)
    np.testing.assert_allclose(updates["batch_stats"]["(ObjectNet).bn(BatchNorm2D).running_mean"],
                               ref_model.bn.running_mean.value, atol=TOL)
    # the dropout key came from `rngs`, so the stored key is returned unchanged
    [key_name] = [k for k, v in model.vars().items() if isinstance(v, bridge.RandomState)]
    assert updates["batch_stats"][key_name] is variables["batch_stats"][key_name]
    out2, _ = lin.apply(variables, x, training=True, rngs={"dropout": jax.random.PRNGKey(2)},
                        mutable=["batch_stats"])
    assert not np.allclose(out, out2)


def test_to_linen_inside_a_linen_model_trains_with_jax_grad():
    """An object layer used as a submodule of a Linen model, trained natively."""
    head = bridge.nn.Linear(8, 1)

    class Net(nn.Module):
        @nn.compact
        def __call__(self, x):
            return to_linen(head)(nn.relu(nn.Dense(8)(x)))

    x = jax.random.normal(jax.random.PRNGKey(0), (16, 3))
    y = x.sum(1, keepdims=True)
    variables = Net().init(jax.random.PRNGKey(1), x)
    assert variables["params"]["BridgeLinen_0"]["(Linear).w"] is head.w.value
    w_before = head.w.value

    @jax.jit
    def step(p):
        loss, g = jax.value_and_grad(lambda p: ((Net().apply({"params": p}, x) - y) ** 2).mean())(p)
        return jax.tree_util.tree_map(lambda a, b: a - 0.05 * b, p, g), loss

    p = variables["params"]
    losses = []
    for _ in range(50):
        p, loss = step(p)
        losses.append(float(loss))
    assert losses[-1] < 0.5 * losses[0]
    assert head.w.value is w_before  # the object itself was never written


def test_boxed_params_keep_their_metadata_and_plain_names():
    class Sharded(nn.Module):
        @nn.compact
        def __call__(self, x):
            init = nn.with_partitioning(nn.initializers.lecun_normal(), (None, "model"))
            return nn.Dense(3, kernel_init=init)(x)

    x = jnp.ones((2, 4))
    variables = Sharded().init(jax.random.PRNGKey(0), x)
    m = FlaxModule(Sharded(), variables)
    assert "(FlaxModule).params/Dense_0/kernel" in m.vars()
    kernel = m.variables["params"]["Dense_0"]["kernel"]
    assert isinstance(kernel, nn.Partitioned) and kernel.names == (None, "model")
    np.testing.assert_allclose(m(x), Sharded().apply(variables, x), atol=TOL)
