"""``bridge.Parallel``'s contract on one device: errors, write-back, repr, public names.

Results on 8 devices, compared with the whole batch on one, are in ``test_parallel.py``.
"""

import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import bridge

N = jax.local_device_count()


def test_runs_on_one_device_like_the_function():
    layer = bridge.nn.Linear(3, 2)
    x = jnp.arange(12.0).reshape(4, 3)
    with layer.vars().replicate():
        y = bridge.Parallel(layer)(x)
    np.testing.assert_allclose(y, x @ layer.w.value + layer.b.value, rtol=1e-6)


def test_unreplicated_variables_are_named_and_nothing_runs():
    layer = bridge.nn.Linear(3, 2)
    calls = []

    def f(x):
        calls.append(1)
        return layer(x)

    with pytest.raises(ValueError, match=r"not replicated: \(Linear\)\.b, \(Linear\)\.w.*"
                                         r"replicate\(\)"):
        bridge.Parallel(f, layer.vars())(jnp.ones((N, 3)))
    assert calls == []


def test_only_the_unreplicated_variables_are_named():
    a, b = bridge.TrainVar(jnp.ones(2)), bridge.TrainVar(jnp.ones(2))
    run = bridge.Parallel(lambda: a.value + b.value, bridge.VarCollection({"a": a, "b": b}))
    with bridge.VarCollection({"a": a}).replicate():
        with pytest.raises(ValueError, match=r"not replicated: b\. "):
            run()


def test_calling_after_the_block_is_refused_again():
    layer = bridge.nn.Linear(3, 2)
    run = bridge.Parallel(layer)
    with layer.vars().replicate():
        run(jnp.ones((N, 3)))
    with pytest.raises(ValueError, match="not replicated"):
        run(jnp.ones((N, 3)))


def test_jit_of_parallel_outside_the_block_is_refused():
    layer = bridge.nn.Linear(3, 2)
    run = bridge.Jit(bridge.Parallel(layer))
    with pytest.raises(ValueError, match="not replicated"):
        run(jnp.ones((N, 3)))


def test_a_function_without_variables_needs_no_replicate():
    run = bridge.Parallel(lambda x: 2 * x, bridge.VarCollection())
    np.testing.assert_array_equal(run(jnp.ones(N)), 2 * np.ones(N))


def test_a_plain_function_needs_its_collection():
    with pytest.raises(ValueError, match=r"Parallel\(f, vc=model.vars\(\)\)"):
        bridge.Parallel(lambda x: x)


def test_an_undeclared_variable_is_reported_at_trace_time_and_nothing_is_assigned():
    declared = bridge.TrainVar(jnp.zeros(2))
    hidden = bridge.TrainVar(jnp.ones(2))

    def f():
        declared.assign(declared.value + 1)
        return hidden.value

    vc = bridge.VarCollection({"declared": declared})
    with vc.replicate():
        with pytest.raises(bridge.UndeclaredVariableError, match="read inside Parallel"):
            bridge.Parallel(f, vc)()
        np.testing.assert_array_equal(declared.value, np.zeros((N, 2)))


def test_assigned_variables_are_written_back_per_device():
    w = bridge.TrainVar(jnp.zeros(2))
    vc = bridge.VarCollection({"w": w})
    run = bridge.Parallel(lambda: w.assign(w.value + 1), vc)
    with vc.replicate():
        run()
        run()
        np.testing.assert_array_equal(w.value, np.full((N, 2), 2.0))
    np.testing.assert_array_equal(w.value, [2.0, 2.0])


def test_repr_follows_objax():
    def loss(x):
        return x

    run = bridge.Parallel(loss, bridge.VarCollection(), static_argnums=(2, 1))
    assert repr(run) == ("bridge.Parallel(f=" + repr(run.__wrapped__) + ", reduce=concatenate"
                         "(*, axis=0, dtype=None), axis_name='device', static_argnums=(1, 2))")


def test_repr_of_a_partial_reduce():
    run = bridge.Parallel(lambda x: x, bridge.VarCollection(), axis_name="batch",
                          reduce=functools.partial(jnp.mean, axis=0))
    assert "reduce=mean(*, axis=0," in repr(run)
    assert "axis_name='batch', static_argnums=None)" in repr(run)


def test_public_names():
    assert bridge.Parallel is bridge.facades.Parallel
    assert {"pmean", "psum", "pmax", "pmin", "partial"} <= set(bridge.functional.parallel.__all__)
    assert bridge.functional.parallel.partial is functools.partial


def test_a_reduce_that_fails_names_the_stacked_shape():
    run = bridge.Parallel(lambda x: x.sum(), bridge.VarCollection())
    with pytest.raises(ValueError, match=rf"reduce=concatenate.*shape \({N},\).*x\.mean\(0\)"):
        run(jnp.ones((N, 2)))


def test_device_reshape_gives_one_slice_per_device():
    p = bridge.Parallel(lambda x: x, bridge.VarCollection())
    n = jax.local_device_count()
    x = jnp.arange(6.0 * n).reshape(3 * n, 2)
    np.testing.assert_array_equal(p.device_reshape(x), np.asarray(x).reshape(n, 3, 2))
    np.testing.assert_array_equal(p.device_reshape(jnp.float32(0.5)), np.full(n, 0.5))
