"""bridge.state._load: the one match -> check -> report -> commit engine of every load."""

import pickle

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import bridge
from bridge.state import _load
from bridge.state._load import Entry, LoadMismatchError, LoadReport, Mismatch, Spec, Target


def variables():
    return {"a": bridge.TrainVar(jnp.zeros(2)),
            "b": bridge.StateVar(jnp.zeros((2, 3))),
            "c": bridge.StateVar(jnp.zeros(4, jnp.int32))}


def targets(vs):
    return [Target(v, name, (name,)) for name, v in vs.items()]


def entry(key, value, stored=None, **kwargs):
    return Entry(key, stored or key, lambda like: value, **kwargs)


def snapshot(vs):
    return {name: v.value for name, v in vs.items()}


def assert_unchanged(vs, before):
    assert all(vs[name].value is value for name, value in before.items())


def load(vs, entries, **kwargs):
    return _load.apply(_load.plan(targets(vs), entries), what="test", **kwargs)


def test_strict_load_with_several_problems_lists_all_of_them_and_changes_nothing():
    vs = variables()
    before = snapshot(vs)
    entries = [entry("a", jnp.ones(2)),                      # fits
               entry("b", jnp.ones((3, 2))),                 # shape
               entry("extra", jnp.ones(1))]                  # unexpected; "c" missing
    with pytest.raises(LoadMismatchError) as info:
        load(vs, entries)
    report = info.value.report
    assert report.loaded == ()
    assert report.missing == ("c",)
    assert report.unexpected == ("extra",)
    assert report.mismatched == (("b", "expected shape (2, 3), got (3, 2)"),)
    message = str(info.value)
    assert "test: nothing was loaded" in message
    assert "    b: expected shape (2, 3), got (3, 2)" in message
    assert_unchanged(vs, before)


def test_non_strict_load_assigns_what_fits_in_one_commit(monkeypatch):
    vs = variables()
    new_a = jnp.ones(2)
    calls = []
    real = _load.commit
    monkeypatch.setattr(_load, "commit", lambda *a, **k: (calls.append(a), real(*a, **k)))
    entries = [entry("a", new_a), entry("b", jnp.ones(3)), entry("c", jnp.ones(4, jnp.int32))]
    report = load(vs, entries, strict=False)
    assert report.loaded == ("a", "c")
    assert [name for name, _ in report.mismatched] == ["b"]
    assert not report.ok
    assert vs["a"].value is new_a and int(vs["c"].value[0]) == 1
    assert len(calls) == 1 and len(calls[0][0]) == 2


def test_a_failing_value_producer_of_the_last_entry_leaves_every_variable_unchanged():
    vs = variables()
    before = snapshot(vs)

    def broken(like):
        raise RuntimeError("disk went away")

    entries = [entry("a", jnp.ones(2)), entry("b", jnp.ones((2, 3))),
               Entry("c", "c", broken)]
    with pytest.raises(LoadMismatchError, match=r"c: cannot be converted \(RuntimeError: disk"):
        load(vs, entries)
    assert_unchanged(vs, before)


def test_a_failing_commit_leaves_every_variable_unchanged(monkeypatch):
    vs = variables()
    before = snapshot(vs)

    def refuse(variables, values, **kwargs):
        raise bridge.AssignmentError("refused")

    monkeypatch.setattr(_load, "commit", refuse)
    with pytest.raises(bridge.AssignmentError, match="refused"):
        load(vs, [entry(k, jnp.ones_like(v.value)) for k, v in vs.items()])
    assert_unchanged(vs, before)


def test_float64_numpy_array_into_a_float32_variable_is_refused_naming_both_dtypes():
    vs = {"a": bridge.TrainVar(jnp.zeros(2))}
    report = load(vs, [entry("a", np.ones(2, np.float64))], strict=False)
    assert report.mismatched == (("a", "expected dtype float32, got float64"),)
    assert float(vs["a"].value[0]) == 0.0


def test_python_scalar_takes_the_variables_dtype():
    vs = {"x": bridge.StateVar(jnp.zeros((), jnp.bfloat16))}
    target = Target(vs["x"], "x", ("x",), spec=Spec((), jnp.dtype(jnp.bfloat16)))
    _load.apply(_load.plan([target], [entry("x", 1.5)]), what="test")
    assert vs["x"].value.dtype == jnp.bfloat16 and float(vs["x"].value) == 1.5


def test_entry_spec_is_checked_before_its_value_is_produced():
    vs = {"a": bridge.TrainVar(jnp.zeros(2))}
    produced = []
    e = Entry("a", "a", lambda like: produced.append(1), spec=Spec((3,), "float32"))
    t = Target(vs["a"], "a", ("a",), spec=Spec((2,), "float32"))
    plan = _load.plan([t], [e])
    assert plan.mismatched == [("a", "expected shape (2,), got (3,)")]
    assert produced == []


def test_kind_check_of_an_entry_is_reported_as_mismatched():
    vs = {"a": bridge.TrainVar(jnp.zeros(2))}
    e = entry("a", jnp.ones(2), check=lambda var: "not for a TrainVar")
    assert _load.plan(targets(vs), [e]).mismatched == [("a", "not for a TrainVar")]


def test_convert_of_the_target_is_applied_before_the_variables_check():
    vs = {"a": bridge.TrainVar(jnp.zeros((2, 1)))}
    t = Target(vs["a"], "a", ("a",), spec=Spec((2,), jnp.dtype("float32")),
               convert=lambda x: x.reshape(2, 1))
    _load.apply(_load.plan([t], [entry("a", jnp.arange(2.0))]), what="test")
    np.testing.assert_array_equal(vs["a"].value, [[0.0], [1.0]])


def test_two_entries_of_a_variable_with_tied_names_are_reported_and_nothing_changes():
    w = bridge.TrainVar(jnp.zeros(2))
    before = w.value
    t = Target(w, "w", ("w", "alias"))
    with pytest.raises(LoadMismatchError,
                       match=r"w: 'w' and 'alias' are entries of the same variable"):
        _load.apply(_load.plan([t], [entry("w", jnp.ones(2)), entry("alias", jnp.ones(2))]),
                    what="test")
    assert w.value is before


def test_entries_renamed_to_one_name_are_reported_for_their_variable():
    vs = {"a": bridge.TrainVar(jnp.zeros(2))}
    plan = _load.plan(targets(vs), [entry("a", jnp.ones(2), stored="old_a"),
                                    entry("a", jnp.ones(2), stored="a")])
    assert plan.mismatched == [("a", "'old_a' and 'a' are all named 'a' after renaming; only "
                                     "one can be loaded")]
    assert plan.loads == [] and plan.unexpected == []


def test_one_entry_claimed_by_two_variables_loads_into_neither():
    a, b = bridge.TrainVar(jnp.zeros(2)), bridge.TrainVar(jnp.zeros(2))
    plan = _load.plan([Target(a, "a", ("k",)), Target(b, "b", ("k",))], [entry("k", jnp.ones(2))])
    assert [name for name, _ in plan.mismatched] == ["a", "b"]
    assert "also claimed by b" in plan.mismatched[0].reason
    assert plan.loads == [] and plan.conflicts == 1


def test_entries_a_target_uses_are_neither_loaded_nor_unexpected():
    vs = {"a": bridge.TrainVar(jnp.zeros(2))}
    t = Target(vs["a"], "a", ("avg",), uses=("hidden", "counter"))
    report = _load.apply(_load.plan([t], [entry("avg", jnp.ones(2)), entry("hidden", 0),
                                          entry("counter", 0)]), what="test")
    assert report.ok and report.loaded == ("a",)


def test_allow_unexpected_loads_and_keeps_them_in_the_report():
    vs = {"a": bridge.TrainVar(jnp.zeros(2))}
    report = load(vs, [entry("a", jnp.ones(2)), entry("opt", jnp.ones(1))],
                  allow_unexpected=True)
    assert report.unexpected == ("opt",) and report.loaded == ("a",)


def test_describe_shows_the_entry_name_for_the_variable_and_the_nearest_names():
    report = LoadReport(missing=("(Linear).b",), unexpected=("params/biass",),
                        mismatched=(Mismatch("(Linear).w", "expected shape (3,), got (4,)"),),
                        sources={"(Linear).b": "params/bias", "(Linear).w": "params/kernel"})
    text = report.describe()
    assert "    params/bias  (for (Linear).b); nearest: 'params/biass'" in text
    assert "    params/biass; nearest: 'params/bias'" in text
    assert "    params/kernel  (for (Linear).w): expected shape (3,), got (4,)" in text


def test_mismatch_is_a_name_reason_pair_that_prints_as_name_colon_reason():
    m = Mismatch("w", "expected dtype float32, got float64")
    name, reason = m
    assert (name, reason) == ("w", "expected dtype float32, got float64")
    assert str(m) == "w: expected dtype float32, got float64"


def test_load_mismatch_error_is_a_value_error_with_the_report_and_the_hint():
    report = LoadReport(missing=("a",), unexpected=("b",))
    error = LoadMismatchError(report, "restore('x')", hint="(pass renamer=)")
    assert isinstance(error, ValueError) and error.report is report
    assert str(error).startswith("restore('x'): nothing was loaded")
    assert str(error).endswith("(pass renamer=)")


def test_load_mismatch_error_survives_pickling_with_its_report():
    report = LoadReport(missing=("a",), mismatched=(Mismatch("b", "expected shape (2,)"),))
    error = pickle.loads(pickle.dumps(LoadMismatchError(report, "from_tree")))
    assert error.report == report and str(error).startswith("from_tree: nothing was loaded")


def test_traced_value_outside_a_transformation_is_refused():
    vs = {"a": bridge.TrainVar(jnp.zeros(2))}
    seen = []

    @jax.jit
    def f(x):
        seen.append(load(vs, [entry("a", x)], strict=False))
        return x

    f(jnp.ones(2))
    assert seen[0].loaded == () and "tracer" in seen[0].mismatched[0].reason
    assert float(vs["a"].value[0]) == 0.0
