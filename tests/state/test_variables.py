"""Variables: values, assignment rules, array behaviour."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import bridge


def test_trainvar_refuses_direct_assignment():
    v = bridge.TrainVar(jnp.zeros(3))
    with pytest.raises(ValueError, match="TrainRef"):
        v.value = jnp.ones(3)
    np.testing.assert_array_equal(v.value, jnp.zeros(3))


def test_trainvar_assign_sets_value():
    v = bridge.TrainVar(jnp.zeros(3))
    v.assign(jnp.arange(3.0))
    np.testing.assert_array_equal(v.value, [0.0, 1.0, 2.0])


def test_assign_refuses_other_shape_and_keeps_value():
    v = bridge.TrainVar(jnp.zeros((2, 3)))
    with pytest.raises(ValueError, match=r"expected shape \(2, 3\), got \(3, 2\)"):
        v.assign(jnp.ones((3, 2)))
    np.testing.assert_array_equal(v.value, jnp.zeros((2, 3)))


def test_assign_refuses_other_dtype():
    v = bridge.StateVar(jnp.zeros(3, jnp.float32))
    with pytest.raises(ValueError, match="expected dtype float32, got int32"):
        v.value = jnp.ones(3, jnp.int32)


def test_assign_check_false_allows_new_shape():
    v = bridge.StateVar(jnp.zeros(3))
    v.assign(jnp.zeros(5), check=False)
    assert v.shape == (5,)


def test_python_scalar_takes_variable_dtype():
    v = bridge.StateVar(jnp.zeros((), jnp.float32))
    v.value = 3
    assert v.dtype == jnp.float32 and float(v.value) == 3.0


def test_statevar_allows_direct_assignment():
    v = bridge.StateVar(jnp.zeros(2))
    v.value += 1
    np.testing.assert_array_equal(v.value, [1.0, 1.0])


def test_trainref_writes_through_to_its_trainvar():
    w = bridge.TrainVar(jnp.ones(2))
    ref = bridge.TrainRef(w)
    ref.value -= 0.5 * jnp.ones(2)
    np.testing.assert_array_equal(w.value, [0.5, 0.5])
    assert ref.value is w.value


def test_trainref_rejects_non_trainvar():
    with pytest.raises(TypeError, match="TrainVar"):
        bridge.TrainRef(bridge.StateVar(jnp.ones(2)))


def test_variable_arithmetic_matches_array_arithmetic():
    x = jnp.arange(6.0).reshape(2, 3)
    v = bridge.TrainVar(x)
    np.testing.assert_array_equal(v + 1, x + 1)
    np.testing.assert_array_equal(2 * v, 2 * x)
    np.testing.assert_array_equal(v ** 2, x ** 2)
    np.testing.assert_array_equal(1 - v, 1 - x)
    np.testing.assert_array_equal(-v, -x)
    np.testing.assert_array_equal(v @ x.T, x @ x.T)
    np.testing.assert_array_equal(v[1], x[1])
    np.testing.assert_array_equal((v ** 2).sum(), (x ** 2).sum())
    assert v.shape == (2, 3) and v.ndim == 2 and v.size == 6 and v.dtype == jnp.float32
    np.testing.assert_array_equal(v.T, x.T)


def test_variable_converts_with_jnp_asarray_and_numpy():
    x = jnp.arange(3.0)
    v = bridge.StateVar(x)
    np.testing.assert_array_equal(jnp.asarray(v), x)
    np.testing.assert_array_equal(np.asarray(v), np.asarray(x))


def test_variables_compare_elementwise_like_arrays():
    a, b = bridge.TrainVar(jnp.array([1.0, 2.0])), bridge.TrainVar(jnp.array([1.0, 3.0]))
    np.testing.assert_array_equal(a == b, jnp.array([1.0, 2.0]) == jnp.array([1.0, 3.0]))
    np.testing.assert_array_equal(a != 2.0, jnp.array([True, False]))


def test_variables_hash_by_identity():
    a, b = bridge.TrainVar(jnp.zeros(1)), bridge.TrainVar(jnp.zeros(1))
    assert len({a, b, a}) == 2
    assert {a: 1, b: 2}[b] == 2


def test_random_state_split_advances_and_matches_jax_random():
    rs = bridge.RandomState(seed=3)
    keys = rs.split(2)
    expected = jax.random.split(jax.random.PRNGKey(3), 3)
    np.testing.assert_array_equal(keys, expected[1:])
    np.testing.assert_array_equal(rs.value, expected[0])


def test_random_state_seed_resets():
    rs = bridge.RandomState(seed=0)
    rs.split(1)
    rs.seed(7)
    np.testing.assert_array_equal(rs.value, jax.random.PRNGKey(7))


def test_base_state_hierarchy():
    assert issubclass(bridge.StateVar, bridge.BaseState)
    assert issubclass(bridge.RandomState, bridge.StateVar)
    assert issubclass(bridge.TrainRef, bridge.BaseState)
    assert not issubclass(bridge.TrainVar, bridge.BaseState)
    assert issubclass(bridge.TrainVar, bridge.BaseVar)


def test_reduce_uses_mean_by_default_and_keeps_dtype():
    v = bridge.StateVar(jnp.zeros((), jnp.int32))
    v.reduce(jnp.array([1, 2, 4], jnp.int32))
    assert v.dtype == jnp.int32 and int(v.value) == 2
    f = bridge.StateVar(jnp.zeros(2))
    f.reduce(jnp.array([[1.0, 2.0], [3.0, 4.0]]))
    np.testing.assert_allclose(f.value, [2.0, 3.0])


def test_custom_reduce():
    v = bridge.StateVar(jnp.zeros(()), reduce=lambda x: x.max(0))
    v.reduce(jnp.array([1.0, 5.0, 2.0]))
    assert float(v.value) == 5.0


def test_python_float_into_integer_variable_is_refused():
    v = bridge.StateVar(jnp.zeros((), jnp.int32))
    with pytest.raises(ValueError, match="float 1.5"):
        v.value = 1.5
    assert int(v.value) == 0


def test_variable_refuses_python_bool_conversion():
    with pytest.raises(TypeError, match="bool"):
        bool(bridge.StateVar(jnp.ones(())))


def test_bad_assignment_error_is_a_value_error_and_an_assertion_error():
    v = bridge.TrainVar(jnp.zeros(2))
    with pytest.raises(bridge.AssignmentError) as info:
        v.assign(jnp.zeros(3))
    assert isinstance(info.value, ValueError) and isinstance(info.value, AssertionError)
    np.testing.assert_array_equal(v.value, jnp.zeros(2))


def test_reduce_may_change_the_shape():
    # Objax's rule: reduce assigns without a shape check (the stacked values are usually
    # one dimension larger than the value).
    v = bridge.TrainVar(jnp.arange(6.0).reshape(2, 3))
    v.reduce(v.value)
    np.testing.assert_array_equal(v.value, [1.5, 2.5, 3.5])


def test_train_ref_reduce_leaves_its_target_alone():
    w = bridge.TrainVar(jnp.arange(6.0).reshape(2, 3))
    bridge.TrainRef(w).reduce(jnp.zeros((4, 2, 3)))
    np.testing.assert_array_equal(w.value, jnp.arange(6.0).reshape(2, 3))


def test_repr_shows_class_path_value_and_reduce():
    t = bridge.TrainVar(jnp.zeros(2))
    assert repr(t) == ("bridge.TrainVar(Array([0., 0.], dtype=float32), "
                       "reduce=reduce_mean)")
    assert repr(bridge.TrainRef(t)) == f"bridge.TrainRef(ref={t!r})"
    assert repr(bridge.RandomState(0)) == "bridge.RandomState(Array([0, 0], dtype=uint32))"
