"""Per-example gradients and DP-SGD gradients on a 784-256-256-10 MLP, batch 128.

Two questions, each answered by a ratio measured in one run:

1. **Per-example gradients through the object facade.**
   ``bridge.Jit(bridge.Vectorize(bridge.GradValues(loss, model.vars()), batch_axis=(0, 0)))``
   against the hand-written ``jax.jit(jax.vmap(jax.grad(loss), in_axes=(None, 0, 0)))``
   on the same weights (target: within 1.05x).
2. **DP-SGD without the memory wall.** The clipped (``l2_norm_clip=1``), noised
   (``noise_multiplier=1.1``) mean gradient, ``jax.jit(bridge.pure.clipped_grad(...))``
   and ``bridge.Jit(bridge.privacy.PrivateGradValues(...))``, against the non-private
   batched gradient ``jax.jit(jax.grad(loss))`` (target: within 3x). The row
   ``same, noise_multiplier=0`` separates the cost of clipping from that of drawing the
   Gaussian noise (one ``jax.random.normal`` per parameter entry, about 270k samples).
   For scale, the same clipped gradient computed by materialising per-example gradients
   (``clipped_grad(..., method='materialize')``, i.e. ``vmap(grad)``, clip, mean) is
   timed too.

Before timing, the script checks that the variants compute the same numbers (the
facade's per-example gradients equal the hand-written ones; the fast clipped gradient
equals the materialised one to 1e-5) and prints the largest differences.

Timing is interleaved: every round runs each variant a few times (enough for about
``--target`` seconds; slow variants at least ``--min-calls`` times) in an order that
rotates between rounds, blocking on every result. A row reports the median over rounds
of the mean time per call, the 25th-75th percentiles, and its ratio to its reference
row's median from the same run. Quote the ratios, not the milliseconds.

Usage::

    python bench/per_example.py                 # 15 rounds, about 1-1.5 minutes
    python bench/per_example.py --rounds 5      # quicker, noisier
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import sys
import time
from typing import Callable

# Runs from a checkout without installing the package.
sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import jax  # noqa: E402
import jax.numpy as jnp  # noqa: E402
import numpy as np  # noqa: E402
import optax  # noqa: E402

import bridge  # noqa: E402
from bridge.privacy import PrivateGradValues  # noqa: E402

SIZES = (784, 256, 256, 10)
BATCH = 128
CLIP = 1.0
NOISE = 1.1


# ----- the model, written both ways with the same weights --------------------------------

def object_model(seed: int) -> bridge.nn.Sequential:
    bridge.random.DEFAULT_GENERATOR.seed(seed)
    layers: list = []
    for nin, nout in zip(SIZES[:-1], SIZES[1:]):
        layers += [bridge.nn.Linear(nin, nout), bridge.functional.relu]
    return bridge.nn.Sequential(layers[:-1])


def pure_params(model: bridge.nn.Sequential) -> list[dict[str, jax.Array]]:
    return [{"w": layer.w.value, "b": layer.b.value} for layer in model
            if isinstance(layer, bridge.nn.Linear)]


def forward(params, x):
    for i, layer in enumerate(params):
        x = jnp.dot(x, layer["w"]) + layer["b"]
        if i < len(params) - 1:
            x = jax.nn.relu(x)
    return x


def pure_loss(params, x, y):
    """Mean softmax cross-entropy; ``x`` is one example ``(784,)`` or a batch."""
    return optax.softmax_cross_entropy_with_integer_labels(forward(params, x), y).mean()


def object_loss(model):
    def loss(x, y):
        return bridge.functional.loss.cross_entropy_logits_sparse(model(x), y).mean()
    return loss


# ----- the variants -----------------------------------------------------------------------

Call = Callable[[], object]


def build(x, y, seed: int):
    model = object_model(seed)
    params = pure_params(model)
    loss = object_loss(model)
    key = jax.random.PRNGKey(seed)

    per_example_jax = jax.jit(jax.vmap(jax.grad(pure_loss), in_axes=(None, 0, 0)))
    per_example_obj = bridge.Jit(bridge.Vectorize(bridge.GradValues(loss, model.vars()),
                                                  batch_axis=(0, 0)))
    batch_grad = jax.jit(jax.grad(pure_loss))
    private_pure = jax.jit(bridge.pure.clipped_grad(pure_loss, CLIP, noise_multiplier=NOISE))
    clipped_only = jax.jit(bridge.pure.clipped_grad(pure_loss, CLIP))
    gv = PrivateGradValues(loss, model.vars(), noise_multiplier=NOISE, l2_norm_clip=CLIP,
                           keygen=bridge.random.Generator(seed))
    private_obj = bridge.Jit(gv, gv.vars())
    private_materialized = jax.jit(bridge.pure.clipped_grad(
        pure_loss, CLIP, noise_multiplier=NOISE, method="materialize"))

    groups = [
        ("per-example gradients", [
            ("jax.jit(vmap(grad))", lambda: per_example_jax(params, x, y)),
            ("bridge.Jit(Vectorize(GradValues))", lambda: per_example_obj(x, y)),
        ]),
        (f"DP-SGD gradient (clip {CLIP}, noise {NOISE})", [
            ("jax.jit(grad), non-private", lambda: batch_grad(params, x, y)),
            ("jit(pure.clipped_grad)", lambda: private_pure(params, x, y, key=key)),
            ("  same, noise_multiplier=0", lambda: clipped_only(params, x, y)),
            ("bridge.Jit(PrivateGradValues)", lambda: private_obj(x, y)),
            ("clipped_grad materialize", lambda: private_materialized(params, x, y, key=key)),
        ]),
    ]

    # ---- same numbers? -------------------------------------------------------------------
    checks = []
    ref = per_example_jax(params, x, y)
    obj, _ = per_example_obj(x, y)
    ref_by_var = [ref[i // 2]["b" if i % 2 == 0 else "w"] for i in range(len(obj))]
    checks.append(("per-example: Vectorize(GradValues) vs vmap(grad)",
                   max(float(jnp.abs(a - b).max()) for a, b in zip(obj, ref_by_var))))
    exact_fast = clipped_only(params, x, y)[0]
    exact_slow = jax.jit(bridge.pure.clipped_grad(pure_loss, CLIP, method="materialize"))(
        params, x, y)[0]
    checks.append(("DP: clipped_grad fast vs materialised (no noise)",
                   max(float(jnp.abs(a - b).max()) for a, b in
                       zip(jax.tree_util.tree_leaves(exact_fast),
                           jax.tree_util.tree_leaves(exact_slow)))))
    noisy_fast = private_pure(params, x, y, key=key)[0]
    noisy_slow = private_materialized(params, x, y, key=key)[0]
    checks.append(("DP: clipped_grad fast vs materialised (same noise key)",
                   max(float(jnp.abs(a - b).max()) for a, b in
                       zip(jax.tree_util.tree_leaves(noisy_fast),
                           jax.tree_util.tree_leaves(noisy_slow)))))
    kinds = bridge.pure._privacy.plan(pure_loss, params, x, y)
    plan_note = ", ".join(f"{k}={v}" for layer in kinds for k, v in sorted(layer.items()))
    return groups, checks, plan_note


# ----- timing -----------------------------------------------------------------------------

def time_calls(fn: Call, n: int) -> float:
    start = time.perf_counter()
    for _ in range(n):
        jax.block_until_ready(fn())
    return (time.perf_counter() - start) / n


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=15)
    parser.add_argument("--target", type=float, default=0.12,
                        help="seconds per variant per round (sets the calls per round)")
    parser.add_argument("--min-calls", type=int, default=2)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()

    print(f"python {platform.python_version()}, jax {jax.__version__}, "
          f"optax {optax.__version__}, backend {jax.default_backend()}, "
          f"{os.cpu_count()} CPUs ({platform.processor() or platform.machine()})")
    print(f"MLP {'-'.join(map(str, SIZES))} (ReLU, softmax cross-entropy), batch {BATCH}")

    kx, ky = jax.random.split(jax.random.PRNGKey(args.seed + 1))
    x = jax.random.normal(kx, (BATCH, SIZES[0]))
    y = jax.random.randint(ky, (BATCH,), 0, SIZES[-1])
    groups, checks, plan_note = build(x, y, args.seed)
    variants = [(g, name, fn) for g, rows in groups for name, fn in rows]

    print("\nsame numbers (max abs difference):")
    for label, diff in checks:
        print(f"  {label:58s} {diff:.2e}")
    print(f"  clipped_grad plan: {plan_note}")

    calls = {}
    for _, name, fn in variants:       # compile, warm up, calibrate
        jax.block_until_ready(fn())
        t = time_calls(fn, 2)
        calls[name] = max(args.min_calls, int(args.target / max(t, 1e-6)))

    times: dict[str, list[float]] = {name: [] for _, name, _ in variants}
    start = time.perf_counter()
    for r in range(args.rounds):
        k = r % len(variants)
        for _, name, fn in variants[k:] + variants[:k]:
            times[name].append(time_calls(fn, calls[name]))
    elapsed = time.perf_counter() - start

    median = {n: statistics.median(t) for n, t in times.items()}
    print(f"\n{args.rounds} rounds in {elapsed:.0f} s; calls per round: "
          + ", ".join(f"{calls[n]}" for _, n, _ in variants))
    header = f"{'variant':36s} {'median ms':>10s} {'p25-p75 ms':>16s} {'ratio':>7s}"
    for group, rows in groups:
        print(f"\n{group}\n{header}\n{'-' * len(header)}")
        ref = rows[0][0]
        for name, _ in rows:
            q = np.percentile(times[name], [25, 75]) * 1e3
            print(f"{name:36s} {median[name] * 1e3:10.2f} {q[0]:7.2f}-{q[1]:<8.2f} "
                  f"{median[name] / median[ref]:6.2f}x")

    print()
    print("per-example gradients: bridge.Jit(Vectorize(GradValues)) / jax.jit(vmap(grad)) = "
          f"{median['bridge.Jit(Vectorize(GradValues))'] / median['jax.jit(vmap(grad))']:.2f}x"
          " (target <= 1.05x)")
    base = median["jax.jit(grad), non-private"]
    print("DP-SGD clipped+noised gradient / non-private gradient = "
          f"{median['jit(pure.clipped_grad)'] / base:.2f}x (pure clipped_grad), "
          f"{median['bridge.Jit(PrivateGradValues)'] / base:.2f}x (PrivateGradValues) "
          "(target <= 3x)")
    print("DP-SGD clipped gradient without noise / non-private gradient = "
          f"{median['  same, noise_multiplier=0'] / base:.2f}x (the rest is drawing the noise)")
    print("DP-SGD fast / materialised (vmap(grad), clip, mean) = "
          f"{median['jit(pure.clipped_grad)'] / median['clipped_grad materialize']:.3f}x")


if __name__ == "__main__":
    main()
