"""Jit: compiled object code, write-back, declared variables."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import bridge


class Counter(bridge.Module):
    def __init__(self):
        self.count = bridge.StateVar(jnp.zeros((), jnp.int32))
        self.total = bridge.StateVar(jnp.zeros(()))

    def __call__(self, x):
        self.count.value += 1
        self.total.value += x.sum()
        return self.total.value * 2


def test_jit_writes_back_state_changes():
    m = Counter()
    f = bridge.Jit(m)
    out = f(jnp.ones(3))
    assert int(m.count.value) == 1 and float(m.total.value) == 3.0 and float(out) == 6.0
    f(jnp.ones(3))
    assert int(m.count.value) == 2 and float(m.total.value) == 6.0


def test_jit_result_equals_eager_result():
    m_eager, m_jit = Counter(), Counter()
    x = jnp.arange(4.0)
    for _ in range(3):
        np.testing.assert_allclose(bridge.Jit(m_jit)(x), m_eager(x))
    assert int(m_jit.count.value) == int(m_eager.count.value) == 3


def test_jit_compiles_once_per_signature():
    traces = []
    m = Counter()

    def f(x):
        traces.append(x.shape)
        return m(x)

    jf = bridge.Jit(f, m.vars())
    jf(jnp.ones(3))
    jf(jnp.ones(3))
    jf(jnp.ones(4))
    assert traces == [(3,), (4,)]


def test_jit_does_not_leave_tracers_in_variables():
    m = Counter()
    bridge.Jit(m)(jnp.ones(2))
    for v in m.vars():
        assert not isinstance(v.value, jax.core.Tracer)


def test_jit_plain_function_needs_a_collection():
    with pytest.raises(ValueError, match="VarCollection"):
        bridge.Jit(lambda x: x)


def test_jit_static_argnums():
    m = Counter()

    def f(x, n):
        return m(x) * n

    jf = bridge.Jit(f, m.vars(), static_argnums=(1,))
    assert float(jf(jnp.ones(2), 3)) == 12.0


def test_jit_passes_keyword_arguments():
    m = Counter()

    def f(x, scale=1.0):
        return m(x) * scale

    jf = bridge.Jit(f, m.vars())
    assert float(jf(jnp.ones(2), scale=0.5)) == 2.0


def test_jit_writes_trainvars_updated_through_trainref():
    w = bridge.TrainVar(jnp.ones(2))
    refs = bridge.ModuleList([bridge.TrainRef(w)])

    def step():
        refs[0].value -= 0.5

    bridge.Jit(step, refs.vars())()
    np.testing.assert_array_equal(w.value, [0.5, 0.5])


def test_jit_vars_are_the_wrapped_module_variables():
    m = Counter()
    assert list(bridge.Jit(m).vars().keys()) == ["(Jit)(Counter).count", "(Jit)(Counter).total"]


def test_undeclared_read_inside_jit_is_an_error_naming_the_variable():
    class Holder(bridge.Module):
        def __init__(self):
            self.secret = bridge.StateVar(jnp.ones(()))

    h = Holder()
    f = bridge.Jit(lambda x: x * h.secret.value, bridge.VarCollection())
    with pytest.raises(bridge.UndeclaredVariableError, match=r"StateVar \(Holder\).secret.*read"):
        f(jnp.ones(2))


def test_undeclared_write_inside_jit_is_an_error_and_changes_nothing():
    v = bridge.StateVar(jnp.zeros(()))
    declared = bridge.StateVar(jnp.zeros(()))

    def f(x):
        declared.value += 1
        v.value = x.sum()
        return x

    jf = bridge.Jit(f, bridge.VarCollection({"declared": declared}))
    with pytest.raises(bridge.UndeclaredVariableError, match="assigned"):
        jf(jnp.ones(2))
    assert float(v.value) == 0.0 and float(declared.value) == 0.0
    assert not isinstance(v.value, jax.core.Tracer)


def test_variables_created_inside_jit_are_local():
    def f(x):
        tmp = bridge.StateVar(jnp.zeros(()))
        tmp.value += x.sum()
        return tmp.value

    assert float(bridge.Jit(f, bridge.VarCollection())(jnp.ones(3))) == 3.0


def test_nested_jit_reports_variable_missing_from_outer_jit():
    m = Counter()
    inner = bridge.Jit(m)
    outer = bridge.Jit(lambda x: inner(x), bridge.VarCollection())
    with pytest.raises(bridge.UndeclaredVariableError):
        outer(jnp.ones(2))


def test_nested_jit_with_declared_variables_writes_back():
    m = Counter()
    inner = bridge.Jit(m)
    outer = bridge.Jit(lambda x: inner(x), m.vars())
    outer(jnp.ones(2))
    assert int(m.count.value) == 1


def test_boolean_keyword_flags_are_compile_time_constants():
    m = Counter()

    def f(x, training=False):
        if training:
            return m(x)
        return x.sum()

    jf = bridge.Jit(f, m.vars())
    assert float(jf(jnp.ones(2), training=True)) == 4.0
    assert float(jf(jnp.ones(2), training=False)) == 2.0
    assert int(m.count.value) == 1


def test_numeric_keyword_arguments_are_traced_not_recompiled():
    traces = []

    def f(x, lr=0.1):
        traces.append(1)
        return x * lr

    jf = bridge.Jit(f, bridge.VarCollection())
    jf(jnp.ones(2), lr=0.1)
    jf(jnp.ones(2), lr=0.2)
    assert len(traces) == 1
