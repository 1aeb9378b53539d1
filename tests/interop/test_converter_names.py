"""Names that a nested library tree cannot take as they are: a name that extends another
('a' and 'a/b' on one module), and NNX path parts made of digits (NNX keys list items by
int, attributes and dict entries by str)."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

import bridge
from bridge.flax import (
    NNXModule,
    load_linen_variables,
    load_nnx_state,
    to_linen_variables,
    to_nnx_state,
)
from bridge.interop import LoadMismatchError, Rule, _engine, port
from bridge.nn import Linear

X = jax.random.normal(jax.random.PRNGKey(0), (5, 3))


class Root(bridge.Module):
    pass


def module_with(*names, start=0.0):
    """A ``Root`` with one float32[1] TrainVar per name, valued start, start + 1, ..."""
    root = Root()
    for i, name in enumerate(names):
        setattr(root, name, bridge.TrainVar(jnp.full((1,), start + i)))
    return root


def values(vc):
    return {name: np.asarray(v.value).tolist() for name, v in vc.items()}


def flat_paths(state):
    return [path for path, _ in nnx.to_flat_state(state)]


# ----- a name that extends another -------------------------------------------------------
BOTH_ORDERS = pytest.mark.parametrize("names", [("a", "a/b"), ("a/b", "a")])


@BOTH_ORDERS
def test_linen_export_refuses_a_name_that_extends_another_and_names_both(names):
    with pytest.raises(ValueError) as info:
        to_linen_variables(module_with(*names).vars())
    message = str(info.value)
    assert message.startswith("to_linen_variables: ")
    assert "params/a (from (Root).a) and params/a/b (from (Root).a/b)" in message
    assert "bridge.interop.Rule" in message


@BOTH_ORDERS
def test_nnx_export_refuses_a_name_that_extends_another_and_names_both(names):
    with pytest.raises(ValueError) as info:
        to_nnx_state(module_with(*names).vars())
    message = str(info.value)
    assert message.startswith("to_nnx_state: ")
    assert "a (from (Root).a) and a/b (from (Root).a/b)" in message
    assert "bridge.interop.Rule" in message


def test_a_nesting_clash_is_refused_before_any_value_is_read(monkeypatch):
    def read(self, x):
        raise AssertionError("a value was read")

    monkeypatch.setattr(_engine._Target, "to_lib", read)
    vc = module_with("a", "a/b").vars()
    for export in (to_linen_variables, to_nnx_state):
        with pytest.raises(ValueError, match="cannot hold both"):
            export(vc)


def test_renaming_one_of_the_two_with_a_rule_makes_the_linen_round_trip_exact():
    rules = [Rule("(Root).a/b", "params/a_b")]
    source, target = module_with("a", "a/b"), module_with("a", "a/b", start=10.0)
    variables = to_linen_variables(source.vars(), rules=rules)
    assert set(variables["params"]) == {"a", "a_b"}
    assert load_linen_variables(target.vars(), variables, rules=rules).ok
    assert values(target.vars()) == values(source.vars())


def test_strict_linen_load_into_such_variables_says_why_one_is_missing_and_changes_nothing():
    model = module_with("a", "a/b")
    before = values(model.vars())
    with pytest.raises(LoadMismatchError) as info:
        load_linen_variables(model.vars(), {"params": {"a": jnp.zeros(1)}})
    message = str(info.value)
    assert "params/a/b  (for (Root).a/b)" in message  # the report: missing
    assert "params/a (from (Root).a) and params/a/b (from (Root).a/b)" in message
    assert "bridge.interop.Rule" in message
    assert values(model.vars()) == before


def test_strict_nnx_load_into_such_variables_says_why_one_is_missing():
    state = nnx.State({"a": {"b": nnx.Param(jnp.zeros(1))}})
    with pytest.raises(LoadMismatchError, match=r"a \(from \(Root\)\.a\) and a/b \(from "):
        load_nnx_state(module_with("a", "a/b").vars(), state)


def test_a_hand_made_linen_tree_holding_both_keys_still_loads():
    model = module_with("a", "a/b")
    report = load_linen_variables(model.vars(), {"params": {"a": jnp.full((1,), 5.0),
                                                            "a/b": jnp.full((1,), 6.0)}})
    assert report.ok
    assert values(model.vars()) == {"(Root).a": [5.0], "(Root).a/b": [6.0]}


def test_port_refuses_rules_that_put_one_entry_inside_anothers_path():
    tree = {"params": {"Dense_0": {"kernel": jnp.ones((2, 2)), "bias": jnp.ones(2)}}}
    rules = [Rule("params/Dense_0/kernel", "params/x"), Rule("params/Dense_0/bias", "params/x/b")]
    with pytest.raises(ValueError, match=r"nested: params/x \(from params/Dense_0/kernel\) "
                                         r"and params/x/b \(from params/Dense_0/bias\)"):
        port(tree, "linen", "linen", rules=rules)


# ----- NNX path parts made of digits ---------------------------------------------------
@pytest.mark.parametrize("name", ["00", "01", "²", "٣", "߁"])
def test_nnx_keeps_digit_names_that_python_would_not_write_for_an_int_as_text(name):
    source, target = module_with(name), module_with(name, start=10.0)
    state = to_nnx_state(source.vars())
    assert flat_paths(state) == [(name,)]
    assert load_nnx_state(target.vars(), state).ok
    assert values(target.vars()) == values(source.vars())


def test_nnx_keys_an_attribute_named_by_digits_by_text_as_nnx_does():
    class Reference(nnx.Module):
        def __init__(self):
            setattr(self, "0", nnx.Param(jnp.zeros(1)))
            self.a = nnx.Param(jnp.zeros(1))

    reference = Reference()
    state = to_nnx_state(module_with("0", "a").vars())
    assert flat_paths(state) == flat_paths(nnx.state(reference)) == [("0",), ("a",)]
    nnx.update(reference, state)
    assert getattr(reference, "0").get_value().tolist() == [0.0]
    assert reference.a.get_value().tolist() == [1.0]


def test_nnx_list_indices_stay_ints_and_update_a_real_nnx_list():
    class Net(bridge.Module):
        def __init__(self):
            self.layers = bridge.ModuleList([Linear(3, 4), Linear(4, 2)])

        def __call__(self, x):
            return self.layers[1](jax.nn.relu(self.layers[0](x)))

    class NNXNet(nnx.Module):
        def __init__(self, rngs):
            self.layers = nnx.List([nnx.Linear(3, 4, rngs=rngs), nnx.Linear(4, 2, rngs=rngs)])

        def __call__(self, x):
            return self.layers[1](jax.nn.relu(self.layers[0](x)))

    model, reference = Net(), NNXNet(nnx.Rngs(1))
    state = to_nnx_state(model.vars())
    assert flat_paths(state) == flat_paths(nnx.state(reference))
    assert ("layers", 0, "kernel") in flat_paths(state)
    nnx.update(reference, state)
    np.testing.assert_allclose(reference(X), model(X), atol=1e-6)


def test_nnx_keys_under_one_parent_are_all_text_where_a_list_index_meets_a_name():
    def model(start):
        root = Root()
        root.x = bridge.ModuleList([bridge.TrainVar(jnp.full((1,), start))])
        setattr(root, "x/a", bridge.TrainVar(jnp.full((1,), start + 1)))
        return root

    source, target = model(0.0), model(10.0)
    state = to_nnx_state(source.vars())
    assert flat_paths(state) == [("x", "0"), ("x", "a")]
    assert load_nnx_state(target.vars(), state).ok
    assert values(target.vars()) == values(source.vars())


def test_load_nnx_state_takes_a_state_whose_keys_mix_ints_and_text():
    root = Root()
    root.x = bridge.ModuleList([bridge.TrainVar(jnp.zeros(1))])
    setattr(root, "x/a", bridge.TrainVar(jnp.zeros(1)))
    state = nnx.State({"x": {0: nnx.Param(jnp.full((1,), 3.0)),
                             "a": nnx.Param(jnp.full((1,), 4.0))}})
    assert load_nnx_state(root.vars(), state).ok
    assert values(root.vars()) == {"(Root).x(ModuleList)[0]": [3.0], "(Root).x/a": [4.0]}


def test_nnx_module_wrapper_converts_back_to_the_keys_nnx_uses():
    class Model(nnx.Module):
        def __init__(self, rngs):
            self.layers = nnx.List([nnx.Linear(2, 2, rngs=rngs), nnx.Linear(2, 2, rngs=rngs)])
            self.named = nnx.Dict({"0": nnx.Param(jnp.zeros(1)), "a": nnx.Param(jnp.ones(1)),
                                   "²": nnx.Param(jnp.ones(2))})

    model = Model(nnx.Rngs(0))
    state = to_nnx_state(NNXModule(model).vars())
    assert flat_paths(state) == flat_paths(nnx.state(model))
    nnx.update(model, state)


def test_nnx_rule_target_reads_canonical_digits_as_list_indices_and_keeps_the_rest_text():
    rules = [Rule("(Root).w", "layers/0/kernel"), Rule("(Root).v", "v/01")]
    state = to_nnx_state(module_with("w", "v").vars(), rules=rules)
    assert sorted(flat_paths(state)) == [("layers", 0, "kernel"), ("v", "01")]


def test_class_names_with_acronyms_get_haikus_snake_case():
    class LSTMHead(bridge.Module):
        def __init__(self):
            self.out = bridge.nn.Linear(2, 2)

    class Net(bridge.Module):
        def __init__(self):
            self.head = LSTMHead()

    names = bridge.interop.translate(Net().vars(), "haiku")
    assert set(names.values()) == {"params/lstm_head/~/linear/w", "params/lstm_head/~/linear/b"}
