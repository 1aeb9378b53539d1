"""Quickstart: train an object-style MLP with bridge on synthetic data.

Run it with::

    python -m pip install -e . && python examples/quickstart.py

It classifies points of two interleaved spirals (a problem a linear model cannot solve),
the Objax way: a module that owns its variables, ``GradValues`` for gradients, an Optax
optimizer wrapped as an object, and ``Jit`` to compile the whole training step. It needs
only the core dependencies and runs in a few seconds on a CPU.
"""

from __future__ import annotations

import time

import numpy as np
import optax

import bridge
from bridge import functional as F


def two_spirals(n_per_class: int, noise: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Points on two interleaved spirals, labels 0 and 1."""
    rng = np.random.default_rng(seed)
    t = np.sqrt(rng.uniform(0.05, 1.0, size=n_per_class)) * 3 * np.pi
    arm = np.stack([t * np.cos(t), t * np.sin(t)], axis=1) / (3 * np.pi)
    x = np.concatenate([arm, -arm]) + noise * rng.normal(size=(2 * n_per_class, 2))
    y = np.concatenate([np.zeros(n_per_class), np.ones(n_per_class)])
    order = rng.permutation(2 * n_per_class)
    return x[order].astype(np.float32), y[order].astype(np.int32)


def main() -> None:
    start = time.perf_counter()
    x_train, y_train = two_spirals(512, noise=0.06, seed=0)
    x_test, y_test = two_spirals(256, noise=0.06, seed=1)

    # 1. The model: a Sequential of layers and plain functions. It owns its variables.
    model = bridge.nn.Sequential([
        bridge.nn.Linear(2, 64), F.relu,
        bridge.nn.Linear(64, 64), F.relu,
        bridge.nn.Linear(64, 2),
    ])
    print(model.vars())  # names, sizes and shapes of every variable, then +Total
    print()

    # 2. Any Optax transformation, as an object whose state lives in StateVars.
    opt = bridge.optimizer.Optax(model.vars(), optax.adam(3e-3))

    # 3. The loss, and its gradients with respect to the model's TrainVars.
    def loss(x, y):
        return F.loss.cross_entropy_logits_sparse(model(x), y).mean()

    grad_values = bridge.GradValues(loss, model.vars())

    # 4. One training step; Jit compiles it once. Every variable it reads or writes must
    #    be declared: the model's and the optimizer's.
    def train_step(x, y):
        grads, values = grad_values(x, y)  # values is a list: [loss]
        opt(grads)
        return values[0]

    train_step = bridge.Jit(train_step, model.vars() + opt.vars())
    predict = bridge.Jit(lambda x: model(x).argmax(axis=1), model.vars())

    def accuracy(x, y):
        return float((np.asarray(predict(x)) == y).mean())

    print(f"initial test accuracy: {accuracy(x_test, y_test):.3f}")
    rng = np.random.default_rng(2)
    batch_size, steps = 128, 600
    recent = []
    for step in range(1, steps + 1):
        idx = rng.integers(0, len(x_train), size=batch_size)
        recent.append(train_step(x_train[idx], y_train[idx]))
        if step == 1 or step % 100 == 0:  # mean minibatch loss since the last report
            print(f"step {step:4d}  loss {float(np.mean(recent)):.4f}")
            recent = []

    train_acc, test_acc = accuracy(x_train, y_train), accuracy(x_test, y_test)
    print(f"final train accuracy: {train_acc:.3f}")
    print(f"final test accuracy:  {test_acc:.3f}")
    print(f"done in {time.perf_counter() - start:.1f} s")


if __name__ == "__main__":
    main()
