"""``VarCollection.replicate()``: one copy per device inside, one value again on exit.

These run in the test process, which has one device, so every replicated value has a
leading axis of size ``jax.local_device_count()`` (1 here); the 8-device behaviour is in
``test_parallel.py``.
"""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import bridge

N = jax.local_device_count()


def make_vars():
    layer = bridge.nn.Linear(2, 3)
    counter = bridge.StateVar(jnp.zeros((), jnp.int32))
    return layer, counter, layer.vars() + bridge.VarCollection({"counter": counter})


def test_inside_every_variable_has_a_leading_device_axis():
    layer, counter, vc = make_vars()
    with vc.replicate():
        assert layer.w.value.shape == (N, 2, 3)
        assert counter.value.shape == (N,)
        np.testing.assert_array_equal(layer.w.value[0], np.asarray(vc["(Linear).w"].value[0]))


def test_exit_restores_shapes_and_values():
    layer, counter, vc = make_vars()
    before = [np.asarray(t) for t in vc.tensors()]
    with vc.replicate():
        pass
    for value, original in zip(vc.tensors(), before):
        assert value.dtype == original.dtype
        np.testing.assert_array_equal(value, original)


def test_exit_applies_each_variables_reduce():
    v = bridge.StateVar(jnp.zeros(2), reduce=lambda rows: rows.sum(0) + 1)
    with bridge.VarCollection({"v": v}).replicate():
        pass
    np.testing.assert_array_equal(v.value, [1.0, 1.0])


def test_variable_without_reduce_keeps_device_0s_copy():
    v = bridge.StateVar(jnp.arange(3.0), reduce=None)
    with bridge.VarCollection({"v": v}).replicate():
        v.assign(v.value + jnp.arange(N)[:, None])
    np.testing.assert_array_equal(v.value, [0.0, 1.0, 2.0])


def test_random_state_is_split_once():
    rs = bridge.RandomState(7)
    start = rs.value
    with bridge.VarCollection({"rs": rs}).replicate():
        np.testing.assert_array_equal(rs.value, jax.random.split(start, N + 1)[1:])
    np.testing.assert_array_equal(rs.value, jax.random.split(start, N + 1)[0])


def test_exit_runs_when_the_block_raises():
    layer, _, vc = make_vars()
    with pytest.raises(KeyError), vc.replicate():
        raise KeyError("inside")
    assert layer.w.value.shape == (2, 3)


def test_a_trainref_is_replicated_once_with_its_target():
    w = bridge.TrainVar(jnp.ones(2))
    vc = bridge.VarCollection({"w": w, "ref": bridge.TrainRef(w)})
    with vc.replicate():
        assert w.value.shape == (N, 2)
    assert w.value.shape == (2,)


def test_replicating_twice_is_refused_and_changes_nothing():
    layer, _, vc = make_vars()
    with vc.replicate():
        inside = layer.w.value
        with pytest.raises(ValueError, match=r"already replicated.*\(Linear\)\.w"):
            with layer.vars().replicate():
                pass
        assert layer.w.value is inside
    assert layer.w.value.shape == (2, 3)


def test_a_failing_reduce_restores_every_variable_and_names_it():
    good = bridge.StateVar(jnp.zeros(2))
    bad = bridge.StateVar(jnp.zeros(2), reduce=lambda rows: rows)  # keeps the device axis
    vc = bridge.VarCollection({"good": good, "bad": bad})
    with pytest.raises(ValueError, match=r"bad: reducing .* expected shape \(2,\)"):
        with vc.replicate():
            good.assign(good.value + 1)
    np.testing.assert_array_equal(good.value, [0.0, 0.0])
    assert bad.value.shape == (2,)


def test_replicate_inside_a_transformation_is_refused():
    layer, _, vc = make_vars()

    def step():
        with vc.replicate():
            pass
        return layer.w.value

    with pytest.raises(RuntimeError, match="outside any transformation"):
        bridge.Jit(step, vc)()


def test_a_committed_value_returns_with_its_sharding():
    device = jax.devices()[0]
    v = bridge.StateVar(jax.device_put(jnp.ones(3), device))
    with bridge.VarCollection({"v": v}).replicate():
        pass
    assert v.value.committed
    assert v.value.sharding == jax.sharding.SingleDeviceSharding(device)


def test_an_uncommitted_value_returns_uncommitted():
    v = bridge.StateVar(jnp.ones(3))
    with bridge.VarCollection({"v": v}).replicate():
        pass
    assert not v.value.committed
