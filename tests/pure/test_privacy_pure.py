"""``bridge.pure.clipped_grad`` against DP-SGD written out by hand with ``jax.vmap(jax.grad)``.

The reference materialises one gradient per microbatch, clips each to norm ``C`` with
``C / max(norm, C)`` (global norm over all leaves), and averages: exactly the definition.
The function under test must agree to 1e-5 whichever way it computes the norms.
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from bridge.pure import _privacy, clipped_grad
from bridge.pure._privacy import plan

TOL = dict(rtol=1e-5, atol=1e-5)


# ----------------------------------------------------------------------------- reference

@functools.partial(jax.jit, static_argnums=(0, 3, 4, 5))
def reference(loss, params, data, clip, microbatch=1, axes=None):
    """Mean of the clipped per-microbatch gradients, and the mean per-microbatch loss."""
    axes = axes or (0,) * len(data)

    def group(x, a):
        if a is None:
            return x
        shape = x.shape[:a] + (x.shape[a] // microbatch, microbatch) + x.shape[a + 1:]
        return x.reshape(shape)

    grouped = [group(x, a) for x, a in zip(data, axes)]
    losses, grads = jax.vmap(jax.value_and_grad(loss), in_axes=(None, *axes))(params, *grouped)
    leaves, tree = jax.tree_util.tree_flatten(grads)
    norms = jnp.sqrt(sum(jnp.sum(g.reshape(g.shape[0], -1) ** 2, axis=1) for g in leaves))
    factor = clip / jnp.maximum(norms, clip)
    mean = [jnp.mean(g * factor.reshape((-1,) + (1,) * (g.ndim - 1)), axis=0) for g in leaves]
    return jax.tree_util.tree_unflatten(tree, mean), losses.mean(), norms


def assert_trees_close(a, b, **tol):
    la, ta = jax.tree_util.tree_flatten(a)
    lb, tb = jax.tree_util.tree_flatten(b)
    assert ta == tb
    for x, y in zip(la, lb):
        np.testing.assert_allclose(np.asarray(x), np.asarray(y), **(tol or TOL))


@pytest.fixture
def no_materialization(monkeypatch):
    """Fail if the plain ``vmap(grad)`` path runs."""

    def boom(*args, **kwargs):
        raise AssertionError("the materialised path ran")

    monkeypatch.setattr(_privacy, "_clipped_materialized", boom)


# ----------------------------------------------------------------------------- models

def mlp_params(sizes=(20, 16, 16, 5), seed=0):
    keys = jax.random.split(jax.random.PRNGKey(seed), len(sizes) - 1)
    return [{"w": jax.random.normal(k, (a, b)) / np.sqrt(a), "b": 0.1 * jnp.ones(b)}
            for k, a, b in zip(keys, sizes[:-1], sizes[1:])]


def mlp(params, x):
    for i, layer in enumerate(params):
        x = x @ layer["w"] + layer["b"]
        if i < len(params) - 1:
            x = jax.nn.relu(x)
    return x


def mlp_loss(params, x, y):
    return optax.softmax_cross_entropy_with_integer_labels(mlp(params, x), y).mean()


def mlp_data(batch=32, nin=20, nout=5, seed=1):
    kx, ky = jax.random.split(jax.random.PRNGKey(seed))
    return 3 * jax.random.normal(kx, (batch, nin)), jax.random.randint(ky, (batch,), 0, nout)


# ----------------------------------------------------------------------------- fast path

@pytest.mark.parametrize("clip", [0.5, 7.0, 1e3])
def test_mlp_matches_reference(clip, no_materialization):
    params, (x, y) = mlp_params(), mlp_data()
    grads, (value,) = jax.jit(clipped_grad(mlp_loss, clip))(params, x, y)
    expected, loss, norms = reference(mlp_loss, params, (x, y), clip)
    assert_trees_close(grads, expected)
    np.testing.assert_allclose(value, loss, **TOL)
    if clip == 7.0:   # the test data makes some examples clipped and others not
        assert (norms > clip).any() and (norms < clip).any()


def test_mlp_outside_jit_matches_reference(no_materialization):
    params, (x, y) = mlp_params(), mlp_data()
    grads, _ = clipped_grad(mlp_loss, 0.5)(params, x, y)
    assert_trees_close(grads, reference(mlp_loss, params, (x, y), 0.5)[0])


def test_plan_reports_dense_kernels_as_outer():
    params, (x, y) = mlp_params(), mlp_data()
    kinds = plan(mlp_loss, params, x, y)
    assert [k["w"] for k in kinds] == ["outer"] * 3
    assert [k["b"] for k in kinds] == ["materialize"] * 3


def test_materialize_method_matches_reference():
    params, (x, y) = mlp_params(), mlp_data()
    grads, _ = jax.jit(clipped_grad(mlp_loss, 0.5, method="materialize"))(params, x, y)
    assert_trees_close(grads, reference(mlp_loss, params, (x, y), 0.5)[0])


@pytest.mark.parametrize("microbatch", [2, 4, 8])
def test_microbatches_match_reference(microbatch, no_materialization):
    # microbatch 8 with the 16 -> 5 layer takes the per-layer einsum branch
    # (8 * (16 + 5) > 16 * 5); smaller microbatches use Gram matrices.
    params, (x, y) = mlp_params(), mlp_data()
    grads, (value,) = jax.jit(clipped_grad(mlp_loss, 4.0, microbatch=microbatch))(params, x, y)
    expected, loss, norms = reference(mlp_loss, params, (x, y), 4.0, microbatch)
    assert norms.shape == (32 // microbatch,)
    assert_trees_close(grads, expected)
    np.testing.assert_allclose(value, loss, **TOL)


def test_sequence_inputs_use_gram_matrices(no_materialization):
    # one example is a sequence of 6 tokens: the kernel's per-example gradient is a sum
    # of 6 outer products, not one.
    w = jax.random.normal(jax.random.PRNGKey(0), (8, 3))
    x = jax.random.normal(jax.random.PRNGKey(1), (10, 6, 8))

    def loss(p, x):
        return jnp.mean(jnp.tanh(x @ p["w"]) ** 2)

    assert plan(loss, {"w": w}, x) == {"w": "outer"}
    grads, _ = jax.jit(clipped_grad(loss, 0.1))({"w": w}, x)
    assert_trees_close(grads, reference(loss, {"w": w}, (x,), 0.1)[0])


def test_kernel_on_the_left_and_several_contracted_dims(no_materialization):
    k1, k2, k3 = jax.random.split(jax.random.PRNGKey(0), 3)
    params = {"left": jax.random.normal(k1, (4, 3, 5)), "multi": jax.random.normal(k2, (3, 5, 2))}
    x = jax.random.normal(k3, (12, 3, 5))

    def loss(p, x):
        h = jnp.einsum("oij,bij->bo", p["left"], x)             # kernel is the lhs
        z = jnp.tensordot(x * h.sum(-1)[:, None, None], p["multi"], axes=2)   # (b, 2)
        return jnp.mean(jnp.sin(h).sum(-1) + jnp.cos(z).sum(-1))

    assert plan(loss, params, x) == {"left": "outer", "multi": "outer"}
    for m in (1, 3):
        grads, _ = jax.jit(clipped_grad(loss, 0.2, microbatch=m))(params, x)
        assert_trees_close(grads, reference(loss, params, (x,), 0.2, m)[0])


def test_product_of_two_parameters(no_materialization):
    # both operands of ``a @ b`` are parameters: one perturbation, two dense leaves.
    k1, k2, k3 = jax.random.split(jax.random.PRNGKey(2), 3)
    params = {"a": jax.random.normal(k1, (4, 3)), "b": jax.random.normal(k2, (3, 5))}
    x = jax.random.normal(k3, (10, 4))

    def loss(p, x):
        return jnp.mean(jnp.tanh(x @ (p["a"] @ p["b"])) ** 2)

    assert plan(loss, params, x) == {"a": "outer", "b": "outer"}
    grads, _ = jax.jit(clipped_grad(loss, 0.3))(params, x)
    assert_trees_close(grads, reference(loss, params, (x,), 0.3)[0])


def test_dense_layer_inside_a_jitted_helper_is_recognised(no_materialization):
    @jax.jit
    def dense(x, w):
        return x @ w

    params, (x, y) = mlp_params(), mlp_data()

    def loss(p, x, y):
        h = jax.nn.relu(dense(x, p[0]["w"]) + p[0]["b"])
        h = jax.nn.relu(dense(h, p[1]["w"]) + p[1]["b"])
        return optax.softmax_cross_entropy_with_integer_labels(dense(h, p[2]["w"]), y).mean()

    assert [k["w"] for k in plan(loss, params, x, y)] == ["outer"] * 3
    grads, _ = jax.jit(clipped_grad(loss, 0.5))(params, x, y)
    assert_trees_close(grads, reference(loss, params, (x, y), 0.5)[0])


# ----------------------------------------------------------------------------- fallbacks

def conv_params(seed=0):
    k1, k2 = jax.random.split(jax.random.PRNGKey(seed))
    return {"conv": 0.3 * jax.random.normal(k1, (3, 3, 2, 4)),   # HWIO
            "dense": 0.1 * jax.random.normal(k2, (4 * 6 * 6, 3)), "scale": jnp.ones(3)}


def conv_loss(p, x, y):
    h = jax.lax.conv_general_dilated(x, p["conv"], (1, 1), "SAME",
                                     dimension_numbers=("NCHW", "HWIO", "NCHW"))
    logits = (jax.nn.relu(h).reshape(h.shape[0], -1) @ p["dense"]) * p["scale"]
    return optax.softmax_cross_entropy_with_integer_labels(logits, y).mean()


@pytest.mark.parametrize("microbatch", [1, 2])
def test_ineligible_leaves_are_materialised_and_exact(microbatch, no_materialization):
    params = conv_params()
    x = jax.random.normal(jax.random.PRNGKey(5), (8, 2, 6, 6))
    y = jnp.arange(8) % 3
    assert plan(conv_loss, params, x, y) == {"conv": "materialize", "dense": "outer",
                                             "scale": "materialize"}
    grads, _ = jax.jit(clipped_grad(conv_loss, 0.4, microbatch=microbatch))(params, x, y)
    assert_trees_close(grads, reference(conv_loss, params, (x, y), 0.4, microbatch)[0])


def test_shared_weight_is_not_treated_as_one_layer(no_materialization):
    # ``w`` is used twice (tied weights): its gradient is a sum of two outer products.
    k1, k2 = jax.random.split(jax.random.PRNGKey(3))
    params = {"w": jax.random.normal(k1, (5, 5)) / 3, "v": jax.random.normal(k2, (5, 2))}
    x = jax.random.normal(jax.random.PRNGKey(4), (16, 5))

    def loss(p, x):
        return jnp.mean(jnp.tanh(jnp.tanh(x @ p["w"]) @ p["w"].T @ p["v"]) ** 2)

    assert plan(loss, params, x) == {"w": "materialize", "v": "outer"}
    grads, _ = jax.jit(clipped_grad(loss, 0.05))(params, x)
    assert_trees_close(grads, reference(loss, params, (x,), 0.05)[0])


def test_no_eligible_leaf_falls_back_to_vmap_grad(monkeypatch):
    calls = []
    original = _privacy._clipped_materialized

    def spy(*args, **kwargs):
        calls.append(1)
        return original(*args, **kwargs)

    monkeypatch.setattr(_privacy, "_clipped_materialized", spy)
    params = {"a": jnp.array([0.5, -1.0, 2.0]), "unused": jnp.ones(2)}
    x = jax.random.normal(jax.random.PRNGKey(0), (10, 3))

    def loss(p, x):
        return jnp.mean(jnp.sin(x * p["a"]).sum(-1))

    assert plan(loss, params, x) == {"a": "materialize", "unused": "unused"}
    grads, _ = jax.jit(clipped_grad(loss, 0.3))(params, x)
    assert calls == [1]
    assert_trees_close(grads, reference(loss, params, (x,), 0.3)[0])


def test_unused_leaf_gets_zero_gradient(no_materialization):
    params = {"w": jnp.ones((3, 2)), "unused": jnp.ones(4)}
    x = jax.random.normal(jax.random.PRNGKey(0), (6, 3))
    loss = lambda p, x: jnp.mean((x @ p["w"]) ** 2)
    grads, _ = jax.jit(clipped_grad(loss, 0.5))(params, x)
    np.testing.assert_array_equal(grads["unused"], np.zeros(4))
    assert_trees_close(grads, reference(loss, params, (x,), 0.5)[0])


# ----------------------------------------------------------------------------- arguments

def test_batch_axis_and_unbatched_arguments(no_materialization):
    params, (x, y) = mlp_params(), mlp_data(batch=12)
    scale = jnp.float32(0.7)

    def loss(p, xt, s, y):          # xt: features first, batch on axis 1
        return mlp_loss(p, xt.T * s, y)

    grads, _ = jax.jit(clipped_grad(loss, 0.5, microbatch=3, batch_axis=(1, None, 0)))(
        params, x.T, scale, y)
    expected = reference(lambda p, x, y: mlp_loss(p, x * scale, y), params, (x, y), 0.5, 3)[0]
    assert_trees_close(grads, expected)


def test_extra_values_are_averaged_and_aux_is_per_microbatch():
    params, (x, y) = mlp_params(), mlp_data(batch=8)

    def loss(p, x, y):
        logits = mlp(p, x)
        l = optax.softmax_cross_entropy_with_integer_labels(logits, y).mean()
        return (l, jnp.argmax(logits, -1).astype(jnp.float32).mean()), {"first": x[0, 0]}

    for method in ("auto", "materialize"):
        g = jax.jit(clipped_grad(loss, 1.0, microbatch=2, has_aux=True, method=method))
        grads, (l, acc), aux = g(params, x, y)
        logits = mlp(params, x)
        np.testing.assert_allclose(
            l, optax.softmax_cross_entropy_with_integer_labels(logits, y).mean(), **TOL)
        np.testing.assert_allclose(acc, jnp.argmax(logits, -1).mean(), **TOL)
        np.testing.assert_array_equal(aux["first"], x[::2, 0])


def test_errors():
    params, (x, y) = mlp_params(), mlp_data(batch=10)
    with pytest.raises(TypeError, match="scalar"):
        clipped_grad(lambda p, x, y: mlp(p, x), 1.0)(params, x, y)
    with pytest.raises(ValueError, match="multiple of microbatch"):
        clipped_grad(mlp_loss, 1.0, microbatch=4)(params, x, y)
    with pytest.raises(ValueError, match="key"):
        clipped_grad(mlp_loss, 1.0, noise_multiplier=1.0)(params, x, y)
    with pytest.raises(ValueError, match="batch_axis"):
        clipped_grad(mlp_loss, 1.0, batch_axis=(0,))(params, x, y)
    with pytest.raises(ValueError, match="l2_norm_clip"):
        clipped_grad(mlp_loss, -1.0)
    with pytest.raises(ValueError, match="method"):
        clipped_grad(mlp_loss, 1.0, method="ghost")


# ----------------------------------------------------------------------------- noise

def test_zero_noise_multiplier_is_exact():
    params, (x, y) = mlp_params(), mlp_data()
    key = jax.random.PRNGKey(0)
    exact, _ = jax.jit(clipped_grad(mlp_loss, 0.5))(params, x, y)
    zero, _ = jax.jit(clipped_grad(mlp_loss, 0.5, noise_multiplier=0.0))(params, x, y, key=key)
    for a, b in zip(jax.tree_util.tree_leaves(exact), jax.tree_util.tree_leaves(zero)):
        np.testing.assert_array_equal(a, b)


@pytest.mark.parametrize("microbatch", [1, 4])
def test_noise_standard_deviation_and_keys(microbatch):
    # 784 * 256 kernel entries give a precise estimate of the noise std.
    w = jax.random.normal(jax.random.PRNGKey(0), (784, 64)) / 28
    x = jax.random.normal(jax.random.PRNGKey(1), (32, 784))
    loss = lambda p, x: jnp.mean(jnp.tanh(x @ p["w"]) ** 2)
    clip, z = 0.5, 2.0
    g = jax.jit(clipped_grad(loss, clip, microbatch=microbatch, noise_multiplier=z))
    exact, _ = jax.jit(clipped_grad(loss, clip, microbatch=microbatch))({"w": w}, x)
    noisy1, _ = g({"w": w}, x, key=jax.random.PRNGKey(1))
    noisy2, _ = g({"w": w}, x, key=jax.random.PRNGKey(2))
    again, _ = g({"w": w}, x, key=jax.random.PRNGKey(1))
    noise = noisy1["w"] - exact["w"]
    expected_std = z * clip / (32 // microbatch)
    assert abs(float(noise.std()) / expected_std - 1) < 0.02
    assert abs(float(noise.mean())) < 0.02 * expected_std
    assert not np.allclose(noisy1["w"], noisy2["w"])
    np.testing.assert_array_equal(noisy1["w"], again["w"])


def test_new_style_keys_are_accepted():
    params, (x, y) = mlp_params(), mlp_data()
    g = jax.jit(clipped_grad(mlp_loss, 0.5, noise_multiplier=1.0))
    grads, _ = g(params, x, y, key=jax.random.key(0))
    assert all(jnp.isfinite(leaf).all() for leaf in jax.tree_util.tree_leaves(grads))


# ----------------------------------------------------------------------------- the noise tensor
# ``_privacy._noise(like, key, stddev)`` is the noise ``clipped_grad`` adds for ``key``: the
# noised gradient must be the materialised computation plus exactly that tensor.

@pytest.mark.parametrize("method", ["auto", "materialize"])
@pytest.mark.parametrize("microbatch", [1, 4])
@pytest.mark.parametrize("jit", [False, True])
def test_noised_gradient_is_materialised_reference_plus_the_same_noise(method, microbatch, jit):
    params, (x, y) = mlp_params(), mlp_data()
    clip, z = 0.5, 1.3
    key = jax.random.PRNGKey(3)
    g = clipped_grad(mlp_loss, clip, microbatch=microbatch, noise_multiplier=z, method=method)
    g = jax.jit(g) if jit else g
    noisy, _ = g(params, x, y, key=key)
    exact, _, _ = reference(mlp_loss, params, (x, y), clip, microbatch)
    noise = _privacy._noise(params, key, z * clip / (32 // microbatch))
    assert_trees_close(noisy, jax.tree_util.tree_map(jnp.add, exact, noise))
    # the noise is not negligible next to the tolerance: the check has teeth
    assert min(float(jnp.abs(n).max()) for n in jax.tree_util.tree_leaves(noise)) > 1e-3


def test_noise_is_the_same_eagerly_and_under_jit():
    # Same random bits and grid; XLA may fuse the final scaling differently (an ulp).
    params = mlp_params()
    key = jax.random.PRNGKey(11)
    eager = _privacy._noise(params, key, 0.7)
    jitted = jax.jit(_privacy._noise)(params, key, 0.7)
    for a, b in zip(jax.tree_util.tree_leaves(eager), jax.tree_util.tree_leaves(jitted)):
        np.testing.assert_allclose(a, b, rtol=1e-6, atol=0)
    again = jax.jit(_privacy._noise)(params, key, 0.7)
    for a, b in zip(jax.tree_util.tree_leaves(jitted), jax.tree_util.tree_leaves(again)):
        np.testing.assert_array_equal(a, b)


def test_noise_mean_and_std():
    # 2^20 samples: the standard error of the mean is sigma / 1024 and that of the std
    # about sigma / 1448; allow 5 standard errors. The two-sided tail fractions beyond
    # 1, 2 and 3 sigma (standard error sqrt(p (1 - p) / n)) check the shape, not only
    # the first two moments.
    sigma, n = 0.37, 2 ** 20
    like = {"a": jnp.zeros((1024, 512)), "b": [jnp.zeros((512, 1024))]}
    noise = _privacy._noise(like, jax.random.PRNGKey(0), sigma)
    sample = np.concatenate([np.ravel(leaf) for leaf in jax.tree_util.tree_leaves(noise)])
    sample = sample.astype(np.float64)
    assert sample.size == n
    assert abs(sample.mean()) < 5 * sigma / np.sqrt(n)
    assert abs(sample.std() / sigma - 1) < 5 / np.sqrt(2 * n)
    for k, p in [(1, 0.31731051), (2, 0.04550026), (3, 0.00269980)]:
        frac = np.mean(np.abs(sample) > k * sigma)
        assert abs(frac - p) < 5 * np.sqrt(p * (1 - p) / n), (k, frac, p)


def test_noise_keys():
    like = {"w": jnp.zeros((64, 32)), "b": jnp.zeros(32)}
    one = _privacy._noise(like, jax.random.PRNGKey(1), 1.0)
    again = _privacy._noise(like, jax.random.PRNGKey(1), 1.0)
    other = _privacy._noise(like, jax.random.PRNGKey(2), 1.0)
    typed = _privacy._noise(like, jax.random.key(1), 1.0)   # new-style key, same seed
    for name in like:
        np.testing.assert_array_equal(one[name], again[name])
        np.testing.assert_array_equal(one[name], typed[name])
        assert not np.allclose(one[name], other[name])
    # The leaves get different samples (no leaf repeats another's noise).
    assert not np.allclose(one["w"][0], one["b"])
    # The noise stream is not the key's plain jax.random.normal stream.
    plain = jax.random.normal(jax.random.PRNGKey(1), (64 * 32,))
    assert not np.allclose(np.ravel(one["w"]), plain)


@pytest.mark.parametrize("dtype", [jnp.float32, jnp.bfloat16, jnp.float16])
def test_noise_dtype_shape_and_structure_follow_the_parameters(dtype):
    like = {"dense": [jnp.zeros((3, 5), dtype), jnp.zeros((5,), dtype)],
            "scalar": jnp.zeros((), dtype), "empty": jnp.zeros((0, 4), dtype),
            "tuple": (jnp.zeros((2, 3, 4), dtype),)}
    noise = _privacy._noise(like, jax.random.PRNGKey(0), 0.5)
    assert jax.tree_util.tree_structure(noise) == jax.tree_util.tree_structure(like)
    for n, p in zip(jax.tree_util.tree_leaves(noise), jax.tree_util.tree_leaves(like)):
        assert n.shape == p.shape and n.dtype == p.dtype
        assert bool(jnp.isfinite(n).all())
    # and through clipped_grad: the noised gradient keeps the parameters' dtype
    params = {"w": jnp.ones((6, 3), dtype)}
    x = jnp.ones((8, 6), dtype)
    loss = lambda p, x: jnp.mean(jnp.tanh(x @ p["w"]).astype(jnp.float32) ** 2)
    grads, _ = jax.jit(clipped_grad(loss, 1.0, noise_multiplier=1.0))(
        params, x, key=jax.random.PRNGKey(0))
    assert grads["w"].dtype == dtype and grads["w"].shape == (6, 3)


def test_low_precision_noise_is_the_float32_noise_rounded():
    like32 = [jnp.zeros((40, 50)), jnp.zeros(7)]
    like16 = [jnp.zeros((40, 50), jnp.bfloat16), jnp.zeros(7, jnp.bfloat16)]
    n32 = _privacy._noise(like32, jax.random.PRNGKey(4), 0.3)
    n16 = _privacy._noise(like16, jax.random.PRNGKey(4), 0.3)
    for a, b in zip(n32, n16):
        np.testing.assert_array_equal(a.astype(jnp.bfloat16), b)


def test_noise_with_a_non_threefry_key_is_deterministic_gaussian():
    like = {"w": jnp.zeros((256, 256))}
    key = jax.random.key(5, impl="rbg")
    a = _privacy._noise(like, key, 2.0)["w"]
    b = jax.jit(_privacy._noise)(like, key, 2.0)["w"]
    np.testing.assert_array_equal(a, b)
    assert abs(float(a.std()) / 2.0 - 1) < 5 / np.sqrt(2 * a.size)


def test_threefry_hash_equals_jax_primitive():
    from jax.extend.random import threefry2x32_p

    data = jax.random.key_data(jax.random.key(123))
    hi = jnp.arange(1000, dtype=jnp.uint32) * np.uint32(2654435761)
    lo = jax.lax.iota(jnp.uint32, 1000)
    ours = _privacy._threefry2x32(data[0], data[1], hi, lo)
    theirs = threefry2x32_p.bind(data[0], data[1], hi, lo)
    for a, b in zip(ours, theirs):
        np.testing.assert_array_equal(a, b)


def test_uniform_grid_is_symmetric_and_open():
    # The words' top 23 bits k map to u = (2k + 1) / 2^23 - 1 exactly: extreme words give
    # the extreme, finite, symmetric normal values.
    words = jnp.array([0, 0xFFFFFFFF, 0x7FFFFFFF, 0x80000000], jnp.uint32)
    odd = (words >> 9).astype(jnp.int32) * 2 + (1 - 2 ** 23)
    u = odd.astype(jnp.float32) * np.float32(2.0 ** -23)
    np.testing.assert_array_equal(u, np.array([-1 + 2.0 ** -23, 1 - 2.0 ** -23,
                                               -2.0 ** -23, 2.0 ** -23], np.float32))
    z = np.float32(np.sqrt(2)) * jax.lax.erf_inv(u)
    assert bool(jnp.isfinite(z).all()) and float(z[0]) == -float(z[1])
