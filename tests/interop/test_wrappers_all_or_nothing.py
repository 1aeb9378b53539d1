"""A wrapper call writes every variable it changes, or none.

``FlaxModule``, ``HaikuModule`` and ``NNXModule`` work out every new value of a call (the
state leaves and the next rng key) before writing any of them. When one value does not
fit its variable, or the model created variables the wrapper does not hold, the call
raises and every variable, the rng included, keeps the array it had. Each model here has
valid state updates (batch statistics, dropout keys or counters) ahead of the faulty leaf
in the wrapper's order, so a leaf-by-leaf write back would have left some of them written.

Each model takes the fault as a call argument, so one wrapper first makes a normal
training call (which also tells it which random streams the model uses) and then a
faulty one. The references for normal calls are the libraries themselves.
"""

import flax.linen as nn
import haiku as hk
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

import bridge
from bridge.flax import FlaxModule, NNXModule
from bridge.haiku import HaikuModule

TOL = 1e-6
SEED = 3  # the wrappers' rng seed
FAULTS = ["dtype", "shape"]


def faulty(value, fault):
    """``value`` as a model with a bug would store it."""
    if fault == "dtype":
        return value.astype(jnp.float16)
    if fault == "shape":
        return value[:2]
    return value


@pytest.fixture(scope="module")
def x():
    return jax.random.normal(jax.random.PRNGKey(0), (8, 3))


def snapshot(m):
    """Every variable of ``m`` by name, as NumPy copies of the stored arrays."""
    return {name: np.array(v.value) for name, v in m.vars().items()}


def assert_unchanged(m, before):
    after = snapshot(m)
    assert list(after) == list(before)
    for name, value in before.items():
        assert after[name].dtype == value.dtype, name
        np.testing.assert_array_equal(after[name], value, err_msg=name)


def in_jit(m):
    """``m(x, **flags)`` as one ``bridge.Jit`` call (string and bool flags are static)."""
    return bridge.Jit(lambda x, **flags: m(x, **flags), m.vars())


def in_grad_values(m):
    """``m(x, **flags)`` inside the trace of ``bridge.GradValues``."""
    gv = bridge.GradValues(lambda x, **flags: jnp.sum(m(x, **flags)), m.vars())
    return lambda x, **flags: gv(x, **flags)


def eager(m):
    return m


TRANSFORMS = {"Jit": in_jit, "GradValues": in_grad_values}


# ----- Flax Linen --------------------------------------------------------------------------
class LinenNet(nn.Module):
    """Dense -> BatchNorm -> Dropout, plus a running sum ``batch_stats/total`` that sorts
    after ``batch_stats/BatchNorm_0/*``. ``fault`` stores that sum with the wrong dtype or
    shape; ``extra`` makes the model create a variable it was not initialised with."""

    @nn.compact
    def __call__(self, x, train: bool, fault: str = "", extra: bool = False):
        x = nn.Dense(4)(x)
        x = nn.BatchNorm(use_running_average=not train, momentum=0.9)(x)
        x = nn.Dropout(0.5, deterministic=not train)(x)
        total = self.variable("batch_stats", "total", jnp.zeros, (4,))
        if extra:
            self.variable("batch_stats", "unexpected", jnp.zeros, ())
        if train:
            total.value = faulty(total.value + x.mean(0), fault)
        return x


@pytest.fixture(scope="module")
def linen_variables(x):
    return LinenNet().init(jax.random.PRNGKey(1), x, train=False)


def trained_linen(variables, x):
    """A FlaxModule after one training call (it has found the dropout stream)."""
    m = FlaxModule(LinenNet(), variables, seed=SEED)
    m(x, train=True)
    return m


@pytest.mark.parametrize("fault", FAULTS)
def test_flax_bad_leaf_raises_naming_it_and_changes_nothing(linen_variables, x, fault):
    m = trained_linen(linen_variables, x)
    before = snapshot(m)
    with pytest.raises(bridge.AssignmentError, match="batch_stats/total") as info:
        m(x, train=True, fault=fault)
    assert "BatchNorm_0" not in str(info.value)  # only the faulty leaf is reported
    assert_unchanged(m, before)


def test_flax_bad_leaf_on_the_call_that_finds_the_stream_changes_nothing(linen_variables, x):
    m = FlaxModule(LinenNet(), linen_variables, seed=SEED)
    before = snapshot(m)
    with pytest.raises(bridge.AssignmentError, match="batch_stats/total"):
        m(x, train=True, fault="dtype")
    assert_unchanged(m, before)


def test_flax_created_variable_raises_and_leaves_rng_unchanged(linen_variables, x):
    m = trained_linen(linen_variables, x)
    before = snapshot(m)
    with pytest.raises(ValueError, match="created variables it was not given"):
        m(x, train=True, extra=True)
    assert_unchanged(m, before)


@pytest.mark.parametrize("transform", sorted(TRANSFORMS))
@pytest.mark.parametrize("fault", FAULTS)
def test_flax_bad_leaf_inside_transform_changes_nothing(linen_variables, x, fault, transform):
    m = trained_linen(linen_variables, x)
    before = snapshot(m)
    with pytest.raises(bridge.AssignmentError, match="batch_stats/total"):
        TRANSFORMS[transform](m)(x, train=True, fault=fault)
    assert_unchanged(m, before)


@pytest.mark.parametrize("transform", sorted(TRANSFORMS))
def test_flax_created_variable_inside_transform_changes_nothing(linen_variables, x, transform):
    m = trained_linen(linen_variables, x)
    before = snapshot(m)
    with pytest.raises(ValueError, match="created variables it was not given"):
        TRANSFORMS[transform](m)(x, train=True, extra=True)
    assert_unchanged(m, before)


@pytest.mark.parametrize("run", [eager, in_jit])
def test_flax_calls_update_batch_stats_and_advance_rng_as_linen(linen_variables, x, run):
    m = FlaxModule(LinenNet(), linen_variables, seed=SEED)
    call = run(m)
    rng, variables = jax.random.PRNGKey(SEED), linen_variables
    for _ in range(2):
        rng, key = jax.random.split(rng)
        ref, updates = LinenNet().apply(variables, x, train=True, rngs={"dropout": key},
                                        mutable=["batch_stats"])
        variables = {**variables, **updates}
        out = call(x, train=True)
        np.testing.assert_allclose(out, ref, atol=TOL)
        np.testing.assert_array_equal(m.rng.value, rng)
        for a, b in zip(jax.tree_util.tree_leaves(m.variables),
                        jax.tree_util.tree_leaves(variables)):
            np.testing.assert_allclose(a, b, atol=TOL)
    assert not np.allclose(m.variables["batch_stats"]["total"], 0)


# ----- Haiku -------------------------------------------------------------------------------
def haiku_fn(x, is_training, fault=""):
    """Linear -> BatchNorm -> dropout, plus a running sum in state ``~/total``, which sorts
    after ``batch_norm/~/...``; ``fault`` stores it with the wrong dtype or shape."""
    x = hk.Linear(4)(x)
    x = hk.BatchNorm(True, True, 0.9)(x, is_training)
    if is_training:
        x = hk.dropout(hk.next_rng_key(), 0.5, x)
    total = hk.get_state("total", [4], init=jnp.zeros)
    if is_training:
        hk.set_state("total", faulty(total + x.mean(0), fault))
    return x


haiku_net = hk.transform_with_state(haiku_fn)


@pytest.fixture(scope="module")
def haiku_variables(x):
    return haiku_net.init(jax.random.PRNGKey(1), x, is_training=True)


def trained_haiku(variables, x):
    """A HaikuModule after one training call (it knows the model draws random numbers)."""
    m = HaikuModule(haiku_net, *variables, seed=SEED)
    m(x, is_training=True)
    return m


@pytest.mark.parametrize("fault", FAULTS)
def test_haiku_bad_leaf_raises_naming_it_and_changes_nothing(haiku_variables, x, fault):
    m = trained_haiku(haiku_variables, x)
    before = snapshot(m)
    with pytest.raises(bridge.AssignmentError, match="state/~/total") as info:
        m(x, is_training=True, fault=fault)
    assert "batch_norm" not in str(info.value)
    assert_unchanged(m, before)


def test_haiku_bad_leaf_on_the_call_that_finds_the_rng_changes_nothing(haiku_variables, x):
    m = HaikuModule(haiku_net, *haiku_variables, seed=SEED)
    before = snapshot(m)
    with pytest.raises(bridge.AssignmentError, match="state/~/total"):
        m(x, is_training=True, fault="dtype")
    assert_unchanged(m, before)


@pytest.mark.parametrize("transform", sorted(TRANSFORMS))
@pytest.mark.parametrize("fault", FAULTS)
def test_haiku_bad_leaf_inside_transform_changes_nothing(haiku_variables, x, fault, transform):
    m = trained_haiku(haiku_variables, x)
    before = snapshot(m)
    with pytest.raises(bridge.AssignmentError, match="state/~/total"):
        TRANSFORMS[transform](m)(x, is_training=True, fault=fault)
    assert_unchanged(m, before)


@pytest.mark.parametrize("run", [eager, in_jit])
def test_haiku_calls_update_state_and_advance_rng_as_haiku(haiku_variables, x, run):
    params, state = haiku_variables
    m = HaikuModule(haiku_net, params, state, seed=SEED)
    call = run(m)
    rng = jax.random.PRNGKey(SEED)
    for _ in range(2):
        rng, key = jax.random.split(rng)
        ref, state = haiku_net.apply(params, state, key, x, is_training=True)
        out = call(x, is_training=True)
        np.testing.assert_allclose(out, ref, atol=TOL)
        np.testing.assert_array_equal(m.rng.value, rng)
        for a, b in zip(jax.tree_util.tree_leaves(m.state), jax.tree_util.tree_leaves(state)):
            np.testing.assert_allclose(a, b, atol=TOL)
    assert not np.allclose(m.state["~"]["total"], 0)


# ----- Flax NNX ----------------------------------------------------------------------------
class NNXNet(nnx.Module):
    """Linear -> BatchNorm -> Dropout, plus a running sum ``total`` that sorts after the
    batch statistics and the dropout stream; ``fault`` stores it with the wrong dtype or
    shape."""

    def __init__(self, rngs: nnx.Rngs):
        self.linear = nnx.Linear(3, 4, rngs=rngs)
        self.bn = nnx.BatchNorm(4, momentum=0.9, rngs=rngs)
        self.dropout = nnx.Dropout(0.5, rngs=rngs)
        self.total = nnx.BatchStat(jnp.zeros(4))

    def __call__(self, x, fault=""):
        x = self.dropout(self.bn(self.linear(x)))
        self.total.set_value(faulty(self.total.get_value() + x.mean(0), fault))
        return x


def nnx_net():
    return NNXNet(nnx.Rngs(params=0, dropout=1))


def trained_nnx(x):
    m = NNXModule(nnx_net())
    m(x)
    return m


def nnx_leaves(state):
    """An nnx.State's leaves, typed PRNG keys as their raw data."""
    return [jax.random.key_data(v) if jax.dtypes.issubdtype(v.dtype, jax.dtypes.prng_key)
            else v for v in jax.tree_util.tree_leaves(state)]


def test_nnx_state_leaves_come_before_the_faulty_leaf():
    """The premise of the NNX failure tests: the batch statistics and the dropout
    stream's counter precede ``total`` in the wrapper's order."""
    names = list(NNXModule(nnx_net()).vars().keys())
    total = names.index("(NNXModule).total")
    for name in ["bn/mean", "bn/var", "dropout/rngs/count"]:
        assert names.index("(NNXModule)." + name) < total


@pytest.mark.parametrize("fault", FAULTS)
def test_nnx_bad_leaf_raises_naming_it_and_changes_nothing(x, fault):
    m = trained_nnx(x)
    before = snapshot(m)
    with pytest.raises(bridge.AssignmentError, match="total") as info:
        m(x, fault=fault)
    assert "bn/" not in str(info.value) and "count" not in str(info.value)
    assert_unchanged(m, before)


@pytest.mark.parametrize("transform", sorted(TRANSFORMS))
@pytest.mark.parametrize("fault", FAULTS)
def test_nnx_bad_leaf_inside_transform_changes_nothing(x, fault, transform):
    m = trained_nnx(x)
    before = snapshot(m)
    with pytest.raises(bridge.AssignmentError, match="total"):
        TRANSFORMS[transform](m)(x, fault=fault)
    assert_unchanged(m, before)


@pytest.mark.parametrize("run", [eager, in_jit])
def test_nnx_calls_update_batch_stats_and_rng_count_as_nnx(x, run):
    native, m = nnx_net(), NNXModule(nnx_net())
    call = run(m)
    for _ in range(2):
        ref = native(x)
        np.testing.assert_allclose(call(x), ref, atol=TOL)
        for a, b in zip(nnx_leaves(m.state), nnx_leaves(nnx.state(native))):
            np.testing.assert_allclose(a, b, atol=TOL)
    assert int(m.vars()["(NNXModule).dropout/rngs/count"].value) == 2
