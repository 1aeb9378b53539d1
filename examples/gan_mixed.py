"""A GAN whose generator is object-style (``bridge.nn``) and whose discriminator is a
Flax Linen model, trained together in one compiled step.

Run it with::

    python -m pip install -e ".[examples]" && python examples/gan_mixed.py

The generator maps 4-dimensional Gaussian noise to one number; the discriminator tells
real samples of N(3, 0.5²) from generated ones. The Linen discriminator becomes an object
module with ``bridge.flax.FlaxModule``, so the whole step is object code: each network
gets its own ``GradValues`` over its own variables and its own ``bridge.optimizer.Optax``,
and one ``bridge.Jit`` compiles both updates (the noise and the real batch are drawn
inside the step from a ``bridge.random.Generator``). It runs in a few seconds on a CPU
and prints the mean and standard deviation of the generated samples, which approach the
target's. It writes a histogram of the generated samples over the target's density, before
and after training, to ``gan_mixed.png`` in the current directory (``--out`` to change).
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from typing import Optional, Sequence, TextIO

import jax
import jax.numpy as jnp
import numpy as np
import optax

try:
    import bridge
except ModuleNotFoundError:  # run from a checkout without `pip install -e .`
    sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    import bridge
try:
    import _support  # examples/_support.py, next to this file
except ModuleNotFoundError:  # loaded by path (importlib), not run as a script
    sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
    import _support
from bridge import functional as F

EXAMPLE = "gan_mixed.py"
_support.require("flax", "the Linen discriminator", EXAMPLE)
import flax.linen as nn

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
        out: TextIO = sys.stdout, png: Optional[str] = None,
        progress: bool = True) -> dict[str, float]:
    """Train for ``steps`` steps; return the statistics of 10,000 generated samples (and
    ``png``: the path of the plot, written when ``png`` is given)."""
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
        _support.say(f"step {step:5d}  D loss {float(d):.3f}  G loss {float(g):.3f}  "
                     f"generated mean {float(x.mean()):6.3f} std {float(x.std()):.3f}   "
                     f"(target {TARGET_MEAN}, {TARGET_STD})", file=out)

    x0 = draw(10_000)
    print(f"before training: generated mean {float(x0.mean()):.3f} std "
          f"{float(x0.std()):.3f}", file=out)
    bar = _support.progress(total=steps, desc="training", unit="step", disable=not progress,
                            example=EXAMPLE)
    for step in bar:
        d, g = train_step()
        if log_every and (step + 1) % log_every == 0:
            bar.set_postfix(D=f"{float(d):.3f}", G=f"{float(g):.3f}")
            report(step + 1, d, g)
    bar.close()
    x = draw(10_000)
    result = {"mean": float(x.mean()), "std": float(x.std()),
              "initial_mean": float(x0.mean()), "initial_std": float(x0.std()),
              "seconds": time.perf_counter() - start}
    print(f"after {steps} steps ({result['seconds']:.1f} s): generated mean "
          f"{result['mean']:.3f} (target {TARGET_MEAN}), std {result['std']:.3f} "
          f"(target {TARGET_STD})", file=out)
    if png:
        d_apply = bridge.Jit(discriminator, discriminator.vars())
        result["png"] = plot(np.asarray(x0), np.asarray(x), d_apply, steps, png)
        print(f"plot written to {png}", file=out)
    return result


def plot(before: np.ndarray, after: np.ndarray, discriminator, steps: int, path: str) -> str:
    """Histograms of generated samples before and after training over the target density,
    and the trained discriminator's probability of "real"."""
    plt = _support.pyplot(EXAMPLE)
    lo = min(float(before.min()), float(after.min()), TARGET_MEAN - 4 * TARGET_STD)
    hi = max(float(before.max()), float(after.max()), TARGET_MEAN + 4 * TARGET_STD)
    grid = np.linspace(lo, hi, 400, dtype=np.float32)
    density = (np.exp(-0.5 * ((grid - TARGET_MEAN) / TARGET_STD) ** 2)
               / (TARGET_STD * np.sqrt(2 * np.pi)))
    bins = np.linspace(lo, hi, 80)
    fig, ax = plt.subplots(figsize=(7, 3.8))
    ax.hist(before.ravel(), bins=bins, density=True, alpha=0.35, color="tab:gray",
            label="generated, before training")
    ax.hist(after.ravel(), bins=bins, density=True, alpha=0.6, color="tab:blue",
            label=f"generated, after {steps} steps")
    ax.plot(grid, density, color="black", lw=2,
            label=f"data: N({TARGET_MEAN:g}, {TARGET_STD:g}²)")
    ax.set(xlabel="x", ylabel="density",
           title="Object generator vs Linen discriminator: learned distribution")
    right = ax.twinx()
    right.plot(grid, np.asarray(jax.nn.sigmoid(discriminator(grid[:, None])))[:, 0],
               color="tab:red", lw=1, ls="--", label="discriminator P(real)")
    right.set(ylim=(0, 1), ylabel="discriminator P(real)")
    lines, labels = ax.get_legend_handles_labels()
    more_lines, more_labels = right.get_legend_handles_labels()
    ax.legend(lines + more_lines, labels + more_labels, fontsize=8, loc="upper left")
    fig.tight_layout()
    return _support.save_png(fig, path)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--steps", type=int, default=3000,
                        help="training steps, each one discriminator and one generator "
                             "update (default: %(default)s)")
    parser.add_argument("--seed", type=int, default=0,
                        help="seed of the initial weights and the noise (default: %(default)s)")
    parser.add_argument("--log-every", type=int, default=500,
                        help="steps between report lines, 0 for none (default: %(default)s)")
    parser.add_argument("--out", default="gan_mixed.png",
                        help="PNG path for the plot of the learned distribution, relative "
                             "to the current directory (default: %(default)s; '' for no "
                             "plot)")
    parser.add_argument("--quiet", action="store_true", help="no progress bar")
    return parser


def main(argv: Optional[Sequence[str]] = None) -> dict:
    """Train; returns ``{'mean', 'std', 'initial_mean', 'initial_std', 'seconds', 'png'}``
    (the statistics of 10,000 generated samples after and before training)."""
    args = build_parser().parse_args(argv)
    _support.require("tqdm", "the progress bar", EXAMPLE)
    if args.out:
        _support.require("matplotlib", "the plot; --out '' skips it", EXAMPLE)
    result = run(args.steps, args.seed, args.log_every, png=args.out or None,
                 progress=not args.quiet)
    result.setdefault("png", None)
    return result


if __name__ == "__main__":
    main()
