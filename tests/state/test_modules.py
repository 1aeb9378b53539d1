"""Module, Function.with_vars, ForceArgs."""

import jax.numpy as jnp
import numpy as np

import bridge


class Scale(bridge.Module):
    def __init__(self):
        self.w = bridge.TrainVar(jnp.full((), 2.0))

    def __call__(self, x, factor=1.0):
        return self.w.value * x * factor


def test_function_with_vars_exposes_the_given_collection():
    m = Scale()

    @bridge.Function.with_vars(m.vars())
    def f(x):
        return m(x) + 1

    assert isinstance(f, bridge.Function)
    assert list(f.vars().keys()) == ["{f}(Scale).w"]
    assert float(f(3.0)) == 7.0


def test_function_constructor_equals_decorator():
    m = Scale()
    f = bridge.Function(lambda x: m(x), m.vars())
    assert f.vars()["{<lambda>}(Scale).w"] is m.w


def test_force_args_forces_keyword_and_shares_variables():
    m = Scale()
    forced = bridge.ForceArgs(m, factor=10.0)
    assert float(forced(1.0)) == 20.0
    assert float(forced(1.0, factor=3.0)) == 20.0
    assert list(forced.vars().values()) == [m.w]


def test_force_args_undo_restores_the_module():
    class Holder(bridge.Module):
        def __init__(self):
            self.inner = bridge.ForceArgs(Scale(), factor=10.0)

    h = Holder()
    bridge.ForceArgs.undo(h)
    assert isinstance(h.inner, Scale)


def test_force_args_undo_by_name_keeps_other_forced_arguments():
    class Holder(bridge.Module):
        def __init__(self):
            self.inner = bridge.ForceArgs(Scale(), factor=10.0, other=1)

    h = Holder()
    bridge.ForceArgs.undo(h, other=None)
    assert isinstance(h.inner, bridge.ForceArgs) and h.inner.forced_kwargs == {"factor": 10.0}


def test_module_attributes_that_are_not_variables_are_ignored():
    class M(bridge.Module):
        def __init__(self):
            self.rate = 0.1
            self.arr = jnp.zeros(3)
            self.v = bridge.StateVar(jnp.zeros(1))

    assert list(M().vars().keys()) == ["(M).v"]


def test_module_subclass_without_super_init_works():
    m = Scale()
    np.testing.assert_array_equal(m.vars().tensors()[0], 2.0)
