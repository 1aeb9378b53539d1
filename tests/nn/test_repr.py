"""Layers print as the call that builds them: Objax's format under ``bridge.nn``.

The expected strings are Objax 1.8's (``tests/repr.py::test_seq``) with ``objax.`` replaced
by ``bridge.``. Initializers are plain functions here so that each line is exact; how a
function prints is ``bridge.state._repr.function_repr``'s rule, checked at the end.
"""

import functools

import jax.numpy as jnp
import pytest

import bridge
from bridge import nn
from bridge.nn import init
from bridge.state._repr import function_repr


def ones(shape):
    return jnp.ones(shape)


@pytest.mark.parametrize("layer, text", [
    (nn.Linear(2, 3, w_init=ones), "bridge.nn.Linear(nin=2, nout=3, use_bias=True, w_init=ones)"),
    (nn.Linear(2, 3, use_bias=False, w_init=functools.partial(init.identity, gain=2)),
     "bridge.nn.Linear(nin=2, nout=3, use_bias=False, w_init=identity(*, gain=2))"),
    (nn.Conv2D(4, 6, k=3, groups=2, w_init=ones),
     "bridge.nn.Conv2D(nin=4, nout=6, k=(3, 3), strides=(1, 1), dilations=(1, 1), groups=2,"
     " padding='SAME', use_bias=True, w_init=ones)"),
    (nn.Conv2D(4, 5, k=(3, 1), strides=2, dilations=(1, 2), padding=1, use_bias=False,
               w_init=ones),
     "bridge.nn.Conv2D(nin=4, nout=5, k=(3, 1), strides=(2, 2), dilations=(1, 2), groups=1,"
     " padding=((1, 1), (1, 1)), use_bias=False, w_init=ones)"),
    (nn.ConvTranspose2D(4, 5, k=3, w_init=ones),
     "bridge.nn.ConvTranspose2D(nin=4, nout=5, k=(3, 3), strides=(1, 1), dilations=(1, 1),"
     " padding='SAME', use_bias=True, w_init=ones)"),
    (nn.MovingAverage((2, 3), 4, 0.2),
     "bridge.nn.MovingAverage(shape=(2, 3), buffer_size=4, init_value=0.2)"),
    (nn.ExponentialMovingAverage((5, 6)),
     "bridge.nn.ExponentialMovingAverage(shape=(5, 6), momentum=0.999, init_value=0)"),
    (nn.BatchNorm((3, 4, 5), (1, 7)),
     "bridge.nn.BatchNorm(dims=(3, 4, 5), redux=(1, 7), momentum=0.999, eps=1e-06)"),
    (nn.BatchNorm0D(8), "bridge.nn.BatchNorm0D(nin=8, momentum=0.999, eps=1e-06)"),
    (nn.BatchNorm1D(9), "bridge.nn.BatchNorm1D(nin=9, momentum=0.999, eps=1e-06)"),
    (nn.BatchNorm2D(19, momentum=0.9, eps=1e-3),
     "bridge.nn.BatchNorm2D(nin=19, momentum=0.9, eps=0.001)"),
    (nn.GroupNorm(8, rank=4, groups=2), "bridge.nn.GroupNorm(nin=8, rank=4, groups=2, eps=1e-05)"),
    (nn.GroupNorm0D(8, groups=4), "bridge.nn.GroupNorm0D(nin=8, groups=4, eps=1e-05)"),
    (nn.GroupNorm1D(8), "bridge.nn.GroupNorm1D(nin=8, groups=8, eps=1e-05)"),
    (nn.GroupNorm2D(64), "bridge.nn.GroupNorm2D(nin=64, groups=32, eps=1e-05)"),
    (nn.Dropout(0.7), "bridge.nn.Dropout(keep=0.7)"),
], ids=lambda v: type(v).__name__ if isinstance(v, bridge.Module) else "")
def test_layer_repr_is_objax_format_under_bridge_nn(layer, text):
    assert repr(layer) == text


def test_sequential_repr_lists_layers_and_functions_and_indents_nested_sequentials():
    model = nn.Sequential([
        nn.Linear(2, 3, w_init=ones),
        bridge.functional.leaky_relu,
        nn.Sequential([
            functools.partial(bridge.functional.leaky_relu, negative_slope=0.5),
            nn.Linear(4, 5, w_init=ones)]),
        bridge.functional.tanh,
        nn.Dropout(0.7),
    ])
    assert repr(model) == "\n".join([
        "bridge.nn.Sequential(",
        "  [0] bridge.nn.Linear(nin=2, nout=3, use_bias=True, w_init=ones)",
        "  [1] leaky_relu(*, negative_slope=0.01)",
        "  [2] bridge.nn.Sequential(",
        "    [0] leaky_relu(*, negative_slope=0.5)",
        "    [1] bridge.nn.Linear(nin=4, nout=5, use_bias=True, w_init=ones)",
        "  )",
        "  [3] tanh",
        "  [4] bridge.nn.Dropout(keep=0.7)",
        ")",
    ])


def test_sequential_subclass_repr_uses_its_own_class_path():
    class Head(nn.Sequential):
        pass

    assert repr(Head([bridge.functional.relu])) == (
        f"{__name__}.test_sequential_subclass_repr_uses_its_own_class_path.<locals>.Head(\n"
        "  [0] relu\n)")


@pytest.mark.parametrize("layer, name, w_init", [
    (nn.Linear(2, 3), "Linear(nin=2, nout=3, use_bias=True", init.xavier_normal),
    (nn.Conv2D(4, 5, 3), "Conv2D(nin=4, nout=5, k=(3, 3), strides=(1, 1), dilations=(1, 1), "
                         "groups=1, padding='SAME', use_bias=True", init.kaiming_normal),
    (nn.ConvTranspose2D(4, 5, 3), "ConvTranspose2D(nin=4, nout=5, k=(3, 3), strides=(1, 1), "
                                  "dilations=(1, 1), padding='SAME', use_bias=True",
     init.kaiming_normal),
])
def test_default_initializers_print_with_the_shared_function_repr(layer, name, w_init):
    assert repr(layer) == f"bridge.nn.{name}, w_init={function_repr(w_init)})"


def test_default_initializers_print_without_their_generator_option():
    assert repr(nn.Linear(2, 3)) == ("bridge.nn.Linear(nin=2, nout=3, use_bias=True, "
                                     "w_init=xavier_normal(*, gain=1))")
    assert function_repr(init.kaiming_normal) == "kaiming_normal(*, gain=1)"
