"""The Objax update rules written as Optax transformations, against NumPy, on a pytree."""

import jax
import jax.numpy as jnp
import numpy as np
import optax

from bridge.optimizer import scale_by_objax_adam, scale_by_objax_trust_ratio

PARAMS = {"a": jnp.array([1.0, -2.0, 0.5]), "b": jnp.array([[0.0, 0.0]])}
GRADS = {"a": jnp.array([0.3, 0.1, -0.2]), "b": jnp.array([[1.0, -1.0]])}


def test_objax_adam_direction_puts_eps_inside_the_root():
    b1, b2, eps = 0.8, 0.95, 1e-3
    tx = scale_by_objax_adam(b1, b2, eps)
    state = tx.init(PARAMS)
    assert state.count.dtype == jnp.uint32
    m = {k: np.zeros_like(v) for k, v in PARAMS.items()}
    v = {k: np.zeros_like(x) for k, x in PARAMS.items()}
    for t in range(1, 4):
        g = jax.tree_util.tree_map(lambda x, t=t: x * t, GRADS)
        direction, state = tx.update(g, state)
        for k in PARAMS:
            m[k] = m[k] + (1 - b1) * (np.asarray(g[k]) - m[k])
            v[k] = v[k] + (1 - b2) * (np.asarray(g[k]) ** 2 - v[k])
            expected = np.sqrt(1 - b2 ** t) / (1 - b1 ** t) * m[k] / np.sqrt(v[k] + eps)
            np.testing.assert_allclose(direction[k], expected, rtol=1e-5)


def test_objax_trust_ratio_uses_separate_norms_and_objax_zero_rule():
    wd, tc, eps = 0.1, 0.01, 1e-5
    tx = scale_by_objax_trust_ratio(wd, tc, eps)
    out, _ = tx.update(GRADS, tx.init(PARAMS), PARAMS)
    p, g = np.asarray(PARAMS["a"]), np.asarray(GRADS["a"])
    ratio = tc * np.linalg.norm(p) / (np.linalg.norm(g) + wd * np.linalg.norm(p) + eps)
    np.testing.assert_allclose(out["a"], ratio * (g + wd * p), rtol=1e-6)
    # "b" has zero weights: the factor is max(1, 0) = 1.
    np.testing.assert_allclose(out["b"], GRADS["b"], rtol=1e-6)


def test_objax_lars_is_an_optax_chain():
    tx = optax.chain(scale_by_objax_trust_ratio(1e-4, 1e-3, 1e-5), optax.scale(0.1),
                     optax.trace(decay=0.9), optax.scale(-1.0))
    state = tx.init(PARAMS)
    updates, state = jax.jit(tx.update)(GRADS, state, PARAMS)
    p, g = np.asarray(PARAMS["a"]), np.asarray(GRADS["a"])
    ratio = 1e-3 * np.linalg.norm(p) / (np.linalg.norm(g) + 1e-4 * np.linalg.norm(p) + 1e-5)
    np.testing.assert_allclose(updates["a"], -0.1 * ratio * (g + 1e-4 * p), rtol=1e-5)
