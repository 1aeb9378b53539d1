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
import sys
import time
from typing import Optional

# Runs from a checkout without installing the package.
sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import jax  # noqa: E402
import jax.numpy as jnp  # noqa: E402

import bridge  # noqa: E402
from bench import _harness as H  # noqa: E402
from bench import per_example as P  # noqa: E402
from bridge.privacy import PrivateGradValues  # noqa: E402
from bridge.pure import _privacy  # noqa: E402

# The issue-3 MLP and its loss: the same model as bench/per_example.py, from there.
SIZES, BATCH, CLIP, NOISE = P.SIZES, P.BATCH, P.CLIP, P.NOISE
object_model, pure_loss = P.object_model, P.pure_loss


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
    params = P.pure_params(model)
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


def bench(quick: bool = False, out_dir: Optional[str] = None, rounds: Optional[int] = None,
          steps: Optional[int] = None, seed: int = 0) -> H.Section:
    """Checks, then the interleaved timing, as a ``Section`` for ``python -m bench``."""
    rounds = rounds or (5 if quick else 21)
    steps = steps or (10 if quick else 30)
    start = time.perf_counter()
    rows, checks = build(seed)
    variants = dict(rows)
    times = H.interleave(variants, rounds, steps, warmup=3)
    command = "python bench/dp_sgd.py" + (" --quick" if quick else "" if (rounds, steps) == (
        21, 30) else f" --rounds {rounds} --steps {steps}")
    table = H.Table(f"DP-SGD gradient, MLP {'-'.join(map(str, SIZES))}, batch {BATCH}, clip "
                    f"{CLIP}, noise {NOISE}", "ms", what="per call")
    anchor = rows[0][0]
    for name, _ in rows:
        table.add(name, times[name], None if name == anchor else anchor)
    section = H.Section("dp_sgd", "DP-SGD clipping and noise", command,
                        f"{rounds} interleaved rounds x {steps} calls per row; default PRNG "
                        f"{jax.config.jax_default_prng_impl}", tables=[table])
    section.targets.append(H.Target("clipped+noised (library) / non-private",
                                    table.ratio("clipped+noised (library)"), 1.5))
    section.notes += [f"same numbers: {label}: max |diff| {diff:.2e}" for label, diff in checks]
    section.seconds = time.perf_counter() - start
    return section


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=21)
    parser.add_argument("--steps", type=int, default=30, help="calls per row per round")
    parser.add_argument("--quick", action="store_true", help="5 rounds of 10 steps")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    if args.quick:
        args.rounds, args.steps = 5, 10
    print(H.header())
    print(f"MLP {'-'.join(map(str, SIZES))}, batch {BATCH}, clip {CLIP}, "
          f"noise multiplier {NOISE}")
    H.print_section(bench(args.quick, rounds=args.rounds, steps=args.steps, seed=args.seed))


if __name__ == "__main__":
    main()
