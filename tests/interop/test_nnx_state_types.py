"""NNX variable types and metadata survive ``NNXModule`` and ``load_nnx_state``.

The reference is the NNX module itself: ``nnx.split(model)`` gives the state whose every
leaf must come back from ``to_nnx_state`` with the same type (``Param``, ``BatchStat``,
``RngKey``, ``RngCount``, a user subclass), the same metadata (a stream's ``tag``,
sharding names) and the same value, so that ``nnx.merge`` rebuilds an equal module.
"""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from bridge.flax import NNXModule, load_nnx_state, to_nnx_state


class Counter(nnx.Variable):
    """A user variable type with metadata of its own."""


class Holder(nnx.Module):
    def __init__(self):
        self.seen = Counter(jnp.zeros((), jnp.int32), note="examples seen")


class Model(nnx.Module):
    def __init__(self, rngs, sharded=True):
        init = nnx.initializers.lecun_normal()
        if sharded:
            init = nnx.with_partitioning(init, ("embed", "mlp"))
        self.lin = nnx.Linear(6, 8, kernel_init=init, rngs=rngs)
        self.bn = nnx.BatchNorm(8, rngs=rngs)
        self.drop = nnx.Dropout(0.5, rngs=rngs)
        self.att = nnx.MultiHeadAttention(2, 8, decode=False, rngs=rngs)
        self.holder = Holder()

    def __call__(self, x):
        x = self.drop(self.bn(self.lin(x)))
        self.holder.seen.set_value(self.holder.seen.get_value() + x.shape[0])
        return self.att(x[:, None, :])


X = jnp.linspace(-1.0, 1.0, 4 * 6).reshape(4, 6)


def build(seed=0, sharded=True):
    # sharding names recorded, arrays left unsharded: the model runs without a mesh
    with nnx.use_eager_sharding(False):
        return Model(nnx.Rngs(seed, dropout=seed + 1), sharded=sharded)


def leaves(state):
    return dict(nnx.to_flat_state(state))


def same_value(a, b):
    a, b = a.get_value(), b.get_value()
    if jax.dtypes.issubdtype(a.dtype, jax.dtypes.prng_key):
        return (jax.random.key_impl(a) == jax.random.key_impl(b)
                and np.array_equal(jax.random.key_data(a), jax.random.key_data(b)))
    return np.array_equal(a, b) and a.dtype == b.dtype


@pytest.fixture
def model():
    return build()


def test_the_model_has_every_kind_of_leaf(model):
    kinds = {type(v) for v in leaves(nnx.state(model)).values()}
    assert {nnx.Param, nnx.BatchStat, nnx.RngKey, nnx.RngCount, Counter} <= kinds


def test_nnx_module_to_nnx_state_keeps_every_leafs_type(model):
    original = leaves(nnx.state(model))
    converted = leaves(to_nnx_state(NNXModule(model).vars()))
    assert {k: type(v) for k, v in converted.items()} == \
        {k: type(v) for k, v in original.items()}


def test_nnx_module_to_nnx_state_keeps_every_leafs_metadata(model):
    original = leaves(nnx.state(model))
    converted = leaves(to_nnx_state(NNXModule(model).vars()))
    assert {k: v.get_metadata() for k, v in converted.items()} == \
        {k: v.get_metadata() for k, v in original.items()}


def test_nnx_module_to_nnx_state_keeps_every_leafs_value(model):
    original = leaves(nnx.state(model))
    converted = leaves(to_nnx_state(NNXModule(model).vars()))
    assert all(same_value(original[k], converted[k]) for k in original)


def test_sharding_names_read_by_get_partition_spec_survive(model):
    converted = to_nnx_state(NNXModule(model).vars())
    spec = nnx.get_partition_spec(converted)["lin"]["kernel"].get_value()
    assert spec == jax.sharding.PartitionSpec("embed", "mlp")


def test_load_nnx_state_then_to_nnx_state_keeps_types_and_metadata(model):
    """The target was built without sharding names: what it gives back is the loaded
    state's metadata, not its own."""
    original = leaves(nnx.state(model))
    target = NNXModule(build(seed=9, sharded=False))
    load_nnx_state(target.vars(), nnx.state(model))
    converted = leaves(to_nnx_state(target.vars()))
    assert {k: (type(v), v.get_metadata()) for k, v in converted.items()} == \
        {k: (type(v), v.get_metadata()) for k, v in original.items()}
    assert all(same_value(original[k], converted[k]) for k in original)


def test_merge_of_to_nnx_state_gives_a_module_with_equal_outputs(model):
    graphdef, _ = nnx.split(model)
    wrapper = NNXModule(model)
    rebuilt = nnx.merge(graphdef, to_nnx_state(wrapper.vars()))
    np.testing.assert_allclose(rebuilt(X), model(X), atol=1e-6)


def test_merge_after_wrapper_calls_equals_the_wrappers_own_merge(model):
    graphdef, _ = nnx.split(model)
    wrapper = NNXModule(model)
    wrapper(X)
    rebuilt = nnx.merge(graphdef, to_nnx_state(wrapper.vars()))
    np.testing.assert_allclose(rebuilt(X), wrapper.merge()(X), atol=1e-6)
