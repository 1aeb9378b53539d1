"""Variables are usable wherever arrays are: operators, methods, jax.numpy, pytrees.

Every expectation is the same operation on the plain value (``v.value``), so the reference
is JAX itself.
"""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import bridge


@pytest.fixture
def v():
    return bridge.TrainVar(jnp.array([[1.0, -2.0, 3.5], [4.0, 5.0, -6.25]]))


@pytest.mark.parametrize("name", ["sum", "cumsum", "argsort", "sort", "diagonal", "nonzero",
                                  "trace", "ravel", "conjugate", "ptp", "cumprod", "var"])
def test_array_methods_are_forwarded_to_the_value(v, name):
    expected, actual = getattr(v.value, name)(), getattr(v, name)()
    jax.tree_util.tree_map(np.testing.assert_array_equal, actual, expected)


def test_array_methods_with_arguments_are_forwarded(v):
    np.testing.assert_array_equal(v.swapaxes(0, 1), v.value.swapaxes(0, 1))
    np.testing.assert_array_equal(v.take(jnp.array([1, 4])), v.value.take(jnp.array([1, 4])))
    np.testing.assert_array_equal(v.repeat(2), v.value.repeat(2))
    np.testing.assert_array_equal(v.at[0, 1].set(9.0), v.value.at[0, 1].set(9.0))


@pytest.mark.parametrize("f", [jnp.sum, jnp.abs, jnp.exp, jnp.argsort, jnp.round, jnp.trunc,
                               jnp.cumsum, jnp.median, jnp.nan_to_num, jnp.transpose])
def test_jax_numpy_functions_of_one_variable(v, f):
    np.testing.assert_array_equal(f(v), f(v.value))


@pytest.mark.parametrize("f", [jnp.dot, jnp.add, jnp.maximum, jnp.allclose, jnp.isclose,
                               jnp.hypot, jnp.multiply])
def test_jax_numpy_functions_of_two_variables(f):
    a = bridge.TrainVar(jnp.array([1.0, 2.0, 3.0]))
    b = bridge.StateVar(jnp.array([10.0, -20.0, 30.0]))
    np.testing.assert_array_equal(f(a, b), f(a.value, b.value))
    np.testing.assert_array_equal(f(a.value, b), f(a.value, b.value))


def test_jnp_tile_and_concatenate_take_variables(v):
    np.testing.assert_array_equal(jnp.tile(v, [1, 2]), jnp.tile(v.value, [1, 2]))
    np.testing.assert_array_equal(jnp.concatenate([v, v]), jnp.concatenate([v.value] * 2))


@pytest.mark.parametrize("name", ["__add__", "__radd__", "__sub__", "__rsub__", "__mul__",
                                  "__truediv__", "__rtruediv__", "__floordiv__", "__mod__",
                                  "__divmod__", "__rdivmod__", "__pow__", "__rpow__",
                                  "__eq__", "__ne__", "__lt__", "__le__", "__gt__", "__ge__",
                                  "__matmul__", "__rmatmul__"])
def test_binary_operators_match_the_value(name):
    a = bridge.TrainVar(jnp.array([[1.0, 2.0], [3.0, -4.0]]))
    b = bridge.TrainVar(jnp.array([[1.0, -2.0], [5.0, -4.0]]))
    expected, actual = getattr(a.value, name)(b.value), getattr(a, name)(b)
    jax.tree_util.tree_map(np.testing.assert_array_equal, actual, expected)


def test_python2_division_names_are_true_division():
    a, b = bridge.TrainVar(jnp.array([1.0, 3.0])), bridge.TrainVar(jnp.array([2.0, 4.0]))
    np.testing.assert_array_equal(a.__div__(b), a.value / b.value)
    np.testing.assert_array_equal(a.__rdiv__(b), b.value / a.value)


def test_python_round_and_scalar_conversions():
    v = bridge.TrainVar(jnp.array([1.2, 2.5, -3.7]))
    np.testing.assert_array_equal(round(v), round(v.value))
    s = bridge.StateVar(jnp.array(3, jnp.int32))
    assert int(s) == 3 and float(s) == 3.0 and complex(s) == 3 + 0j
    assert [10, 20, 30, 40][s] == 40


def test_missing_attribute_names_the_variable_and_its_value(v):
    with pytest.raises(AttributeError, match="TrainVar has no attribute 'no_such_thing'"):
        v.no_such_thing  # noqa: B018


def test_variable_is_a_pytree_with_its_value_as_the_one_leaf(v):
    leaves, treedef = jax.tree_util.tree_flatten(v)
    assert len(leaves) == 1 and leaves[0] is v.value
    rebuilt = jax.tree_util.tree_unflatten(treedef, [leaves[0] * 2])
    assert type(rebuilt) is bridge.TrainVar
    np.testing.assert_array_equal(rebuilt.value, v.value * 2)
    np.testing.assert_array_equal(v.value[0, 0], 1.0)  # the original is unchanged


def test_jax_grad_of_a_variable_argument_equals_grad_of_its_value(v):
    def f(w):
        return (jnp.sin(w) ** 2).sum()

    g = jax.grad(f)(v)
    assert isinstance(g, bridge.TrainVar)
    np.testing.assert_allclose(g.value, jax.grad(f)(v.value), rtol=1e-6)


def test_train_ref_is_a_pytree_of_its_target_value():
    w = bridge.TrainVar(jnp.arange(3.0))
    leaves = jax.tree_util.tree_leaves(bridge.TrainRef(w))
    assert len(leaves) == 1 and leaves[0] is w.value


def test_model_reading_variables_through_jnp_trains_like_plain_jax():
    class Affine(bridge.Module):
        def __init__(self):
            self.w = bridge.TrainVar(jnp.array([[0.5, -1.0], [2.0, 0.25], [1.0, 1.0]]))
            self.b = bridge.TrainVar(jnp.array([0.1, -0.2]))

        def __call__(self, x):
            return jnp.tanh(jnp.dot(x, self.w) + self.b)  # variables, not .value

    m = Affine()
    x = jnp.linspace(-1.0, 1.0, 12).reshape(4, 3)

    def plain_loss(params, x):
        return (jnp.tanh(jnp.dot(x, params[0]) + params[1]) ** 2).mean()

    expected = jax.jit(jax.grad(plain_loss))([m.w.value, m.b.value], x)
    gv = bridge.Jit(bridge.GradValues(lambda x: (m(x) ** 2).mean(), m.vars()), m.vars())
    grads, _ = gv(x)
    for g, e in zip(grads, expected):
        np.testing.assert_allclose(g, e, rtol=1e-6)


def test_undeclared_variable_used_through_jnp_is_still_reported():
    declared = bridge.TrainVar(jnp.ones(3))
    hidden = bridge.TrainVar(jnp.ones(3))
    f = bridge.Jit(lambda x: jnp.dot(x, declared) + jnp.sum(hidden),
                   bridge.VarCollection({"declared": declared}))
    with pytest.raises(bridge.UndeclaredVariableError, match="was read inside"):
        f(jnp.ones(3))


def test_variables_hash_by_identity_although_equality_is_elementwise():
    a, b = bridge.TrainVar(jnp.zeros(2)), bridge.TrainVar(jnp.zeros(2))
    assert len({a, b, a}) == 2
    np.testing.assert_array_equal(a == b, [True, True])
