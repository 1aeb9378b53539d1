"""DP-SGD step cost on the issue-3 MLP (784-256-256-10, ReLU, batch 128): where the time goes.

Rows, all measured in one process, interleaved:

* ``non-private``: ``jax.jit(jax.grad(loss))``, the reference every ratio is taken to;
* ``clipped only``: ``jax.jit(bridge.pure.clipped_grad(loss, C))`` (no noise);
* ``clipped+noised, old noise``: the same clipped gradient plus the Gaussian noise drawn
  the way ``bridge.pure.clipped_grad`` drew it before issue 13 (``jax.random.split`` of the
  key into one key per leaf, one ``jax.random.normal`` per leaf), inside the same
  ``jax.jit``; kept here, in this script, so that the old and new noise can be compared
  side by side;
* ``clipped+noised (library)``: ``jax.jit(bridge.pure.clipped_grad(loss, C,
  noise_multiplier=z))`` as the library draws the noise now;
* ``PrivateGradValues``: ``bridge.Jit(bridge.privacy.PrivateGradValues(...))``, the object
  facade over the same function;
* ``noise only, old`` / ``noise only (library)``: just the noise for the MLP's parameters
  (about 270k Gaussian samples) added to zeros, to attribute the difference.

Before timing, the script checks that the library's clipped+noised gradient equals the
materialised computation (``vmap(grad)``, clip, mean) plus the same noise tensor (the
library's own noise for the key), and prints the largest difference.

Timing: every round runs each row ``--steps`` times (blocking on every result), in an
order that rotates between rounds; a row reports the median over rounds of the mean time
per call, the 25th-75th percentiles, and the ratio of its median to the non-private
median of the same run. Quote the ratios, not the milliseconds.

Usage::

    python bench/dp_sgd.py                       # 21 rounds x 30 steps, about 1 minute
    python bench/dp_sgd.py --rounds 9 --steps 20
    python bench/dp_sgd.py --quick               # 5 rounds x 10 steps, a smoke run
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import sys
import time

# Runs from a checkout without installing the package.
sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import jax  # noqa: E402
import jax.numpy as jnp  # noqa: E402
import numpy as np  # noqa: E402
import optax  # noqa: E402

import bridge  # noqa: E402
from bridge.privacy import PrivateGradValues  # noqa: E402
from bridge.pure import _privacy  # noqa: E402

SIZES = (784, 256, 256, 10)
BATCH = 128
CLIP = 1.0
NOISE = 1.1


def object_model(seed: int) -> bridge.nn.Sequential:
    bridge.random.DEFAULT_GENERATOR.seed(seed)
    layers: list = []
    for nin, nout in zip(SIZES[:-1], SIZES[1:]):
        layers += [bridge.nn.Linear(nin, nout), bridge.functional.relu]
    return bridge.nn.Sequential(layers[:-1])


def forward(params, x):
    for i, layer in enumerate(params):
        x = jnp.dot(x, layer["w"]) + layer["b"]
        if i < len(params) - 1:
            x = jax.nn.relu(x)
    return x


def pure_loss(params, x, y):
    return optax.softmax_cross_entropy_with_integer_labels(forward(params, x), y).mean()


def old_noise(grads, key, stddev):
    """The noise of ``clipped_grad`` before issue 13: one key and one normal per leaf."""
    leaves, tree = jax.tree_util.tree_flatten(grads)
    keys = jax.random.split(key, len(leaves))
    noisy = [g + stddev * jax.random.normal(k, jnp.shape(g), jnp.result_type(g))
             for g, k in zip(leaves, keys)]
    return jax.tree_util.tree_unflatten(tree, noisy)


def library_noise(grads, key, stddev):
    """The library's noise, through the same internal entry point ``clipped_grad`` uses."""
    return _privacy._add_noise(grads, key, stddev)


def max_diff(a, b) -> float:
    return max(float(jnp.max(jnp.abs(u - v))) for u, v in
               zip(jax.tree_util.tree_leaves(a), jax.tree_util.tree_leaves(b)))


def build(seed: int):
    model = object_model(seed)
    params = [{"w": layer.w.value, "b": layer.b.value} for layer in model
              if isinstance(layer, bridge.nn.Linear)]
    kx, ky = jax.random.split(jax.random.PRNGKey(seed + 1))
    x = jax.random.normal(kx, (BATCH, SIZES[0]))
    y = jax.random.randint(ky, (BATCH,), 0, SIZES[-1])
    key = jax.random.PRNGKey(seed)
    sigma = NOISE * CLIP / BATCH

    non_private = jax.jit(jax.grad(pure_loss))
    clip_fn = bridge.pure.clipped_grad(pure_loss, CLIP)
    clipped_only = jax.jit(clip_fn)
    old = jax.jit(lambda p, x, y, k: old_noise(clip_fn(p, x, y)[0], k, sigma))
    library = jax.jit(bridge.pure.clipped_grad(pure_loss, CLIP, noise_multiplier=NOISE))

    def object_loss(x, y):
        return bridge.functional.loss.cross_entropy_logits_sparse(model(x), y).mean()

    gv = PrivateGradValues(object_loss, model.vars(), noise_multiplier=NOISE,
                           l2_norm_clip=CLIP, keygen=bridge.random.Generator(seed))
    facade = bridge.Jit(gv, gv.vars())
    zeros = jax.tree_util.tree_map(jnp.zeros_like, params)
    noise_old = jax.jit(lambda z, k: old_noise(z, k, sigma))
    noise_new = jax.jit(lambda z, k: library_noise(z, k, sigma))

    rows = [
        ("non-private jit(grad)", lambda: non_private(params, x, y)),
        ("clipped only", lambda: clipped_only(params, x, y)),
        ("clipped+noised, old noise", lambda: old(params, x, y, key)),
        ("clipped+noised (library)", lambda: library(params, x, y, key=key)),
        ("PrivateGradValues (library)", lambda: facade(x, y)),
        ("noise only, old", lambda: noise_old(zeros, key)),
        ("noise only (library)", lambda: noise_new(zeros, key)),
    ]

    checks = []
    materialised = jax.jit(bridge.pure.clipped_grad(pure_loss, CLIP, method="materialize"))
    exact = materialised(params, x, y)[0]
    checks.append(("clipped only vs materialised", max_diff(clipped_only(params, x, y)[0],
                                                            exact)))
    noisy = library(params, x, y, key=key)[0]
    if hasattr(_privacy, "_noise"):
        same_noise = _privacy._noise(params, key, sigma)
        reference = jax.tree_util.tree_map(jnp.add, exact, same_noise)
        checks.append(("library noised vs materialised + _noise(key)",
                       max_diff(noisy, reference)))
    else:
        checks.append(("library noised vs materialised + old noise(key)",
                       max_diff(noisy, old_noise(exact, key, sigma))))
    return rows, checks


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=21)
    parser.add_argument("--steps", type=int, default=30, help="calls per row per round")
    parser.add_argument("--quick", action="store_true", help="5 rounds of 10 steps")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    if args.quick:
        args.rounds, args.steps = 5, 10

    print(f"python {platform.python_version()}, jax {jax.__version__}, backend "
          f"{jax.default_backend()}, {os.cpu_count()} CPUs, "
          f"default PRNG {jax.config.jax_default_prng_impl}")
    print(f"MLP {'-'.join(map(str, SIZES))}, batch {BATCH}, clip {CLIP}, "
          f"noise multiplier {NOISE}")
    rows, checks = build(args.seed)
    print("\nsame numbers (max abs difference):")
    for label, diff in checks:
        print(f"  {label:50s} {diff:.2e}")

    for _, fn in rows:  # compile and warm up
        for _ in range(3):
            jax.block_until_ready(fn())

    times: dict[str, list[float]] = {name: [] for name, _ in rows}
    start = time.perf_counter()
    for r in range(args.rounds):
        k = r % len(rows)
        for name, fn in rows[k:] + rows[:k]:
            t = time.perf_counter()
            for _ in range(args.steps):
                jax.block_until_ready(fn())
            times[name].append((time.perf_counter() - t) / args.steps)
    elapsed = time.perf_counter() - start

    median = {n: statistics.median(t) for n, t in times.items()}
    base = median[rows[0][0]]
    print(f"\n{args.rounds} rounds x {args.steps} steps in {elapsed:.0f} s")
    header = f"{'row':30s} {'median ms':>10s} {'p25-p75 ms':>14s} {'vs non-private':>15s}"
    print(header + "\n" + "-" * len(header))
    for name, _ in rows:
        q = np.percentile(times[name], [25, 75]) * 1e3
        print(f"{name:30s} {median[name] * 1e3:10.3f} {q[0]:6.3f}-{q[1]:<7.3f} "
              f"{median[name] / base:14.2f}x")
    print(f"\nclipped+noised (library) / non-private = "
          f"{median['clipped+noised (library)'] / base:.2f}x (target <= 1.5x); "
          f"old noise: {median['clipped+noised, old noise'] / base:.2f}x; "
          f"clipped only: {median['clipped only'] / base:.2f}x")


if __name__ == "__main__":
    main()
