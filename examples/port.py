"""Port: weights trained natively in Haiku and in Flax Linen move into object code, train
on there, and go back.

Run it with::

    python -m pip install -e ".[examples]" && python examples/port.py

On scikit-learn's 8x8 digits (no download) it trains, for each framework, a tiny MLP
(64-64-10, ReLU) natively: Haiku's ``hk.nets.MLP`` and a compact Linen module, each with
its own pure-JAX training loop (``jax.value_and_grad``, ``optax.adam``, ``jax.jit``). Then
it

1. loads the weights into a ``bridge.nn.Sequential`` of the same architecture
   (``bridge.haiku.load_haiku_params``, ``bridge.flax.load_linen_variables``) and checks
   that the object model computes what the native one does;
2. continues training in object style (``GradValues``, ``bridge.optimizer.Optax``,
   ``Jit``; a fresh Adam state: the native optimizer state is not carried over);
3. exports the weights back (``bridge.haiku.to_haiku_params(..., rules="mlp")``,
   ``bridge.flax.to_linen_variables(..., rules="compact")``) and asserts that the native
   model run on them gives the object model's logits (to 1e-5).

It prints a summary (test accuracy after each phase, the largest differences) and writes
the test accuracy per epoch across both phases to ``port.png`` in the current directory
(``--out`` to change).
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from typing import Any, Callable, Optional, Sequence

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

EXAMPLE = "port.py"
TOLERANCE = 1e-5
FRAMEWORKS = ("haiku", "linen")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--epochs", type=int, default=5,
                        help="native training epochs per framework (default: %(default)s)")
    parser.add_argument("--object-epochs", type=int, default=5,
                        help="epochs of object-style training after the import "
                             "(default: %(default)s)")
    parser.add_argument("--hidden", type=int, default=64,
                        help="width of the hidden layer (default: %(default)s)")
    parser.add_argument("--batch-size", type=int, default=64,
                        help="examples per training step (default: %(default)s)")
    parser.add_argument("--lr", type=float, default=3e-3,
                        help="Adam learning rate, both phases (default: %(default)s)")
    parser.add_argument("--seed", type=int, default=0,
                        help="seed of the initial weights, the split and the batch order "
                             "(default: %(default)s)")
    parser.add_argument("--out", default="port.png",
                        help="PNG path for the accuracy curves, relative to the current "
                             "directory (default: %(default)s; '' for no plot)")
    parser.add_argument("--quiet", action="store_true", help="no progress bars")
    return parser


# ----- the native models ------------------------------------------------------------------------
def haiku_model(hidden: int) -> tuple[Callable, Callable]:
    """``(init(key, x) -> params, apply(params, x) -> logits)`` of ``hk.nets.MLP``."""
    hk = _support.require("haiku", "the Haiku model", EXAMPLE)
    transformed = hk.without_apply_rng(hk.transform(lambda x: hk.nets.MLP([hidden, 10])(x)))
    return transformed.init, transformed.apply


def linen_model(hidden: int) -> tuple[Callable, Callable]:
    """``(init(key, x) -> variables, apply(variables, x) -> logits)`` of a compact Linen
    MLP (its layers are named ``Dense_0``, ``Dense_1`` in the order they are built)."""
    _support.require("flax", "the Linen model", EXAMPLE)
    import flax.linen as nn

    class MLP(nn.Module):
        hidden: int

        @nn.compact
        def __call__(self, x):
            x = nn.relu(nn.Dense(self.hidden)(x))
            return nn.Dense(10)(x)

    module = MLP(hidden)
    return module.init, module.apply


def object_model(hidden: int) -> bridge.nn.Sequential:
    """The same MLP as an object module."""
    return bridge.nn.Sequential([bridge.nn.Linear(64, hidden), F.relu,
                                 bridge.nn.Linear(hidden, 10)])


def export(framework: str, model: bridge.Module) -> Any:
    """The object model's weights as the native framework's parameters."""
    if framework == "haiku":
        params, state = bridge.haiku.to_haiku_params(model.vars(), rules="mlp")
        assert not state  # no BatchNorm: no Haiku state
        return params
    return bridge.flax.to_linen_variables(model.vars(), rules="compact")


def load(framework: str, model: bridge.Module, params: Any) -> None:
    """Assign the native weights to the object model (strict: everything must fit)."""
    if framework == "haiku":
        bridge.haiku.load_haiku_params(model.vars(), params)
    else:
        bridge.flax.load_linen_variables(model.vars(), params)


# ----- training --------------------------------------------------------------------------------
def batches(rng: np.random.Generator, n: int, batch_size: int):
    """The index arrays of one epoch: a fresh permutation, full batches only."""
    order = rng.permutation(n)
    for i in range(n // batch_size):
        yield order[i * batch_size:(i + 1) * batch_size]


def accuracy_of(logits: Any, y: np.ndarray) -> float:
    return float((np.asarray(logits).argmax(axis=1) == y).mean())


def train_native(apply: Callable, params: Any, data, epochs: int, batch_size: int,
                 lr: float, rng: np.random.Generator, bar) -> tuple[Any, list[float]]:
    """Plain JAX: ``params`` trained with Adam; returns them and the test accuracy per
    epoch."""
    x_train, y_train, x_test, y_test = data
    tx = optax.adam(lr)

    def loss(params, x, y):
        return optax.softmax_cross_entropy_with_integer_labels(apply(params, x), y).mean()

    @jax.jit
    def step(params, opt_state, x, y):
        value, grads = jax.value_and_grad(loss)(params, x, y)
        updates, opt_state = tx.update(grads, opt_state, params)
        return optax.apply_updates(params, updates), opt_state, value

    predict = jax.jit(apply)
    opt_state = tx.init(params)
    curve = []
    for _ in range(epochs):
        for idx in batches(rng, len(x_train), batch_size):
            params, opt_state, _ = step(params, opt_state, x_train[idx], y_train[idx])
        curve.append(accuracy_of(predict(params, x_test), y_test))
        bar.set_postfix(test_acc=f"{curve[-1]:.3f}")
        bar.update()
    return params, curve


def train_object(model: bridge.Module, data, epochs: int, batch_size: int, lr: float,
                 rng: np.random.Generator, bar) -> list[float]:
    """Object style: ``GradValues``, an Optax optimizer object, one ``Jit``-compiled step;
    returns the test accuracy per epoch."""
    x_train, y_train, x_test, y_test = data
    opt = bridge.optimizer.Optax(model.vars(), optax.adam(lr))

    def loss(x, y):
        return F.loss.cross_entropy_logits_sparse(model(x), y).mean()

    grad_values = bridge.GradValues(loss, model.vars())

    def train_step(x, y):
        grads, values = grad_values(x, y)
        opt(grads)
        return values[0]

    train_step = bridge.Jit(train_step, model.vars() + opt.vars())
    predict = bridge.Jit(model, model.vars())
    curve = []
    for _ in range(epochs):
        for idx in batches(rng, len(x_train), batch_size):
            train_step(x_train[idx], y_train[idx])
        curve.append(accuracy_of(predict(x_test), y_test))
        bar.set_postfix(test_acc=f"{curve[-1]:.3f}")
        bar.update()
    return curve


def max_difference(a: Any, b: Any) -> float:
    return float(np.max(np.abs(np.asarray(a) - np.asarray(b))))


def port(framework: str, args: argparse.Namespace, data, seed: int) -> dict:
    """Native training, import, object training, export, for one framework."""
    x_test = data[2]
    init, apply = haiku_model(args.hidden) if framework == "haiku" else \
        linen_model(args.hidden)
    rng = np.random.default_rng(seed)
    params = init(jax.random.PRNGKey(seed), jnp.zeros((1, 64), jnp.float32))
    total = args.epochs + args.object_epochs
    with _support.progress(total=total, desc=f"{framework:5s}", unit="epoch",
                           disable=args.quiet, example=EXAMPLE) as bar:
        bar.set_description(f"{framework} (native)")
        params, native_curve = train_native(apply, params, data, args.epochs,
                                            args.batch_size, args.lr, rng, bar)
        native_logits = jax.jit(apply)(params, x_test)

        # 1. Import: the object model computes what the native model does.
        model = object_model(args.hidden)
        load(framework, model, params)
        predict = bridge.Jit(model, model.vars())
        import_diff = max_difference(predict(x_test), native_logits)
        np.testing.assert_allclose(predict(x_test), native_logits, rtol=TOLERANCE,
                                   atol=TOLERANCE, err_msg=f"{framework}: after the import")

        # 2. Object-style training from the imported weights.
        bar.set_description(f"{framework} (object)")
        object_curve = train_object(model, data, args.object_epochs, args.batch_size,
                                    args.lr, rng, bar)

    # 3. Export: the native model on the exported weights gives the object model's logits.
    object_logits = predict(x_test)
    exported = export(framework, model)
    exported_logits = jax.jit(apply)(exported, x_test)
    export_diff = max_difference(exported_logits, object_logits)
    np.testing.assert_allclose(exported_logits, object_logits, rtol=TOLERANCE,
                               atol=TOLERANCE, err_msg=f"{framework}: after the export")
    moved = max_difference(exported_logits, native_logits)  # object training changed them
    names = sorted(exported["params"] if framework == "linen" else exported)
    return {"native_accuracy": native_curve[-1] if native_curve else None,
            "object_accuracy": accuracy_of(object_logits, data[3]),
            "native_curve": native_curve, "object_curve": object_curve,
            "import_diff": import_diff, "export_diff": export_diff,
            "logits_moved": moved, "exported_names": names}


def main(argv: Optional[Sequence[str]] = None) -> dict:
    """Port both frameworks; returns ``{'haiku': {...}, 'linen': {...}, 'png', 'seconds'}``
    with, per framework, the test accuracy after native and after object training, the
    accuracy curves, and the largest logit differences at the import and the export."""
    args = build_parser().parse_args(argv)
    for module, purpose in [("haiku", "the Haiku model"), ("flax", "the Linen model"),
                            ("tqdm", "the progress bars")]:
        _support.require(module, purpose, EXAMPLE)
    if args.out:
        _support.require("matplotlib", "the plot; --out '' skips it", EXAMPLE)
    start = time.perf_counter()
    data = _support.digits(seed=args.seed, example=EXAMPLE)
    bridge.random.DEFAULT_GENERATOR.seed(args.seed)
    result: dict = {}
    for i, framework in enumerate(FRAMEWORKS):
        result[framework] = port(framework, args, data, args.seed + i)
    result["seconds"] = time.perf_counter() - start

    print(f"\n64-{args.hidden}-10 MLP on digits ({len(data[0])} train / {len(data[2])} test), "
          f"{args.epochs} native + {args.object_epochs} object epochs:")
    print(f"{'':6s} {'native acc':>10s} {'object acc':>10s} {'import diff':>12s} "
          f"{'export diff':>12s}  exported as")
    for framework in FRAMEWORKS:
        r = result[framework]
        native = "-" if r["native_accuracy"] is None else f"{r['native_accuracy']:.3f}"
        print(f"{framework:6s} {native:>10s} {r['object_accuracy']:10.3f} "
              f"{r['import_diff']:12.1e} {r['export_diff']:12.1e}  "
              f"{', '.join(r['exported_names'])}")
    print(f"(diff: largest |logit difference| between the object model and the native model "
          f"on the same weights, test set; asserted <= {TOLERANCE:g}) {result['seconds']:.1f} s")
    result["png"] = plot(result, args.epochs, args.out) if args.out else None
    if result["png"]:
        print(f"accuracy curves written to {result['png']}")
    return result


def plot(result: dict, native_epochs: int, path: str) -> str:
    """Test accuracy per epoch, native then object training, one line per framework."""
    plt = _support.pyplot(EXAMPLE)
    fig, ax = plt.subplots(figsize=(6.5, 3.8))
    for framework, color in zip(FRAMEWORKS, ["tab:blue", "tab:orange"]):
        r = result[framework]
        native = np.arange(1, len(r["native_curve"]) + 1)
        obj = np.arange(len(native) + 1, len(native) + len(r["object_curve"]) + 1)
        ax.plot(native, r["native_curve"], "o-", color=color, ms=4,
                label=f"{framework}, native")
        ax.plot(obj, r["object_curve"], "s--", color=color, ms=4,
                label=f"{framework} weights, object style")
    ax.axvline(native_epochs + 0.5, color="gray", lw=1)
    ax.text(native_epochs + 0.6, ax.get_ylim()[0], " import", color="gray", va="bottom")
    ax.set(xlabel="epoch", ylabel="test accuracy",
           title="Native training, then object-style training on the imported weights")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8, loc="lower right")
    fig.tight_layout()
    return _support.save_png(fig, path)


if __name__ == "__main__":
    main()
