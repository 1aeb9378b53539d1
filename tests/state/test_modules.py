"""Module, Function.with_vars, ForceArgs."""

import functools
import inspect

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
    bridge.ForceArgs.undo(h, other=bridge.ForceArgs.ANY)
    assert isinstance(h.inner, bridge.ForceArgs) and h.inner.forced_kwargs == {"factor": 10.0}


def test_force_args_undo_by_value_removes_only_a_matching_value():
    class Holder(bridge.Module):
        def __init__(self):
            self.inner = bridge.ForceArgs(Scale(), factor=10.0)

    h = Holder()
    bridge.ForceArgs.undo(h, factor=30.0)  # not the forced value: nothing changes
    assert h.inner.forced_kwargs == {"factor": 10.0}
    bridge.ForceArgs.undo(h, factor=10.0)
    assert isinstance(h.inner, Scale)


def test_force_args_replaces_an_argument_passed_by_position():
    m = Scale()
    forced = bridge.ForceArgs(m, factor=10.0)
    assert float(forced(1.0, 3.0)) == 20.0  # m(1.0, 10.0), not a duplicate `factor`


def test_force_args_on_the_root_is_emptied_by_undo_but_kept():
    forced = bridge.ForceArgs(Scale(), factor=10.0)
    bridge.ForceArgs.undo(forced)
    assert forced.forced_kwargs == {} and float(forced(1.0, 3.0)) == 6.0


def test_function_of_a_partial_adds_no_name_prefix():
    m = Scale()
    f = bridge.Function(functools.partial(lambda x, k: m(x) * k, k=2.0), m.vars())
    assert list(f.vars().keys()) == ["(Scale).w"]


def test_function_has_the_signature_of_the_wrapped_function():
    def f(x: jnp.ndarray, *, named: int = 1) -> float:
        return x

    assert inspect.signature(bridge.Function(f, bridge.VarCollection())) == inspect.signature(f)


def test_function_auto_vars_finds_the_modules_the_code_names():
    m = Scale()

    @bridge.Function.auto_vars
    def f(x):
        return m(x) * 2

    assert dict(f.vars()) == {"{f}m.(Scale).w": m.w}
    assert float(f(1.5)) == 6.0


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
