"""The repr rules every module, variable and transformation uses (Objax's format)."""

import functools

import jax
import jax.numpy as jnp

import bridge
from bridge.state._repr import arguments_repr, class_path, function_repr


def test_class_path_is_the_public_package_not_the_private_module():
    assert class_path(bridge.nn.Linear(2, 3)) == "bridge.nn.Linear"
    assert class_path(bridge.TrainVar(jnp.zeros(1))) == "bridge.TrainVar"
    assert class_path(bridge.Jit(lambda: 0, bridge.VarCollection())) == "bridge.Jit"


def test_class_path_of_a_user_class_keeps_its_module():
    class Net(bridge.Module):
        pass

    assert class_path(Net()) == f"{__name__}.{Net.__qualname__}"


def test_function_repr_lists_the_parameters_with_defaults():
    def scale(x, factor=2, *, options=None):
        return x * factor

    assert function_repr(scale) == "scale(*, factor=2)"
    assert function_repr(jnp.tanh) == "tanh"


def test_function_repr_of_a_partial_shows_what_it_binds():
    bound = functools.partial(jax.nn.leaky_relu, negative_slope=0.5)
    assert function_repr(bound) == "leaky_relu(*, negative_slope=0.5)"
    mean = functools.partial(jnp.mean, axis=0)
    assert function_repr(mean).startswith("mean(*, axis=0, dtype=None,")


def test_function_repr_hides_keyword_only_options_unless_bound():
    def init(shape, gain=1, *, generator=None):
        return shape

    assert function_repr(init) == "init(*, gain=1)"
    assert function_repr(functools.partial(init, generator="g")) == (
        "init(*, gain=1, generator=g)")


def test_arguments_repr_uses_each_values_repr():
    assert arguments_repr(a=1, b="x", c=(2, 3)) == "a=1, b='x', c=(2, 3)"
