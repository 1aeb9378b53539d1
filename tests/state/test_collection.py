"""VarCollection: Objax naming, iteration, subsets, tensors/assign, merging, the table."""

import jax.numpy as jnp
import numpy as np
import pytest

import bridge


class Pair(bridge.Module):
    def __init__(self):
        self.b = bridge.TrainVar(jnp.zeros(3))
        self.w = bridge.TrainVar(jnp.zeros((2, 3)))
        self.s = bridge.StateVar(jnp.zeros(()))


class Outer(bridge.Module):
    def __init__(self):
        self.layers = bridge.ModuleList([Pair(), Pair()])
        self.head = Pair()


def test_module_vars_names_follow_attributes():
    assert list(Pair().vars().keys()) == ["(Pair).b", "(Pair).w", "(Pair).s"]


def test_nested_names_use_class_attribute_and_index():
    names = list(Outer().vars().keys())
    assert names[:3] == ["(Outer).layers(ModuleList)[0](Pair).b",
                         "(Outer).layers(ModuleList)[0](Pair).w",
                         "(Outer).layers(ModuleList)[0](Pair).s"]
    assert names[-1] == "(Outer).head(Pair).s"
    assert len(names) == 9


def test_function_vars_are_prefixed_with_the_function_name():
    m = Pair()
    f = bridge.Function(lambda: None, m.vars())

    def loss():
        return None

    assert list(f.vars().keys())[0] == "{<lambda>}(Pair).b"
    assert list(bridge.Function.with_vars(m.vars())(loss).vars().keys())[0] == "{loss}(Pair).b"


def test_wrapper_modules_name_their_wrapped_variables_like_objax():
    m = Pair()
    assert list(bridge.Jit(m).vars().keys())[0] == "(Jit)(Pair).b"
    assert list(bridge.Vectorize(m).vars().keys())[0] == "(Vectorize)(Pair).b"
    assert list(bridge.ForceArgs(m, training=False).vars().keys())[0] == "(Pair).b"


def test_vars_scope_prefixes_names():
    assert list(Pair().vars(scope="net.").keys())[0] == "net.(Pair).b"


def test_shared_variable_listed_under_each_name_but_iterated_once():
    m = Outer()
    m.head.w = m.layers[0].w
    vc = m.vars()
    assert vc["(Outer).head(Pair).w"] is vc["(Outer).layers(ModuleList)[0](Pair).w"]
    assert len(vc) == 9
    assert len(list(vc)) == 8
    assert len(vc.tensors()) == 8


def test_iteration_is_in_insertion_order():
    m = Pair()
    assert list(m.vars()) == [m.b, m.w, m.s]


def test_trainref_and_its_target_iterate_once():
    m = Pair()
    refs = bridge.ModuleList([bridge.TrainRef(m.w)])
    vc = m.vars() + refs.vars()
    assert list(vc) == [m.b, m.w, m.s]
    assert list(refs.vars())[0].ref is m.w


def test_subset_is_a_and_is_not():
    m = Pair()
    vc = m.vars()
    assert list(vc.subset(bridge.TrainVar)) == [m.b, m.w]
    assert list(vc.subset(is_not=bridge.TrainVar)) == [m.s]
    assert list(vc.subset(bridge.BaseVar, is_not=bridge.StateVar)) == [m.b, m.w]


def test_tensors_returns_values_in_order():
    m = Pair()
    m.b.assign(jnp.ones(3))
    t = m.vars().tensors()
    np.testing.assert_array_equal(t[0], jnp.ones(3))
    assert [x.shape for x in t] == [(3,), (2, 3), ()]


def test_assign_sets_all_values():
    m = Pair()
    m.vars().assign([jnp.full(3, 1.0), jnp.full((2, 3), 2.0), jnp.full((), 3.0)])
    assert float(m.b.value[0]) == 1.0 and float(m.w.value[0, 0]) == 2.0
    assert float(m.s.value) == 3.0


def test_assign_lists_every_mismatch_and_assigns_nothing():
    m = Pair()
    with pytest.raises(ValueError) as err:
        m.vars().assign([jnp.ones(3), jnp.ones((3, 2)), jnp.ones((), jnp.int32)])
    assert "(Pair).w: expected shape (2, 3), got (3, 2)" in str(err.value)
    assert "(Pair).s: expected dtype float32, got int32" in str(err.value)
    np.testing.assert_array_equal(m.b.value, jnp.zeros(3))


def test_assign_refuses_wrong_count():
    m = Pair()
    with pytest.raises(ValueError, match="expected 3 tensors"):
        m.vars().assign([jnp.ones(3)])
    np.testing.assert_array_equal(m.b.value, jnp.zeros(3))


def test_add_merges_and_update_refuses_conflicting_names():
    a, b = Pair(), Pair()
    merged = a.vars() + b.vars().rename({"(Pair)": "(Other)"})
    assert len(merged) == 6
    with pytest.raises(ValueError, match=r"Name conflict.*\(Pair\).b"):
        a.vars() + b.vars()


def test_adding_the_same_variables_twice_is_fine():
    a = Pair()
    assert len(a.vars() + a.vars()) == 3


def test_rename_with_function_mapping_and_regex():
    vc = Pair().vars()
    assert list(vc.rename(str.upper).keys())[0] == "(PAIR).B"
    assert list(vc.rename({"(Pair).": "pair/"}).keys()) == ["pair/b", "pair/w", "pair/s"]
    assert list(vc.rename([(r"\((\w+)\)\.", r"\1:")]).keys())[0] == "Pair:b"


def test_table_lists_sizes_shapes_and_total():
    text = str(Pair().vars())
    assert text.splitlines() == [
        "(Pair).b                    3 (3,)",
        "(Pair).w                    6 (2, 3)",
        "(Pair).s                    1 ()",
        "+Total(3)                  10",
    ]


def test_table_lists_and_counts_shared_weights_under_each_name():
    # Objax 1.8 prints a shared variable once per name and counts it each time.
    m = Outer()
    m.head.w = m.layers[0].w
    lines = str(m.vars()).splitlines()
    assert sum(line.split()[-2:] == ["(2,", "3)"] for line in lines) == 3
    assert lines[-1].split() == ["+Total(9)", str(3 * (3 + 6 + 1))]


def test_module_list_slices_stay_module_lists():
    ml = bridge.ModuleList([Pair(), Pair(), Pair()])
    assert isinstance(ml[1:], bridge.ModuleList) and len(ml[1:].vars()) == 6


def test_setting_an_existing_name_to_another_variable_is_refused():
    a, b = bridge.TrainVar(jnp.zeros(1)), bridge.TrainVar(jnp.zeros(1))
    vc = bridge.VarCollection({"a": a})
    vc["a"] = a  # the same variable again is fine
    with pytest.raises(ValueError, match="Name conflict"):
        vc["a"] = b
    assert vc["a"] is a
    vc["b"] = b
    assert list(vc) == [a, b]


def test_assign_errors_are_also_assertion_errors_as_in_objax():
    vc = bridge.VarCollection({"a": bridge.TrainVar(jnp.zeros(2))})
    with pytest.raises(AssertionError):
        vc.assign([jnp.zeros(3)])
    with pytest.raises(AssertionError):
        vc.assign([])
