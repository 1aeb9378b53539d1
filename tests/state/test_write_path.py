"""The state layer's one write path: check every new value, then assign all or none."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import bridge
from bridge.state._access import commit, split_key


def make_pair():
    return bridge.TrainVar(jnp.zeros((2, 3))), bridge.StateVar(jnp.zeros(4, jnp.int32))


def test_commit_assigns_every_value():
    w, s = make_pair()
    commit([w, s], [jnp.ones((2, 3)), jnp.arange(4, dtype=jnp.int32)], owner="test")
    np.testing.assert_array_equal(w.value, np.ones((2, 3)))
    np.testing.assert_array_equal(s.value, np.arange(4))


def test_commit_lists_every_problem_and_assigns_nothing():
    w, s = make_pair()
    ok = bridge.StateVar(jnp.zeros(2))
    with pytest.raises(bridge.AssignmentError) as info:
        commit([ok, w, s], [jnp.ones(2), jnp.ones((3, 2)), jnp.ones(4)], owner="test",
               names=["ok", "w", "s"])
    message = str(info.value)
    assert "w: expected shape (2, 3), got (3, 2)" in message
    assert "s: expected dtype int32, got float32" in message
    assert "ok:" not in message
    np.testing.assert_array_equal(ok.value, np.zeros(2))


def test_commit_refuses_a_different_number_of_values():
    w, s = make_pair()
    with pytest.raises(bridge.AssignmentError, match="1 values for 2 variables"):
        commit([w, s], [jnp.ones((2, 3))], owner="test")
    np.testing.assert_array_equal(w.value, np.zeros((2, 3)))


def test_commit_inside_a_transformation_refuses_undeclared_variables_before_writing():
    declared, undeclared = bridge.StateVar(jnp.zeros(2)), bridge.StateVar(jnp.zeros(2))

    def step():
        commit([declared, undeclared], [declared.value + 1, jnp.ones(2)], owner="test")

    with pytest.raises(bridge.UndeclaredVariableError, match="assigned inside"):
        bridge.Jit(step, bridge.VarCollection({"declared": declared}))()
    np.testing.assert_array_equal(declared.value, np.zeros(2))


def test_numpy_float64_does_not_fit_a_float32_variable():
    """The one dtype rule: an array brings its own dtype, even where JAX would cast it."""
    v = bridge.StateVar(jnp.zeros(3))
    with pytest.raises(bridge.AssignmentError, match="expected dtype float32, got float64"):
        v.assign(np.zeros(3))
    v.assign(np.ones(3, np.float32))
    np.testing.assert_array_equal(v.value, np.ones(3))


def test_python_scalars_and_lists_take_jax_types():
    v = bridge.StateVar(jnp.zeros(2))
    v.assign([1.0, 2.0])
    n = bridge.StateVar(jnp.zeros((), jnp.uint32))
    n.assign(7)
    assert v.value.dtype == jnp.float32 and n.value.dtype == jnp.uint32
    assert int(n.value) == 7


def test_a_non_array_value_is_refused_by_name():
    v = bridge.StateVar(jnp.zeros(2))
    with pytest.raises(bridge.AssignmentError, match="expected an array, got str"):
        v.assign("zeros")


def test_a_tracer_assigned_outside_every_bridge_transformation_is_refused():
    v = bridge.StateVar(jnp.zeros(2))

    def leak(x):
        v.assign(x)
        return x

    with pytest.raises(bridge.AssignmentError, match="JAX tracer"):
        jax.jit(leak)(jnp.ones(2))
    np.testing.assert_array_equal(v.value, np.zeros(2))


def test_split_key_is_what_random_state_split_assigns():
    rs = bridge.RandomState(3)
    next_key, keys = split_key(rs.value, 2)
    expected = rs.split(2)
    np.testing.assert_array_equal(keys, expected)
    np.testing.assert_array_equal(next_key, rs.value)


class Caching(bridge.Module):
    def __init__(self):
        self.w = bridge.TrainVar(jnp.ones(3))

    def __call__(self, x):
        # Created while tracing; its value depends on a traced variable, so it is a tracer.
        self.cache = bridge.StateVar(self.w.value * x)
        return (self.w.value * x).sum()


@pytest.mark.parametrize("wrap", ["Jit", "GradValues"])
def test_a_variable_created_while_tracing_names_itself_when_used_later(wrap):
    m = Caching()
    if wrap == "Jit":
        bridge.Jit(m)(jnp.ones(3))
    else:
        bridge.GradValues(m, m.vars())(jnp.ones(3))
    with pytest.raises(bridge.ExpiredValueError, match=r"\(Caching\).cache was created inside"):
        m.cache.value + 1
    with pytest.raises(bridge.ExpiredValueError):
        jnp.sum(m.cache)


def test_an_optimizer_built_while_tracing_names_its_state_when_used_later():
    import optax

    model = bridge.nn.Linear(2, 1)
    holder = {}

    def build_and_step():
        holder["opt"] = bridge.optimizer.Optax(model.vars(), optax.adam(0.1))
        return model.w.value.sum()

    bridge.Jit(build_and_step, model.vars())()
    with pytest.raises(bridge.ExpiredValueError, match=r"\(Optax\).state\[\d\]"):
        holder["opt"]([jnp.zeros((2, 1)), jnp.zeros(1)][::-1])


def test_an_expired_variable_can_be_given_a_concrete_value():
    m = Caching()
    bridge.Jit(m)(jnp.ones(3))
    m.cache.assign(jnp.zeros(3))
    np.testing.assert_array_equal(m.cache.value, np.zeros(3))


def test_a_variable_created_in_a_trace_and_not_kept_is_harmless():
    m = bridge.nn.Linear(2, 1)

    def f(x):
        scale = bridge.StateVar(jnp.float32(2.0))  # a temporary: fine inside the trace
        return (m(x) * scale.value).sum()

    out = bridge.Jit(f, m.vars())(jnp.ones((1, 2)))
    np.testing.assert_allclose(out, 2 * m(jnp.ones((1, 2))).sum(), rtol=1e-6)


def test_var_collection_refuses_non_variables_at_construction():
    with pytest.raises(TypeError, match="'y': got int, not a variable"):
        bridge.VarCollection({"y": 3, "ok": bridge.StateVar(jnp.zeros(1))})


def test_var_collection_setitem_refuses_non_variables():
    vc = bridge.VarCollection()
    with pytest.raises(TypeError, match="'a': got int"):
        vc["a"] = 3
    assert len(vc) == 0


def test_module_list_attributes_name_their_variables():
    class Holder(bridge.Module):
        def __init__(self):
            self.state = bridge.ModuleList([bridge.StateVar(jnp.zeros(1))])

    h = Holder()
    with pytest.raises(bridge.UndeclaredVariableError, match=r"\(Holder\).state\[0\]"):
        bridge.Jit(lambda: h.state[0].value, bridge.VarCollection())()
