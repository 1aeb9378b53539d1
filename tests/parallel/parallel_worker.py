"""Run by ``test_parallel.py`` in its own process, with 8 host CPU devices.

Each scenario runs object code through ``bridge.Parallel`` inside ``vc.replicate()`` and
computes the same thing independently, with plain ``jax.jit`` on the whole batch (or
hand-derived numbers), and returns both. ``main`` prints ``{scenario: result}`` as one JSON
line; a scenario that raises reports its traceback instead, so one failure does not hide
the others. The assertions live in ``test_parallel.py``.
"""

from __future__ import annotations

import json
import traceback

import jax
import jax.numpy as jnp
import numpy as np
import optax

import bridge
from bridge.functional import parallel

N = 8  # devices; checked by the test file


def _normal(seed, shape):
    return jax.random.normal(jax.random.PRNGKey(seed), shape)


def _json(tree):
    return jax.tree.map(lambda a: np.asarray(a).tolist(), tree)


def _linear_reference(w, b, x):
    return jax.jit(lambda w, b, x: x @ w + b)(w, b, x)


# ----- inference ----------------------------------------------------------------------------
def concat_inference():
    layer = bridge.nn.Linear(3, 4)
    x = _normal(1, (96, 3))
    predict = bridge.Parallel(layer)
    with layer.vars().replicate():
        y = predict(x)
    return {"parallel": y, "reference": _linear_reference(layer.w.value, layer.b.value, x),
            "output_devices": len(y.sharding.device_set)}


def reducers():
    layer = bridge.nn.Linear(3, 4)
    x = _normal(2, (96, 3))
    outputs = {}
    for name, reduce in [("stacked", lambda a: a), ("first", lambda a: a[0]),
                         ("mean", lambda a: a.mean(0)), ("sum", lambda a: a.sum(0))]:
        predict = bridge.Parallel(layer, reduce=reduce)
        with layer.vars().replicate():
            outputs[name] = predict(x)
    per_device = _linear_reference(layer.w.value, layer.b.value, x).reshape(N, 12, 4)
    reference = {"stacked": per_device, "first": per_device[0],
                 "mean": per_device.mean(0), "sum": per_device.sum(0)}
    return {"parallel": outputs, "reference": reference}


def multiple_outputs():
    layer = bridge.nn.Linear(3, 4)
    x = _normal(3, (96, 3))
    both = bridge.Parallel(lambda x: {"plus": layer(x), "minus": [layer(-x)]}, layer.vars())
    with layer.vars().replicate():
        out = both(x)
    w, b = layer.w.value, layer.b.value
    return {"parallel": out, "reference": {"plus": _linear_reference(w, b, x),
                                           "minus": [_linear_reference(w, b, -x)]}}


def broadcast_scalars():
    x = _normal(4, (96, 3))
    add = bridge.Parallel(lambda x, d: x * d, bridge.VarCollection())
    return {"array_scalar": add(x, jnp.float32(0.5)), "python_scalar": add(x, 0.5),
            "reference": x * 0.5}


def static_arguments():
    x = _normal(5, (96, 3))
    power = bridge.Parallel(lambda x, p: x ** p, bridge.VarCollection(), static_argnums=(1,))
    return {"parallel": power(x, 3), "reference": x ** 3}


def keyword_arguments():
    net = bridge.nn.Sequential([bridge.nn.Linear(3, 4), bridge.nn.BatchNorm0D(4)])
    x = _normal(6, (96, 3))
    run = bridge.Parallel(net)
    with net.vars().replicate():
        y = run(x, training=False)
    h = _linear_reference(net[0].w.value, net[0].b.value, x)
    return {"parallel": y, "reference": h * jax.lax.rsqrt(1 + 1e-6)}


# ----- BatchNorm ----------------------------------------------------------------------------
def _bn_reference(x, mean, var, gamma, beta, eps=1e-6):
    return (x - mean) * jax.lax.rsqrt(var + eps) * gamma + beta


def batchnorm_eval():
    bn = bridge.nn.BatchNorm0D(4)
    bn.running_mean.assign(jnp.arange(4.0).reshape(1, 4))
    bn.running_var.assign(jnp.full((1, 4), 2.0))
    bn.gamma.assign(jnp.full((1, 4), 3.0))
    x = _normal(7, (96, 4))
    run = bridge.Parallel(lambda x: bn(x, training=False), bn.vars())
    with bn.vars().replicate():
        y = run(x)
    return {"parallel": y,
            "reference": _bn_reference(x, jnp.arange(4.0), 2.0, 3.0, 0.0),
            "running_mean": bn.running_mean.value, "running_var": bn.running_var.value}


def _per_slice_batchnorm(x, momentum=0.999):
    """Plain BatchNorm run on each device's slice: per-slice statistics."""
    slices = x.reshape(N, -1, x.shape[-1])
    mean = slices.mean(1, keepdims=True)
    var = ((slices - mean) ** 2).mean(1, keepdims=True)
    y = _bn_reference(slices, mean, var, 1.0, 0.0).reshape(x.shape)
    rate = 1 - momentum
    # each device moves its own copy of the statistics; replicate() then averages them
    running_mean = (rate * mean).mean(0)
    running_var = (1 + rate * (var - 1)).mean(0)
    return y, running_mean, running_var


def batchnorm_train():
    bn = bridge.nn.BatchNorm0D(4)
    x = _normal(8, (96, 4)) * 2 + 1
    run = bridge.Parallel(lambda x: bn(x, training=True), bn.vars())
    with bn.vars().replicate():
        y = run(x)
        inside = bn.running_mean.value
    y_ref, mean_ref, var_ref = jax.jit(_per_slice_batchnorm)(x)
    return {"parallel": y, "reference": y_ref,
            "running_mean": bn.running_mean.value, "running_mean_reference": mean_ref,
            "running_var": bn.running_var.value, "running_var_reference": var_ref,
            "inside_shape": list(inside.shape),
            "inside_rows_differ": bool(jnp.abs(inside[0] - inside[1]).max() > 0)}


def jit_of_parallel():
    bn = bridge.nn.BatchNorm0D(4)
    x = _normal(8, (96, 4)) * 2 + 1
    run = bridge.Jit(bridge.Parallel(lambda x: bn(x, training=True), bn.vars()))
    with run.vars().replicate():
        y = run(x)
    y_ref, mean_ref, var_ref = jax.jit(_per_slice_batchnorm)(x)
    return {"parallel": y, "reference": y_ref,
            "running_mean": bn.running_mean.value, "running_mean_reference": mean_ref,
            "running_var": bn.running_var.value, "running_var_reference": var_ref}


def synced_batchnorm_train():
    """Two training calls of SyncedBatchNorm2D against BatchNorm2D on the whole batch."""
    synced, plain = bridge.nn.SyncedBatchNorm2D(3), bridge.nn.BatchNorm2D(3)
    x = _normal(9, (64, 3, 5, 5)) * 3 - 1
    run = bridge.Parallel(lambda x: synced(x, training=True), synced.vars())
    whole = bridge.Jit(lambda x: plain(x, training=True), plain.vars())
    out = {"parallel": [], "reference": []}
    for _ in range(2):
        with synced.vars().replicate():
            out["parallel"].append(run(x))
        out["reference"].append(whole(x))
    out.update(running_mean=synced.running_mean.value,
               running_mean_reference=plain.running_mean.value,
               running_var=synced.running_var.value,
               running_var_reference=plain.running_var.value)
    evaluate = bridge.Parallel(lambda x: synced(x, training=False), synced.vars())
    with synced.vars().replicate():
        out["eval"] = evaluate(x)
    out["eval_reference"] = plain(x, training=False)
    return out


# ----- training -----------------------------------------------------------------------------
def _reference_training(params, stats, x, y, steps, momentum=0.999, eps=1e-6):
    """Linear -> BatchNorm (whole batch) -> tanh -> Linear, MSE, optax.adam, in plain JAX."""
    def forward(params, stats, x):
        h = x @ params["w1"] + params["b1"]
        mean = h.mean(0, keepdims=True)
        var = ((h - mean) ** 2).mean(0, keepdims=True)
        h = _bn_reference(h, mean, var, params["gamma"], params["beta"], eps)
        out = jnp.tanh(h) @ params["w2"] + params["b2"]
        rate = 1 - momentum
        new_stats = {"mean": stats["mean"] + rate * (mean - stats["mean"]),
                     "var": stats["var"] + rate * (var - stats["var"])}
        return out, new_stats

    def loss(params, stats, x, y):
        out, new_stats = forward(params, stats, x)
        return ((out - y) ** 2).mean(), new_stats

    tx = optax.adam(1e-2)

    @jax.jit
    def step(params, stats, opt_state, x, y):
        (value, stats), grads = jax.value_and_grad(loss, has_aux=True)(params, stats, x, y)
        updates, opt_state = tx.update(grads, opt_state, params)
        return optax.apply_updates(params, updates), stats, opt_state, value

    opt_state, losses = tx.init(params), []
    for _ in range(steps):
        params, stats, opt_state, value = step(params, stats, opt_state, x, y)
        losses.append(value)
    return losses, params, stats


def training_step():
    """GradValues + Adam (bridge.optimizer.Optax) inside Parallel, gradients pmean'd."""
    bridge.random.DEFAULT_GENERATOR.seed(0)
    model = bridge.nn.Sequential([bridge.nn.Linear(3, 8), bridge.nn.SyncedBatchNorm0D(8),
                                  jnp.tanh, bridge.nn.Linear(8, 1)])
    params = {"w1": model[0].w.value, "b1": model[0].b.value, "gamma": model[1].gamma.value,
              "beta": model[1].beta.value, "w2": model[3].w.value, "b2": model[3].b.value}
    stats = {"mean": model[1].running_mean.value, "var": model[1].running_var.value}
    x = _normal(10, (64, 3))
    y = jnp.sin(x.sum(1, keepdims=True))

    opt = bridge.optimizer.Optax(model.vars(), optax.adam(1e-2))
    gradient = bridge.GradValues(lambda x, y: ((model(x, training=True) - y) ** 2).mean(),
                                 model.vars())

    def train_step(x, y):
        grads, values = gradient(x, y)
        opt(parallel.pmean(grads))
        return parallel.pmean(values[0])

    train_vars = model.vars() + opt.vars()
    step = bridge.Parallel(train_step, train_vars, reduce=lambda v: v[0])
    with train_vars.replicate():
        losses = [step(x, y) for _ in range(5)]
    ref_losses, ref_params, ref_stats = _reference_training(params, stats, x, y, steps=5)
    return {"losses": losses, "losses_reference": ref_losses,
            "params": {"w1": model[0].w.value, "gamma": model[1].gamma.value,
                       "w2": model[3].w.value, "b2": model[3].b.value},
            "params_reference": {k: ref_params[k] for k in ("w1", "gamma", "w2", "b2")},
            "running_var": model[1].running_var.value, "running_var_reference": ref_stats["var"]}


def ema():
    layer = bridge.nn.Linear(3, 4)
    average = bridge.optimizer.ExponentialMovingAverage(layer.vars(), momentum=0.9)
    all_vars = layer.vars() + average.vars()
    update = bridge.Parallel(average, all_vars)
    predict = bridge.Parallel(average.replace_vars(layer), all_vars)
    x = _normal(11, (96, 3))
    with all_vars.replicate():
        update()
        y = predict(x)
    w, b = layer.w.value, layer.b.value
    # one update from zero averages: avg = (1 - 0.9) * value
    return {"averages": [m.value for m in average.m], "averages_reference": [0.1 * b, 0.1 * w],
            "step": average.step.value, "parallel": y,
            "reference": _linear_reference(0.1 * w, 0.1 * b, x)}


# ----- variables ----------------------------------------------------------------------------
def random_state():
    generator = bridge.random.Generator(seed=3)
    start = generator.key.value
    keys = bridge.Parallel(lambda: generator.key.value, generator.vars(), reduce=lambda k: k)
    draw = bridge.Parallel(lambda: bridge.random.uniform((2,), generator=generator),
                           generator.vars())
    with generator.vars().replicate():
        per_device = keys()
        draws = draw()
        after_draw = keys()
    split = jax.random.split(start, N + 1)
    # device i draws with the key it holds: Generator() splits it in two, uses the second
    draws_reference = jnp.concatenate(
        [jax.random.uniform(jax.random.split(k, 2)[1], (2,)) for k in split[1:]])
    return {"per_device": per_device, "per_device_reference": split[1:],
            "after_draw_changed": bool((after_draw != per_device).any(axis=1).all()),
            "draws": draws, "draws_reference": draws_reference,
            "after": generator.key.value, "after_reference": split[0]}


def assign_inside():
    m = bridge.ModuleList([bridge.TrainVar(jnp.array([1.0, 2.0]))])

    def add(x):
        m[0].assign(m[0].value + x)
        return m[0].value

    run = bridge.Parallel(add, m.vars())
    with m.vars().replicate():
        run(jnp.arange(8.0))
        inside = m[0].value
    shared = bridge.ModuleList([bridge.TrainVar(jnp.zeros(2))])
    shared.append(bridge.TrainRef(shared[0]))

    def twice():
        shared[0].assign(shared[0].value + 1)
        shared[1].assign(shared[1].value + 1)

    run_shared = bridge.Parallel(twice, shared.vars())
    with shared.vars().replicate():
        run_shared()
    return {"inside": inside, "inside_reference": jnp.array([1.0, 2.0]) + jnp.arange(8.0)[:, None],
            "after": m[0].value, "after_reference": jnp.array([1.0, 2.0]) + 3.5,
            "after_committed": m[0].value.committed,
            "after_devices": len(m[0].value.sharding.device_set),
            "shared": shared[0].value, "shared_reference": [2.0, 2.0]}


def collectives():
    """Device i holds x = [i]; every collective's result is the same on all devices."""
    run = bridge.Parallel(lambda x: [parallel.pmean(x), parallel.psum(x), parallel.pmax(x),
                                     parallel.pmin(x), parallel.psum({"n": 1})["n"]],
                          bridge.VarCollection(), reduce=lambda v: v)
    return {"parallel": run(jnp.arange(8.0)),
            "reference": [[[3.5]] * N, [[28.0]] * N, [[7.0]] * N, [[0.0]] * N, [1 * N] * N]}


def collective_gradients():
    """Per-device gradients through collectives follow pmap's rule, as in Objax.

    Device i holds x_i = i and the shared w = 1. The gradient of psum(w * x_i) is
    N * x_i on device i (psum transposes to psum); of pmean(w * x_i), x_i.
    """
    w = bridge.TrainVar(jnp.ones(()))
    vc = bridge.VarCollection({"w": w})
    out = {}
    for name, collective in [("psum", parallel.psum), ("pmean", parallel.pmean)]:
        gv = bridge.GradValues(lambda x, c=collective: c((w.value * x).sum()), vc)
        run = bridge.Parallel(lambda x, gv=gv: gv(x)[0][0], vc, reduce=lambda v: v)
        with vc.replicate():
            out[name] = run(jnp.arange(8.0))
    return {"parallel": out,
            "reference": {"psum": N * np.arange(8.0), "pmean": np.arange(8.0)}}


def indivisible_batch():
    w = bridge.TrainVar(jnp.zeros(3))
    vc = bridge.VarCollection({"w": w})
    run = bridge.Parallel(lambda x: w.assign(w.value + x.sum(0)), vc)
    with vc.replicate():
        before = w.value
        try:
            run({"images": jnp.ones((12, 3))})
            message = None
        except ValueError as error:
            message = str(error)
        unchanged = w.value is before
    return {"message": message, "unchanged": unchanged}


SCENARIOS = [concat_inference, reducers, multiple_outputs, broadcast_scalars, static_arguments,
             keyword_arguments, batchnorm_eval, batchnorm_train, jit_of_parallel,
             synced_batchnorm_train, training_step, ema, random_state, assign_inside,
             collectives, collective_gradients, indivisible_batch]


def main():
    results = {"devices": jax.local_device_count()}
    for scenario in SCENARIOS:
        try:
            results[scenario.__name__] = _json(scenario())
        except Exception:  # reported to the test that reads this scenario
            results[scenario.__name__] = {"error": traceback.format_exc()}
    print(json.dumps(results))


if __name__ == "__main__":
    main()
