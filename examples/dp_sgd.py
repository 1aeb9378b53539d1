"""DP-SGD on scikit-learn's digits with ``bridge.privacy``, against non-private training
of the same model.

Run it with::

    python -m pip install -e ".[examples]" && python examples/dp_sgd.py

The same MLP (64-128-10, ReLU, the same initial weights) is trained twice on the same
batches: once with ``bridge.GradValues`` (ordinary gradients), once with
``bridge.privacy.PrivateGradValues`` (DP-SGD: every example's gradient is clipped to L2
norm ``--clip``, the clipped gradients are averaged, and Gaussian noise of standard
deviation ``--noise * --clip / batch`` is added). Both use the same Optax optimizer.

Each step's batch is drawn uniformly without replacement from the training set, so the
privacy spent is that of the sampled Gaussian mechanism under this sampling, computed by
``bridge.privacy.dpsgd.analyze_dp_sample_without_replacement`` (replace-one neighbouring
datasets) for ``delta = 1e-5``. ``analyze_dp`` gives the figure for Poisson sampling
(add-or-remove-one), the scheme of the DP-SGD paper; it is printed beside it for reference
but is not the guarantee of this training loop. The digits training set is small (1,437
images), so each step samples a large share of it and epsilon grows quickly with the
epochs.

It prints both test accuracies, the privacy parameters and the final epsilon, and writes
both accuracy curves to ``dp_sgd.png`` in the current directory (``--out`` to change).
"""

from __future__ import annotations

import argparse
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

EXAMPLE = "dp_sgd.py"
DELTA = 1e-5


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--epochs", type=int, default=20,
                        help="training length in epochs: epochs * (train size // batch) "
                             "steps (default: %(default)s)")
    parser.add_argument("--batch-size", type=int, default=32,
                        help="examples per step, drawn without replacement "
                             "(default: %(default)s)")
    parser.add_argument("--clip", type=float, default=1.0,
                        help="l2_norm_clip: the largest L2 norm of one example's gradient "
                             "(default: %(default)s)")
    parser.add_argument("--noise", type=float, default=1.1,
                        help="noise_multiplier: noise standard deviation / l2_norm_clip "
                             "(default: %(default)s)")
    parser.add_argument("--lr", type=float, default=0.02,
                        help="SGD learning rate, momentum 0.9, both runs "
                             "(default: %(default)s)")
    parser.add_argument("--hidden", type=int, default=128,
                        help="width of the hidden layer (default: %(default)s)")
    parser.add_argument("--seed", type=int, default=0,
                        help="seed of the initial weights, the split, the batches and the "
                             "noise (default: %(default)s)")
    parser.add_argument("--out", default="dp_sgd.png",
                        help="PNG path for the accuracy curves, relative to the current "
                             "directory (default: %(default)s; '' for no plot)")
    parser.add_argument("--quiet", action="store_true", help="no progress bar")
    return parser


def build_model(hidden: int) -> bridge.nn.Sequential:
    return bridge.nn.Sequential([bridge.nn.Linear(64, hidden), F.relu,
                                 bridge.nn.Linear(hidden, 10)])


def trainer(private: bool, args: argparse.Namespace, seed: int):
    """``(model, train_step, predict)``: one run, private (DP-SGD) or not."""
    bridge.random.DEFAULT_GENERATOR.seed(seed)  # both runs start from the same weights
    model = build_model(args.hidden)

    def loss(x, y):
        return F.loss.cross_entropy_logits_sparse(model(x), y).mean()

    if private:
        grad_values = bridge.privacy.PrivateGradValues(
            loss, model.vars(), noise_multiplier=args.noise, l2_norm_clip=args.clip,
            microbatch=1, keygen=bridge.random.Generator(seed + 1))
    else:
        grad_values = bridge.GradValues(loss, model.vars())
    opt = bridge.optimizer.Optax(model.vars(), optax.sgd(args.lr, momentum=0.9))

    def train_step(x, y):
        grads, values = grad_values(x, y)
        opt(grads)
        return values[0]

    # grad_values.vars(): the model's variables and, for DP-SGD, the noise generator's key
    train_step = bridge.Jit(train_step, grad_values.vars() + opt.vars())
    predict = bridge.Jit(lambda x: model(x).argmax(axis=1), model.vars())
    return model, train_step, predict


def main(argv: Optional[Sequence[str]] = None) -> dict:
    """Train both runs; returns ``{'private_accuracy', 'plain_accuracy', 'epsilon',
    'epsilon_poisson', 'delta', 'noise_multiplier', 'l2_norm_clip', 'batch_size', 'steps',
    'private_curve', 'plain_curve', 'png', 'seconds'}`` (curves: test accuracy per
    epoch)."""
    args = build_parser().parse_args(argv)
    _support.require("dp_accounting", "the privacy analysis", EXAMPLE)
    _support.require("tqdm", "the progress bar", EXAMPLE)
    if args.out:
        _support.require("matplotlib", "the plot; --out '' skips it", EXAMPLE)
    start = time.perf_counter()
    x_train, y_train, x_test, y_test = _support.digits(seed=args.seed, example=EXAMPLE)
    n = len(x_train)
    steps_per_epoch = n // args.batch_size
    steps = args.epochs * steps_per_epoch
    q = args.batch_size / n
    epsilon = bridge.privacy.dpsgd.analyze_dp_sample_without_replacement(
        q, args.noise, steps, delta=DELTA)
    epsilon_poisson = bridge.privacy.dpsgd.analyze_dp(q, args.noise, steps, delta=DELTA)
    print(f"DP-SGD on digits: {n} training images, batch {args.batch_size} (q = {q:.4f}), "
          f"{steps} steps, l2_norm_clip {args.clip}, noise_multiplier {args.noise}")

    runs = {"private": trainer(True, args, args.seed), "plain": trainer(False, args, args.seed)}
    curves: dict[str, list[float]] = {name: [] for name in runs}
    rng = np.random.default_rng(args.seed)
    bar = _support.progress(total=steps, desc="training", unit="step", disable=args.quiet,
                            example=EXAMPLE)
    for step in range(1, steps + 1):
        idx = rng.choice(n, args.batch_size, replace=False)  # the same batch for both runs
        for _, train_step, _ in runs.values():
            train_step(x_train[idx], y_train[idx])
        bar.update()
        if step % steps_per_epoch == 0:
            for name, (_, _, predict) in runs.items():
                curves[name].append(float((np.asarray(predict(x_test)) == y_test).mean()))
            epoch = step // steps_per_epoch
            spent = bridge.privacy.dpsgd.analyze_dp_sample_without_replacement(
                q, args.noise, step, delta=DELTA)
            bar.set_postfix(private=f"{curves['private'][-1]:.3f}",
                            plain=f"{curves['plain'][-1]:.3f}", eps=f"{spent:.2f}")
            if not args.quiet:
                _support.say(f"epoch {epoch:3d}  test accuracy: DP-SGD "
                             f"{curves['private'][-1]:.3f}, non-private "
                             f"{curves['plain'][-1]:.3f}  (epsilon so far {spent:.2f})")
    bar.close()
    seconds = time.perf_counter() - start

    result = {"private_accuracy": curves["private"][-1] if curves["private"] else None,
              "plain_accuracy": curves["plain"][-1] if curves["plain"] else None,
              "epsilon": epsilon, "epsilon_poisson": epsilon_poisson, "delta": DELTA,
              "noise_multiplier": args.noise, "l2_norm_clip": args.clip,
              "batch_size": args.batch_size, "steps": steps,
              "private_curve": curves["private"], "plain_curve": curves["plain"],
              "seconds": seconds}
    print(f"test accuracy after {args.epochs} epochs: DP-SGD {result['private_accuracy']:.3f}, "
          f"non-private {result['plain_accuracy']:.3f}")
    print(f"privacy: ({epsilon:.2f}, {DELTA:g})-DP for batches drawn without replacement "
          f"(l2_norm_clip {args.clip}, noise_multiplier {args.noise}, q {q:.4f}, {steps} "
          f"steps); analyze_dp (Poisson sampling) would give epsilon {epsilon_poisson:.2f}")
    print(f"{seconds:.1f} s")
    result["png"] = plot(result, args, args.out) if args.out else None
    if result["png"]:
        print(f"accuracy curves written to {result['png']}")
    return result


def plot(result: dict, args: argparse.Namespace, path: str) -> str:
    """Test accuracy per epoch of both runs."""
    plt = _support.pyplot(EXAMPLE)
    epochs = np.arange(1, len(result["plain_curve"]) + 1)
    fig, ax = plt.subplots(figsize=(6.5, 3.8))
    ax.plot(epochs, result["plain_curve"], "o-", ms=3, label="non-private (GradValues)")
    ax.plot(epochs, result["private_curve"], "s-", ms=3,
            label="DP-SGD (PrivateGradValues)")
    ax.set(xlabel="epoch", ylabel="test accuracy",
           title=f"DP-SGD vs non-private: final ({result['epsilon']:.2f}, "
                 f"{result['delta']:g})-DP\nclip {args.clip}, noise {args.noise}, batch "
                 f"{args.batch_size}, {result['steps']} steps")
    ax.xaxis.get_major_locator().set_params(integer=True)
    ax.grid(alpha=0.3)
    ax.legend(loc="lower right")
    fig.tight_layout()
    return _support.save_png(fig, path)


if __name__ == "__main__":
    main()
