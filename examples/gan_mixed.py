"""A GAN whose generator is object-style (``bridge.nn``) and whose discriminator is a
Flax Linen model, trained together in one compiled step.

Run it with::

    python -m pip install -e ".[flax]" && python examples/gan_mixed.py

The generator maps 4-dimensional Gaussian noise to one number; the discriminator tells
real samples of N(3, 0.5²) from generated ones. The Linen discriminator becomes an object
module with ``bridge.flax.FlaxModule``, so the whole step is object code: each network
gets its own ``GradValues`` over its own variables and its own ``bridge.optimizer.Optax``,
and one ``bridge.Jit`` compiles both updates (the noise and the real batch are drawn
inside the step from a ``bridge.random.Generator``). It runs in a few seconds on a CPU
and prints the mean and standard deviation of the generated samples, which approach the
target's.
"""

from __future__ import annotations

import sys
import time
from typing import TextIO

import flax.linen as nn
import jax
import jax.numpy as jnp
import optax

import bridge
from bridge import functional as F
from bridge.flax import FlaxModule

TARGET_MEAN, TARGET_STD = 3.0, 0.5
LATENT, BATCH = 4, 512


class Discriminator(nn.Module):
    """A plain Linen MLP: one logit per sample (real vs generated)."""

    @nn.compact
    def __call__(self, x):
        x = nn.tanh(nn.Dense(32)(x))
        x = nn.tanh(nn.Dense(32)(x))
        return nn.Dense(1)(x)


def run(steps: int = 3000, seed: int = 0, log_every: int = 500,
        out: TextIO = sys.stdout) -> dict[str, float]:
    """Train for ``steps`` steps; return the statistics of 10,000 generated samples."""
    start = time.perf_counter()
    bridge.random.DEFAULT_GENERATOR.seed(seed)  # bridge.nn layers draw their initial weights
    # The generator: object style, it owns its variables.
    generator = bridge.nn.Sequential([
        bridge.nn.Linear(LATENT, 32), F.leaky_relu,
        bridge.nn.Linear(32, 32), F.leaky_relu,
        bridge.nn.Linear(32, 1),
    ])
    # The discriminator: Flax Linen, wrapped into an object module.
    variables = Discriminator().init(jax.random.PRNGKey(seed), jnp.zeros((1, 1)))
    discriminator = FlaxModule(Discriminator(), variables)
    noise = bridge.random.Generator(seed + 1)        # training noise and real samples
    eval_noise = bridge.random.Generator(seed + 2)   # for the reports only

    def sample(n, noise=noise):
        return generator(bridge.random.normal((n, LATENT), generator=noise))

    def d_loss(real, fake):
        # real -> 1, generated -> 0 (log-sigmoid cross-entropy on the logits)
        return -(jax.nn.log_sigmoid(discriminator(real)).mean()
                 + jax.nn.log_sigmoid(-discriminator(fake)).mean())

    def g_loss(z):
        # the non-saturating generator loss: make the discriminator say "real"
        return -jax.nn.log_sigmoid(discriminator(generator(z))).mean()

    # Each network: gradients of its own loss w.r.t. its own variables, its own optimizer.
    d_grad = bridge.GradValues(d_loss, discriminator.vars())
    g_grad = bridge.GradValues(g_loss, generator.vars())
    # (learning rates decay to zero so that the end of the usual GAN oscillation settles)
    d_opt = bridge.optimizer.Optax(discriminator.vars(), optax.adam(
        optax.cosine_decay_schedule(4e-3, steps), b1=0.5))
    g_opt = bridge.optimizer.Optax(generator.vars(), optax.adam(
        optax.cosine_decay_schedule(5e-4, steps), b1=0.5))

    def train_step():
        real = bridge.random.normal((BATCH, 1), mean=TARGET_MEAN, stddev=TARGET_STD,
                                    generator=noise)
        g, d_values = d_grad(real, sample(BATCH))
        d_opt(g)
        g, g_values = g_grad(bridge.random.normal((BATCH, LATENT), generator=noise))
        g_opt(g)
        return d_values[0], g_values[0]

    # One compiled step over every variable involved: both models, both optimizers, noise.
    # (the two optimizers' variables have the same names: give each a prefix)
    all_vars = (generator.vars() + discriminator.vars() + d_opt.vars("d_opt")
                + g_opt.vars("g_opt") + noise.vars())
    train_step = bridge.Jit(train_step, all_vars)
    draw = bridge.Jit(lambda n: sample(n, eval_noise), generator.vars() + eval_noise.vars(),
                      static_argnums=(0,))

    def report(step, d, g):
        x = draw(10_000)
        print(f"step {step:5d}  D loss {float(d):.3f}  G loss {float(g):.3f}  generated mean "
              f"{float(x.mean()):6.3f} std {float(x.std()):.3f}   (target {TARGET_MEAN}, "
              f"{TARGET_STD})", file=out)

    x0 = draw(10_000)
    print(f"before training: generated mean {float(x0.mean()):.3f} std "
          f"{float(x0.std()):.3f}", file=out)
    for step in range(1, steps + 1):
        d, g = train_step()
        if log_every and step % log_every == 0:
            report(step, d, g)
    x = draw(10_000)
    result = {"mean": float(x.mean()), "std": float(x.std()),
              "initial_mean": float(x0.mean()), "initial_std": float(x0.std()),
              "seconds": time.perf_counter() - start}
    print(f"after {steps} steps ({result['seconds']:.1f} s): generated mean "
          f"{result['mean']:.3f} (target {TARGET_MEAN}), std {result['std']:.3f} "
          f"(target {TARGET_STD})", file=out)
    return result


if __name__ == "__main__":
    run()
