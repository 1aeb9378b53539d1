"""bridge.optimizer.Optax: any optax transformation on object variables, vs optax on a list."""

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

import bridge


class Model(bridge.Module):
    def __init__(self):
        self.b = bridge.TrainVar(jnp.array([0.1, -0.2]))
        self.w = bridge.TrainVar(jnp.array([[1.0, 0.5], [-0.5, 2.0], [0.0, 1.0]]))

    def __call__(self, x):
        return x @ self.w.value + self.b.value


X = jnp.array([[1.0, 2.0, -1.0], [0.5, 0.0, 1.0], [2.0, 1.0, 0.0], [-1.0, 1.0, 1.0]])
Y = jnp.array([[1.0, 0.0], [0.0, 1.0], [1.0, 1.0], [0.5, 0.5]])


def loss_fn(params, x, y):
    b, w = params
    return ((x @ w + b - y) ** 2).mean()


def train_both(tx, steps=5):
    model = Model()
    opt = bridge.optimizer.Optax(model.vars(), tx)
    gv = bridge.GradValues(lambda x, y: ((model(x) - y) ** 2).mean(), model.vars())

    def step(x, y):
        g, v = gv(x, y)
        opt(g)
        return v[0]

    train = bridge.Jit(step, model.vars() + opt.vars())
    params = [model.b.value, model.w.value]
    state = tx.init(params)
    for _ in range(steps):
        train(X, Y)
        updates, state = tx.update(jax.grad(loss_fn)(params, X, Y), state, params)
        params = optax.apply_updates(params, updates)
    return [model.b.value, model.w.value], params


@pytest.mark.parametrize("tx", [
    optax.sgd(0.1),
    optax.adam(1e-2),
    optax.chain(optax.clip_by_global_norm(0.5), optax.adamw(1e-2, weight_decay=1e-3)),
    optax.sgd(optax.exponential_decay(0.1, transition_steps=2, decay_rate=0.5)),
    optax.MultiSteps(optax.adam(1e-2), every_k_schedule=2),
    optax.masked(optax.adam(1e-2), [False, True]),
], ids=["sgd", "adam", "chain", "schedule", "multisteps", "masked"])
def test_optax_transformation_matches_optax_on_a_list(tx):
    ours, theirs = train_both(tx)
    for a, b in zip(ours, theirs):
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-7)


def test_optax_state_lives_in_statevars():
    model = Model()
    opt = bridge.optimizer.Optax(model.vars(), optax.adam(1e-3))
    state_vars = opt.vars().subset(bridge.StateVar)
    n_leaves = len(jax.tree_util.tree_leaves(optax.adam(1e-3).init([model.b.value,
                                                                   model.w.value])))
    assert len(state_vars) == n_leaves


def test_optax_wrong_gradient_count_is_an_error():
    model = Model()
    with pytest.raises(ValueError, match="1 gradients for 2"):
        bridge.optimizer.Optax(model.vars(), optax.sgd(0.1))([jnp.zeros(2)])
