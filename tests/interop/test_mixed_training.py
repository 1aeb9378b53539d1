"""Object modules and Flax/Haiku models trained together in one jitted step, both ways:

* Flax/Haiku models inside object code through the wrappers (a GAN: an object generator
  against a Linen discriminator, each updated on its own variables);
* object modules inside plain ``jax.jit(jax.grad(...))`` code through
  ``bridge.pure.functionalize``, next to a Haiku model's params in one pytree.

Each is compared with the same computation written without the other style.
"""

import importlib.util
import io
import pathlib

import flax.linen as nn
import haiku as hk
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

import bridge
from bridge.flax import FlaxModule
from bridge.haiku import HaikuModule

TOL = 1e-5
EXAMPLE = pathlib.Path(__file__).resolve().parents[2] / "examples" / "gan_mixed.py"


def max_diff(a, b):
    a, b = jax.tree_util.tree_leaves(a), jax.tree_util.tree_leaves(b)
    assert len(a) == len(b)
    return max(float(jnp.max(jnp.abs(x - y))) for x, y in zip(a, b))


class Discriminator(nn.Module):
    @nn.compact
    def __call__(self, x):
        return nn.Dense(1)(nn.tanh(nn.Dense(16)(x)))


def test_gan_step_matches_plain_jax():
    """Object generator + wrapped Linen discriminator, one ``bridge.Jit`` step with two
    ``GradValues`` and two ``Optax``: equal to the same GAN step in plain JAX, and each
    optimizer moves only its own network."""
    gen = bridge.nn.Sequential([bridge.nn.Linear(2, 8), jnp.tanh, bridge.nn.Linear(8, 1)])
    d_vars = Discriminator().init(jax.random.PRNGKey(0), jnp.zeros((1, 1)))
    disc = FlaxModule(Discriminator(), d_vars)
    d_tx, g_tx = optax.adam(1e-2), optax.sgd(0.1, momentum=0.9)

    def d_loss(real, z):
        return -(jax.nn.log_sigmoid(disc(real)).mean()
                 + jax.nn.log_sigmoid(-disc(gen(z))).mean())

    def g_loss(z):
        return -jax.nn.log_sigmoid(disc(gen(z))).mean()

    d_grad, g_grad = bridge.GradValues(d_loss, disc.vars()), bridge.GradValues(g_loss, gen.vars())
    d_opt = bridge.optimizer.Optax(disc.vars(), d_tx)
    g_opt = bridge.optimizer.Optax(gen.vars(), g_tx)

    def step(real, z):
        g, dv = d_grad(real, z)
        d_opt(g)
        g, gv = g_grad(z)
        g_opt(g)
        return dv[0], gv[0]

    train = bridge.Jit(step, gen.vars() + disc.vars() + d_opt.vars("d") + g_opt.vars("g"))

    # the same GAN in plain JAX: generator weights as a dict, Linen apply for D
    def generator(p, z):
        return jnp.tanh(z @ p["w1"] + p["b1"]) @ p["w2"] + p["b2"]

    def discriminator(p, x):
        return Discriminator().apply({"params": p}, x)

    @jax.jit
    def native(gp, dp, g_state, d_state, real, z):
        def dl(dp):
            return -(jax.nn.log_sigmoid(discriminator(dp, real)).mean()
                     + jax.nn.log_sigmoid(-discriminator(dp, generator(gp, z))).mean())

        d_value, g = jax.value_and_grad(dl)(dp)
        u, d_state = d_tx.update(g, d_state, dp)
        dp = optax.apply_updates(dp, u)
        g_value, g = jax.value_and_grad(
            lambda gp: -jax.nn.log_sigmoid(discriminator(dp, generator(gp, z))).mean())(gp)
        u, g_state = g_tx.update(g, g_state, gp)
        return optax.apply_updates(gp, u), dp, g_state, d_state, d_value, g_value

    gp = {"w1": gen[0].w.value, "b1": gen[0].b.value, "w2": gen[2].w.value, "b2": gen[2].b.value}
    dp = d_vars["params"]
    g_state, d_state = g_tx.init(gp), d_tx.init(dp)
    key = jax.random.PRNGKey(1)
    for i in range(5):
        kr, kz = jax.random.split(jax.random.fold_in(key, i))
        real = 3 + 0.5 * jax.random.normal(kr, (32, 1))
        z = jax.random.normal(kz, (32, 2))
        if i == 0:
            g_before = gen.vars().tensors()
            train_d_only = bridge.Jit(lambda r, z: d_opt(d_grad(r, z)[0]),
                                      gen.vars() + disc.vars() + d_opt.vars("d"))
            snapshot = (gen.vars() + disc.vars() + d_opt.vars("d")).tensors()
            train_d_only(real, z)
            assert all(a is b for a, b in zip(g_before, gen.vars().tensors()))
            assert max_diff(disc.variables["params"], dp) > 0
            (gen.vars() + disc.vars() + d_opt.vars("d")).assign(snapshot)
        d_value, g_value = train(real, z)
        gp, dp, g_state, d_state, ref_d, ref_g = native(gp, dp, g_state, d_state, real, z)
        assert abs(float(d_value) - float(ref_d)) <= TOL
        assert abs(float(g_value) - float(ref_g)) <= TOL
    assert max_diff(disc.variables["params"], dp) <= TOL
    assert max_diff([gen[0].w.value, gen[0].b.value, gen[2].w.value, gen[2].b.value],
                    [gp["w1"], gp["b1"], gp["w2"], gp["b2"]]) <= TOL


class Head(bridge.Module):
    """An object module with state: Linear -> BatchNorm0D -> Linear."""

    def __init__(self):
        self.l1 = bridge.nn.Linear(8, 8)
        self.bn = bridge.nn.BatchNorm0D(8, momentum=0.8)
        self.l2 = bridge.nn.Linear(8, 3)

    def __call__(self, x, training):
        return self.l2(jax.nn.relu(self.bn(self.l1(x), training=training)))


def cross_entropy(logits, labels):
    return optax.softmax_cross_entropy_with_integer_labels(logits, labels).mean()


def test_object_module_in_plain_jax_next_to_haiku_params():
    """A Haiku encoder's params and an object head's values in one pytree, trained with
    plain ``jax.jit(jax.grad)`` + optax through ``bridge.pure.functionalize``; the same
    model trained the object way (``HaikuModule`` + ``GradValues`` + ``Optax`` in
    ``Jit``) gives the same numbers."""
    encoder = hk.without_apply_rng(hk.transform(lambda x: jax.nn.relu(hk.nets.MLP([16, 8])(x))))
    x = jax.random.normal(jax.random.PRNGKey(0), (12, 5))
    y = jax.random.randint(jax.random.PRNGKey(1), (12,), 0, 3)
    hk_params = encoder.init(jax.random.PRNGKey(2), x)
    tx = optax.adam(1e-2)

    # --- plain JAX side: the object head becomes a pure function of its values
    head = Head()
    vc = head.vars()
    train_mask = [isinstance(v, bridge.TrainVar) for v in vc]
    head_fn = bridge.pure.functionalize(head, vc)
    initial_head = vc.tensors()

    def loss(trainable, frozen, x, y):
        values = [t if m else f for t, f, m in zip(trainable["head"], frozen, train_mask)]
        logits, new_values = head_fn(values, encoder.apply(trainable["haiku"], x), training=True)
        return cross_entropy(logits, y), new_values

    @jax.jit
    def step(trainable, frozen, opt_state, x, y):
        (value, new_values), grads = jax.value_and_grad(loss, has_aux=True)(
            trainable, frozen, x, y)
        updates, opt_state = tx.update(grads, opt_state, trainable)
        trainable = optax.apply_updates(trainable, updates)
        frozen = [n if not m else f for n, f, m in zip(new_values, frozen, train_mask)]
        return trainable, frozen, opt_state, value

    # the differentiable part: Haiku params and the head's TrainVars, in one pytree; the
    # head's state (BatchNorm statistics) is carried alongside
    trainable = {"haiku": hk_params,
                 "head": [v if m else None for v, m in zip(initial_head, train_mask)]}
    frozen = [None if m else v for v, m in zip(initial_head, train_mask)]
    opt_state = tx.init(trainable)
    plain_losses = []
    for _ in range(4):
        trainable, frozen, opt_state, value = step(trainable, frozen, opt_state, x, y)
        plain_losses.append(float(value))
    assert all(a is b for a, b in zip(initial_head, vc.tensors()))  # head never written

    # --- object side: the Haiku encoder wrapped, the same head (same initial values)
    enc = HaikuModule(encoder, hk_params)
    head2 = Head()
    head2.vars().assign(initial_head)
    model_vars = enc.vars() + head2.vars()
    opt = bridge.optimizer.Optax(model_vars, tx)
    gv = bridge.GradValues(lambda x, y: cross_entropy(head2(enc(x), training=True), y),
                           model_vars)

    def object_step(x, y):
        g, v = gv(x, y)
        opt(g)
        return v[0]

    object_step = bridge.Jit(object_step, model_vars + opt.vars())
    object_losses = [float(object_step(x, y)) for _ in range(4)]

    np.testing.assert_allclose(object_losses, plain_losses, atol=TOL)
    assert max_diff(enc.params, trainable["haiku"]) <= TOL
    final = [t if m else f for t, f, m in zip(trainable["head"], frozen, train_mask)]
    assert max_diff(head2.vars().tensors(), final) <= TOL
    assert not np.allclose(head2.bn.running_mean.value, 0)  # the statistics did move


@pytest.fixture(scope="module")
def gan_example():
    spec = importlib.util.spec_from_file_location("gan_mixed_example", EXAMPLE)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_gan_example_learns_the_target(gan_example):
    log = io.StringIO()
    result = gan_example.run(steps=1000, seed=1, log_every=250, out=log)
    assert abs(result["initial_mean"] - 3.0) > 2
    assert abs(result["mean"] - 3.0) < 0.15, result
    assert 0.4 < result["std"] < 0.6, result
    assert log.getvalue().count("generated mean") == 6  # before, 4 reports, after
