"""Per-step overhead as the model grows: an MLP of Linear + BatchNorm blocks at several
depths, the same training step written six ways, timed side by side.

The model: ``depth`` blocks of ``Linear(32, 32)`` + BatchNorm (training mode: batch
statistics, running statistics updated) + ReLU, batch 16, mean squared error,
``optax.sgd(1e-2)``. Each block holds 6 arrays (weight, bias, scale, offset, running mean,
running variance), so depth 100 has 600. The computation per block is tiny, so the time
of a step grows with depth mostly through the per-array work around the compiled call:
flattening the arguments, dispatching, unflattening the results, writing them back. That
per-array cost is what this benchmark measures.

Variants (each keeps its own model and optimizer state):

* ``jax.jit``: plain JAX, lists of dicts of arrays (params and batch statistics), one
  ``jax.jit`` step (the anchor);
* ``bridge.Jit``: object style, ``bridge.nn.Sequential`` of ``Linear``, ``BatchNorm0D``
  and ReLU, ``bridge.GradValues`` + ``bridge.optimizer.Optax`` inside ``bridge.Jit``;
* ``bridge.pure + jax.jit``: the same object model used functionally:
  ``bridge.pure.functionalize`` + ``bridge.pure.grad_values`` over lists of values, one
  ``jax.jit`` step;
* ``nnx.jit`` and ``nnx.cached_partial``: Flax NNX (``nnx.Linear``, ``nnx.BatchNorm``,
  ``nnx.Optimizer``); skipped if Flax is missing;
* ``eqx.filter_jit``: Equinox (``eqx.nn.Linear``, ``eqx.nn.BatchNorm`` with
  ``eqx.nn.State``, ``jax.vmap`` over the batch); skipped if Equinox is missing.

Timing: for each depth, the variants run in interleaved rounds (the order rotates); each
round runs every variant for about ``--target`` seconds, blocking on every loss. A row
is the median over rounds of the mean time per step. The per-variable cost is the slope
of a least-squares line through (number of arrays, median step time) over the depths.

Usage::

    python bench/depth.py                   # depths 1, 10, 30, 100
    python bench/depth.py --quick           # depths 1, 10, few rounds
    python bench/depth.py --depths 1 10 30 --rounds 9
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
import numpy as np  # noqa: E402
import optax  # noqa: E402

import bridge  # noqa: E402
from bench import _harness as H  # noqa: E402

try:
    from flax import nnx
except ImportError:  # optional
    nnx = None
try:
    import equinox as eqx
except ImportError:  # optional
    eqx = None

WIDTH = 32
BATCH = 16
LR = 1e-2
MOMENTUM = 0.99   # running statistics: stat += (1 - MOMENTUM) * (batch - stat)
EPS = 1e-5
DEPTHS = (1, 10, 30, 100)
QUICK_DEPTHS = (1, 10)
ANCHOR = "jax.jit"
Step = Callable[[], jax.Array]


def data(seed: int = 0):
    kx, ky = jax.random.split(jax.random.PRNGKey(seed))
    return jax.block_until_ready((jax.random.normal(kx, (BATCH, WIDTH)),
                                  jax.random.normal(ky, (BATCH, WIDTH))))


def mse(out, y):
    return jnp.mean((out - y) ** 2)


# ----- plain JAX ----------------------------------------------------------------------------
def jax_init(depth: int, seed: int = 0):
    """``(params, stats)``: lists of per-block dicts of arrays."""
    init = jax.nn.initializers.lecun_normal()
    params, stats = [], []
    for k in jax.random.split(jax.random.PRNGKey(seed), depth):
        params.append({"w": init(k, (WIDTH, WIDTH)), "b": jnp.zeros(WIDTH),
                       "gamma": jnp.ones(WIDTH), "beta": jnp.zeros(WIDTH)})
        stats.append({"mean": jnp.zeros(WIDTH), "var": jnp.ones(WIDTH)})
    return params, stats


def jax_forward(params, stats, x):
    """The network in training mode: ``(output, new batch statistics)``."""
    new_stats = []
    for p, s in zip(params, stats):
        x = x @ p["w"] + p["b"]
        mean = x.mean(0)
        var = jnp.mean(jnp.square(x - mean), 0)
        new_stats.append({"mean": s["mean"] + (1 - MOMENTUM) * (mean - s["mean"]),
                          "var": s["var"] + (1 - MOMENTUM) * (var - s["var"])})
        x = jax.nn.relu((x - mean) * jax.lax.rsqrt(var + EPS) * p["gamma"] + p["beta"])
    return x, new_stats


def jax_loss(params, stats, x, y):
    out, new_stats = jax_forward(params, stats, x)
    return mse(out, y), new_stats


def jax_step_fn(tx):
    def step(params, stats, opt_state, x, y):
        (loss, stats), grads = jax.value_and_grad(jax_loss, has_aux=True)(params, stats, x, y)
        updates, opt_state = tx.update(grads, opt_state, params)
        return optax.apply_updates(params, updates), stats, opt_state, loss

    return step


def make_jax(depth: int, x, y, seed: int = 0) -> tuple[Step, int]:
    tx = optax.sgd(LR)
    params, stats = jax_init(depth, seed)
    state = [params, stats, tx.init(params)]
    step = jax.jit(jax_step_fn(tx))

    def run():
        state[0], state[1], state[2], loss = step(*state, x, y)
        return loss

    return run, len(jax.tree_util.tree_leaves(state))


# ----- bridge -------------------------------------------------------------------------------
def bridge_model(depth: int, seed: int = 0) -> bridge.nn.Sequential:
    """The object model, with the weights of ``jax_init(depth, seed)``."""
    params, _ = jax_init(depth, seed)
    layers: list = []
    for p in params:
        lin = bridge.nn.Linear(WIDTH, WIDTH)
        lin.w.assign(p["w"])
        layers += [lin, bridge.nn.BatchNorm0D(WIDTH, momentum=MOMENTUM, eps=EPS),
                   bridge.functional.relu]
    return bridge.nn.Sequential(layers)


def bridge_step(depth: int, seed: int = 0):
    """``(train, model, opt)``: the object-style step, ``train(x, y) -> loss``."""
    model = bridge_model(depth, seed)

    def loss(x, y):
        return mse(model(x, training=True), y)

    gv = bridge.GradValues(loss, model.vars())
    opt = bridge.optimizer.Optax(model.vars(), optax.sgd(LR))

    def step(x, y):
        g, v = gv(x, y)
        opt(g)
        return v[0]

    return bridge.Jit(step, model.vars() + opt.vars()), model, opt


def make_bridge(depth: int, x, y, seed: int = 0) -> tuple[Step, int]:
    train, model, opt = bridge_step(depth, seed)
    # model.vars() + opt.vars() also lists the optimizer's references to the TrainVars;
    # the arrays a call passes are the model's variables and the optimizer's state.
    return (lambda: train(x, y)), len(model.vars()) + len(opt.state)


def pure_step(depth: int, seed: int = 0):
    """The object model used functionally through ``bridge.pure``.

    Returns ``(step, state)``: ``step(train_values, other_values, opt_state, x, y)`` is a
    plain function (not yet jitted) over lists of arrays, ``state`` its initial arguments.
    """
    model = bridge_model(depth, seed)
    vc = model.vars()
    trainable = list(vc.subset(bridge.TrainVar))
    others = [v for v in vc if not isinstance(v, bridge.TrainVar)]
    apply = bridge.pure.functionalize(lambda x: model(x, training=True), trainable + others)
    n = len(trainable)
    tx = optax.sgd(LR)

    def loss(train_values, other_values, x, y):
        out, new_values = apply(list(train_values) + list(other_values), x)
        return mse(out, y), new_values[n:]

    gv = bridge.pure.grad_values(loss)

    def step(train_values, other_values, opt_state, x, y):
        grads, (value, other_values) = gv(train_values, other_values, x, y)
        updates, opt_state = tx.update(grads, opt_state, train_values)
        return optax.apply_updates(train_values, updates), other_values, opt_state, value

    train_values = [v.value for v in trainable]
    return step, [train_values, [v.value for v in others], tx.init(train_values)]


def make_pure(depth: int, x, y, seed: int = 0) -> tuple[Step, int]:
    step, state = pure_step(depth, seed)
    step = jax.jit(step)

    def run():
        state[0], state[1], state[2], loss = step(*state, x, y)
        return loss

    return run, len(jax.tree_util.tree_leaves(state))


# ----- Flax NNX -----------------------------------------------------------------------------
def _nnx_model(depth: int, seed: int):
    class Block(nnx.Module):
        def __init__(self, rngs):
            self.linear = nnx.Linear(WIDTH, WIDTH, rngs=rngs)
            self.bn = nnx.BatchNorm(WIDTH, momentum=MOMENTUM, epsilon=EPS, rngs=rngs)

        def __call__(self, x):
            return jax.nn.relu(self.bn(self.linear(x)))

    class MLP(nnx.Module):
        def __init__(self, rngs):
            blocks = [Block(rngs) for _ in range(depth)]
            self.blocks = nnx.List(blocks) if hasattr(nnx, "List") else blocks

        def __call__(self, x):
            for block in self.blocks:
                x = block(x)
            return x

    model = MLP(nnx.Rngs(seed))
    return model, nnx.Optimizer(model, optax.sgd(LR), wrt=nnx.Param)


def _nnx_step():
    @nnx.jit
    def train_step(model, optimizer, x, y):
        loss, grads = nnx.value_and_grad(lambda m: mse(m(x), y))(model)
        optimizer.update(model, grads)
        return loss

    return train_step


def _nnx_leaves(model, optimizer) -> int:
    return len(jax.tree_util.tree_leaves(nnx.state((model, optimizer))))


def make_nnx(depth: int, x, y, seed: int = 0) -> tuple[Step, int]:
    model, optimizer = _nnx_model(depth, seed)
    step = _nnx_step()
    return (lambda: step(model, optimizer, x, y)), _nnx_leaves(model, optimizer)


def make_nnx_cached(depth: int, x, y, seed: int = 0) -> tuple[Step, int]:
    model, optimizer = _nnx_model(depth, seed)
    step = _nnx_step()
    if hasattr(nnx, "set_graph_mode") and hasattr(nnx, "set_graph_updates"):
        with nnx.set_graph_mode(True), nnx.set_graph_updates(True):
            cached = nnx.cached_partial(step, model, optimizer)
    else:
        cached = nnx.cached_partial(step, model, optimizer)
    return (lambda: cached(x, y)), _nnx_leaves(model, optimizer)


# ----- Equinox ------------------------------------------------------------------------------
def _eqx_model(depth: int, seed: int):
    class Block(eqx.Module):
        linear: eqx.nn.Linear
        bn: eqx.nn.BatchNorm

        def __init__(self, key):
            self.linear = eqx.nn.Linear(WIDTH, WIDTH, key=key)
            self.bn = eqx.nn.BatchNorm(WIDTH, axis_name="batch", eps=EPS, momentum=MOMENTUM,
                                       mode="batch")

        def __call__(self, x, state):
            x, state = self.bn(self.linear(x), state)
            return jax.nn.relu(x), state

    class MLP(eqx.Module):
        blocks: list

        def __init__(self, key):
            self.blocks = [Block(k) for k in jax.random.split(key, depth)]

        def __call__(self, x, state):
            for block in self.blocks:
                x, state = block(x, state)
            return x, state

    return eqx.nn.make_with_state(MLP)(jax.random.PRNGKey(seed))


def make_eqx(depth: int, x, y, seed: int = 0) -> tuple[Step, int]:
    tx = optax.sgd(LR)
    model, bn_state = _eqx_model(depth, seed)

    @eqx.filter_jit
    def step(model, bn_state, opt_state, x, y):
        def loss_fn(model, bn_state):
            out, bn_state = jax.vmap(model, axis_name="batch", in_axes=(0, None),
                                     out_axes=(0, None))(x, bn_state)
            return mse(out, y), bn_state

        (loss, bn_state), grads = eqx.filter_value_and_grad(loss_fn, has_aux=True)(
            model, bn_state)
        updates, opt_state = tx.update(grads, opt_state, eqx.filter(model, eqx.is_array))
        return eqx.apply_updates(model, updates), bn_state, opt_state, loss

    state = [model, bn_state, tx.init(eqx.filter(model, eqx.is_array))]

    def run():
        state[0], state[1], state[2], loss = step(*state, x, y)
        return loss

    return run, len(jax.tree_util.tree_leaves(eqx.filter(state, eqx.is_array)))


# ----- the variants -------------------------------------------------------------------------
def variants() -> list[tuple[str, Callable, Optional[str]]]:
    """``(name, factory, reason to skip or None)``."""
    no_flax = None if nnx is not None else "flax not installed"
    return [
        (ANCHOR, make_jax, None),
        ("bridge.Jit", make_bridge, None),
        ("bridge.pure + jax.jit", make_pure, None),
        ("nnx.jit", make_nnx, no_flax),
        ("nnx.cached_partial", make_nnx_cached,
         no_flax or (None if hasattr(nnx, "cached_partial") else "no nnx.cached_partial")),
        ("eqx.filter_jit", make_eqx, None if eqx is not None else "equinox not installed"),
    ]


def check(depth: int = 3, steps: int = 5) -> float:
    """Largest difference between the loss curves of ``bridge.Jit``, ``bridge.pure`` and
    plain JAX from the same weights (they compute the same function)."""
    x, y = data(1)
    curves = {}
    for name, make in [(ANCHOR, make_jax), ("bridge.Jit", make_bridge),
                       ("bridge.pure + jax.jit", make_pure)]:
        run, _ = make(depth, x, y, seed=1)
        curves[name] = np.array([float(run()) for _ in range(steps)])
    return max(float(np.abs(c - curves[ANCHOR]).max()) for c in curves.values())


def plot(depths, medians: dict[str, list[float]], path: str) -> str:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 4.5))
    for name, values in medians.items():
        style = "-" if name.startswith(("bridge", ANCHOR)) else "--"
        ax.plot(depths, [v * 1e6 for v in values], style, marker="o", label=name)
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlabel("depth (Linear + BatchNorm blocks, 6 arrays each)")
    ax.set_ylabel("median time per training step (µs)")
    ax.set_title(f"Training step vs depth (width {WIDTH}, batch {BATCH}, optax.sgd)")
    ax.set_xticks(list(depths))
    ax.set_xticklabels([str(d) for d in depths])
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    os.makedirs(os.path.dirname(path) or ".", exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def bench(quick: bool = False, out_dir: Optional[str] = None, depths=None,
          rounds: Optional[int] = None, target: Optional[float] = None) -> H.Section:
    depths = tuple(depths or (QUICK_DEPTHS if quick else DEPTHS))
    rounds = rounds or (3 if quick else 15)
    target = target or (0.02 if quick else 0.06)
    start = time.perf_counter()
    x, y = data()
    section = H.Section(
        "depth", "Overhead as models grow: Linear + BatchNorm MLP, training step vs depth",
        "python bench/depth.py" + (" --quick" if quick else ""),
        f"depths {', '.join(map(str, depths))}; {rounds} interleaved rounds per depth, about "
        f"{target:g} s per variant per round; width {WIDTH}, batch {BATCH}, optax.sgd({LR})")
    diff = check()
    section.notes.append(f"check: loss curves of bridge.Jit and bridge.pure + jax.jit vs "
                         f"jax.jit from the same weights, depth 3, 5 steps: max |diff| "
                         f"{diff:.1e}")
    medians: dict[str, list[float]] = {}
    counts: dict[str, list[int]] = {}
    skipped = {name: why for name, _, why in variants() if why}
    for depth in depths:
        steps, nvars = {}, {}
        for name, make, why in variants():
            if why:
                continue
            steps[name], nvars[name] = make(depth, x, y)
            H.run_block(steps[name], 3)   # compile, warm up
        calls = {n: H.calls_for(f, target, minimum=3) for n, f in steps.items()}
        times = H.interleave(steps, rounds, calls)
        table = H.Table(f"depth {depth} ({nvars[ANCHOR]} arrays in plain JAX, "
                        f"{nvars['bridge.Jit']} bridge variables)", "us", what="per step")
        for name in steps:
            table.add(name, times[name], None if name == ANCHOR else ANCHOR,
                      note=f"{nvars[name]} leaves")
            medians.setdefault(name, []).append(table.row(name).median)
            counts.setdefault(name, []).append(nvars[name])
        for name, why in skipped.items():
            table.skip(name, why)
        section.tables.append(table)
        section.targets.append(H.Target(f"bridge.Jit / jax.jit at depth {depth}",
                                        table.ratio("bridge.Jit"), 1.10))
    if len(depths) >= 2:
        slopes = {}
        arrays = counts[ANCHOR]   # the model's arrays, 6 per block, the same in every variant
        for name in medians:
            slopes[name], _ = H.linear_fit(arrays, medians[name])
        per_var = slopes["bridge.Jit"] - slopes[ANCHOR]
        section.notes.append(
            "per-array cost (slope of the median step time against the model's number of "
            "arrays, 6 per block; least squares over the depths): " + ", ".join(
                f"{name} {slopes[name] * 1e6:.3f} us" for name in medians))
        section.notes.append(
            f"bridge.Jit's per-variable overhead = its slope - jax.jit's slope = "
            f"{per_var * 1e6:.3f} us per variable per call (bridge.pure + jax.jit: "
            f"{(slopes['bridge.pure + jax.jit'] - slopes[ANCHOR]) * 1e6:.3f} us)")
    if out_dir:
        section.plots.append(plot(depths, medians, os.path.join(out_dir, "depth.png")))
    section.seconds = time.perf_counter() - start
    return section


def main(argv: Optional[list[str]] = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="depths 1 and 10, 3 rounds")
    parser.add_argument("--depths", type=int, nargs="+")
    parser.add_argument("--rounds", type=int)
    parser.add_argument("--target", type=float, help="seconds per variant per round")
    parser.add_argument("--plot", default="", help="directory for depth.png ('' : none)")
    args = parser.parse_args(argv)
    print(H.header())
    section = bench(args.quick, args.plot or None, args.depths, args.rounds, args.target)
    H.print_section(section)
    return 0


if __name__ == "__main__":
    sys.exit(main())
