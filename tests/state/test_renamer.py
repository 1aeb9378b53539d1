"""``Renamer`` and ``VarCollection.rename``: Objax's ``objax.util.Renamer`` rules."""

import re

import jax.numpy as jnp
import pytest

import bridge
from bridge.util import Renamer


def test_mapping_replaces_every_key_in_one_pass():
    """A replacement is not renamed again: {'a': 'b', 'b': 'a'} swaps."""
    assert Renamer({"a": "b", "b": "a"})("abba") == "baab"


def test_mapping_prefers_the_key_listed_first_at_the_same_position():
    assert Renamer({"ab": "X", "a": "Y"})("ab") == "X"
    assert Renamer({"a": "Y", "ab": "X"})("ab") == "Yb"


def test_mapping_keys_are_literal_text_not_patterns():
    assert Renamer({"(Linear).w": "(Dense).kernel"})("(Seq)[0](Linear).w") == \
        "(Seq)[0](Dense).kernel"


def test_empty_mapping_is_the_identity():
    assert Renamer({})("(Linear).w") == "(Linear).w"


@pytest.mark.parametrize("pattern", [r"\[(\d+)\]", re.compile(r"\[(\d+)\]")])
def test_regex_rules_apply_in_order(pattern):
    rename = Renamer([(pattern, r".layer\1"), (r"layer0", "first")])
    assert rename("(Sequential)[0].w") == "(Sequential).first.w"
    assert rename("(Sequential)[3].w") == "(Sequential).layer3.w"


def test_function_rule_and_chain():
    rename = Renamer(str.upper, chain=Renamer({"W": "weight"}))
    assert rename("(linear).w") == "(LINEAR).weight"


def test_collection_rename_keeps_the_same_variables():
    layer = bridge.nn.Linear(2, 3)
    renamed = layer.vars().rename(Renamer({"(Linear)": "(Dense)"}))
    assert sorted(renamed.keys()) == ["(Dense).b", "(Dense).w"]
    assert renamed["(Dense).w"] is layer.w


@pytest.mark.parametrize("rules", [{"(Linear)": "(Dense)"},
                                   [(r"\(Linear\)", "(Dense)")],
                                   lambda name: name.replace("(Linear)", "(Dense)")])
def test_collection_rename_takes_raw_rules_too(rules):
    layer = bridge.nn.Linear(2, 3)
    assert sorted(layer.vars().rename(rules).keys()) == ["(Dense).b", "(Dense).w"]


def test_checkpoint_load_with_renamer_matches_renamed_names(tmp_path):
    source, target = bridge.nn.Linear(2, 3), bridge.nn.Linear(2, 3)
    path = tmp_path / "layer.npz"
    bridge.io.save_var_collection(str(path), source.vars().rename(Renamer({"(Linear)": "(Mine)"})))
    bridge.io.load_var_collection(str(path), target.vars(),
                                  renamer=Renamer({"(Mine)": "(Linear)"}))
    assert jnp.array_equal(target.w.value, source.w.value)
