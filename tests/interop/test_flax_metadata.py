"""Flax metadata boxes (``nn.Partitioned``, ``nn.LogicallyPartitioned``) through the converters.

A Linen model built with ``nn.with_logical_partitioning`` / ``nn.with_partitioning`` has
boxed leaves in its ``init`` output. The converters load the arrays in the boxes and give
the boxes back, and the sharding names carry over to NNX metadata and back. The reference
is Flax itself: the ``init`` output and ``nn.get_partition_spec`` / ``nnx.get_partition_spec``.
"""

import gc

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx
from flax.core import meta

import bridge
from bridge.flax import (
    FlaxModule,
    load_linen_variables,
    load_nnx_state,
    to_linen_variables,
    to_nnx_state,
)
from bridge.interop import _metadata
from bridge.state import TrainVar

X = jnp.ones((2, 32))


class Sharded(nn.Module):
    """Two Dense layers: logical names on the first kernel, mesh names on the second."""

    @nn.compact
    def __call__(self, x):
        x = nn.Dense(16, kernel_init=nn.with_logical_partitioning(
            nn.initializers.lecun_normal(), ("embed", "mlp")))(x)
        return nn.Dense(4, kernel_init=nn.with_partitioning(
            nn.initializers.lecun_normal(), (None, "model")))(x)


class Twin(bridge.Module):
    """The object model whose compact Linen names are ``Sharded``'s."""

    def __init__(self):
        self.Dense_0 = bridge.nn.Linear(32, 16)
        self.Dense_1 = bridge.nn.Linear(16, 4)


@pytest.fixture(scope="module")
def boxed():
    return Sharded().init(jax.random.PRNGKey(0), X)


def is_box(x):
    return isinstance(x, meta.AxisMetadata)


def boxes(tree):
    """``{path: (box class, names)}`` for every box of ``tree``."""
    flat = jax.tree_util.tree_flatten_with_path(tree, is_leaf=is_box)[0]
    return {jax.tree_util.keystr(p): (type(b), b.names) for p, b in flat if is_box(b)}


def loaded_twin(variables):
    twin = Twin()
    load_linen_variables(twin.vars(), variables, rules="compact")
    return twin


def test_load_linen_variables_accepts_boxed_init_output(boxed):
    twin = loaded_twin(boxed)
    np.testing.assert_array_equal(twin.Dense_0.w.value,
                                  boxed["params"]["Dense_0"]["kernel"].value)
    np.testing.assert_array_equal(twin.Dense_1.w.value,
                                  boxed["params"]["Dense_1"]["kernel"].value)


def test_load_linen_variables_takes_the_boxed_array_itself(boxed):
    twin = loaded_twin(boxed)
    assert twin.Dense_0.w.value is boxed["params"]["Dense_0"]["kernel"].value


def test_to_linen_variables_gives_back_the_same_boxes(boxed):
    out = to_linen_variables(loaded_twin(boxed).vars(), rules="compact")
    assert boxes(out) == boxes(boxed)
    assert jax.tree_util.tree_structure(out) == jax.tree_util.tree_structure(boxed)


def test_to_linen_variables_partition_spec_equals_flaxs(boxed):
    out = to_linen_variables(loaded_twin(boxed).vars(), rules="compact")
    assert nn.get_partition_spec(out) == nn.get_partition_spec(boxed)


def test_to_linen_variables_of_boxes_runs_the_linen_model(boxed):
    out = to_linen_variables(loaded_twin(boxed).vars(), rules="compact")
    np.testing.assert_allclose(Sharded().apply(out, X), Sharded().apply(boxed, X), atol=1e-6)


def test_a_remembered_box_holds_no_array(boxed):
    twin = loaded_twin(boxed)
    assert _metadata.recall(twin.Dense_0.w, "linen").value is None


def test_a_failed_strict_load_remembers_no_box(boxed):
    twin = Twin()
    bad = {"params": {**boxed["params"], "Dense_1": {"kernel": jnp.zeros((3, 3)),
                                                    "bias": boxed["params"]["Dense_1"]["bias"]}}}
    with pytest.raises(bridge.interop.LoadMismatchError):
        load_linen_variables(twin.vars(), bad, rules="compact")
    assert _metadata.recall(twin.Dense_0.w, "linen") is None


def test_flax_module_vars_convert_back_box_for_box(boxed):
    m = FlaxModule(Sharded(), boxed)
    out = to_linen_variables(m.vars())
    assert boxes(out) == boxes(boxed)
    assert all(a is b for a, b in zip(jax.tree_util.tree_leaves(out),
                                      jax.tree_util.tree_leaves(boxed)))


def test_flax_module_of_boxed_variables_matches_apply(boxed):
    m = FlaxModule(Sharded(), boxed)
    np.testing.assert_allclose(m(X), Sharded().apply(boxed, X), atol=1e-6)


def test_linen_sharding_names_become_nnx_sharding_metadata(boxed):
    state = to_nnx_state(loaded_twin(boxed).vars())
    specs = nnx.get_partition_spec(state)
    assert specs["Dense_0"]["kernel"].get_value() == jax.sharding.PartitionSpec("embed", "mlp")
    assert specs["Dense_1"]["kernel"].get_value() == jax.sharding.PartitionSpec(None, "model")


def test_names_survive_linen_to_nnx_to_linen(boxed):
    state = to_nnx_state(loaded_twin(boxed).vars())
    other = Twin()
    load_nnx_state(other.vars(), state)
    out = to_linen_variables(other.vars(), rules="compact")
    assert boxes(out) == boxes(boxed)


def test_nnx_sharding_names_become_a_partitioned_box():
    class Lin(nnx.Module):
        def __init__(self):
            self.w = nnx.Param(jnp.ones((4, 2)), out_sharding=("embed", "mlp"),
                               eager_sharding=False)

    class Obj(bridge.Module):
        def __init__(self):
            self.w = TrainVar(jnp.zeros((4, 2)))

    obj = Obj()
    load_nnx_state(obj.vars(), nnx.state(Lin()))
    out = to_linen_variables(obj.vars())
    assert boxes(out) == {"['params']['w']": (nn.Partitioned, ("embed", "mlp"))}


def test_notes_go_away_with_their_variable():
    v = TrainVar(jnp.zeros(2))
    _metadata.remember(v, "linen", "note")
    key = id(v)
    del v
    gc.collect()
    assert key not in _metadata._NOTES
