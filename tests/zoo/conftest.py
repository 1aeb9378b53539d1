"""Build zoo models from the JSON descriptions in this folder: the ``build_case`` fixture."""

import functools
import importlib

import pytest

import bridge


def resolve(value):
    """The JSON form of a constructor argument as a bridge object (see the data's header)."""
    if isinstance(value, dict) and "ref" in value:
        target = functools.reduce(getattr, value["ref"].split("."), bridge)
        return functools.partial(target, **value["partial"]) if "partial" in value else target
    if isinstance(value, dict):
        return {k: resolve(v) for k, v in value.items()}
    if isinstance(value, list):
        return [resolve(v) for v in value]
    return value


def build(case):
    module = importlib.import_module(f"bridge.zoo.{case['module']}")
    model = getattr(module, case["class"])(*resolve(case["args"]), **resolve(case["kwargs"]))
    for method, args in case["calls"]:
        getattr(model, method)(*args)
    return model


@pytest.fixture
def build_case():
    """``build_case(case)``: the bridge zoo model described by a JSON case."""
    return build
