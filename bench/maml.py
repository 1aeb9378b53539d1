"""A MAML meta-step (second order) on the sinusoid MLP (1-40-40-1), written three ways.

All three take the same meta-batch (25 sine tasks, 10 support and 10 query points each,
drawn once with ``examples/maml_sinusoid.py``'s sampler), compute the meta-gradient of
the mean query loss after one inner SGD step (``alpha = 0.01``) and apply Adam (1e-3):

* ``jax.jit (hand-written)``: ``jax.grad`` of the inner loss inside ``jax.grad`` of the
  meta-loss, ``jax.vmap`` over tasks, optax, one ``jax.jit`` (the anchor);
* ``bridge.pure + jax.jit``: ``bridge.pure.pairwise_nested_loss`` +
  ``jax.value_and_grad`` + optax in one ``jax.jit``;
* ``bridge.Jit (object)``: the Objax-style nested loss (``GradValues`` of the inner loss,
  ``assign`` the adapted weights, query loss, restore), ``bridge.Vectorize`` over tasks,
  an outer ``bridge.GradValues``, ``bridge.optimizer.Optax``, inside ``bridge.Jit``.

Before timing, the script checks that the three meta-gradients at the same weights agree
(``numpy.allclose``, rtol 1e-5, atol 1e-6). Target: both bridge rows within 1.05x of the
hand-written step. Timing is interleaved (the order rotates between rounds), every call
blocks on its loss; rows are medians over rounds of the mean time per meta-step.

Usage::

    python bench/maml.py              # 15 rounds
    python bench/maml.py --quick      # 3 rounds
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from typing import Optional

# Runs from a checkout without installing the package.
ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)
sys.path.insert(1, os.path.join(ROOT, "examples"))

import jax  # noqa: E402
import maml_sinusoid as M  # noqa: E402  (examples/maml_sinusoid.py)
import numpy as np  # noqa: E402
import optax  # noqa: E402

import bridge  # noqa: E402
from bench import _harness as H  # noqa: E402

ANCHOR = "jax.jit (hand-written)"


def hand_written_meta_loss(params, xq, yq, xs, ys):
    """``mean_i mse(theta - alpha grad mse(theta; support_i); query_i)``, by hand."""
    def one_task(xq, yq, xs, ys):
        g = jax.grad(M.mse)(params, xs, ys)
        adapted = jax.tree_util.tree_map(lambda p, d: p - M.INNER_LR * d, params, g)
        return M.mse(adapted, xq, yq)

    return jax.vmap(one_task)(xq, yq, xs, ys).mean()


def functional_step(meta_loss):
    tx = optax.adam(M.META_LR)

    def step(params, opt_state, xq, yq, xs, ys):
        loss, grads = jax.value_and_grad(meta_loss)(params, xq, yq, xs, ys)
        updates, opt_state = tx.update(grads, opt_state, params)
        return optax.apply_updates(params, updates), opt_state, loss

    return jax.jit(step), tx


def object_step(model: bridge.Module):
    """``(train, meta_gradient)``: the Objax-style meta-step and its meta-gradient."""
    train_vars = model.vars().subset(bridge.TrainVar)

    @bridge.Function.with_vars(model.vars())
    def loss(x, y):
        return ((model(x) - y) ** 2).mean()

    inner_gradient = bridge.GradValues(loss, train_vars)

    @bridge.Function.with_vars(model.vars())
    def nested_loss(x1, y1, x2, y2, mu):
        original = train_vars.tensors()
        grads = inner_gradient(x2, y2)[0]
        for v, g in zip(train_vars, grads):
            v.assign(v.value - mu * g)
        query_loss = loss(x1, y1)
        for v, value in zip(train_vars, original):
            v.assign(value)
        return query_loss

    per_task = bridge.Vectorize(nested_loss, batch_axis=(0, 0, 0, 0, None))

    @bridge.Function.with_vars(model.vars())
    def meta_loss(xq, yq, xs, ys, mu):
        return per_task(xq, yq, xs, ys, mu).mean()

    meta_gradient = bridge.GradValues(meta_loss, model.vars())
    opt = bridge.optimizer.Optax(model.vars(), optax.adam(M.META_LR))

    def step(xq, yq, xs, ys):
        grads, values = meta_gradient(xq, yq, xs, ys, M.INNER_LR)
        opt(grads)
        return values[0]

    return bridge.Jit(step, model.vars() + opt.vars()), meta_gradient


def build(seed: int = 0):
    xs, ys, xq, yq = jax.block_until_ready(M.sample_meta_batch(jax.random.PRNGKey(seed + 1)))
    batch = (xq, yq, xs, ys)
    hand, tx = functional_step(hand_written_meta_loss)
    pure_loss = bridge.pure.pairwise_nested_loss(M.mse, M.INNER_LR)
    pure, _ = functional_step(pure_loss)
    model = M.build_model(seed)
    train, meta_gradient = object_step(model)
    params = M.init_params(seed)   # the same weights as the model's

    # ---- the same meta-gradient? ----------------------------------------------------------
    g_hand = jax.tree_util.tree_leaves(jax.grad(hand_written_meta_loss)(params, *batch))
    g_pure = jax.tree_util.tree_leaves(jax.grad(pure_loss)(params, *batch))
    g_obj = list(meta_gradient(*batch, M.INNER_LR)[0])   # [b0, w0, ...] as the leaves
    checks = {}
    for name, g in [("bridge.pure", g_pure), ("object GradValues", g_obj)]:
        same = all(np.allclose(a, b, rtol=1e-5, atol=1e-6) for a, b in zip(g, g_hand))
        diff = max(float(np.abs(np.asarray(a) - np.asarray(b)).max())
                   for a, b in zip(g, g_hand))
        checks[name] = (same and len(g) == len(g_hand), diff)

    states = {ANCHOR: [params, tx.init(params)], "bridge.pure + jax.jit":
              [params, tx.init(params)]}

    def functional(step, state):
        def run():
            state[0], state[1], loss = step(state[0], state[1], *batch)
            return loss
        return run

    rows = {ANCHOR: functional(hand, states[ANCHOR]),
            "bridge.pure + jax.jit": functional(pure, states["bridge.pure + jax.jit"]),
            "bridge.Jit (object)": lambda: train(*batch)}
    return rows, checks


def bench(quick: bool = False, out_dir: Optional[str] = None,
          rounds: Optional[int] = None) -> H.Section:
    rounds = rounds or (3 if quick else 15)
    target = 0.03 if quick else 0.1
    start = time.perf_counter()
    rows, checks = build()
    section = H.Section(
        "maml", "MAML meta-step, sinusoid MLP 1-40-40-1, second order",
        "python bench/maml.py" + (" --quick" if quick else ""),
        f"{M.META_BATCH} tasks x ({M.K_SHOT} support + {M.K_QUERY} query) points, inner SGD "
        f"alpha {M.INNER_LR}, Adam {M.META_LR}; {rounds} interleaved rounds of about "
        f"{target:g} s per variant")
    for name, (same, diff) in checks.items():
        section.notes.append(f"check: meta-gradient of {name} vs hand-written: "
                             f"{'allclose' if same else 'DIFFERENT'} (max |diff| {diff:.1e})")
    if not all(same for same, _ in checks.values()):
        section.notes.append("the meta-gradients differ: the timings below compare "
                             "different computations")
    for fn in rows.values():
        H.run_block(fn, 3)
    calls = {n: H.calls_for(f, target, minimum=3) for n, f in rows.items()}
    times = H.interleave(rows, rounds, calls)
    table = H.Table("meta-step (meta-gradient + Adam), jitted", "us", what="per meta-step")
    for name in rows:
        table.add(name, times[name], None if name == ANCHOR else ANCHOR)
    section.tables.append(table)
    for name in rows:
        if name != ANCHOR:
            section.targets.append(H.Target(f"{name} / hand-written", table.ratio(name), 1.05))
    section.seconds = time.perf_counter() - start
    return section


def main(argv: Optional[list[str]] = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--rounds", type=int)
    args = parser.parse_args(argv)
    print(H.header())
    section = bench(args.quick, rounds=args.rounds)
    H.print_section(section)
    return 0 if all("DIFFERENT" not in n for n in section.notes) else 1


if __name__ == "__main__":
    sys.exit(main())
