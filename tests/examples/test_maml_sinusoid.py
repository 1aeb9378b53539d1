"""The MAML sinusoid example (``examples/maml_sinusoid.py``), run short, and the MAML
meta-gradient written three ways (object style, ``bridge.pure``, plain JAX).

The full reproduction (70,000 meta-iterations, 1,000 test tasks) is run by hand; its
numbers are in ``docs/maml.md``.
"""

import importlib.util
import io
import pathlib

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import bridge

EXAMPLE = pathlib.Path(__file__).resolve().parents[2] / "examples" / "maml_sinusoid.py"


@pytest.fixture(scope="module")
def example():
    spec = importlib.util.spec_from_file_location("maml_sinusoid_example", EXAMPLE)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_command_line_run_scores_and_plots(example, tmp_path, capsys):
    """The fast variant of the slow short runs: ``main`` with tiny settings (object style,
    first order, 40 meta-iterations); the scores come back and the plot is a PNG."""
    png = tmp_path / "maml.png"
    result = example.main(["--steps", "40", "--style", "object", "--order", "first",
                           "--eval-tasks", "20", "--log-every", "20", "--out", str(png)])
    assert list(result["mse"]) == ["object/first"]
    mse = result["mse"]["object/first"]
    assert sorted(mse) == [0, 1, 10] and all(np.isfinite(v) for v in mse.values())
    assert result["png"] == str(png)
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    # (the progress lines go to the sys.stdout of import time, run()'s default `out`)
    assert "mean query MSE after 0 / 1 / 10" in capsys.readouterr().out


@pytest.fixture(scope="module")
def short_run(example):
    """300 meta-iterations of every style and order, scored on 100 test tasks."""
    log = io.StringIO()
    rows = example.run(["object", "pure"], ["second", "first"], iterations=300, seed=0,
                       eval_tasks=100, log_every=100, plot_path=None, out=log)
    return rows, log.getvalue()


@pytest.mark.slow  # over 15 s on 2 CPU cores (the short_run fixture: ~30 s)
def test_short_run_trains_and_adaptation_helps(example, short_run):
    rows, log = short_run
    assert [(r.style, r.order) for r, _ in rows] == [
        ("object", "second"), ("pure", "second"), ("object", "first"), ("pure", "first")]
    for result, ev in rows:
        mses = ev.mean
        assert result.losses.shape == (300,)
        assert np.isfinite(result.losses).all()
        assert result.losses[-50:].mean() < 0.9 * result.losses[:50].mean(), (result.style,
                                                                         result.order)
        assert sorted(mses) == [0, 1, 10]
        assert mses[1] < mses[0] and mses[10] < mses[0], (result.style, result.order, mses)
    # progress lines, one per 100 iterations and run, each with the validation figures
    assert log.count("meta-loss") == 12
    assert log.count("validation MSE@0/1/10") == 12


@pytest.mark.slow  # over 15 s on 2 CPU cores (the short_run fixture: ~30 s)
def test_both_styles_follow_the_same_trajectory(short_run):
    """Same initial weights, same meta-batches: object and pure runs stay together."""
    rows, _ = short_run
    by_key = {(r.style, r.order): (r, m) for r, m in rows}
    for order in ("second", "first"):
        (obj, obj_mse), (pure, pure_mse) = by_key["object", order], by_key["pure", order]
        np.testing.assert_allclose(obj.losses, pure.losses, rtol=1e-3, atol=1e-5)
        for a, b in zip(jax.tree_util.tree_leaves(obj.params),
                        jax.tree_util.tree_leaves(pure.params)):
            np.testing.assert_allclose(a, b, rtol=1e-3, atol=1e-4)
        for s in (0, 1, 10):
            assert obj_mse.mean[s] == pytest.approx(pure_mse.mean[s], rel=1e-3)
        assert obj_mse.diverged == pure_mse.diverged


@pytest.mark.slow  # over 15 s on 2 CPU cores (the short_run fixture: ~30 s)
def test_table_lists_every_run_beside_the_reference_median(example, short_run):
    rows, _ = short_run
    text = example.table(rows)
    lines = text.splitlines()
    assert len(lines) == 1 + len(rows)
    assert "MSE@10" in lines[0] and "ref@1" in lines[0]
    assert lines[1].split()[:2] == ["object", "second"]
    # the medians over the reference's seeds 0-3: 0.346 (second), 0.385 (first) at 1 step
    assert "0.346" in lines[1] and "0.385" in lines[3]
    assert "diverged" in lines[0]


def test_reference_is_specs_median_over_seeds_0_to_3(example):
    """The product specification's figures (quoted in docs/maml.md): medians 3.029 / 0.346 /
    0.099 (second order) and 3.127 / 0.385 / 0.111 (first order)."""
    assert sorted(example.REFERENCE_SEEDS["second"]) == [0, 1, 2, 3]
    np.testing.assert_allclose(example.REFERENCE["second"], (3.029, 0.346, 0.099), atol=6e-4)
    np.testing.assert_allclose(example.REFERENCE["first"], (3.127, 0.385, 0.111), atol=6e-4)


@pytest.mark.slow  # over 15 s on 2 CPU cores (the short_run fixture: ~30 s)
def test_plot_is_written(example, short_run, tmp_path):
    pytest.importorskip("matplotlib")
    rows, _ = short_run
    path = tmp_path / "maml.png"
    example.plot([r for r, _ in rows[:2]], str(path), n_tasks=2)
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


@pytest.mark.slow  # over 15 s on 2 CPU cores
def test_training_several_seeds_at_once_matches_each_seed_alone(example):
    """``--seeds``: one vmapped run per seed follows that seed's own single run."""
    together = example.train_pure_seeds("first", [0, 3], iterations=40, log_every=20,
                                        out=None)
    for seed, joint in zip([0, 3], together):
        alone = example.train_pure("first", iterations=40, seed=seed, log_every=20, out=None)
        np.testing.assert_allclose(joint.losses, alone.losses, rtol=1e-4, atol=1e-6)
        for a, b in zip(jax.tree_util.tree_leaves(joint.params),
                        jax.tree_util.tree_leaves(alone.params)):
            np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-5)
    assert not np.allclose(together[0].losses, together[1].losses)


def test_seeds_table_gives_the_median_beside_the_reference_median(example):
    def evaluation(m0, m1, m10, diverged=0):
        return example.Evaluation({0: m0, 1: m1, 10: m10}, {}, diverged)

    # first-order reference: median 3.1265 / 0.385 / 0.111 over its seeds 0-3
    evs = [evaluation(3.1, 0.40, 0.20), evaluation(5.0, 0.41, 0.11, diverged=2),
           evaluation(3.2, 0.90, 0.12)]
    lines = example.seeds_table([3, 4, 5], {("pure", "first"): evs}).splitlines()
    assert [line.split()[2] for line in lines[1:]] == ["3", "4", "5", "median"]
    # seed 3 is shown beside the reference's seed 3; seed 4 has no reference run
    assert lines[1].split()[3:10] == ["3.100", "0.400", "0.200", "0", "|", "3.109", "0.356"]
    assert lines[2].split()[3:8] == ["5.000", "0.410", "0.110", "2", "|"]
    assert lines[2].split()[8:] == ["|"]
    median = lines[4].split()
    assert median[3:6] == ["3.200", "0.410", "0.120"]
    assert median[7:10] == ["3.127", "0.385", "0.111"]
    # (3.2 - 3.1265) / 3.1265, (0.41 - 0.385) / 0.385, (0.12 - 0.111) / 0.111
    assert median[11:14] == ["+2.4%", "+6.5%", "+8.1%"]
    assert lines[4].endswith("within 15%: yes")


def test_seeds_table_says_no_when_one_figure_is_off_by_more_than_15_percent(example):
    evs = [example.Evaluation({0: 3.03, 1: 0.346, 10: 0.2}, {}, 0)]
    lines = example.seeds_table([0], {("object", "second"): evs}).splitlines()
    assert lines[-1].endswith("within 15%: no")


@pytest.mark.slow  # over 15 s on 2 CPU cores
def test_object_seeds_one_after_the_other_follow_the_pure_seeds_at_once(example):
    """``--seeds --vmap-seeds`` with both styles: every (style, order) has one evaluation
    per seed, and the object runs land where the vmapped pure runs of the same seeds do."""
    evaluations = example.run_seeds(["first"], [0, 2], iterations=40, eval_tasks=100,
                                    log_every=40, out=io.StringIO(),
                                    styles=["pure", "object"], vmap_seeds=True)
    assert list(evaluations) == [("pure", "first"), ("object", "first")]
    for pure, obj in zip(evaluations["pure", "first"], evaluations["object", "first"]):
        for s in (0, 1, 10):
            assert obj.mean[s] == pytest.approx(pure.mean[s], rel=1e-3)
    seed0, seed2 = evaluations["pure", "first"]
    assert seed0.mean[0] != pytest.approx(seed2.mean[0], rel=1e-3)


@pytest.mark.slow  # 9-28 s on 2 loaded CPU cores
def test_seeds_one_after_the_other_are_the_single_seed_runs(example):
    """Without ``--vmap-seeds`` each pure run of ``--seeds`` is the run ``--seed s`` makes,
    digit for digit, and so is the object run of the same seed."""
    evaluations = example.run_seeds(["second"], [1], iterations=40, eval_tasks=100,
                                    log_every=40, out=io.StringIO(),
                                    styles=["pure", "object"])
    alone = example.evaluate(example.train_pure("second", 40, 1, 40, io.StringIO()).params,
                             100)
    # (after 40 iterations ten steps may still diverge: NaN compares equal here)
    np.testing.assert_array_equal(list(evaluations["pure", "second"][0].mean.values()),
                                  list(alone.mean.values()))
    np.testing.assert_allclose(list(evaluations["object", "second"][0].mean.values()),
                               list(alone.mean.values()), rtol=1e-5)


@pytest.mark.parametrize("text, seeds", [("3", [3]), ("0-3", [0, 1, 2, 3]),
                                         ("0,2,5-6", [0, 2, 5, 6])])
def test_parse_seeds(example, text, seeds):
    assert example.parse_seeds(text) == seeds


def test_initial_weights_are_the_references_he_normal_with_zero_biases(example):
    """The reference's init, ``normal(key, (nin, nout)) * sqrt(2 / nin)`` and zero biases,
    with one key per layer from ``bridge.random.Generator(seed)``."""
    for seed in (0, 5):
        params = example.init_params(seed)
        generator = bridge.random.Generator(seed)
        assert [(p["w"].shape, p["b"].shape) for p in params] == [
            ((1, 40), (40,)), ((40, 40), (40,)), ((40, 1), (1,))]
        for layer in params:
            nin, nout = layer["w"].shape
            expected = jax.random.normal(generator(), (nin, nout)) * jnp.sqrt(2.0 / nin)
            np.testing.assert_allclose(layer["w"], expected, rtol=1e-6)
            np.testing.assert_array_equal(layer["b"], np.zeros(nout))


def test_object_model_starts_from_the_pure_initial_weights(example):
    model = example.build_model(3)
    for a, b in zip(model.vars().tensors(), jax.tree_util.tree_leaves(example.init_params(3))):
        np.testing.assert_array_equal(a, b)


def test_torch_init_draws_weights_and_biases_uniform_in_one_over_sqrt_fan_in(example):
    params = example.init_params(0, init="torch")
    assert [(p["w"].shape, p["b"].shape) for p in params] == [
        ((1, 40), (40,)), ((40, 40), (40,)), ((40, 1), (1,))]
    for layer in params:
        bound = 1 / np.sqrt(layer["w"].shape[0])
        for leaf in (layer["w"], layer["b"]):
            assert float(jnp.abs(leaf).max()) <= bound
    # first layer: the ReLU kinks -b/w are spread out, not all at x = 0
    kinks = -params[0]["b"] / params[0]["w"][0]
    assert float(jnp.std(kinks)) > 0.3
    for a, b in zip(example.build_model(0, init="torch").vars().tensors(),
                    jax.tree_util.tree_leaves(params)):
        np.testing.assert_array_equal(a, b)


def test_unknown_init_is_refused(example):
    with pytest.raises(ValueError, match="init must be one of"):
        example.build_model(0, init="glorot")


def test_meta_batch_and_evaluation_protocol(example):
    xs, ys, xq, yq = example.sample_meta_batch(jax.random.PRNGKey(0))
    assert xs.shape == ys.shape == (25, 10, 1) and xq.shape == yq.shape == (25, 10, 1)
    assert float(xs.min()) >= -5 and float(xs.max()) <= 5
    tasks, es, eys, eq, eyq = example.sample_eval_tasks(7, seed=5)
    assert es.shape == (7, 10, 1) and eq.shape == (7, 100, 1)
    assert (tasks.amplitude >= 0.1).all() and (tasks.amplitude <= 5).all()
    assert (tasks.phase >= 0).all() and (tasks.phase <= np.pi).all()
    np.testing.assert_allclose(eyq, tasks.amplitude[:, None, None]
                               * np.sin(eq + tasks.phase[:, None, None]), rtol=1e-6)
    # the same test tasks every time
    np.testing.assert_array_equal(example.sample_eval_tasks(7, seed=5)[1], es)

    # MSE after 0 and 1 steps computed by hand: SGD with alpha = 0.01 on the support set.
    params = example.init_params(3)
    curve = example.query_mse(params, es, eys, eq, eyq, steps=1)

    def forward(p, x):
        h = jax.nn.relu(x @ p[0]["w"] + p[0]["b"])
        h = jax.nn.relu(h @ p[1]["w"] + p[1]["b"])
        return h @ p[2]["w"] + p[2]["b"]

    def loss(p, x, y):
        return jnp.mean((forward(p, x) - y) ** 2)

    @jax.jit
    def by_hand(xs, ys, xq, yq):
        g = jax.grad(loss)(params, xs, ys)
        adapted = jax.tree_util.tree_map(lambda p, d: p - 0.01 * d, params, g)
        return loss(params, xq, yq), loss(adapted, xq, yq)

    per_task = np.array([by_hand(es[t], eys[t], eq[t], eyq[t]) for t in range(7)])
    np.testing.assert_allclose(curve, per_task, rtol=1e-5)


# ----- the meta-gradient, written independently of the example -------------------------------
ALPHA = 0.01


def make_batch(seed, tasks=5, k=10):
    rng = np.random.default_rng(seed)
    amp = rng.uniform(0.1, 5, (tasks, 1, 1))
    phase = rng.uniform(0, np.pi, (tasks, 1, 1))
    xs, xq = rng.uniform(-5, 5, (2, tasks, k, 1))
    f = lambda x: amp * np.sin(x + phase)
    return [jnp.asarray(a, jnp.float32) for a in (xq, f(xq), xs, f(xs))]


def object_meta_gradient(model, first_order):
    """The Objax guide's vectorized pairwise nested loss, and its gradient."""
    train_vars = model.vars().subset(bridge.TrainVar)

    @bridge.Function.with_vars(model.vars())
    def loss(x, y):
        return ((model(x) - y) ** 2).mean()

    gradient_loss = bridge.GradValues(loss, train_vars)

    @bridge.Function.with_vars(model.vars())
    def nested_loss(x1, y1, x2, y2, mu):
        original_values = train_vars.tensors()
        grads = gradient_loss(x2, y2)[0]
        if first_order:
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

    return bridge.Jit(bridge.GradValues(nested_pairwise_loss, model.vars()))


def plain_forward(params, x):
    b0, w0, b1, w1, b2, w2 = params
    h = jax.nn.relu(x @ w0 + b0)
    h = jax.nn.relu(h @ w1 + b1)
    return h @ w2 + b2


def plain_mse(params, x, y):
    return jnp.mean((plain_forward(params, x) - y) ** 2)


def plain_maml_loss(params, xq, yq, xs, ys, first_order):
    """MAML by hand: per task one SGD step on the support set, loss on the query set."""
    def task(xq, yq, xs, ys):
        g = jax.grad(plain_mse)(params, xs, ys)
        if first_order:
            g = jax.lax.stop_gradient(g)
        return plain_mse([p - ALPHA * d for p, d in zip(params, g)], xq, yq)

    return jax.vmap(task)(xq, yq, xs, ys).mean()


@pytest.mark.parametrize("first_order", [False, True], ids=["second", "first"])
def test_object_pure_and_plain_jax_meta_gradients_agree(first_order):
    bridge.random.DEFAULT_GENERATOR.seed(7)
    model = bridge.nn.Sequential([bridge.nn.Linear(1, 40), bridge.functional.relu,
                                  bridge.nn.Linear(40, 40), bridge.functional.relu,
                                  bridge.nn.Linear(40, 1)])
    xq, yq, xs, ys = make_batch(0)
    flat = model.vars().tensors()  # b0, w0, b1, w1, b2, w2

    g_object, v_object = object_meta_gradient(model, first_order)(xq, yq, xs, ys, ALPHA)

    params = [{"b": b, "w": w} for b, w in zip(flat[0::2], flat[1::2])]

    def pure_mse(p, x, y):
        return plain_mse(jax.tree_util.tree_leaves(p), x, y)

    pure_loss = bridge.pure.pairwise_nested_loss(pure_mse, ALPHA, first_order=first_order)
    v_pure, g_pure = jax.jit(jax.value_and_grad(pure_loss))(params, xq, yq, xs, ys)

    v_plain, g_plain = jax.jit(jax.value_and_grad(plain_maml_loss), static_argnums=5)(
        flat, xq, yq, xs, ys, first_order)

    np.testing.assert_allclose(v_object[0], v_plain, rtol=1e-5)
    np.testing.assert_allclose(v_pure, v_plain, rtol=1e-5)
    assert len(g_object) == 6
    for ours, theirs, plain in zip(g_object, jax.tree_util.tree_leaves(g_pure), g_plain):
        assert ours.shape == plain.shape
        np.testing.assert_allclose(ours, theirs, rtol=1e-5, atol=1e-5)
        np.testing.assert_allclose(ours, plain, rtol=1e-5, atol=1e-5)
        np.testing.assert_allclose(theirs, plain, rtol=1e-5, atol=1e-5)
    # the model's weights are restored by the nested loss
    for before, after in zip(flat, model.vars().tensors()):
        np.testing.assert_array_equal(before, after)


def test_first_and_second_order_meta_gradients_differ():
    """The second-order terms are really there, so the agreement above tests both orders."""
    keys = jax.random.split(jax.random.PRNGKey(0), 3)
    shapes = [(1, 40), (40, 40), (40, 1)]
    params = []
    for key, (nin, nout) in zip(keys, shapes):
        params += [jnp.zeros(nout), jax.random.normal(key, (nin, nout)) * (2 / (nin + nout)) ** 0.5]
    batch = make_batch(1)
    meta_grad = jax.jit(jax.grad(plain_maml_loss), static_argnums=5)
    second = meta_grad(params, *batch, False)
    first = meta_grad(params, *batch, True)
    diff = max(float(jnp.abs(a - b).max()) for a, b in zip(second, first))
    assert diff > 1e-3


def test_default_test_tasks_are_the_reference_scripts(example):
    """Drawn as the reference draws them (``sample(PRNGKey(123), 1000, K + 100)`` in
    maml_sine_reference.py, written out here independently)."""
    ka, kp, kx = jax.random.split(jax.random.PRNGKey(123), 3)
    amp = jax.random.uniform(ka, (1000, 1, 1), minval=0.1, maxval=5.0)
    phase = jax.random.uniform(kp, (1000, 1, 1), minval=0.0, maxval=jnp.pi)
    x = jax.random.uniform(kx, (1000, 110, 1), minval=-5.0, maxval=5.0)
    y = amp * jnp.sin(x + phase)
    _, xs, ys, xq, yq = example.sample_eval_tasks(1000)
    for ours, theirs in [(xs, x[:, :10]), (ys, y[:, :10]), (xq, x[:, 10:]), (yq, y[:, 10:])]:
        np.testing.assert_array_equal(ours, theirs)
