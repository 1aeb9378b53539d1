"""bridge.zoo's models have Objax 1.8's ``vars()``: same names, order, shapes, dtypes and
variable types, so that Objax checkpoints of zoo models restore into them.

The reference is ``objax_zoo_vars.json``, written by ``scripts/dump_objax_zoo_vars.py`` run
with Objax 1.8 (see its header); each case records the constructor call, which is replayed
here with ``bridge.zoo``.
"""

from __future__ import annotations

import importlib
import json
import pathlib

import jax
import pytest

import bridge
from bridge.random import DEFAULT_GENERATOR

DATA = json.loads((pathlib.Path(__file__).parent / "objax_zoo_vars.json").read_text())
CASES = {case["id"]: case for case in DATA["cases"]}


def describe(model):
    return [[name, list(var.value.shape), str(var.value.dtype), type(var).__name__]
            for name, var in model.vars().items()]


def describe_abstractly(case, build):
    """``describe(build(case))`` without computing any weight.

    The model is built inside ``jax.eval_shape``, so initializers only trace (ResNet200 and
    VGG19 hold 60M and 140M weights). Building draws keys from the default generator, so
    the build is a pure function of the generator's key (``bridge.pure.functionalize``):
    the key is traced and the generator is left as it was.
    """
    found = []

    def trace():
        found.extend(describe(build(case)))
        return 0

    pure = bridge.pure.functionalize(trace, [DEFAULT_GENERATOR.key])
    jax.eval_shape(pure, [DEFAULT_GENERATOR.key.value])
    return found


def test_reference_data_comes_from_objax_1_8():
    header = DATA["header"]
    assert header["objax_version"].startswith("1.8")
    assert header["generated_by"] == "scripts/dump_objax_zoo_vars.py"


@pytest.mark.parametrize("case_id", sorted(CASES))
def test_vars_match_objax(case_id, build_case):
    case = CASES[case_id]
    ours = describe_abstractly(case, build_case)
    theirs = case["vars"]
    assert [v[0] for v in ours] == [v[0] for v in theirs], "names or order differ"
    assert ours == theirs


@pytest.mark.parametrize("case_id", ["dnnet_3_5_2_relu", "wrn_block_projection", "rnn_with_state",
                                     "resnet_v2_block_bottleneck", "convnet_avg_pool"])
def test_concrete_build_matches_objax(case_id, build_case):
    """The abstract build above describes the same variables as a real one."""
    assert describe(build_case(CASES[case_id])) == CASES[case_id]["vars"]


def test_abstract_build_leaves_the_default_generator_usable(build_case):
    describe_abstractly(CASES["dnnet_3_5_2_relu"], build_case)
    assert not isinstance(DEFAULT_GENERATOR.key.value, jax.core.Tracer)
    assert bridge.random.normal((2,)).shape == (2,)


OBJAX_MODULE_NAMES = {
    "dnnet": ["DNNet"],
    "convnet": ["ConvNet"],
    "wide_resnet": ["WRNBlock", "WideResNetGeneral", "WideResNet", "conv_args", "BN_MOM",
                    "BN_EPS"],
    "resnet_v2": ["ResNetV2", "ResNet18", "ResNet34", "ResNet50", "ResNet101", "ResNet152",
                  "ResNet200", "ResNetV2Block", "ResNetV2BlockGroup", "conv_args",
                  "load_pretrained_weights_from_keras", "convert_keras_model",
                  "convert_resblock", "convert_bn_layer", "convert_conv_or_linear_layer"],
    "rnn": ["RNN"],
    "vgg": ["VGG19", "preprocess", "max_pool_2d"],
}


@pytest.mark.parametrize("module", sorted(OBJAX_MODULE_NAMES))
def test_objax_module_paths(module):
    """``from objax.zoo.<module> import <name>`` works with objax aliased to bridge."""
    imported = importlib.import_module(f"bridge.zoo.{module}")
    assert getattr(bridge.zoo, module) is imported
    missing = [name for name in OBJAX_MODULE_NAMES[module] if not hasattr(imported, name)]
    assert not missing


def test_objax_all_lists():
    """The ``__all__`` lists Objax declares (wide_resnet, resnet_v2) are ours too."""
    assert bridge.zoo.wide_resnet.__all__ == ["WRNBlock", "WideResNetGeneral", "WideResNet"]
    assert bridge.zoo.resnet_v2.__all__ == [
        "ResNetV2", "ResNet18", "ResNet34", "ResNet50", "ResNet101", "ResNet152", "ResNet200",
        "load_pretrained_weights_from_keras"]
    assert "zoo" in bridge.__all__
