"""Run by ``test_data_parallel.py`` in its own process, with 8 host CPU devices.

Trains the same object-style model twice from the same weights and random keys: once with
the batch on one device, once with the batch sharded over a ``Mesh`` of all devices, and
prints both results as JSON on stdout.
"""

import json

import jax
import jax.numpy as jnp
import numpy as np
from jax.sharding import Mesh, NamedSharding, PartitionSpec

import bridge


class Net(bridge.Module):
    """Linear -> BatchNorm -> ReLU -> Dropout -> Linear: weights, state and randomness."""

    def __init__(self):
        self.hidden = bridge.nn.Linear(6, 32)
        self.norm = bridge.nn.BatchNorm0D(32)
        self.drop = bridge.nn.Dropout(keep=0.8)
        self.out = bridge.nn.Linear(32, 1)

    def __call__(self, x, training):
        h = jax.nn.relu(self.norm(self.hidden(x), training=training))
        return self.out(self.drop(h, training=training))


def train(x, y, steps=4):
    """Fresh model (seed 0), ``steps`` Adam steps; returns losses, weights, test output."""
    bridge.random.DEFAULT_GENERATOR.seed(0)
    model = Net()
    opt = bridge.optimizer.Adam(model.vars())
    gradient = bridge.GradValues(lambda x, y: ((model(x, training=True) - y) ** 2).mean(),
                                 model.vars())

    def step(x, y):
        grads, values = gradient(x, y)
        opt(1e-2, grads)
        return values[0]

    step = bridge.Jit(step, model.vars() + opt.vars())
    predict = bridge.Jit(lambda x: model(x, training=False), model.vars())
    losses = [float(step(x, y)) for _ in range(steps)]
    output = predict(x)
    return {
        "losses": losses,
        "variables": {name: np.asarray(v.value).tolist() for name, v in model.vars().items()},
        "prediction": np.asarray(output).tolist(),
        "prediction_devices": len(output.sharding.device_set),
        "weight_devices": len(model.out.w.value.sharding.device_set),
    }


def main():
    rng = np.random.RandomState(0)
    x = rng.randn(64, 6).astype(np.float32)
    y = (x @ rng.randn(6, 1) + 0.1 * rng.randn(64, 1)).astype(np.float32)

    mesh = Mesh(np.array(jax.devices()), ("data",))
    batch = NamedSharding(mesh, PartitionSpec("data"))
    one_device = train(jnp.asarray(x), jnp.asarray(y))
    sharded = train(jax.device_put(x, batch), jax.device_put(y, batch))
    print(json.dumps({"devices": jax.device_count(), "one_device": one_device,
                      "sharded": sharded}))


if __name__ == "__main__":
    main()
