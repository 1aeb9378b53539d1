"""port() with bridge's own scheme: object modules as source and as target."""

import flax.linen as nn
import haiku as hk
import jax
import numpy as np
import pytest

import bridge
from bridge.interop import port
from bridge.nn import BatchNorm2D, Conv2D, Linear, Sequential

KEY = jax.random.PRNGKey(0)
IMAGES = jax.random.normal(KEY, (2, 6, 6, 3))


class Net(bridge.Module):
    def __init__(self):
        self.conv = Conv2D(3, 4, 3)
        self.bn = BatchNorm2D(4, momentum=0.9, eps=1e-5)
        self.head = Sequential([Linear(4, 2)])

    def __call__(self, x, training=False):
        h = jax.nn.relu(self.bn(self.conv(x), training=training))
        return self.head(h.mean((2, 3)))


class LinenNet(nn.Module):
    """The same network in Linen's setup style (a list attribute names its items head_0)."""

    def setup(self):
        self.conv = nn.Conv(4, (3, 3))
        self.bn = nn.BatchNorm(use_running_average=True, momentum=0.9, epsilon=1e-5)
        self.head = [nn.Dense(2)]

    def __call__(self, x):
        h = nn.relu(self.bn(self.conv(x)))
        return self.head[0](h.mean((1, 2)))


def randomized(model):
    for i, v in enumerate(model.vars()):
        if "running_var" in str(v):
            continue
        v.assign(v.value + 0.1 * jax.random.normal(jax.random.PRNGKey(i), v.shape))
    return model


def test_object_model_ports_to_linen_and_computes_the_same():
    model = randomized(Net())
    variables = port(model.vars(), "bridge", "linen", like=LinenNet().init(KEY, IMAGES))
    out = LinenNet().apply(variables, IMAGES)
    np.testing.assert_allclose(out, model(IMAGES.transpose(0, 3, 1, 2)), atol=1e-5)


def test_linen_weights_port_into_an_object_model_as_named_arrays():
    variables = jax.tree_util.tree_map(lambda a: a + 0.1, LinenNet().init(KEY, IMAGES))
    model = Net()
    values = port(variables, "linen", "bridge", like=model.vars())
    assert set(values) == set(model.vars().keys())
    model.vars().assign([values[name] for name in model.vars().keys()])
    np.testing.assert_allclose(model(IMAGES.transpose(0, 3, 1, 2)),
                               LinenNet().apply(variables, IMAGES), atol=1e-5)


def test_port_into_bridge_needs_the_variables_to_fill():
    with pytest.raises(ValueError, match=r"like=model.vars\(\)"):
        port({"params": {}}, "linen", "bridge")


def test_haiku_weights_that_do_not_fit_an_object_model_are_all_listed():
    params = hk.without_apply_rng(hk.transform(lambda x: hk.Linear(3)(x))).init(
        KEY, np.ones((1, 5), np.float32))
    with pytest.raises(ValueError) as info:
        port(params, "haiku", "bridge", like=Net().vars())
    msg = str(info.value)
    assert "missing: params/conv/kernel" in msg and "unexpected: params/linear/w" in msg
