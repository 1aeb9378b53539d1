"""Cost of the Flax/Haiku interop: wrapped models against native training steps,
converters against a plain pytree flatten/unflatten, and proof that no array is copied.

1. **Train steps.** Each model is trained two ways from the same weights:

   * native: ``jax.jit`` over ``(params, state, opt_state, ...)`` with ``jax.value_and_grad``
     and optax, the way Flax/Haiku users write it;
   * wrapped: ``bridge.flax.FlaxModule`` / ``bridge.haiku.HaikuModule`` /
     ``bridge.flax.NNXModule`` with ``bridge.GradValues`` + ``bridge.optimizer.Optax``
     inside ``bridge.Jit`` (target: within 1.10x of native).

   Models: a Linen MLP 32-64-64-10 (dispatch-bound: measures the Python overhead around
   the compiled call), a Linen CNN with BatchNorm and Dropout (state and rng),
   ``hk.nets.MLP`` (same sizes), a Haiku CNN with ``hk.BatchNorm`` (state), and an NNX
   MLP with BatchNorm and Dropout (native: ``nnx.split`` once, ``nnx.merge`` inside a
   ``jax.jit`` step over the state).

   Timing is interleaved: every round runs ``--steps`` steps of every variant, in an order
   that rotates between rounds, each step blocked on its loss. A row reports the median
   over rounds of the mean time per step, the 25th-75th percentiles, and the ratio to its
   native row from the same run. Quote the ratios, not the microseconds.

2. **Converters.** ``bridge.flax.to_linen_variables(vc)`` and
   ``bridge.haiku.to_haiku_params(vc)`` against ``jax.tree_util.tree_flatten`` +
   ``unflatten`` of the tree they return (the least any conversion of that tree can do),
   for the variables of a wrapper (a ResNet-sized tree) and of a ``bridge.nn`` model.

3. **No copy.** The wrappers hold the arrays they are given and give the same arrays
   back; ``to_linen(...).init`` / ``to_haiku(...).init`` return the object module's own
   arrays; the converters return the variables' arrays: checked with ``is`` and
   ``unsafe_buffer_pointer()``.

Usage::

    python bench/interop.py                     # 20 rounds x 200 steps, about a minute
    python bench/interop.py --rounds 5 --steps 100
    python bench/interop.py --check             # first check wrapped == native losses
    python bench/interop.py --rounds 0          # converters and no-copy only
"""

from __future__ import annotations

import argparse
import functools
import os
import statistics
import sys
import time
from typing import Any, Callable, Optional

# Runs from a checkout without installing the package.
sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import flax.linen as nn  # noqa: E402
import haiku as hk  # noqa: E402
import jax  # noqa: E402
import jax.numpy as jnp  # noqa: E402
import numpy as np  # noqa: E402
import optax  # noqa: E402
from flax import nnx  # noqa: E402

import bridge  # noqa: E402
import bridge.flax  # noqa: E402
import bridge.haiku  # noqa: E402
from bench import _harness as H  # noqa: E402

SIZES = (32, 64, 64, 10)
BATCH = 32
LR = 1e-3
Step = Callable[[], jax.Array]  # runs one step, returns the (unblocked) loss


def cross_entropy(logits, labels):
    return optax.softmax_cross_entropy_with_integer_labels(logits, labels).mean()


def wrapped_step(m: bridge.Module, **kwargs) -> Step:
    """The object-style step: GradValues + Optax inside Jit."""
    opt = bridge.optimizer.Optax(m.vars(), optax.adam(LR))
    gv = bridge.GradValues(lambda x, y: cross_entropy(m(x, **kwargs), y), m.vars())

    def step(x, y):
        g, v = gv(x, y)
        opt(g)
        return v[0]

    return bridge.Jit(step, m.vars() + opt.vars())


# ----- models -----------------------------------------------------------------------------
class LinenMLP(nn.Module):
    @nn.compact
    def __call__(self, x):
        for n in SIZES[1:-1]:
            x = nn.relu(nn.Dense(n)(x))
        return nn.Dense(SIZES[-1])(x)


class LinenCNN(nn.Module):
    @nn.compact
    def __call__(self, x, train: bool):
        x = nn.Conv(8, (3, 3))(x)
        x = nn.relu(nn.BatchNorm(use_running_average=not train)(x))
        x = nn.Dropout(0.2, deterministic=not train)(x)
        return nn.Dense(SIZES[-1])(x.reshape((x.shape[0], -1)))


def haiku_cnn(x, is_training):
    x = hk.Conv2D(8, 3)(x)
    x = jax.nn.relu(hk.BatchNorm(True, True, 0.9)(x, is_training))
    return hk.Linear(SIZES[-1])(x.reshape((x.shape[0], -1)))


class NNXModel(nnx.Module):
    def __init__(self, rngs):
        self.l1 = nnx.Linear(SIZES[0], SIZES[1], rngs=rngs)
        self.bn = nnx.BatchNorm(SIZES[1], rngs=rngs)
        self.drop = nnx.Dropout(0.2, rngs=rngs)
        self.l2 = nnx.Linear(SIZES[1], SIZES[-1], rngs=rngs)

    def __call__(self, x):
        return self.l2(self.drop(nnx.relu(self.bn(self.l1(x)))))


# ----- pairs of steps: (native, wrapped) --------------------------------------------------
def flax_mlp(x, y, img, seed):
    net = LinenMLP()
    variables = net.init(jax.random.PRNGKey(seed), x)
    tx = optax.adam(LR)

    @jax.jit
    def step(params, opt_state, x, y):
        loss, g = jax.value_and_grad(lambda p: cross_entropy(net.apply({"params": p}, x), y))(
            params)
        u, opt_state = tx.update(g, opt_state, params)
        return optax.apply_updates(params, u), opt_state, loss

    s = [variables["params"], tx.init(variables["params"])]

    def native():
        s[0], s[1], loss = step(s[0], s[1], x, y)
        return loss

    train = wrapped_step(bridge.flax.FlaxModule(net, variables))
    return native, lambda: train(x, y)


def flax_cnn(x, y, img, seed):
    net = LinenCNN()
    variables = net.init(jax.random.PRNGKey(seed), img, train=False)
    tx = optax.adam(LR)

    @jax.jit
    def step(params, stats, opt_state, rng, x, y):
        rng, key = jax.random.split(rng)  # what FlaxModule does with its RandomState

        def loss(p):
            out, upd = net.apply({"params": p, "batch_stats": stats}, x, train=True,
                                 rngs={"dropout": key}, mutable=["batch_stats"])
            return cross_entropy(out, y), upd["batch_stats"]

        (value, stats), g = jax.value_and_grad(loss, has_aux=True)(params)
        u, opt_state = tx.update(g, opt_state, params)
        return optax.apply_updates(params, u), stats, opt_state, rng, value

    s = [variables["params"], variables["batch_stats"], tx.init(variables["params"]),
         jax.random.PRNGKey(seed)]

    def native():
        out = step(*s, img, y)
        s[:] = out[:-1]
        return out[-1]

    train = wrapped_step(bridge.flax.FlaxModule(net, variables, seed=seed), train=True)
    return native, lambda: train(img, y)


def haiku_mlp(x, y, img, seed):
    f = hk.transform(lambda x: hk.nets.MLP(SIZES[1:])(x))
    params = f.init(jax.random.PRNGKey(seed), x)
    tx = optax.adam(LR)

    @jax.jit
    def step(params, opt_state, x, y):
        loss, g = jax.value_and_grad(lambda p: cross_entropy(f.apply(p, None, x), y))(params)
        u, opt_state = tx.update(g, opt_state, params)
        return optax.apply_updates(params, u), opt_state, loss

    s = [params, tx.init(params)]

    def native():
        s[0], s[1], loss = step(s[0], s[1], x, y)
        return loss

    train = wrapped_step(bridge.haiku.HaikuModule(f, params))
    return native, lambda: train(x, y)


def haiku_cnn_state(x, y, img, seed):
    f = hk.transform_with_state(haiku_cnn)
    params, state = f.init(jax.random.PRNGKey(seed), img, True)
    tx = optax.adam(LR)

    @jax.jit
    def step(params, state, opt_state, x, y):
        def loss(p):
            out, new_state = f.apply(p, state, None, x, True)
            return cross_entropy(out, y), new_state

        (value, state), g = jax.value_and_grad(loss, has_aux=True)(params)
        u, opt_state = tx.update(g, opt_state, params)
        return optax.apply_updates(params, u), state, opt_state, value

    s = [params, state, tx.init(params)]

    def native():
        out = step(*s, img, y)
        s[:] = out[:-1]
        return out[-1]

    train = wrapped_step(bridge.haiku.HaikuModule(f, params, state), is_training=True)
    return native, lambda: train(img, y)


def nnx_model(x, y, img, seed):
    """Native: NNX's functional API, ``nnx.split`` once and ``nnx.merge`` in the step."""
    tx = optax.adam(LR)
    graphdef, params, rest = nnx.split(NNXModel(nnx.Rngs(seed, dropout=seed + 1)),
                                       nnx.Param, ...)

    @jax.jit
    def step(params, rest, opt_state, x, y):
        def loss(params, rest):
            model = nnx.merge(graphdef, params, rest, copy=True)
            out = model(x)
            return cross_entropy(out, y), nnx.split(model, nnx.Param, ...)[2]

        (value, rest), g = jax.value_and_grad(loss, has_aux=True)(params, rest)
        u, opt_state = tx.update(g, opt_state, params)
        return optax.apply_updates(params, u), rest, opt_state, value

    s = [params, rest, tx.init(params)]

    def native():
        out = step(*s, x, y)
        s[:] = out[:-1]
        return out[-1]

    train = wrapped_step(bridge.flax.NNXModule(NNXModel(nnx.Rngs(seed, dropout=seed + 1))))
    return native, lambda: train(x, y)


PAIRS: list[tuple[str, str, str, Callable]] = [
    # (model, native label, wrapped label, factory)
    ("Linen MLP", "jax.jit (Linen)", "FlaxModule", flax_mlp),
    ("Linen CNN+BN+Dropout", "jax.jit (Linen)", "FlaxModule", flax_cnn),
    ("hk.nets.MLP", "jax.jit (Haiku)", "HaikuModule", haiku_mlp),
    ("Haiku CNN+BatchNorm", "jax.jit (Haiku)", "HaikuModule", haiku_cnn_state),
    ("NNX MLP+BN+Dropout", "jax.jit (nnx.merge)", "NNXModule", nnx_model),
]


def data(seed: int = 0):
    kx, ki, ky = jax.random.split(jax.random.PRNGKey(seed), 3)
    x = jax.random.normal(kx, (BATCH, SIZES[0]))
    img = jax.random.normal(ki, (BATCH, 8, 8, 3))
    y = jax.random.randint(ky, (BATCH,), 0, SIZES[-1])
    return jax.block_until_ready((x, y, img))


run_block = H.run_block


def check(x, y, img, steps: int = 20) -> bool:
    print(f"--check: {steps} steps, wrapped loss curve vs native (same initial weights)")
    ok = True
    for model, _, wrapped, make in PAIRS:
        native, wrap = make(x, y, img, seed=1)
        a = np.array([float(native()) for _ in range(steps)])
        b = np.array([float(wrap()) for _ in range(steps)])
        diff = float(np.abs(a - b).max())
        good = diff <= 1e-5 and a[-1] < a[0]
        ok &= good
        print(f"  {model:22s} {wrapped:12s} loss {a[0]:.4f} -> {a[-1]:.4f}  max |diff| "
              f"{diff:.1e}  {'ok' if good else 'FAIL'}")
    return ok


def time_steps(x, y, img, rounds: int, steps: int, warmup: int) -> H.Table:
    """Every (native, wrapped) pair, all interleaved in one run; a table of ratios to the
    native row of each model."""
    variants: dict[str, Step] = {}
    for model, native_label, wrapped_label, make in PAIRS:
        native, wrapped = make(x, y, img, seed=0)
        variants[f"{model} | {native_label}"] = native
        variants[f"{model} | {wrapped_label}"] = wrapped
    times = H.interleave(variants, rounds, steps, warmup=warmup)
    table = H.Table(f"1. train steps: {rounds} rounds x {steps} steps per variant, interleaved",
                    "us", what="per step")
    for model, native_label, wrapped_label, _ in PAIRS:
        native = f"{model} | {native_label}"
        table.add(native, times[native])
        table.add(f"{model} | {wrapped_label}", times[f"{model} | {wrapped_label}"], native)
    return table


# ----- converters --------------------------------------------------------------------------
def best_time(f: Callable[[], Any], repeat: int = 7, number: int = 200) -> float:
    """Median over ``repeat`` runs of the mean time of ``number`` calls, in seconds."""
    f()
    runs = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        for _ in range(number):
            f()
        runs.append((time.perf_counter() - t0) / number)
    return statistics.median(runs)


def _round_trip(tree, treedef):
    return treedef.unflatten(jax.tree_util.tree_flatten(tree)[0])


def resnet_trees():
    """ResNet-sized trees: hk.nets.ResNet18 params/state and a Linen model with as many
    leaves (shapes only matter for the no-copy check; built with zeros, no compile)."""
    f = hk.transform_with_state(lambda x: hk.nets.ResNet18(10)(x, is_training=True))
    shapes = jax.eval_shape(f.init, jax.random.PRNGKey(0), jnp.zeros((1, 32, 32, 3)))
    params, state = jax.tree_util.tree_map(lambda s: jnp.zeros(s.shape, s.dtype), shapes)
    return f, params, state


def bridge_mlp(n_layers: int) -> bridge.Module:
    return bridge.nn.Sequential([bridge.nn.Linear(16, 16) for _ in range(n_layers)])


def converters(rounds: int = 7, number: int = 200) -> H.Table:
    """Each converter against a flatten + unflatten of the tree it returns, interleaved."""
    table = H.Table(f"2. converters vs jax.tree_util flatten + unflatten of the same tree "
                    f"({rounds} interleaved rounds x {number} calls; the VarCollection is "
                    f"built once, outside the timing)", "us", what="per call")
    f, params, state = resnet_trees()
    hk_module = bridge.haiku.HaikuModule(f, params, state)

    class Big(nn.Module):
        @nn.compact
        def __call__(self, x):
            for _ in range(60):
                x = nn.BatchNorm(use_running_average=True)(nn.Dense(4)(x))
            return x

    lin_vars = jax.tree_util.tree_map(
        lambda s: jnp.zeros(s.shape, s.dtype),
        jax.eval_shape(Big().init, jax.random.PRNGKey(0), jnp.zeros((1, 4))))
    flax_vc = bridge.flax.FlaxModule(Big(), lin_vars).vars()
    hk_vc = hk_module.vars()
    obj_vc = bridge_mlp(60).vars()
    cases = [
        ("to_linen_variables(FlaxModule(60x Dense+BN).vars())",
         functools.partial(bridge.flax.to_linen_variables, flax_vc)),
        ("to_linen_variables(bridge.nn 60x Linear)",
         functools.partial(bridge.flax.to_linen_variables, obj_vc)),
        ("to_haiku_params(HaikuModule(hk.nets.ResNet18).vars())",
         functools.partial(bridge.haiku.to_haiku_params, hk_vc)),
        ("to_haiku_params(bridge.nn 60x Linear)",
         functools.partial(bridge.haiku.to_haiku_params, obj_vc)),
    ]
    for label, convert in cases:
        try:
            tree = convert()
        except Exception as e:  # noqa: BLE001 - converters may not be ready / may refuse
            table.skip(label, f"{type(e).__name__}: {str(e)[:70]}")
            continue
        leaves, treedef = jax.tree_util.tree_flatten(tree)
        base = f"flatten+unflatten ({len(leaves)} leaves)"
        times = H.interleave({label: convert, base: functools.partial(_round_trip, tree,
                                                                         treedef)},
                             rounds, number, warmup=1, collect=False)
        table.add(base, times[base])
        table.add(label, times[label], base)
    t_vars = best_time(hk_module.vars, number=50)
    table.caption = f"for scale: HaikuModule(ResNet18).vars() itself takes {t_vars * 1e6:.1f} us"
    return table


# ----- no copy ----------------------------------------------------------------------------
def _same(a_leaves, b_leaves) -> str:
    a_leaves, b_leaves = list(a_leaves), list(b_leaves)
    same_obj = sum(a is b for a, b in zip(a_leaves, b_leaves))
    same_buf = sum(a.unsafe_buffer_pointer() == b.unsafe_buffer_pointer()
                   for a, b in zip(a_leaves, b_leaves))
    n = len(a_leaves)
    verdict = "no copy" if same_buf == n == len(b_leaves) else "COPIED"
    return f"{same_obj}/{n} same object, {same_buf}/{n} same buffer -> {verdict}"


def no_copy() -> None:
    print("\n3. no-copy checks (`is` identity and unsafe_buffer_pointer() equality)")
    x = jnp.ones((2, SIZES[0]))
    lin_vars = LinenMLP().init(jax.random.PRNGKey(0), x)
    fm = bridge.flax.FlaxModule(LinenMLP(), lin_vars)
    leaves = jax.tree_util.tree_leaves(lin_vars)
    print(f"  FlaxModule(variables): variables == given arrays:    "
          f"{_same([v.value for v in list(fm.vars())[:-1]], leaves)}")
    print(f"  FlaxModule.variables == its variables' arrays:       "
          f"{_same(jax.tree_util.tree_leaves(fm.variables), leaves)}")
    f, params, state = resnet_trees()
    hm = bridge.haiku.HaikuModule(f, params, state)
    hk_leaves = jax.tree_util.tree_leaves((params, state))
    print(f"  HaikuModule(ResNet18 params, state) == given arrays: "
          f"{_same([v.value for v in list(hm.vars())[:-1]], hk_leaves)}")
    print(f"  (HaikuModule.params, .state) == its arrays:          "
          f"{_same(jax.tree_util.tree_leaves((hm.params, hm.state)), hk_leaves)}")
    native = NNXModel(nnx.Rngs(0))
    nm = bridge.flax.NNXModule(native)
    arrays = [v.value for v in nm.vars().values() if not isinstance(v, bridge.RandomState)]
    given = [a for a in jax.tree_util.tree_leaves(nnx.state(native))
             if not jax.dtypes.issubdtype(a.dtype, jax.dtypes.prng_key)]
    print(f"  NNXModule(module): variables == module's arrays:    {_same(arrays, given)}")
    nnx_leaves = [a for a in jax.tree_util.tree_leaves(nm.state)
                  if not jax.dtypes.issubdtype(a.dtype, jax.dtypes.prng_key)]
    print(f"  NNXModule.state == its variables' arrays:            {_same(nnx_leaves, arrays)}")
    obj = bridge.nn.Sequential([bridge.nn.Linear(4, 8), bridge.nn.BatchNorm0D(8),
                                bridge.nn.Linear(8, 2)])
    obj_leaves = [v.value for v in obj.vars()]
    lin = bridge.flax.to_linen(obj).init(jax.random.PRNGKey(0), jnp.ones((2, 4)), training=False)
    names = obj.vars().names()
    exported = [lin["params" if isinstance(v, bridge.TrainVar) else "batch_stats"][names[id(v)]]
                for v in obj.vars()]
    print(f"  to_linen(bridge.nn model).init == object's arrays:   {_same(exported, obj_leaves)}")
    hp, hs = bridge.haiku.to_haiku(obj).init(None)
    exported = []
    for v in obj.vars():
        module, _, leaf = names[id(v)].rpartition(".")
        exported.append((hp if isinstance(v, bridge.TrainVar) else hs)[module][leaf])
    print(f"  to_haiku(bridge.nn model).init == object's arrays:   {_same(exported, obj_leaves)}")
    for label, convert, given in [
        ("to_linen_variables(FlaxModule.vars()) == given     ",
         lambda: bridge.flax.to_linen_variables(fm.vars()), leaves),
        ("to_haiku_params(HaikuModule.vars()) == given       ",
         lambda: bridge.haiku.to_haiku_params(hm.vars()), hk_leaves),
    ]:
        try:
            out = jax.tree_util.tree_leaves(convert())
        except Exception as e:  # noqa: BLE001
            print(f"  {label}  skipped: {type(e).__name__}: {str(e)[:70]}")
            continue
        print(f"  {label}  {_same(out, given)}")


def bench(quick: bool = False, out_dir: Optional[str] = None, rounds: Optional[int] = None,
          steps: Optional[int] = None, warmup: Optional[int] = None) -> H.Section:
    """Train steps and converters, as a ``Section`` for ``python -m bench``."""
    rounds = rounds or (3 if quick else 20)
    steps = steps or (30 if quick else 200)
    warmup = warmup or (5 if quick else 50)
    start = time.perf_counter()
    x, y, img = data()
    command = "python bench/interop.py" + ("" if (rounds, steps) == (20, 200)
                                           else f" --rounds {rounds} --steps {steps}")
    section = H.Section("interop", "Wrapped Flax/Haiku/NNX models and converters", command,
                        f"train steps: {rounds} interleaved rounds x {steps} steps per variant; "
                        f"converters: {3 if quick else 7} rounds x {50 if quick else 200} calls")
    steps_table = time_steps(x, y, img, rounds, steps, warmup)
    section.tables.append(steps_table)
    for model, _, wrapped, _ in PAIRS:
        section.targets.append(H.Target(f"{wrapped} / native ({model})",
                                        steps_table.ratio(f"{model} | {wrapped}"), 1.10))
    conv = converters(3 if quick else 7, 50 if quick else 200)
    section.tables.append(conv)
    section.notes.append(conv.caption)
    section.seconds = time.perf_counter() - start
    return section


def main(argv: Optional[list[str]] = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=20, help="timing rounds (0: none)")
    parser.add_argument("--steps", type=int, default=200, help="steps per variant per round")
    parser.add_argument("--warmup", type=int, default=50, help="untimed steps per variant")
    parser.add_argument("--check", action="store_true", help="verify wrapped == native first")
    args = parser.parse_args(argv)
    print(H.header())
    print(f"steps: batch {BATCH}, optax.adam({LR}); MLPs {'-'.join(map(str, SIZES))}, "
          f"CNNs on 8x8x3 images")
    x, y, img = data()
    if args.check and not check(x, y, img):
        print("--check: FAILED")
        return 1
    if args.rounds > 0:
        table = time_steps(x, y, img, args.rounds, args.steps, args.warmup)
        print("\n" + table.text())
        for model, _, wrapped, _ in PAIRS:
            print(f"{wrapped} / native ({model}) = {table.ratio(f'{model} | {wrapped}'):.2f}x")
    conv = converters()
    print("\n" + conv.text())
    print(f"({conv.caption})")
    no_copy()
    return 0


if __name__ == "__main__":
    sys.exit(main())
