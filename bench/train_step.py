"""Per-step cost of a dispatch-bound training step, written four ways, in one process.

The step: MLP 32-64-64-10 (ReLU), batch 32, softmax cross-entropy with integer labels,
``optax.adam(1e-3)``. The model is so small that one step is dominated by the Python
work around the compiled call (flattening arguments, dispatch, writing results back),
which is exactly the overhead an object layer adds.

Variants (each keeps its own model and optimizer state):

* ``jax.jit``: pure JAX over a params pytree and an optax state (the baseline);
* ``bridge.Jit``: an object model with ``bridge.GradValues`` and ``bridge.optimizer.Optax``;
* ``nnx.jit`` and ``nnx.cached_partial``: Flax NNX (skipped if flax is not installed);
* ``eqx.filter_jit``: Equinox (skipped if equinox is not installed).

Timing is interleaved: each round runs ``--steps`` steps of every variant in turn (the
order rotates between rounds), so drifts in machine speed hit all variants alike. Every
step blocks on its loss (``loss.block_until_ready()``), the same for every variant, so
asynchronous dispatch cannot hide cost. The table reports the median over rounds of the
mean time per step, and its ratio to ``jax.jit`` measured in the same run.

Usage::

    python bench/train_step.py                    # 30 rounds x 200 steps
    python bench/train_step.py --rounds 10 --steps 100
    python bench/train_step.py --check            # sanity: every variant lowers the loss
    python bench/train_step.py --check --rounds 0 # sanity only, no timing
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
    import flax
    from flax import nnx
except ImportError:  # optional
    nnx = None
    flax = None

try:
    import equinox as eqx
except ImportError:  # optional
    eqx = None

SIZES = (32, 64, 64, 10)
BATCH = 32
LR = 1e-3

Step = Callable[[], jax.Array]  # runs one training step, returns the (unblocked) loss


def cross_entropy(logits: jax.Array, labels: jax.Array) -> jax.Array:
    return optax.softmax_cross_entropy_with_integer_labels(logits, labels).mean()


def init_params(seed: int) -> list[dict[str, jax.Array]]:
    """LeCun-normal weights, zero biases: ``[{'w': (nin, nout), 'b': (nout,)}, ...]``."""
    keys = jax.random.split(jax.random.PRNGKey(seed), len(SIZES) - 1)
    init = jax.nn.initializers.lecun_normal()
    return [{"w": init(k, (nin, nout), jnp.float32), "b": jnp.zeros((nout,), jnp.float32)}
            for k, nin, nout in zip(keys, SIZES[:-1], SIZES[1:])]


# ----- 1. pure JAX ----------------------------------------------------------------------
def make_jax(x, y, seed: int) -> tuple[Step, str]:
    tx = optax.adam(LR)
    params = {f"l{i}": layer for i, layer in enumerate(init_params(seed))}
    opt_state = tx.init(params)

    def forward(params, x):
        n = len(params)
        for i in range(n):
            x = x @ params[f"l{i}"]["w"] + params[f"l{i}"]["b"]
            if i < n - 1:
                x = jax.nn.relu(x)
        return x

    @jax.jit
    def step(params, opt_state, x, y):
        loss, grads = jax.value_and_grad(lambda p: cross_entropy(forward(p, x), y))(params)
        updates, opt_state = tx.update(grads, opt_state, params)
        return optax.apply_updates(params, updates), opt_state, loss

    state = [params, opt_state]

    def run():
        state[0], state[1], loss = step(state[0], state[1], x, y)
        return loss

    return run, "params dict + optax state"


# ----- 2. bridge.Jit --------------------------------------------------------------------
class InlineLinear(bridge.Module):
    """``y = x @ w + b`` (Objax's ``nn.Linear``), for when ``bridge.nn`` has none yet."""

    def __init__(self, w: jax.Array, b: jax.Array):
        self.w = bridge.TrainVar(w)
        self.b = bridge.TrainVar(b)

    def __call__(self, x):
        return x @ self.w.value + self.b.value


class InlineMLP(bridge.Module):
    def __init__(self, layers: list[dict[str, jax.Array]]):
        self.layers = bridge.ModuleList(InlineLinear(p["w"], p["b"]) for p in layers)

    def __call__(self, x):
        for i, layer in enumerate(self.layers):
            x = layer(x)
            if i < len(self.layers) - 1:
                x = jax.nn.relu(x)
        return x


def bridge_model(layers: list[dict[str, jax.Array]]) -> tuple[bridge.Module, str]:
    """``bridge.nn.Sequential`` of ``bridge.nn.Linear`` if those exist, else the inline MLP.

    Either way the weights are set to ``layers`` so that the model computes exactly what
    the pure-JAX variant computes (``--check`` compares the two loss curves).
    """
    Linear = getattr(bridge.nn, "Linear", None)
    Sequential = getattr(bridge.nn, "Sequential", None)
    if Linear is not None and Sequential is not None:
        try:
            linears = [Linear(nin, nout) for nin, nout in zip(SIZES[:-1], SIZES[1:])]
            for lin, p in zip(linears, layers):
                lin.w.assign(p["w"])
                lin.b.assign(p["b"])
            relu = getattr(bridge.functional, "relu", jax.nn.relu)
            modules: list = []
            for lin in linears:
                modules += [lin, relu]
            return Sequential(modules[:-1]), "bridge.nn.Sequential/Linear"
        except Exception as e:  # noqa: BLE001 - fall back to the inline layers
            return InlineMLP(layers), f"inline Module (bridge.nn failed: {type(e).__name__}: {e})"
    return InlineMLP(layers), "inline Module/TrainVar layers (no bridge.nn.Linear)"


def make_bridge(x, y, seed: int) -> tuple[Step, str]:
    model, note = bridge_model(init_params(seed))

    def loss(x, y):
        return cross_entropy(model(x), y)

    gv = bridge.GradValues(loss, model.vars())
    opt = bridge.optimizer.Optax(model.vars(), optax.adam(LR))

    def step(x, y):
        g, v = gv(x, y)
        opt(g)
        return v[0]

    train = bridge.Jit(step, model.vars() + opt.vars())
    return (lambda: train(x, y)), note


# ----- 3. Flax NNX ----------------------------------------------------------------------
def _nnx_model(seed: int):
    class MLP(nnx.Module):
        def __init__(self, rngs):
            layers = [nnx.Linear(nin, nout, rngs=rngs) for nin, nout in zip(SIZES[:-1], SIZES[1:])]
            # flax >= 0.12 wants module lists wrapped in nnx.List.
            self.layers = nnx.List(layers) if hasattr(nnx, "List") else layers

        def __call__(self, x):
            n = len(self.layers)
            for i, layer in enumerate(self.layers):
                x = layer(x)
                if i < n - 1:
                    x = jax.nn.relu(x)
            return x

    model = MLP(nnx.Rngs(seed))
    optimizer = nnx.Optimizer(model, optax.adam(LR), wrt=nnx.Param)
    return model, optimizer


def _nnx_step():
    @nnx.jit
    def train_step(model, optimizer, x, y):
        def loss_fn(model):
            return cross_entropy(model(x), y)

        loss, grads = nnx.value_and_grad(loss_fn)(model)
        optimizer.update(model, grads)
        return loss

    return train_step


def make_nnx(x, y, seed: int) -> tuple[Step, str]:
    model, optimizer = _nnx_model(seed)
    train_step = _nnx_step()
    return (lambda: train_step(model, optimizer, x, y)), "nnx.Linear, nnx.Optimizer(wrt=Param)"


def make_nnx_cached(x, y, seed: int) -> tuple[Step, str]:
    model, optimizer = _nnx_model(seed)
    train_step = _nnx_step()
    if hasattr(nnx, "set_graph_mode") and hasattr(nnx, "set_graph_updates"):
        with nnx.set_graph_mode(True), nnx.set_graph_updates(True):
            cached = nnx.cached_partial(train_step, model, optimizer)
    else:
        cached = nnx.cached_partial(train_step, model, optimizer)
    return (lambda: cached(x, y)), "nnx.cached_partial(train_step, model, optimizer)"


# ----- 4. Equinox -----------------------------------------------------------------------
def make_eqx(x, y, seed: int) -> tuple[Step, str]:
    tx = optax.adam(LR)
    model = eqx.nn.MLP(SIZES[0], SIZES[-1], SIZES[1], depth=len(SIZES) - 2,
                       activation=jax.nn.relu, key=jax.random.PRNGKey(seed))
    opt_state = tx.init(eqx.filter(model, eqx.is_array))

    @eqx.filter_jit
    def step(model, opt_state, x, y):
        def loss_fn(model):
            return cross_entropy(jax.vmap(model)(x), y)

        loss, grads = eqx.filter_value_and_grad(loss_fn)(model)
        updates, opt_state = tx.update(grads, opt_state, eqx.filter(model, eqx.is_array))
        return eqx.apply_updates(model, updates), opt_state, loss

    state = [model, opt_state]

    def run():
        state[0], state[1], loss = step(state[0], state[1], x, y)
        return loss

    return run, "eqx.nn.MLP, optax state"


# ----- harness --------------------------------------------------------------------------
_NO_FLAX = "flax not installed" if nnx is None else None
# (name, factory, reason to skip or None)
VARIANTS: list[tuple[str, Callable, Optional[str]]] = [
    ("jax.jit", make_jax, None),
    ("bridge.Jit", make_bridge, None),
    ("nnx.jit", make_nnx, _NO_FLAX),
    ("nnx.cached_partial", make_nnx_cached,
     _NO_FLAX or (None if hasattr(nnx, "cached_partial")
                  else f"nnx.cached_partial not in flax {flax.__version__}")),
    ("eqx.filter_jit", make_eqx, None if eqx else "equinox not installed"),
]


def data(seed: int = 0):
    kx, ky = jax.random.split(jax.random.PRNGKey(seed))
    x = jax.random.normal(kx, (BATCH, SIZES[0]), jnp.float32)
    y = jax.random.randint(ky, (BATCH,), 0, SIZES[-1], jnp.int32)
    return jax.block_until_ready((x, y))


def check(x, y, steps: int = 100) -> bool:
    """Every variant lowers the loss; ``bridge.Jit`` follows ``jax.jit`` exactly."""
    print(f"--check: {steps} steps per variant on one batch")
    ok, curves = True, {}
    for name, make, skip in VARIANTS:
        if skip:
            print(f"  {name:20s} skipped ({skip})")
            continue
        step, _ = make(x, y, seed=1)
        losses = [float(step()) for _ in range(steps)]
        curves[name] = np.array(losses)
        good = np.all(np.isfinite(losses)) and losses[-1] < losses[0] - 0.1
        ok &= bool(good)
        print(f"  {name:20s} loss {losses[0]:.4f} -> {losses[-1]:.4f}  {'ok' if good else 'FAIL'}")
    if "jax.jit" in curves and "bridge.Jit" in curves:
        same = np.allclose(curves["jax.jit"], curves["bridge.Jit"], rtol=1e-4, atol=1e-5)
        diff = np.abs(curves["jax.jit"] - curves["bridge.Jit"]).max()
        print(f"  bridge.Jit loss curve == jax.jit loss curve (same init): "
              f"{'ok' if same else 'FAIL'} (max |diff| {diff:.2e})")
        ok &= bool(same)
    print("--check:", "passed" if ok else "FAILED")
    return ok


def bench(quick: bool = False, out_dir: Optional[str] = None, rounds: Optional[int] = None,
          steps: Optional[int] = None, warmup: Optional[int] = None) -> H.Section:
    """The interleaved timing of every variant, as a ``Section`` for ``python -m bench``."""
    rounds = rounds or (3 if quick else 30)
    steps = steps or (50 if quick else 200)
    warmup = 10 if quick else 50 if warmup is None else warmup
    start = time.perf_counter()
    x, y = data()
    built, notes, skipped = {}, {}, {}
    for name, make, skip in VARIANTS:
        if skip:
            skipped[name] = skip
            continue
        built[name], notes[name] = make(x, y, seed=0)
    times = H.interleave(built, rounds, steps, warmup=warmup)
    table = H.Table(f"training step, MLP {'-'.join(map(str, SIZES))}, batch {BATCH}, "
                    f"optax.adam", "us", what="per step")
    for name in built:
        table.add(name, times[name], None if name == "jax.jit" else "jax.jit", notes[name])
    for name, why in skipped.items():
        table.skip(name, why)
    command = "python bench/train_step.py" + (
        "" if (rounds, steps) == (30, 200) else f" --rounds {rounds} --steps {steps}")
    section = H.Section("train_step", "Dispatch-bound training step (MLP 32-64-64-10)", command,
                        f"{rounds} interleaved rounds x {steps} steps per variant, "
                        f"{warmup} warm-up steps", tables=[table])
    section.targets.append(H.Target("bridge.Jit / jax.jit", table.ratio("bridge.Jit"), 1.10))
    section.notes += [f"{name}: {note}" for name, note in notes.items()]
    section.seconds = time.perf_counter() - start
    return section


def main(argv: Optional[list[str]] = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=30, help="timing rounds (0: no timing)")
    parser.add_argument("--steps", type=int, default=200, help="steps per variant per round")
    parser.add_argument("--warmup", type=int, default=50, help="untimed steps per variant")
    parser.add_argument("--check", action="store_true",
                        help="first verify that every variant decreases the loss")
    args = parser.parse_args(argv)

    print(H.header())
    print(f"step: MLP {'-'.join(map(str, SIZES))} ReLU, batch {BATCH}, softmax CE (int labels), "
          f"optax.adam({LR})")
    x, y = data()

    if args.check and not check(x, y):
        return 1
    if args.rounds <= 0:
        return 0
    section = bench(rounds=args.rounds, steps=args.steps, warmup=args.warmup)
    H.print_section(section)
    return 0


if __name__ == "__main__":
    sys.exit(main())
