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
import sys
import time
from typing import Callable, Optional

# Runs from a checkout without installing the package.
sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import jax  # noqa: E402
import jax.numpy as jnp  # noqa: E402
import optax  # noqa: E402

import bridge  # noqa: E402
from bench import _harness as H  # noqa: E402
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

def bench(quick: bool = False, out_dir: Optional[str] = None, rounds: Optional[int] = None,
          target: Optional[float] = None, min_calls: int = 2, seed: int = 0) -> H.Section:
    """Checks, then the interleaved timing, as a ``Section`` for ``python -m bench``."""
    rounds = rounds or (3 if quick else 15)
    target = target or (0.03 if quick else 0.12)
    start = time.perf_counter()
    kx, ky = jax.random.split(jax.random.PRNGKey(seed + 1))
    x = jax.random.normal(kx, (BATCH, SIZES[0]))
    y = jax.random.randint(ky, (BATCH,), 0, SIZES[-1])
    groups, checks, plan_note = build(x, y, seed)
    variants = {name: fn for _, rows in groups for name, fn in rows}
    for fn in variants.values():       # compile, warm up
        H.block(fn())
    calls = {n: H.calls_for(fn, target, minimum=min_calls) for n, fn in variants.items()}
    times = H.interleave(variants, rounds, calls)
    command = "python bench/per_example.py" + ("" if rounds == 15 else f" --rounds {rounds}")
    section = H.Section("per_example", "Per-example gradients and DP-SGD (MLP 784-256-256-10, "
                        "batch 128)", command,
                        f"{rounds} interleaved rounds, about {target:g} s per variant per "
                        f"round (at least {min_calls} calls)")
    for title, rows in groups:
        table = H.Table(title, "ms", what="per call")
        anchor = rows[0][0]
        for name, _ in rows:
            table.add(name, times[name], None if name == anchor else anchor)
        section.tables.append(table)
    per_ex, dp = section.tables
    section.targets.append(H.Target("bridge.Jit(Vectorize(GradValues)) / jax.jit(vmap(grad))",
                                    per_ex.ratio("bridge.Jit(Vectorize(GradValues))"), 1.05))
    section.targets.append(H.Target("jit(pure.clipped_grad) / non-private",
                                    dp.ratio("jit(pure.clipped_grad)"), 3.0))
    section.targets.append(H.Target("bridge.Jit(PrivateGradValues) / non-private",
                                    dp.ratio("bridge.Jit(PrivateGradValues)"), 3.0))
    section.notes += [f"same numbers: {label}: max |diff| {diff:.2e}" for label, diff in checks]
    section.notes.append(f"clipped_grad plan: {plan_note}")
    section.seconds = time.perf_counter() - start
    return section


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=15)
    parser.add_argument("--target", type=float, default=0.12,
                        help="seconds per variant per round (sets the calls per round)")
    parser.add_argument("--min-calls", type=int, default=2)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    print(H.header())
    print(f"MLP {'-'.join(map(str, SIZES))} (ReLU, softmax cross-entropy), batch {BATCH}")
    H.print_section(bench(rounds=args.rounds, target=args.target, min_calls=args.min_calls,
                          seed=args.seed))


if __name__ == "__main__":
    main()
