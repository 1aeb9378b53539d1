"""Vectorize: Objax's batch-axis, broadcast, reduce and random-key rules."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import bridge


class Affine(bridge.Module):
    def __init__(self):
        self.w = bridge.TrainVar(jnp.array([[1.0, 2.0], [3.0, 4.0]]))
        self.seen = bridge.StateVar(jnp.zeros(2))

    def __call__(self, x):
        self.seen.value = x
        return x @ self.w.value


def test_vectorize_maps_over_axis_zero():
    m = Affine()
    x = jnp.arange(6.0).reshape(3, 2)
    np.testing.assert_allclose(bridge.Vectorize(m)(x), jax.vmap(lambda r: r @ m.w.value)(x))


def test_vectorize_reduces_state_changes_with_mean():
    m = Affine()
    x = jnp.arange(6.0).reshape(3, 2)
    bridge.Vectorize(m)(x)
    np.testing.assert_allclose(m.seen.value, x.mean(0))


def test_vectorize_broadcasts_none_axis_arguments():
    f = bridge.Vectorize(lambda x, y: x * y, bridge.VarCollection(), batch_axis=(0, None))
    np.testing.assert_allclose(f(jnp.arange(3.0), jnp.array(2.0)), jnp.arange(3.0) * 2)


def test_vectorize_uses_the_given_axis():
    f = bridge.Vectorize(lambda x: x.sum(), bridge.VarCollection(), batch_axis=(1,))
    x = jnp.arange(6.0).reshape(2, 3)
    np.testing.assert_allclose(f(x), x.sum(0))


def test_vectorize_gives_each_example_its_own_random_key():
    gen = bridge.random.Generator(seed=0)
    f = bridge.Vectorize(lambda x: x + jax.random.normal(gen(), ()), gen.vars())
    out = f(jnp.zeros(4))
    assert len(set(np.asarray(out).tolist())) == 4


def test_vectorize_advances_the_random_state_between_calls():
    gen = bridge.random.Generator(seed=0)
    f = bridge.Vectorize(lambda x: x + jax.random.normal(gen(), ()), gen.vars())
    first, second = f(jnp.zeros(2)), f(jnp.zeros(2))
    assert not np.allclose(first, second)


def test_vectorize_of_grad_values_gives_per_example_gradients():
    m = Affine()

    def loss(x, y):
        return ((x @ m.w.value - y) ** 2).sum()

    gv = bridge.GradValues(loss, m.vars())
    x, y = jnp.arange(6.0).reshape(3, 2), jnp.ones((3, 2))
    (g,), (v,) = bridge.Vectorize(gv, batch_axis=(0, 0))(x, y)

    def ref(w, xi, yi):
        return ((xi @ w - yi) ** 2).sum()

    np.testing.assert_allclose(g, jax.vmap(jax.grad(ref), (None, 0, 0))(m.w.value, x, y))
    np.testing.assert_allclose(v, jax.vmap(ref, (None, 0, 0))(m.w.value, x, y))


def test_vectorize_argument_count_must_match_batch_axis():
    f = bridge.Vectorize(lambda x, y: x + y, bridge.VarCollection(), batch_axis=(0, 0))
    with pytest.raises(ValueError, match="batch_axis"):
        f(jnp.ones(2))


def test_batch_axis_errors_are_also_assertion_errors_as_in_objax():
    with pytest.raises(AssertionError):
        bridge.Vectorize(lambda x, y: x + y, bridge.VarCollection(), batch_axis=(0,))
    f = bridge.Vectorize(lambda *a: a[0] + a[1], bridge.VarCollection(), batch_axis=(0,))
    with pytest.raises(AssertionError):
        f(jnp.ones(2), jnp.ones(2))


def test_inner_batch_axis_gives_exactly_the_unbatched_result():
    lin = bridge.nn.Linear(3, 4)
    x = jax.random.normal(jax.random.PRNGKey(0), (96, 3))
    mapped = bridge.Vectorize(lin, batch_axis=(1,))(x.T)
    np.testing.assert_array_equal(mapped, lin(x))


def test_inner_batch_axis_of_a_pytree_argument():
    f = bridge.Vectorize(lambda d: d["a"].sum() + d["b"][0], bridge.VarCollection(),
                         batch_axis=(1,))
    d = {"a": jnp.arange(6.0).reshape(2, 3), "b": jnp.arange(3.0)[None, :]}
    np.testing.assert_allclose(f(d), jax.vmap(lambda a, b: a.sum() + b[0], in_axes=1)(
        d["a"], d["b"]))


def test_vectorize_batch_axis_must_cover_positional_arguments():
    with pytest.raises(ValueError, match="one entry"):
        bridge.Vectorize(lambda x, y: x + y, bridge.VarCollection(), batch_axis=(0,))


def test_vectorize_needs_some_batched_argument():
    with pytest.raises(ValueError, match="maps over no argument"):
        bridge.Vectorize(lambda x: x, bridge.VarCollection(), batch_axis=(None,))


def test_undeclared_read_inside_vectorize_is_an_error():
    hidden = bridge.StateVar(jnp.ones(()))
    f = bridge.Vectorize(lambda x: x * hidden.value, bridge.VarCollection())
    with pytest.raises(bridge.UndeclaredVariableError, match="Vectorize"):
        f(jnp.ones(3))


def test_vectorize_inside_jit_writes_reduced_state_back():
    m = Affine()
    vec = bridge.Vectorize(m)
    x = jnp.arange(6.0).reshape(3, 2)
    bridge.Jit(vec, m.vars())(x)
    np.testing.assert_allclose(m.seen.value, x.mean(0))
