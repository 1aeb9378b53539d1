"""bridge.flax.to_nnx_state / load_nnx_state against real NNX models."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

import bridge
from bridge.flax import load_nnx_state, to_nnx_state
from bridge.nn import BatchNorm0D, Linear, Sequential

X = jax.random.normal(jax.random.PRNGKey(0), (6, 3))


class NNXNet(nnx.Module):
    def __init__(self, rngs):
        self.linear = nnx.Linear(3, 4, rngs=rngs)
        self.bn = nnx.BatchNorm(4, use_running_average=True, rngs=rngs)

    def __call__(self, x):
        return self.bn(self.linear(x))


class Net(bridge.Module):
    def __init__(self):
        self.linear = Linear(3, 4)
        self.bn = BatchNorm0D(4, eps=1e-5)

    def __call__(self, x):
        return self.bn(self.linear(x), training=False)


def paths(state):
    return sorted(p for p, _ in nnx.to_flat_state(state))


def trained_nnx():
    model = NNXNet(nnx.Rngs(0))
    _, state = nnx.split(model)
    # non-trivial statistics and bias, so that the comparison means something
    state = jax.tree_util.tree_map(lambda a: a + jax.random.uniform(jax.random.PRNGKey(1), a.shape),
                                   state)
    nnx.update(model, state)
    return model


def test_load_nnx_state_gives_the_same_outputs():
    source = trained_nnx()
    model = Net()
    _, state = nnx.split(source)
    report = load_nnx_state(model.vars(), state)
    assert report.ok
    assert model.bn.running_mean.shape == (1, 4)
    np.testing.assert_allclose(model(X), source(X), atol=1e-6)


def test_load_nnx_state_assigns_the_arrays_themselves():
    source = trained_nnx()
    model = Net()
    load_nnx_state(model.vars(), nnx.state(source))
    assert model.linear.w.value is source.linear.kernel.get_value()


def test_to_nnx_state_updates_an_nnx_model_to_the_same_outputs():
    model = Net()
    for v in model.vars():
        v.assign(v.value + jax.random.uniform(jax.random.PRNGKey(2), v.shape))
    state = to_nnx_state(model.vars())
    target = NNXNet(nnx.Rngs(3))
    nnx.update(target, state)
    np.testing.assert_allclose(target(X), model(X), atol=1e-6)


def test_to_nnx_state_types_params_and_batch_stats_and_keeps_arrays():
    model = Net()
    state = to_nnx_state(model.vars())
    assert isinstance(state["linear"]["kernel"], nnx.Param)
    assert state["linear"]["kernel"].get_value() is model.linear.w.value
    assert isinstance(state["bn"]["mean"], nnx.BatchStat)
    assert isinstance(state["bn"]["scale"], nnx.Param)
    assert state["bn"]["var"].get_value().shape == (4,)


def test_state_structure_matches_nnx_split():
    model = Net()
    _, reference = nnx.split(NNXNet(nnx.Rngs(0)))
    ours = to_nnx_state(model.vars())
    assert paths(ours) == paths(reference)


def test_sequential_paths_match_nnx_sequential():
    source = nnx.Sequential(nnx.Linear(3, 8, rngs=nnx.Rngs(0)), nnx.relu,
                            nnx.Linear(8, 2, rngs=nnx.Rngs(1)))
    model = Sequential([Linear(3, 8), bridge.functional.relu, Linear(8, 2)])
    load_nnx_state(model.vars(), nnx.state(source))
    np.testing.assert_allclose(model(X), source(X), atol=1e-6)
    ours = to_nnx_state(model.vars())
    assert paths(ours) == paths(nnx.state(source))


def test_crossed_types_shapes_and_missing_entries_are_listed_and_nothing_changes():
    model = Net()
    before = [np.array(v) for v in model.vars().tensors()]
    state = nnx.state(trained_nnx())
    state["linear"]["kernel"] = nnx.BatchStat(state["linear"]["kernel"].get_value())  # type
    state["bn"]["mean"] = nnx.BatchStat(jnp.zeros(5))                                # shape
    del state["bn"]["var"]                                                              # missing
    state["bn"]["extra"] = nnx.Param(jnp.zeros(1))                                      # unexpected
    with pytest.raises(ValueError) as info:
        load_nnx_state(model.vars(), state)
    msg = str(info.value)
    assert "linear/kernel  (for (Net).linear(Linear).w): expected an nnx.Param for a TrainVar, " \
           "got BatchStat" in msg
    assert "bn/mean  (for (Net).bn(BatchNorm0D).running_mean): expected shape (4,), got (5,)" in msg
    assert "bn/var  (for (Net).bn(BatchNorm0D).running_var)" in msg
    assert "bn/extra" in msg
    for a, b in zip(model.vars().tensors(), before):
        np.testing.assert_array_equal(a, b)


def test_non_strict_nnx_load_reports_what_was_skipped():
    model = Net()
    state = nnx.state(trained_nnx())
    del state["bn"]["var"]
    report = load_nnx_state(model.vars(), state, strict=False)
    assert report.missing == ("(Net).bn(BatchNorm0D).running_var",)
    assert len(report.loaded) == 5


def test_load_nnx_state_refuses_a_non_state():
    with pytest.raises(TypeError, match="expected an nnx.State"):
        load_nnx_state(Net().vars(), [1, 2])


def test_nnx_module_variables_round_trip_through_the_converters():
    try:
        from bridge.flax import NNXModule
        wrapped = NNXModule(NNXNet(nnx.Rngs(0)))
    except NotImplementedError:
        pytest.skip("NNXModule not written yet")
    state = to_nnx_state(wrapped.vars())
    reference = nnx.state(NNXNet(nnx.Rngs(0)))
    assert paths(state) == paths(reference)
    assert load_nnx_state(wrapped.vars(), reference).ok


def test_a_variable_held_by_the_root_nnx_module_is_converted():
    class Scale(nnx.Module):
        def __init__(self):
            self.w = nnx.Param(jnp.arange(3.0))

    m = bridge.flax.NNXModule(Scale())
    state = bridge.flax.to_nnx_state(m.vars())
    assert isinstance(state["w"], nnx.Param)
    np.testing.assert_array_equal(state["w"].get_value(), jnp.arange(3.0))
