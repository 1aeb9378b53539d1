"""Quickstart: train an object-style CNN with bridge on scikit-learn's handwritten digits.

Run it with::

    python -m pip install -e ".[examples]" && python examples/quickstart.py

The data are scikit-learn's 8x8 digits (1,797 images, shipped with the package: nothing
is downloaded), split 80/20 into train and test sets. The model is trained the Objax way:
a module that owns its variables (``bridge.nn`` layers, images in NCHW layout),
``GradValues`` for gradients, an Optax optimizer wrapped as an object, and ``Jit`` to
compile the whole training step. It prints the test accuracy after every epoch and at the
end, and writes the learning curve (train loss and test accuracy per epoch) to
``quickstart.png`` in the current directory (``--out`` to change). It takes a few seconds
on a CPU.
"""

from __future__ import annotations

import argparse
import functools
import os
import sys
import time
from typing import Optional, Sequence

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

EXAMPLE = "quickstart.py"


def build_model() -> bridge.nn.Sequential:
    """A small CNN for 1x8x8 images (NCHW): two 3x3 convolutions, a 2x2 max-pool, two
    dense layers; 10 logits."""
    return bridge.nn.Sequential([
        bridge.nn.Conv2D(1, 16, 3), F.relu,
        bridge.nn.Conv2D(16, 32, 3), F.relu,
        functools.partial(F.max_pool_2d, size=2),  # (N, 32, 4, 4)
        F.flatten,
        bridge.nn.Linear(32 * 4 * 4, 64), F.relu,
        bridge.nn.Linear(64, 10),
    ])


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--epochs", type=int, default=15,
                        help="passes over the training set (default: %(default)s)")
    parser.add_argument("--batch-size", type=int, default=64,
                        help="examples per training step (default: %(default)s)")
    parser.add_argument("--lr", type=float, default=2e-3,
                        help="Adam learning rate (default: %(default)s)")
    parser.add_argument("--seed", type=int, default=0,
                        help="seed of the initial weights, the split and the batch order "
                             "(default: %(default)s)")
    parser.add_argument("--out", default="quickstart.png",
                        help="PNG path for the learning curve, relative to the current "
                             "directory (default: %(default)s; '' for no plot)")
    parser.add_argument("--quiet", action="store_true",
                        help="no progress bar and no per-epoch lines")
    return parser


def main(argv: Optional[Sequence[str]] = None) -> dict:
    """Train and evaluate; returns ``{'test_accuracy', 'train_loss', 'test_accuracy_curve',
    'png', 'seconds'}`` (the curves have one entry per epoch)."""
    args = build_parser().parse_args(argv)
    # Fail now, not after training, if an optional dependency is missing.
    _support.require("tqdm", "the progress bar", EXAMPLE)
    if args.out:
        _support.require("matplotlib", "the learning-curve plot; --out '' skips it", EXAMPLE)
    start = time.perf_counter()
    x_train, y_train, x_test, y_test = _support.digits(seed=args.seed, example=EXAMPLE)
    x_train, x_test = x_train.reshape(-1, 1, 8, 8), x_test.reshape(-1, 1, 8, 8)  # NCHW
    print(f"digits: {len(x_train)} training and {len(x_test)} test images of 1x8x8")

    # 1. The model: a Sequential of layers and plain functions. It owns its variables.
    bridge.random.DEFAULT_GENERATOR.seed(args.seed)  # the layers draw their initial weights
    model = build_model()
    if not args.quiet:
        print(model.vars())  # names, sizes and shapes of every variable, then +Total

    # 2. Any Optax transformation, as an object whose state lives in StateVars.
    opt = bridge.optimizer.Optax(model.vars(), optax.adam(args.lr))

    # 3. The loss, and its gradients with respect to the model's TrainVars.
    def loss(x, y):
        return F.loss.cross_entropy_logits_sparse(model(x), y).mean()

    grad_values = bridge.GradValues(loss, model.vars())

    # 4. One training step; Jit compiles it once. Every variable it reads or writes must be
    #    declared: the model's and the optimizer's.
    def train_step(x, y):
        grads, values = grad_values(x, y)  # values is a list: [loss]
        opt(grads)
        return values[0]

    train_step = bridge.Jit(train_step, model.vars() + opt.vars())
    predict = bridge.Jit(lambda x: model(x).argmax(axis=1), model.vars())

    def accuracy(x, y):
        return float((np.asarray(predict(x)) == y).mean())

    rng = np.random.default_rng(args.seed)
    steps_per_epoch = len(x_train) // args.batch_size  # every batch full: one compilation
    train_loss, test_acc = [], []
    bar = _support.progress(total=args.epochs, desc="training", unit="epoch",
                            disable=args.quiet, example=EXAMPLE)
    for epoch in bar:
        order = rng.permutation(len(x_train))
        losses = []
        for i in range(steps_per_epoch):
            idx = order[i * args.batch_size:(i + 1) * args.batch_size]
            losses.append(train_step(x_train[idx], y_train[idx]))
        train_loss.append(float(np.mean([float(v) for v in losses])))
        test_acc.append(accuracy(x_test, y_test))
        bar.set_postfix(loss=f"{train_loss[-1]:.4f}", test_acc=f"{test_acc[-1]:.3f}")
        if not args.quiet:
            _support.say(f"epoch {epoch + 1:3d}  train loss {train_loss[-1]:.4f}  "
                         f"test accuracy {test_acc[-1]:.3f}")
    bar.close()
    seconds = time.perf_counter() - start

    png = plot(train_loss, test_acc, args.out) if args.out else None
    final = accuracy(x_test, y_test)
    print(f"test accuracy after {args.epochs} epochs: {final:.3f} "
          f"({round(final * len(y_test))}/{len(y_test)}); {seconds:.1f} s (data, compilation "
          f"and training)")
    if png:
        print(f"learning curve written to {png}")
    return {"test_accuracy": final, "train_loss": train_loss, "test_accuracy_curve": test_acc,
            "png": png, "seconds": seconds}


def plot(train_loss: Sequence[float], test_acc: Sequence[float], path: str) -> str:
    """The learning curve: train loss (log scale) and test accuracy per epoch."""
    plt = _support.pyplot(EXAMPLE)
    epochs = np.arange(1, len(train_loss) + 1)
    fig, (left, right) = plt.subplots(1, 2, figsize=(9, 3.4))
    left.plot(epochs, train_loss, marker="o", ms=3)
    left.set(xlabel="epoch", ylabel="mean training loss", yscale="log", title="train loss")
    right.plot(epochs, test_acc, marker="o", ms=3, color="tab:green")
    right.set(xlabel="epoch", ylabel="accuracy", title=f"test accuracy (final "
              f"{test_acc[-1]:.3f})")
    right.set_ylim(min(0.8, min(test_acc) - 0.02), 1.0)
    for ax in (left, right):
        ax.grid(alpha=0.3)
    fig.suptitle("bridge quickstart: a CNN on scikit-learn's digits")
    fig.tight_layout()
    return _support.save_png(fig, path)


if __name__ == "__main__":
    main()
