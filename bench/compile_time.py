"""Time to the first result, and un-jitted (eager) calls: the object layer against plain JAX.

1. **First call** (trace + lower + compile + run) of the training step of ``bench/depth.py``
   (Linear + BatchNorm blocks, width 32, batch 16, ``optax.sgd``), built afresh for every
   measurement, at a few depths:

   * ``jax.jit``: the plain-JAX step over lists of dicts of arrays (the anchor);
   * ``bridge.pure + jax.jit``: the object model used functionally through
     ``bridge.pure.functionalize`` + ``bridge.pure.grad_values``;
   * ``bridge.Jit``: the object step (``GradValues`` + ``Optax`` inside ``bridge.Jit``).

   Target: ``bridge.Jit`` within 1.2x of ``jax.jit``. A second table splits the same first
   call into its phases with JAX's ahead-of-time API (``.trace``, ``.lower``,
   ``.compile``) on the compiled function each variant builds, to show whether a
   difference is Python tracing (where the object layer runs) or XLA compilation.

2. **Eager calls**, nothing jitted, on a small model (2 blocks): the object forward
   ``model(x, training=True)`` against the plain-JAX forward, and one
   ``bridge.GradValues`` call against ``jax.value_and_grad`` (no ``jax.jit``) of the same
   loss. Every JAX operation dispatches on its own here, so these calls take
   milliseconds; the ratio shows what the object layer adds around them.

Timing is interleaved: each round measures every variant once (first calls) or runs every
variant for a few calls (eager), in an order that rotates between rounds; rows are
medians over rounds.

Usage::

    python bench/compile_time.py            # depths 1, 10, 30; 5 rounds
    python bench/compile_time.py --quick    # depths 1, 10; 2 rounds
"""

from __future__ import annotations

import argparse
import gc
import os
import sys
import time
from typing import Callable, Optional

# Runs from a checkout without installing the package.
sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import jax  # noqa: E402
import optax  # noqa: E402

import bridge  # noqa: E402
from bench import _harness as H  # noqa: E402
from bench import depth as D  # noqa: E402
from bridge.facades._gather import read  # noqa: E402

DEPTHS = (1, 10, 30)
QUICK_DEPTHS = (1, 10)
EAGER_DEPTH = 2
ANCHOR = "jax.jit"


# ----- first calls: each builder returns (a fresh function running the step, its stages) ---
def fresh_jax(depth: int, x, y):
    tx = optax.sgd(D.LR)
    params, stats = D.jax_init(depth)
    args = (params, stats, tx.init(params), x, y)
    step = jax.jit(D.jax_step_fn(tx))
    return (lambda: step(*args)[-1]), (step, args)


def fresh_pure(depth: int, x, y):
    fn, state = D.pure_step(depth)
    step = jax.jit(fn)
    args = (*state, x, y)
    return (lambda: step(*args)[-1]), (step, args)


def fresh_bridge(depth: int, x, y):
    train, _, _ = D.bridge_step(depth)
    # The compiled function inside bridge.Jit and what one call passes it (for the phases).
    return (lambda: train(x, y)), (train._call, (read(train._storages), (), x, y))


FIRST = [(ANCHOR, fresh_jax), ("bridge.pure + jax.jit", fresh_pure),
         ("bridge.Jit", fresh_bridge)]


def first_call(build: Callable, depth: int, x, y) -> float:
    run, _ = build(depth, x, y)
    t0 = time.perf_counter()
    H.block(run())
    return time.perf_counter() - t0


def phases(build: Callable, depth: int, x, y) -> tuple[float, float, float]:
    """Seconds of ``trace``, ``lower`` and ``compile`` of a freshly built step."""
    _, (jitted, args) = build(depth, x, y)
    t0 = time.perf_counter()
    traced = jitted.trace(*args)
    t1 = time.perf_counter()
    lowered = traced.lower()
    t2 = time.perf_counter()
    lowered.compile()
    t3 = time.perf_counter()
    return t1 - t0, t2 - t1, t3 - t2


# ----- eager ------------------------------------------------------------------------------
def eager_variants(x, y) -> dict[str, Callable]:
    model = D.bridge_model(EAGER_DEPTH)
    params, stats = D.jax_init(EAGER_DEPTH)

    def object_loss(x, y):
        return D.mse(model(x, training=True), y)

    gv = bridge.GradValues(object_loss, model.vars())
    jax_grad = jax.value_and_grad(D.jax_loss, has_aux=True)
    return {
        "forward: jax (eager)": lambda: D.jax_forward(params, stats, x)[0],
        "forward: bridge module (eager)": lambda: model(x, training=True),
        "gradient: jax.value_and_grad (eager)": lambda: jax_grad(params, stats, x, y),
        "gradient: bridge.GradValues (eager)": lambda: gv(x, y),
    }


def bench(quick: bool = False, out_dir: Optional[str] = None, depths=None,
          rounds: Optional[int] = None) -> H.Section:
    depths = tuple(depths or (QUICK_DEPTHS if quick else DEPTHS))
    rounds = rounds or (2 if quick else 5)
    start = time.perf_counter()
    x, y = D.data()
    section = H.Section(
        "compile_time", "Compile time (first call) and eager calls",
        "python bench/compile_time.py" + (" --quick" if quick else ""),
        f"first calls: depths {', '.join(map(str, depths))}, {rounds} interleaved rounds, a "
        f"fresh step each time; eager: {EAGER_DEPTH} blocks, width {D.WIDTH}, batch "
        f"{D.BATCH}")
    cache = jax.config.jax_compilation_cache_dir
    if cache:
        section.notes.append(f"warning: the persistent compilation cache is on ({cache}); "
                             f"first calls may be served from it")

    first = {(name, d): [] for d in depths for name, _ in FIRST}
    phase = {(name, d): [] for d in depths for name, _ in FIRST}
    for _, build in FIRST:   # one untimed build: imports, jax's own caches
        first_call(build, 1, x, y)
    for r in range(rounds):
        gc.collect()
        k = r % len(FIRST)
        for d in depths:
            for name, build in FIRST[k:] + FIRST[:k]:
                first[name, d].append(first_call(build, d, x, y))
                phase[name, d].append(phases(build, d, x, y))
    medians: dict[str, list[float]] = {name: [] for name, _ in FIRST}
    for d in depths:
        table = H.Table(f"first call (trace + compile + run), depth {d}", "ms",
                        what="first call")
        for name, _ in FIRST:
            table.add(name, first[name, d], None if name == ANCHOR else ANCHOR)
            medians[name].append(table.row(name).median)
        section.tables.append(table)
        section.targets.append(H.Target(f"first call bridge.Jit / jax.jit at depth {d}",
                                        table.ratio("bridge.Jit"), 1.20))
    lines = ["| variant | depth | trace ms | lower ms | compile ms |",
             "| --- | ---: | ---: | ---: | ---: |"]
    for d in depths:
        for name, _ in FIRST:
            parts = list(zip(*phase[name, d]))
            lines.append(f"| `{name}` | {d} | " + " | ".join(
                f"{H.median(p) * 1e3:.1f}" for p in parts) + " |")
    section.notes.append("phases of a first call (median over rounds; JAX's AOT API "
                         "`.trace`, `.lower`, `.compile` on the function each variant "
                         "jits):\n\n" + "\n".join(lines) + "\n")

    eager = eager_variants(x, y)
    for fn in eager.values():
        H.run_block(fn, 2)
    calls = {n: H.calls_for(f, 0.03 if quick else 0.1, minimum=2) for n, f in eager.items()}
    times = H.interleave(eager, 3 if quick else 11, calls)
    table = H.Table(f"eager (un-jitted) calls, {EAGER_DEPTH} blocks", "ms", what="per call")
    names = list(eager)
    table.add(names[0], times[names[0]])
    table.add(names[1], times[names[1]], names[0])
    table.add(names[2], times[names[2]])
    table.add(names[3], times[names[3]], names[2])
    section.tables.append(table)

    if out_dir:
        section.plots.append(plot(depths, medians, os.path.join(out_dir, "compile_time.png")))
    section.seconds = time.perf_counter() - start
    return section


def plot(depths, medians: dict[str, list[float]], path: str) -> str:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 4.5))
    for name, values in medians.items():
        ax.plot(depths, [v * 1e3 for v in values], marker="o", label=name)
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xticks(list(depths))
    ax.set_xticklabels([str(d) for d in depths])
    ax.set_xlabel("depth (Linear + BatchNorm blocks)")
    ax.set_ylabel("first call: trace + compile + run (ms)")
    ax.set_title("Time to the first result of a training step")
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    os.makedirs(os.path.dirname(path) or ".", exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def main(argv: Optional[list[str]] = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--depths", type=int, nargs="+")
    parser.add_argument("--rounds", type=int)
    parser.add_argument("--plot", default="", help="directory for compile_time.png")
    args = parser.parse_args(argv)
    print(H.header())
    H.print_section(bench(args.quick, args.plot or None, args.depths, args.rounds))
    return 0


if __name__ == "__main__":
    sys.exit(main())
