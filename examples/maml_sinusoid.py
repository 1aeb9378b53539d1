"""MAML on the sinusoid regression benchmark of Finn et al. (2017), written two ways.

Run it with::

    python -m pip install -e ".[examples]"
    python examples/maml_sinusoid.py --style both --order both

(``--help`` lists the options; the plot needs matplotlib, ``--plot ''`` skips it.)

Each task is a sine wave ``y = A sin(x + phase)`` (the reference's convention) with
``A ~ U[0.1, 5]``, ``phase ~ U[0, pi]`` and ``x ~ U[-5, 5]``. A 1-40-40-1 ReLU network is
meta-trained so that one SGD step (``alpha = 0.01``) on K = 10 points of a new task fits
that task: 25 tasks per meta-batch, 10 support and 10 query points per task, Adam with
learning rate 1e-3, 70,000 meta-iterations. It is then scored on 1,000 new tasks: adapt
on K = 10 support points for 0, 1 and 10 SGD steps (``alpha = 0.01``), report the mean MSE
on 100 query points. The test tasks are the reference's own (drawn as it draws them, from
its key 123), so that a comparison with its figures measures the training, not the draw of
the test set; ``--eval-seed N`` scores on another set.

The same algorithm is written twice:

* object style, the way the Objax gradient guide writes it: an object MLP, the nested loss
  as object code (``GradValues`` of the inner loss, ``assign`` the adapted weights, compute
  the query loss, restore), ``Vectorize`` over tasks, an outer ``GradValues``, an Optax
  optimizer object, and one ``Jit``-compiled train step called from a Python loop;
* pure style: a params pytree, ``bridge.pure.pairwise_nested_loss``, ``optax.adam``, and
  the meta-loop inside ``jax.lax.scan`` (chunks of ``--log-every`` iterations).

Both start from the same initial weights and see the same meta-batches; the evaluation is
one pure function of a params pytree shared by both. Second-order MAML differentiates
through the inner gradient; first-order MAML treats it as a constant.

The weights start as in the plain-JAX reference runs (``docs/maml.md``): He-normal (standard
deviation ``sqrt(2 / fan_in)``, ``bridge.nn.init.kaiming_normal`` with ``gain=sqrt(2)``)
with zero biases. ``--init torch`` starts from PyTorch's ``nn.Linear`` initialisation
instead, for the comparison in ``docs/maml.md``.

``--seeds 0-3`` trains one run per seed, style and order, one after the other (a run of
seed ``s`` is the run ``--seed s`` makes), and prints the median over seeds beside the
reference's median, with the difference in percent. ``--vmap-seeds`` trains the pure
style's seeds at once (``jax.vmap`` over the scanned meta-loop): the same computation, but
its floating-point rounding differs, which first-order MAML amplifies over 70,000
iterations.
"""

from __future__ import annotations

import argparse
import functools
import math
import operator
import os
import sys
import time
from typing import Any, Callable, NamedTuple, Optional, Sequence

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

EXAMPLE = "maml_sinusoid.py"

# ----- benchmark settings (Finn et al. 2017) ------------------------------------------------
AMPLITUDE = (0.1, 5.0)
PHASE = (0.0, math.pi)
X_RANGE = (-5.0, 5.0)
K_SHOT = 10            # support points per task (training and test)
K_QUERY = 10           # query points per task during meta-training
EVAL_QUERY = 100       # query points per test task
HIDDEN = (40, 40)
INNER_LR = 0.01        # alpha, at training and at test time
META_LR = 1e-3
META_BATCH = 25
ITERATIONS = 70_000
EVAL_TASKS = 1_000
EVAL_STEPS = (0, 1, 10)
EVAL_SEED = None  # None: the reference's test tasks (its key 123); an int: our own draw
REFERENCE_EVAL_KEY = 123
VALIDATION_TASKS = 1000  # progress lines score the weights on these, not on the test tasks
VALIDATION_SEED = 1

# Mean query MSE after 0 / 1 / 10 steps of the plain-JAX reference runs, seeds 0-3
# (quoted in docs/maml.md), and their median over the four seeds.
REFERENCE_SEEDS = {
    "second": {0: (3.024, 0.340, 0.095), 1: (3.027, 0.351, 0.100),
               2: (3.030, 0.339, 0.098), 3: (3.031, 0.381, 0.137)},
    "first": {0: (3.085, 0.404, 0.114), 1: (3.144, 0.392, 0.114),
              2: (3.194, 0.378, 0.098), 3: (3.109, 0.356, 0.108)},
}
REFERENCE = {order: tuple(float(m) for m in np.median(list(runs.values()), axis=0))
             for order, runs in REFERENCE_SEEDS.items()}
TOLERANCE = 0.15  # the target: our median within 15% of the reference median
INITS = ("he", "torch")

Params = Any  # a list of {'b': (nout,), 'w': (nin, nout)} dicts, one per layer


# ----- tasks ----------------------------------------------------------------------------------
class Tasks(NamedTuple):
    """A batch of sine tasks: ``amplitude``/``phase`` of shape ``(n,)``."""

    amplitude: jax.Array
    phase: jax.Array

    def __call__(self, x: jax.Array) -> jax.Array:
        """Targets for ``x`` of shape ``(n, points, 1)``."""
        return self.amplitude[:, None, None] * jnp.sin(x + self.phase[:, None, None])


def sample_tasks(key: jax.Array, n: int) -> Tasks:
    ka, kp = jax.random.split(key)
    return Tasks(jax.random.uniform(ka, (n,), minval=AMPLITUDE[0], maxval=AMPLITUDE[1]),
                 jax.random.uniform(kp, (n,), minval=PHASE[0], maxval=PHASE[1]))


def sample_points(key: jax.Array, tasks: Tasks, n_points: int) -> tuple[jax.Array, jax.Array]:
    """``(x, y)`` each of shape ``(n_tasks, n_points, 1)``, ``x`` uniform in ``X_RANGE``."""
    x = jax.random.uniform(key, (tasks.amplitude.shape[0], n_points, 1),
                           minval=X_RANGE[0], maxval=X_RANGE[1])
    return x, tasks(x)


def sample_meta_batch(key: jax.Array, n_tasks: int = META_BATCH, k_support: int = K_SHOT,
                      k_query: int = K_QUERY):
    """``(xs, ys, xq, yq)``: support and query sets of ``n_tasks`` fresh tasks."""
    kt, ks, kq = jax.random.split(key, 3)
    tasks = sample_tasks(kt, n_tasks)
    xs, ys = sample_points(ks, tasks, k_support)
    xq, yq = sample_points(kq, tasks, k_query)
    return xs, ys, xq, yq


def step_key(seed: int, iteration: jax.Array) -> jax.Array:
    """The key of meta-iteration ``iteration``: both styles draw the same meta-batches."""
    return jax.random.fold_in(jax.random.PRNGKey(seed), iteration)


# ----- the network as a pure function -----------------------------------------------------------
def layer_sizes() -> list[int]:
    return [1, *HIDDEN, 1]


def torch_init_params(key: jax.Array) -> Params:
    """Weights and biases uniform in ``[-1/sqrt(nin), 1/sqrt(nin)]``: PyTorch's ``nn.Linear``
    default (``--init torch``), kept for the comparison in ``docs/maml.md``."""
    sizes = layer_sizes()
    params = []
    for k, nin, nout in zip(jax.random.split(key, len(sizes) - 1), sizes[:-1], sizes[1:]):
        kw, kb = jax.random.split(k)
        bound = 1.0 / math.sqrt(nin)
        params.append({"b": jax.random.uniform(kb, (nout,), minval=-bound, maxval=bound),
                       "w": jax.random.uniform(kw, (nin, nout), minval=-bound, maxval=bound)})
    return params


def mlp_apply(params: Params, x: jax.Array) -> jax.Array:
    """The 1-40-40-1 ReLU network on ``x`` of shape ``(..., 1)``."""
    for layer in params[:-1]:
        x = jax.nn.relu(x @ layer["w"] + layer["b"])
    return x @ params[-1]["w"] + params[-1]["b"]


def mse(params: Params, x: jax.Array, y: jax.Array) -> jax.Array:
    return jnp.mean((mlp_apply(params, x) - y) ** 2)


def params_from_flat(flat: Sequence[jax.Array]) -> Params:
    """``[b0, w0, b1, w1, ...]`` (the order of ``model.vars().tensors()``) as a pytree."""
    return [{"b": b, "w": w} for b, w in zip(flat[0::2], flat[1::2])]


# ----- object style ----------------------------------------------------------------------------
def build_model(seed: int = 0, init: str = "he") -> bridge.nn.Sequential:
    """The 1-40-40-1 ReLU MLP as an object module, its weights drawn from ``seed``.

    ``init="he"`` (the reference's): He-normal weights, standard deviation
    ``sqrt(2 / fan_in)`` (``bridge.nn.init.kaiming_normal`` with ``gain=sqrt(2)``, keys from
    ``bridge.random.Generator(seed)``, one per layer), and zero biases (the ``Linear``
    default). ``init="torch"``: ``torch_init_params(PRNGKey(seed))``.
    """
    if init not in INITS:
        raise ValueError(f"init must be one of {INITS}, got {init!r}.")
    he_normal = functools.partial(bridge.nn.init.kaiming_normal, gain=math.sqrt(2),
                                  generator=bridge.random.Generator(seed))
    sizes = layer_sizes()
    layers: list = []
    for nin, nout in zip(sizes[:-1], sizes[1:]):
        layers += [bridge.nn.Linear(nin, nout, w_init=he_normal), bridge.functional.relu]
    model = bridge.nn.Sequential(layers[:-1])  # no ReLU after the last layer
    if init == "torch":
        model.vars().assign(jax.tree_util.tree_leaves(torch_init_params(
            jax.random.PRNGKey(seed))))
    return model


def init_params(seed: int = 0, init: str = "he") -> Params:
    """The initial weights of ``build_model(seed, init)`` as a params pytree: both styles
    start from them."""
    return params_from_flat(build_model(seed, init).vars().tensors())


def object_train_step(model: bridge.Module, order: str, seed: int,
                      inner_lr: float = INNER_LR, meta_lr: float = META_LR,
                      meta_batch: int = META_BATCH) -> bridge.Jit:
    """A jitted object-style MAML step: ``step(iteration) -> meta-loss``.

    It samples its meta-batch, computes the meta-gradient and applies Adam, updating the
    model's variables (and the optimizer's) in place.
    """
    train_vars = model.vars().subset(bridge.TrainVar)

    @bridge.Function.with_vars(model.vars())
    def loss(x, y):
        return ((model(x) - y) ** 2).mean()

    inner_gradient = bridge.GradValues(loss, train_vars)

    @bridge.Function.with_vars(model.vars())
    def nested_loss(x1, y1, x2, y2, mu):
        """``loss(x1, y1)`` after one SGD step on ``loss(x2, y2)``, as in the Objax guide."""
        original_values = train_vars.tensors()
        grads = inner_gradient(x2, y2)[0]
        if order == "first":  # first-order MAML: the inner gradient is a constant
            grads = [jax.lax.stop_gradient(g) for g in grads]
        for v, g in zip(train_vars, grads):
            v.assign(v.value - mu * g)
        loss_x1y1 = loss(x1, y1)
        for v, val in zip(train_vars, original_values):
            v.assign(val)
        return loss_x1y1

    vec_nested_loss = bridge.Vectorize(nested_loss, batch_axis=(0, 0, 0, 0, None))

    @bridge.Function.with_vars(model.vars())
    def nested_pairwise_loss(X1, Y1, X2, Y2, mu):
        return vec_nested_loss(X1, Y1, X2, Y2, mu).mean()

    meta_gradient = bridge.GradValues(nested_pairwise_loss, model.vars())
    opt = bridge.optimizer.Optax(model.vars(), optax.adam(meta_lr))

    def train_step(iteration):
        xs, ys, xq, yq = sample_meta_batch(step_key(seed, iteration), meta_batch)
        grads, values = meta_gradient(xq, yq, xs, ys, inner_lr)
        opt(grads)
        return values[0]

    return bridge.Jit(train_step, model.vars() + opt.vars())


class Result(NamedTuple):
    style: str
    order: str
    params: Params          # the meta-trained weights as a pytree
    losses: np.ndarray      # meta-loss of every iteration
    seconds: float          # training wall time, compilation included


class Progress:
    """Prints one line per chunk of iterations: the mean meta-loss and, for a single run,
    the MSE after 0 / 1 / 10 steps on ``VALIDATION_TASKS`` tasks (not the test tasks).

    ``seconds()`` is the wall time since construction minus the time spent validating.
    """

    def __init__(self, style: str, order: str, total: int, out) -> None:
        self.style, self.order, self.total, self.out = style, order, total, out
        self.start = time.perf_counter()
        self.validating = 0.0

    def __call__(self, done: int, losses: np.ndarray, params: Optional[Params] = None) -> None:
        if self.out is None:
            return
        line = (f"  [{self.style:6s} {self.order:6s}] iter {done:6d}/{self.total}  meta-loss "
                f"{float(np.mean(losses)):.4f}")
        if params is not None:
            begin = time.perf_counter()
            ev = evaluate(params, VALIDATION_TASKS, VALIDATION_SEED)
            self.validating += time.perf_counter() - begin
            line += "  validation MSE@0/1/10 " + "/".join(f"{ev.mean[s]:.3f}"
                                                          for s in EVAL_STEPS)
        print(f"{line}  {self.seconds():6.1f} s", file=self.out, flush=True)

    def seconds(self) -> float:
        return time.perf_counter() - self.start - self.validating


def train_object(order: str, iterations: int = ITERATIONS, seed: int = 0,
                 log_every: int = 1000, out=sys.stdout, init: str = "he") -> Result:
    """Meta-train the object-style MAML; returns the trained weights and the losses."""
    model = build_model(seed, init)  # the same weights as the pure run of this seed
    progress = Progress("object", order, iterations, out)
    step = object_train_step(model, order, seed)
    losses, chunk = [], []
    for i in range(iterations):
        chunk.append(step(i))
        if (i + 1) % log_every == 0 or i + 1 == iterations:
            chunk = [float(v) for v in chunk]  # waits for the device
            progress(i + 1, np.asarray(chunk), params_from_flat(model.vars().tensors()))
            losses += chunk
            chunk = []
    return Result("object", order, params_from_flat(model.vars().tensors()),
                  np.asarray(losses), progress.seconds())


# ----- pure style ------------------------------------------------------------------------------
def pure_iterations(order: str, length: int, inner_lr: float = INNER_LR,
                    meta_lr: float = META_LR, meta_batch: int = META_BATCH) -> Callable:
    """``run(params, opt_state, seed, first_iteration) -> (params, opt_state, losses)``:
    ``length`` meta-iterations inside one ``jax.lax.scan`` (not yet jitted).

    ``seed`` may be traced, so ``jax.vmap`` over it trains several seeds at once."""
    meta_loss = bridge.pure.pairwise_nested_loss(mse, inner_lr, first_order=order == "first")
    tx = optax.adam(meta_lr)

    def run(params, opt_state, seed, first_iteration):
        def one_iteration(carry, iteration):
            params, opt_state = carry
            xs, ys, xq, yq = sample_meta_batch(step_key(seed, iteration), meta_batch)
            loss, grads = jax.value_and_grad(meta_loss)(params, xq, yq, xs, ys)
            updates, opt_state = tx.update(grads, opt_state, params)
            return (optax.apply_updates(params, updates), opt_state), loss

        iterations = first_iteration + jnp.arange(length)
        (params, opt_state), losses = jax.lax.scan(one_iteration, (params, opt_state),
                                                   iterations)
        return params, opt_state, losses

    return run


def _train_pure_chunks(runner: Callable, params, opt_state, seed, iterations: int,
                       log_every: int, report: Callable) -> tuple[Any, np.ndarray]:
    """Call ``runner(length)(params, opt_state, seed, done)`` until ``iterations`` are done;
    each distinct chunk length compiles once."""
    runners: dict[int, Callable] = {}
    losses = []
    done = 0
    while done < iterations:
        length = min(log_every, iterations - done)
        if length not in runners:
            runners[length] = runner(length)
        params, opt_state, chunk = runners[length](params, opt_state, seed, done)
        chunk = np.asarray(chunk)  # waits for the device
        done += length
        report(done, chunk, params)
        losses.append(chunk)
    return params, np.concatenate(losses, axis=-1)


def train_pure(order: str, iterations: int = ITERATIONS, seed: int = 0,
               log_every: int = 1000, out=sys.stdout, init: str = "he") -> Result:
    """Meta-train the pure-style MAML (meta-loop in ``jax.lax.scan``)."""
    params = init_params(seed, init)
    progress = Progress("pure", order, iterations, out)
    params, losses = _train_pure_chunks(
        lambda length: jax.jit(pure_iterations(order, length)),
        params, optax.adam(META_LR).init(params), seed, iterations, log_every, progress)
    return Result("pure", order, params, losses, progress.seconds())


def train_pure_seeds(order: str, seeds: Sequence[int], iterations: int = ITERATIONS,
                     log_every: int = 1000, out=sys.stdout, init: str = "he") -> list[Result]:
    """Meta-train one pure-style run per seed, all at once: ``jax.vmap`` over the seed of
    the whole scanned meta-loop. Returns one ``Result`` per seed (``seconds`` is the
    wall time of the joint run)."""
    seed_array = jnp.asarray(seeds)
    params = jax.tree_util.tree_map(lambda *leaves: jnp.stack(leaves),
                                    *[init_params(seed, init) for seed in seeds])
    progress = Progress(f"pure x{len(seeds)}", order, iterations, out)
    params, losses = _train_pure_chunks(
        lambda length: jax.jit(jax.vmap(pure_iterations(order, length),
                                        in_axes=(0, 0, 0, None))),
        params, jax.vmap(optax.adam(META_LR).init)(params), seed_array, iterations,
        log_every, lambda done, chunk, _: progress(done, chunk))  # no per-seed validation
    seconds = progress.seconds()
    per_seed = [jax.tree_util.tree_map(operator.itemgetter(i), params) for i in range(len(seeds))]
    return [Result("pure", order, p, seed_losses, seconds)
            for p, seed_losses in zip(per_seed, losses)]


# ----- evaluation (shared by both styles) --------------------------------------------------------
def sample_eval_tasks(n_tasks: int = EVAL_TASKS, seed: Optional[int] = EVAL_SEED):
    """``(tasks, xs, ys, xq, yq)``: K support and ``EVAL_QUERY`` query points per task.

    With ``seed=None`` these are the reference's test tasks, drawn exactly as it draws them
    (amplitudes, phases, then ``K + 100`` points per task from ``PRNGKey(123)``, the first K
    the support set); with an integer seed, a draw of our own sampler.
    """
    if seed is None:
        ka, kp, kx = jax.random.split(jax.random.PRNGKey(REFERENCE_EVAL_KEY), 3)
        tasks = Tasks(
            jax.random.uniform(ka, (n_tasks, 1, 1), minval=AMPLITUDE[0],
                               maxval=AMPLITUDE[1])[:, 0, 0],
            jax.random.uniform(kp, (n_tasks, 1, 1), minval=PHASE[0], maxval=PHASE[1])[:, 0, 0])
        x = jax.random.uniform(kx, (n_tasks, K_SHOT + EVAL_QUERY, 1), minval=X_RANGE[0],
                               maxval=X_RANGE[1])
        y = tasks(x)
        return tasks, x[:, :K_SHOT], y[:, :K_SHOT], x[:, K_SHOT:], y[:, K_SHOT:]
    kt, ks, kq = jax.random.split(jax.random.PRNGKey(seed), 3)
    tasks = sample_tasks(kt, n_tasks)
    xs, ys = sample_points(ks, tasks, K_SHOT)
    xq, yq = sample_points(kq, tasks, EVAL_QUERY)
    return tasks, xs, ys, xq, yq


@functools.partial(jax.jit, static_argnames="steps")
def adapted_predictions(params: Params, xs: jax.Array, ys: jax.Array, x: jax.Array,
                        steps: int = max(EVAL_STEPS)) -> jax.Array:
    """Predictions at ``x`` after 0, 1, ..., ``steps`` SGD steps (``INNER_LR``) on each
    task's support set ``(xs, ys)``.

    ``xs, ys``: ``(tasks, K, 1)``; ``x``: ``(tasks, points, 1)``; returns
    ``(tasks, steps + 1, points, 1)``.
    """
    def one_task(xs, ys, x):
        def sgd_step(p, _):
            grads = jax.grad(mse)(p, xs, ys)
            return jax.tree_util.tree_map(lambda w, g: w - INNER_LR * g, p, grads), \
                mlp_apply(p, x)

        adapted, outputs = jax.lax.scan(sgd_step, params, None, length=steps)
        return jnp.concatenate([outputs, mlp_apply(adapted, x)[None]])

    return jax.vmap(one_task)(xs, ys, x)


def query_mse(params: Params, xs, ys, xq, yq, steps: int = max(EVAL_STEPS)) -> jax.Array:
    """Query MSE of each task after 0..``steps`` adaptation steps, ``(tasks, steps + 1)``."""
    predictions = adapted_predictions(params, xs, ys, xq, steps)
    return jnp.mean((predictions - yq[:, None]) ** 2, axis=(2, 3))


class Evaluation(NamedTuple):
    mean: dict[int, float]   # {steps: mean query MSE over the test tasks}, steps in EVAL_STEPS
    median: dict[int, float]  # the same, median over the test tasks
    diverged: int            # tasks whose MSE after 10 steps is above that after 0 (or inf/nan)


def evaluate(params: Params, n_tasks: int = EVAL_TASKS,
             eval_seed: Optional[int] = EVAL_SEED) -> Evaluation:
    """Adapt on the K support points of each fixed test task for 0, 1, 10 SGD steps and
    score on its ``EVAL_QUERY`` query points."""
    _, xs, ys, xq, yq = sample_eval_tasks(n_tasks, eval_seed)
    per_task = np.asarray(query_mse(params, xs, ys, xq, yq))
    last = per_task[:, max(EVAL_STEPS)]
    return Evaluation({s: float(per_task[:, s].mean()) for s in EVAL_STEPS},
                      {s: float(np.median(per_task[:, s])) for s in EVAL_STEPS},
                      int(np.sum(~(last <= per_task[:, 0]))))


# ----- plot and table -------------------------------------------------------------------------
def plot(results: Sequence[Result], path: str, n_tasks: int = 4) -> Optional[str]:
    """Pre- and post-adaptation fits of each run on the first few test tasks; returns
    ``path``. Without matplotlib it prints the one-line message and skips the plot
    (returns ``None``): the training is not lost."""
    if _support.optional("matplotlib", "the plot", EXAMPLE) is None:
        return None
    plt = _support.pyplot(EXAMPLE)
    tasks, xs, ys, _, _ = sample_eval_tasks(n_tasks)
    grid = jnp.linspace(*X_RANGE, 200)[:, None]
    grids = jnp.broadcast_to(grid, (n_tasks, *grid.shape))
    fig, axes = plt.subplots(len(results), n_tasks, figsize=(3.6 * n_tasks, 2.8 * len(results)),
                             sharex=True, squeeze=False)
    for row, result in zip(axes, results):
        predictions = adapted_predictions(result.params, xs, ys, grids)
        for t, ax in enumerate(row):
            truth = tasks.amplitude[t] * jnp.sin(grid + tasks.phase[t])
            ax.plot(grid, truth, color="black", lw=2, label="true function")
            for s, style in zip(EVAL_STEPS, [":", "--", "-"]):
                ax.plot(grid, predictions[t, s], style, lw=1.5,
                        label=f"after {s} step{'s' * (s != 1)}")
            ax.scatter(xs[t, :, 0], ys[t, :, 0], color="red", s=18, zorder=3,
                       label=f"K={K_SHOT} support")
            ax.set_title(f"{result.style}/{result.order}: A={float(tasks.amplitude[t]):.2f}, "
                         f"phase={float(tasks.phase[t]):.2f}", fontsize=9)
    handles, labels = axes[0, 0].get_legend_handles_labels()
    fig.legend(handles, labels, loc="lower center", ncol=len(labels), fontsize=9)
    fig.suptitle("MAML sinusoid: fits before and after adaptation on new tasks")
    fig.tight_layout(rect=(0, 0.04, 1, 1))
    return _support.save_png(fig, path)


def table(rows: Sequence[tuple[Result, Evaluation]]) -> str:
    """The results beside the reference's median over its seeds 0-3 and the relative
    differences, then the median over test tasks after 10 steps and how many tasks 10 steps
    made worse."""
    lines = [f"{'style':7s} {'order':7s} {'MSE@0':>7s} {'MSE@1':>7s} {'MSE@10':>7s} "
             f"{'train s':>8s} | {'ref@0':>6s} {'ref@1':>6s} {'ref@10':>6s} | "
             f"{'diff@0':>7s} {'diff@1':>7s} {'diff@10':>7s} | {'med@10':>6s} {'diverged':>8s}"]
    for result, ev in rows:
        ours = [ev.mean[s] for s in EVAL_STEPS]
        ref = REFERENCE[result.order]
        diffs = [f"{(o - r) / r:+7.1%}" for o, r in zip(ours, ref)]
        lines.append(f"{result.style:7s} {result.order:7s} {ours[0]:7.3f} {ours[1]:7.3f} "
                     f"{ours[2]:7.3f} {result.seconds:8.1f} | {ref[0]:6.3f} {ref[1]:6.3f} "
                     f"{ref[2]:6.3f} | {' '.join(diffs)} | "
                     f"{ev.median[max(EVAL_STEPS)]:6.3f} {ev.diverged:8d}")
    return "\n".join(lines)


def run(styles: Sequence[str], orders: Sequence[str], iterations: int = ITERATIONS,
        seed: int = 0, eval_tasks: int = EVAL_TASKS, log_every: int = 1000,
        plot_path: Optional[str] = "maml_sinusoid.png", eval_seed: Optional[int] = EVAL_SEED,
        out=sys.stdout, init: str = "he") -> list[tuple[Result, Evaluation]]:
    """Train every (style, order), evaluate, plot; returns ``[(result, evaluation)]``."""
    trainers = {"object": train_object, "pure": train_pure}
    rows = []
    for order in orders:
        for style in styles:
            print(f"training {style} style, {order} order, {iterations} iterations, "
                  f"{init} init", file=out, flush=True)
            result = trainers[style](order, iterations, seed, log_every, out, init)
            ev = evaluate(result.params, eval_tasks, eval_seed)
            print(f"  -> {result.seconds:.1f} s; test MSE after "
                  + ", ".join(f"{s}: {m:.3f}" for s, m in ev.mean.items()), file=out, flush=True)
            rows.append((result, ev))
    if plot_path and plot([r for r, _ in rows], plot_path):
        print(f"plot written to {plot_path}", file=out)
    return rows


def run_seeds(orders: Sequence[str], seeds: Sequence[int], iterations: int = ITERATIONS,
              eval_tasks: int = EVAL_TASKS, log_every: int = 1000,
              eval_seed: Optional[int] = EVAL_SEED, out=sys.stdout,
              styles: Sequence[str] = ("pure",), init: str = "he",
              vmap_seeds: bool = False) -> dict[tuple[str, str], list[Evaluation]]:
    """Train every order once per seed and style and evaluate each run; returns
    ``{(style, order): [evaluation per seed]}``.

    Runs go one after the other, so each is the run ``--seed s`` makes; with
    ``vmap_seeds`` the pure style trains all seeds at once (``train_pure_seeds``).
    """
    evaluations = {}
    for order in orders:
        for style in styles:
            start = time.perf_counter()
            if style == "pure" and vmap_seeds:
                print(f"training pure style, {order} order, {iterations} iterations, {init} "
                      f"init, seeds {list(seeds)} at once", file=out, flush=True)
                results = train_pure_seeds(order, seeds, iterations, log_every, out, init)
            else:
                trainer = train_pure if style == "pure" else train_object
                print(f"training {style} style, {order} order, {iterations} iterations, "
                      f"{init} init, seeds {list(seeds)} one after the other", file=out,
                      flush=True)
                results = [trainer(order, iterations, seed, log_every, out, init)
                           for seed in seeds]
            evaluations[style, order] = [evaluate(r.params, eval_tasks, eval_seed)
                                         for r in results]
            print(f"  -> {time.perf_counter() - start:.1f} s", file=out, flush=True)
    return evaluations


def seeds_table(seeds: Sequence[int], evaluations: dict[tuple[str, str], list[Evaluation]],
                tolerance: float = TOLERANCE) -> str:
    """Per (style, order): one line per seed with the reference run of the same seed number
    where there is one (the runs are not paired: their weights and meta-batches are
    drawn differently), then the median over seeds beside the reference's median, the
    difference in percent, and whether all three land within ``tolerance``."""
    def figures(values) -> str:
        return " ".join(f"{v:7.3f}" for v in values)

    blank = " " * 23
    lines = [f"{'style':7s} {'order':7s} {'seed':>6s} {'MSE@0':>7s} {'MSE@1':>7s} "
             f"{'MSE@10':>7s} {'diverged':>8s} | {'ref@0':>7s} {'ref@1':>7s} {'ref@10':>7s} | "
             f"{'diff@0':>7s} {'diff@1':>7s} {'diff@10':>7s}"]
    for (style, order), evs in evaluations.items():
        ours = [[ev.mean[s] for s in EVAL_STEPS] for ev in evs]
        for seed, row, ev in zip(seeds, ours, evs):
            ref = REFERENCE_SEEDS[order].get(seed)
            lines.append(f"{style:7s} {order:7s} {seed:>6d} {figures(row)} {ev.diverged:8d} | "
                         f"{figures(ref) if ref else blank} |")
        median = np.median(ours, axis=0).tolist()
        ref = REFERENCE[order]
        diffs = [(o - r) / r for o, r in zip(median, ref)]
        verdict = "yes" if all(abs(d) <= tolerance for d in diffs) else "no"
        lines.append(f"{style:7s} {order:7s} {'median':>6s} {figures(median)} {'':8s} | "
                     f"{figures(ref)} | " + " ".join(f"{d:+7.1%}" for d in diffs)
                     + f"  within {tolerance:.0%}: {verdict}")
    return "\n".join(lines)


def parse_seeds(text: str) -> list[int]:
    """``"0-7"`` or ``"0,3,5"`` (or a mix, ``"0-3,9"``) as a list of seeds."""
    seeds: list[int] = []
    for part in text.split(","):
        first, _, last = part.partition("-")
        seeds += range(int(first), int(last or first) + 1)
    return seeds


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0],
        epilog="The full benchmark (70,000 meta-iterations, both styles and orders) takes "
               "a while on a CPU; --iterations 2000 gives a quick look.")
    parser.add_argument("--iterations", "--steps", type=int, default=ITERATIONS,
                        help="meta-iterations (meta-batches of 25 tasks) per run "
                             "(default: %(default)s)")
    parser.add_argument("--style", choices=["object", "pure", "both"], default="both",
                        help="object: bridge modules, GradValues, Vectorize, Jit; pure: a "
                             "params pytree and jax.lax.scan; both: one after the other "
                             "(default: %(default)s)")
    parser.add_argument("--order", choices=["second", "first", "both"], default="both",
                        help="second: differentiate through the inner SGD step; first: "
                             "first-order MAML (default: %(default)s)")
    parser.add_argument("--seed", type=int, default=0,
                        help="seed of the initial weights and the meta-batches "
                             "(default: %(default)s)")
    parser.add_argument("--seeds", type=parse_seeds, default=None,
                        help="several seeds, e.g. 0-3: one run per seed, style and order, "
                             "one after the other; prints every seed and the median beside "
                             "the reference's")
    parser.add_argument("--vmap-seeds", action="store_true",
                        help="with --seeds: train the pure style's seeds at once (jax.vmap)")
    parser.add_argument("--init", choices=INITS, default="he",
                        help="he: the reference's He-normal weights and zero biases; torch: "
                             "PyTorch's nn.Linear default (default: %(default)s)")
    parser.add_argument("--plot", "--out", dest="plot", default="maml_sinusoid.png",
                        help="PNG path for the fits, relative to the current directory "
                             "(default: %(default)s; '' for no plot; needs matplotlib)")
    parser.add_argument("--eval-tasks", type=int, default=EVAL_TASKS,
                        help="test tasks the trained weights are scored on "
                             "(default: %(default)s)")
    parser.add_argument("--eval-seed", type=int, default=EVAL_SEED,
                        help="score on a draw of our sampler with this seed instead of the "
                             "reference's test tasks")
    parser.add_argument("--log-every", type=int, default=1000,
                        help="iterations between progress lines (the pure style's scan "
                             "length; default: %(default)s)")
    return parser


def main(argv: Optional[Sequence[str]] = None) -> dict:
    """Run from the command line; returns ``{'mse': {'style/order': {steps: mean MSE}},
    'png': path or None}`` (with ``--seeds``: one list of ``{steps: mean MSE}`` per
    style/order, one entry per seed, and no plot)."""
    args = build_parser().parse_args(argv)
    if args.plot and args.seeds is None:
        # Say it now rather than after hours of training (plot() would skip it then).
        _support.require("matplotlib", "the plot; --plot '' skips it", EXAMPLE)
    styles = ["object", "pure"] if args.style == "both" else [args.style]
    orders = ["second", "first"] if args.order == "both" else [args.order]
    print(f"jax {jax.__version__} on {jax.default_backend()}; {args.eval_tasks} test tasks, "
          f"K={K_SHOT}, {EVAL_QUERY} query points, alpha={INNER_LR}, {args.init} init")
    if args.seeds is not None:
        evaluations = run_seeds(orders, args.seeds, args.iterations, args.eval_tasks,
                                args.log_every, args.eval_seed, styles=styles[::-1],
                                init=args.init, vmap_seeds=args.vmap_seeds)
        print()
        print(f"mean query MSE after 0 / 1 / 10 adaptation steps on {args.eval_tasks} test "
              f"tasks ({args.iterations} meta-iterations, one run per seed):")
        print(seeds_table(args.seeds, evaluations))
        print("(ref: the plain-JAX reference run of the same seed number and the median of "
              "its seeds 0-3; diverged: tasks that 10 steps of SGD fit worse than "
              "no step at all)")
        return {"mse": {f"{style}/{order}": [dict(ev.mean) for ev in evs]
                        for (style, order), evs in evaluations.items()}, "png": None}
    rows = run(styles, orders, args.iterations, args.seed, args.eval_tasks, args.log_every,
               args.plot or None, args.eval_seed, init=args.init)
    print()
    print(f"mean query MSE after 0 / 1 / 10 adaptation steps on {args.eval_tasks} test tasks "
          f"({args.iterations} meta-iterations, seed {args.seed}):")
    print(table(rows))
    print(f"(ref: median of the plain-JAX reference's seeds 0-3; med@10: median over "
          f"test tasks after 10 steps; diverged: tasks that 10 steps of SGD with "
          f"alpha={INNER_LR} fit worse than no step at all)")
    # (matplotlib was checked before training: the plot is written when one is asked for)
    return {"mse": {f"{r.style}/{r.order}": dict(ev.mean) for r, ev in rows},
            "png": args.plot or None}


if __name__ == "__main__":
    main()
