"""bridge.util's small helpers, against Python's own semantics and Objax 1.8's outputs."""

import functools
import inspect
import re

import jax
import pytest

import bridge
from bridge import util


def test_easy_dict_is_a_dict_built_like_one():
    d = util.EasyDict([("a", 5)], b=6)
    assert d == {"a": 5, "b": 6}
    assert isinstance(d, dict)
    assert list(d.items()) == [("a", 5), ("b", 6)]


def test_easy_dict_attributes_read_and_write_entries():
    d = util.EasyDict(a=5)
    d.b = 6
    del d.a
    assert d == {"b": 6}
    assert d.b == 6


def test_easy_dict_missing_attribute_raises_attribute_error():
    with pytest.raises(AttributeError, match="'lr'"):
        _ = util.EasyDict().lr
    assert not hasattr(util.EasyDict(), "lr")  # so getattr(d, name, default) works


def f_mixed(a, b, /, c, d=1, *args, e=2, **kwargs):
    pass


def test_positional_args_names_skip_varargs_and_keyword_only():
    assert util.positional_args_names(f_mixed) == ["a", "b", "c", "d"]


def test_args_indexes_are_positions_among_positional_parameters():
    assert list(util.args_indexes(f_mixed, ["d", "a"])) == [3, 0]


def test_args_indexes_rejects_a_keyword_only_name_by_name():
    with pytest.raises(ValueError, match="'e'"):
        list(util.args_indexes(f_mixed, ["a", "e"]))


def forced(x, training=True, *rest, scale=1.0, **kw):
    pass


# Expected values: objax.util.override_args_kwargs in Objax 1.8 (/work/objax-venv).
@pytest.mark.parametrize("args, kwargs, new, expected", [
    ([1, True], {}, {"training": False}, ([1, False], {})),
    ([1], {}, {"training": False}, ([1], {"training": False})),
    ([1, True, 3], {"scale": 2.0}, {"scale": 3.0, "rest": 9},
     ([1, True, 3], {"scale": 3.0, "rest": 9})),
])
def test_override_args_kwargs_replaces_each_argument_where_it_was_passed(
        args, kwargs, new, expected):
    assert util.override_args_kwargs(forced, args, kwargs, new) == expected


def test_override_args_kwargs_leaves_its_inputs_unchanged():
    args, kwargs, new = [1, True], {"scale": 2.0}, {"training": False, "scale": 3.0}
    util.override_args_kwargs(forced, args, kwargs, new)
    assert (args, kwargs, new) == ([1, True], {"scale": 2.0},
                                   {"training": False, "scale": 3.0})


def test_ilog2_is_the_ceiling_of_log2():
    # Objax 1.8 gives [0, 1, 2, 3, 4, -1, -1, 10] for these inputs.
    values = [1, 2, 3, 8, 9, 0.5, 0.3, 1000]
    assert [util.ilog2(v) for v in values] == [0, 1, 2, 3, 4, -1, -1, 10]


def test_ilog2_rejects_non_positive_input():
    with pytest.raises(ValueError, match="positive"):
        util.ilog2(0)


def test_to_tuple_repeats_a_number_and_keeps_sequences_as_they_are():
    # Objax 1.8: a tuple is returned unchanged and other iterables converted, whatever n.
    assert util.to_tuple(1.5, 3) == (1.5, 1.5, 1.5)
    assert util.to_tuple((1, 2), 3) == (1, 2)
    assert util.to_tuple(range(3), 5) == (0, 1, 2)


def test_re_sign_copies_the_signature():
    @util.re_sign(forced)
    def wrapper(*args, **kwargs):
        return forced(*args, **kwargs)

    assert inspect.signature(wrapper) == inspect.signature(forced)


def test_dummy_context_mgr_yields_none():
    with util.dummy_context_mgr() as value:
        assert value is None


def test_renamer_is_the_state_layer_renamer():
    assert util.Renamer is bridge.state.Renamer
    assert util.Renamer([(re.compile("a{2}"), "x")])("baab") == "bxb"


def test_repr_function_and_class_name_follow_objax_format():
    # Objax 1.8: 'leaky_relu(*, negative_slope=0.5)' and 'objax.nn.Linear'.
    leaky = functools.partial(jax.nn.leaky_relu, negative_slope=0.5)
    assert util.repr_function(leaky) == "leaky_relu(*, negative_slope=0.5)"
    assert util.class_name(bridge.nn.Linear(2, 3)) == "bridge.nn.Linear"


def test_local_kwargs_keeps_the_keywords_a_function_accepts():
    assert util.local_kwargs({"a": 1, "b": 2}, lambda a: None) == {"a": 1}
    assert util.local_kwargs({"a": 1, "b": 2}, lambda **kw: None) == {"a": 1, "b": 2}


def test_to_padding_expands_ints_and_names():
    assert util.to_padding(1, 2) == ((1, 1), (1, 1))
    assert util.to_padding("same", 2) == "SAME"


def test_to_interpolate_accepts_method_names_in_any_case():
    # Objax's own method names, each mapping to itself.
    for name in ["nearest", "linear", "bilinear", "trilinear", "triangle", "cubic",
                 "bicubic", "tricubic", "lanczos3", "lanczos5"]:
        assert util.to_interpolate(name.upper()) == name


def test_submodules_are_reachable_as_attributes():
    assert util.image.to_png is bridge.util.image.to_png
    assert util.tracing.find_used_variables is util.find_used_variables
    assert callable(util.check.assert_assigned_type_and_shape_match)
