"""The library loaders (Linen, NNX, Haiku) on the state layer's one load engine: the same
checks, report and error as checkpoint restores, all or nothing."""

import haiku as hk
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

import bridge
import bridge.checkpoint as ckpt
from bridge.flax import _convert as flax_convert
from bridge.flax import load_linen_variables, load_nnx_state, to_linen_variables, to_nnx_state
from bridge.haiku import load_haiku_params, to_haiku_params
from bridge.interop import LoadMismatchError, LoadReport, Rule, _engine
from bridge.nn import Linear, Sequential
from bridge.state import _load

X = jax.random.normal(jax.random.PRNGKey(0), (5, 3))


def mlp():
    return Sequential([Linear(3, 8), bridge.functional.relu, Linear(8, 4)])


def snapshot(vc):
    return [v.value for v in vc]


def assert_unchanged(vc, before):
    assert all(a is b for a, b in zip(snapshot(vc), before))


def as_float64(tree):
    return jax.tree_util.tree_map(lambda a: np.asarray(a, np.float64), tree)


# ----- the exact-dtype rule ----------------------------------------------------------------
FLOAT64_REASON = "expected dtype float32, got float64"


def test_load_linen_variables_refuses_float64_numpy_for_a_float32_variable():
    model = mlp()
    before = snapshot(model.vars())
    variables = as_float64(to_linen_variables(mlp().vars()))
    with pytest.raises(LoadMismatchError) as info:
        load_linen_variables(model.vars(), variables)
    assert dict(info.value.report.mismatched)["(Sequential)[0](Linear).w"] == FLOAT64_REASON
    assert_unchanged(model.vars(), before)


def test_load_haiku_params_refuses_float64_numpy_for_a_float32_variable():
    model = mlp()
    before = snapshot(model.vars())
    params, _ = to_haiku_params(mlp().vars())
    with pytest.raises(LoadMismatchError) as info:
        load_haiku_params(model.vars(), as_float64(params))
    assert {reason for _, reason in info.value.report.mismatched} == {FLOAT64_REASON}
    assert_unchanged(model.vars(), before)


def test_load_nnx_state_refuses_float64_numpy_for_a_float32_variable():
    model = mlp()
    before = snapshot(model.vars())
    state = to_nnx_state(mlp().vars())
    state = jax.tree_util.tree_map(lambda a: np.asarray(a, np.float64), state)
    report = load_nnx_state(model.vars(), state, strict=False)
    assert report.loaded == () and len(report.mismatched) == 4
    assert {reason for _, reason in report.mismatched} == {FLOAT64_REASON}
    assert_unchanged(model.vars(), before)


def test_converter_and_from_tree_refuse_float64_with_the_same_reason():
    layer = Linear(3, 2)
    w64 = np.ones((3, 2), np.float64)
    by_converter = load_linen_variables(
        layer.vars(), {"params": {"kernel": w64, "bias": np.zeros(2, np.float32)}},
        strict=False, rules=[Rule("(Linear).w", "params/kernel"),
                             Rule("(Linear).b", "params/bias")])
    by_checkpoint = ckpt.from_tree(layer.vars(), {"(Linear).w": w64,
                                                  "(Linear).b": np.zeros(2, np.float32)},
                                   strict=False)
    assert by_converter.mismatched == by_checkpoint.mismatched == (
        ("(Linear).w", FLOAT64_REASON),)


# ----- all or nothing ----------------------------------------------------------------------
def test_strict_linen_load_with_several_problems_lists_all_of_them_and_changes_nothing():
    model = mlp()
    before = snapshot(model.vars())
    variables = to_linen_variables(mlp().vars())
    del variables["params"]["layers_0"]["bias"]
    variables["params"]["layers_2"]["kernel"] = jnp.ones((4, 8))
    variables["params"]["layers_2"]["bias"] = jnp.ones(4, jnp.int32)
    variables["extra"] = {"x": jnp.ones(1)}
    with pytest.raises(LoadMismatchError) as info:
        load_linen_variables(model.vars(), variables)
    report = info.value.report
    assert report.loaded == ()
    assert report.missing == ("(Sequential)[0](Linear).b",)
    assert report.unexpected == ("extra/x",)
    assert dict(report.mismatched) == {
        "(Sequential)[2](Linear).w": "expected shape (8, 4), got (4, 8)",
        "(Sequential)[2](Linear).b": "expected dtype float32, got int32"}
    assert report.sources["(Sequential)[0](Linear).b"] == "params/layers_0/bias"
    assert_unchanged(model.vars(), before)


def test_non_strict_haiku_load_assigns_what_fits_with_one_commit(monkeypatch):
    calls = []
    real = _load.commit
    monkeypatch.setattr(_load, "commit", lambda *a, **k: (calls.append(a[0]), real(*a, **k)))
    params = hk.without_apply_rng(hk.transform(lambda x: hk.nets.MLP([8, 4])(x))).init(
        jax.random.PRNGKey(1), X)
    params = {k: dict(v) for k, v in params.items()}
    params["mlp/~/linear_1"]["w"] = jnp.ones((4, 8))
    model = mlp()
    report = load_haiku_params(model.vars(), params, strict=False)
    assert report.mismatched == (
        ("(Sequential)[2](Linear).w", "expected shape (8, 4), got (4, 8)"),)
    assert len(report.loaded) == 3 and len(calls) == 1 and len(calls[0]) == 3
    assert model[0].w.value is params["mlp/~/linear_0"]["w"]


def test_failing_rule_inverse_of_the_last_entry_leaves_every_variable_unchanged():
    def broken(w):
        raise RuntimeError("cannot invert")

    layer = Linear(3, 2)
    before = snapshot(layer.vars())
    rules = [Rule("(Linear).b", "params/b"),
             Rule("(Linear).w", "params/w", transform=lambda w: w, inverse=broken)]
    variables = to_linen_variables(Linear(3, 2).vars(), rules=rules)
    with pytest.raises(LoadMismatchError,
                       match=r"params/w  \(for \(Linear\)\.w\): cannot be converted "
                             r"\(RuntimeError: cannot invert\)"):
        load_linen_variables(layer.vars(), variables, rules=rules)
    assert_unchanged(layer.vars(), before)


def test_failing_nnx_value_of_the_last_entry_leaves_every_variable_unchanged(monkeypatch):
    model = mlp()
    before = snapshot(model.vars())
    state = to_nnx_state(mlp().vars())
    last = state["layers"][2]["bias"]
    real = flax_convert._nnx_value

    def value(leaf):
        if leaf is last:
            raise OSError("device lost")
        return real(leaf)

    monkeypatch.setattr(flax_convert, "_nnx_value", value)
    with pytest.raises(LoadMismatchError, match=r"OSError: device lost") as info:
        load_nnx_state(model.vars(), state)
    assert [name for name, _ in info.value.report.mismatched] == ["(Sequential)[2](Linear).b"]
    assert_unchanged(model.vars(), before)


def test_mis_shaped_last_haiku_entry_leaves_every_variable_unchanged():
    model = mlp()
    before = snapshot(model.vars())
    params, _ = to_haiku_params(mlp().vars())
    params = {k: dict(v) for k, v in params.items()}
    last = sorted(params)[-1]
    params[last]["b"] = jnp.ones(5)
    with pytest.raises(LoadMismatchError, match=r"expected shape \(4,\), got \(5,\)"):
        load_haiku_params(model.vars(), params)
    assert_unchanged(model.vars(), before)


# ----- one report, one error ---------------------------------------------------------------
def test_loaders_and_checkpoints_share_one_report_and_one_error_class():
    assert issubclass(ckpt.RestoreReport, LoadReport)
    assert issubclass(ckpt.CheckpointMismatchError, LoadMismatchError)
    assert issubclass(ckpt.CheckpointMismatchError, AssertionError)
    assert issubclass(LoadMismatchError, ValueError)
    assert bridge.interop.LoadReport is _load.LoadReport


def test_report_sources_give_the_library_key_of_each_variable():
    model = mlp()
    report = load_linen_variables(model.vars(), to_linen_variables(mlp().vars()))
    assert report.ok and report.sources == {
        "(Sequential)[0](Linear).w": "params/layers_0/kernel",
        "(Sequential)[0](Linear).b": "params/layers_0/bias",
        "(Sequential)[2](Linear).w": "params/layers_2/kernel",
        "(Sequential)[2](Linear).b": "params/layers_2/bias"}


def test_two_variables_translated_to_one_key_are_mismatched_and_not_loaded():
    layer = Linear(3, 3)
    before = snapshot(layer.vars())
    rules = [Rule("(Linear).w", "params/k"), Rule("(Linear).b", "params/k")]
    report = load_linen_variables(layer.vars(), {"params": {"k": jnp.ones((3, 3))}},
                                  strict=False, rules=rules)
    assert report.loaded == ()
    reasons = dict(report.mismatched)
    assert set(reasons) == {"(Linear).w", "(Linear).b"}
    assert "'params/k' is also claimed by (Linear).b" in reasons["(Linear).w"]
    assert_unchanged(layer.vars(), before)
    with pytest.raises(ValueError, match=r"params/k: from \(Linear\)\.\w and \(Linear\)\.\w"):
        to_linen_variables(layer.vars(), rules=rules)


# ----- performance -------------------------------------------------------------------------
def test_repeated_loads_and_exports_reuse_the_cached_translation(monkeypatch):
    model = mlp()
    variables = to_linen_variables(mlp().vars())
    calls = []
    real = _engine._translate
    monkeypatch.setattr(_engine, "_translate", lambda *a: (calls.append(1), real(*a))[1])
    for _ in range(3):
        assert load_linen_variables(model.vars(), variables).ok
        to_linen_variables(model.vars())
    assert len(calls) == 1


def test_nnx_parameter_into_a_state_variable_is_refused_by_kind():
    vc = bridge.VarCollection({"(Net).s": bridge.StateVar(jnp.zeros(2))})
    state = nnx.State({"s": nnx.Param(jnp.ones(2))})
    report = load_nnx_state(vc, state, strict=False)
    assert report.mismatched == (
        ("(Net).s", "expected a non-Param NNX variable for a StateVar, got Param"),)
