"""``bridge.nn.SyncedBatchNorm*`` on one device: construction, evaluation, errors, repr.

Training on 8 devices against ``BatchNorm`` on the whole batch is in ``test_parallel.py``.
"""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import bridge

LAYERS = [(bridge.nn.SyncedBatchNorm0D, bridge.nn.BatchNorm0D, (16, 4)),
          (bridge.nn.SyncedBatchNorm1D, bridge.nn.BatchNorm1D, (16, 4, 5)),
          (bridge.nn.SyncedBatchNorm2D, bridge.nn.BatchNorm2D, (16, 4, 5, 3))]


@pytest.mark.parametrize("synced, plain, shape", LAYERS)
def test_has_the_variables_of_the_plain_layer(synced, plain, shape):
    names = {k.split(".")[-1]: v.value.shape for k, v in synced(4).vars().items()}
    assert names == {k.split(".")[-1]: v.value.shape for k, v in plain(4).vars().items()}
    assert isinstance(synced(4), plain)


@pytest.mark.parametrize("synced, plain, shape", LAYERS)
def test_evaluation_equals_the_plain_layer(synced, plain, shape):
    x = jax.random.normal(jax.random.PRNGKey(0), shape)
    a, b = synced(4), plain(4)
    for layer in (a, b):
        layer.running_mean.assign(jnp.full(layer.running_mean.shape, 0.5))
        layer.running_var.assign(jnp.full(layer.running_var.shape, 2.0))
    np.testing.assert_allclose(a(x, training=False), b(x, training=False), rtol=1e-6)


@pytest.mark.parametrize("synced, plain, shape", LAYERS)
def test_training_in_parallel_on_one_device_equals_the_plain_layer(synced, plain, shape):
    x = jax.random.normal(jax.random.PRNGKey(1), shape) * 2 + 1
    a, b = synced(4), plain(4)
    run = bridge.Parallel(lambda x: a(x, training=True), a.vars())
    with a.vars().replicate():
        y = run(x)
    np.testing.assert_allclose(y, b(x, training=True), rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(a.running_var.value, b.running_var.value, rtol=1e-6)


def test_batch_norm_update_false_keeps_the_running_statistics():
    bn = bridge.nn.SyncedBatchNorm0D(4)
    run = bridge.Parallel(lambda x: bn(x, training=True, batch_norm_update=False), bn.vars())
    with bn.vars().replicate():
        run(jnp.arange(32.0).reshape(8, 4))
    np.testing.assert_array_equal(bn.running_mean.value, np.zeros((1, 4)))
    np.testing.assert_array_equal(bn.running_var.value, np.ones((1, 4)))


def test_training_outside_parallel_names_the_missing_axis():
    bn = bridge.nn.SyncedBatchNorm0D(4)
    with pytest.raises(NameError, match=r"SyncedBatchNorm0D.*axis_name='device'.*outside"):
        bn(jnp.ones((8, 4)), training=True)


def test_a_custom_axis_name_follows_parallel():
    bn = bridge.nn.SyncedBatchNorm0D(4, axis_name="batch")
    run = bridge.Parallel(lambda x: bn(x, training=True), bn.vars(), axis_name="batch")
    with bn.vars().replicate():
        assert run(jnp.ones((8, 4))).shape == (8, 4)


def test_repr_follows_objax():
    assert (repr(bridge.nn.SyncedBatchNorm((3, 4, 5), (1, 7)))
            == "bridge.nn.SyncedBatchNorm(dims=(3, 4, 5), redux=(1, 7), momentum=0.999, "
               "eps=1e-06)")
    assert (repr(bridge.nn.SyncedBatchNorm2D(19, momentum=0.9))
            == "bridge.nn.SyncedBatchNorm2D(nin=19, momentum=0.9, eps=1e-06)")
    assert (repr(bridge.nn.SyncedBatchNorm0D(8, axis_name="batch"))
            == "bridge.nn.SyncedBatchNorm0D(nin=8, momentum=0.999, eps=1e-06, axis_name='batch')")
