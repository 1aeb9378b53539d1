"""Record what Objax 1.8's zoo models look like, for ``tests/zoo``.

Run it with the Python of a virtualenv that has Objax 1.8 installed (it imports ``objax``,
never ``bridge``); on the development machine that is ``/work/objax-venv``::

    /work/objax-venv/bin/python scripts/dump_objax_zoo_vars.py

It writes these files beside the tests:

* ``tests/zoo/objax_zoo_vars.json``: for each model and constructor setting in ``CASES``,
  the ``vars()`` names in order, with shapes, dtypes and variable types. The settings are
  stored with the results, so that ``tests/zoo/test_zoo_names.py`` builds the same models
  with ``bridge.zoo`` and compares.
* ``tests/zoo/objax_zoo_outputs.npz``: for a few small models (``OUTPUT_CASES``), the
  weights Objax initialized, an input, the outputs of successive calls (eval, training,
  eval) and the running statistics or RNN state after them, so that
  ``tests/zoo/test_zoo_models.py`` can load the weights into the bridge model and check its
  outputs against Objax's (the settings are in ``tests/zoo/objax_zoo_outputs.json``).
* ``tests/zoo/objax_wide_resnet_checkpoint.npz``: one of those models after its calls,
  saved by ``objax.io.save_var_collection``, to check that bridge restores Objax's files.

Constructor arguments are JSON: ``{"ref": "functional.relu"}`` names an attribute of the
``objax`` (or ``bridge``) package, and ``{"ref": ..., "partial": {...}}`` a
``functools.partial`` of it.
"""

from __future__ import annotations

import functools
import importlib
import json
import os
import pathlib
import sys
import tempfile

import numpy as np

OUT_DIR = pathlib.Path(__file__).resolve().parents[1] / "tests" / "zoo"


def ref(path: str, **partial) -> dict:
    """A reference to ``objax.<path>`` (a ``functools.partial`` of it if keywords are given)."""
    return {"ref": path, "partial": partial} if partial else {"ref": path}


def case(name: str, module: str, cls: str, *args, calls=(), **kwargs) -> dict:
    """One model: ``objax.zoo.<module>.<cls>(*args, **kwargs)``, then ``model.<m>(*a)`` for
    each ``(m, a)`` in ``calls``."""
    return {"id": name, "module": module, "class": cls, "args": list(args), "kwargs": kwargs,
            "calls": [[method, list(a)] for method, a in calls]}


relu, leaky_relu = ref("functional.relu"), ref("functional.leaky_relu")

CASES = [
    case("dnnet_3_5_2_relu", "dnnet", "DNNet", [3, 5, 2], relu),
    case("dnnet_32_10_leaky", "dnnet", "DNNet", layer_sizes=[32, 10], activation=leaky_relu),
    case("dnnet_mnist", "dnnet", "DNNet", [784, 256, 256, 10], relu),
    case("convnet_2_scales", "convnet", "ConvNet", nin=3, nclass=10, scales=2, filters=8,
         filters_max=16),
    case("convnet_avg_pool", "convnet", "ConvNet", 1, 5, 3, 4, 8,
         pooling=ref("functional.average_pool_2d")),
    case("wrn_block_identity", "wide_resnet", "WRNBlock", 16, 16),
    case("wrn_block_projection", "wide_resnet", "WRNBlock", 16, 32, 2),
    case("wrn_block_strided", "wide_resnet", "WRNBlock", nin=32, nout=32, stride=2,
         bn=ref("nn.BatchNorm2D", momentum=0.99)),
    case("wide_resnet_default", "wide_resnet", "WideResNet", 3, 10),
    case("wide_resnet_16_1", "wide_resnet", "WideResNet", nin=3, nclass=10, depth=16, width=1),
    case("wide_resnet_10_4", "wide_resnet", "WideResNet", 1, 100, depth=10, width=4,
         bn=ref("nn.BatchNorm2D", momentum=0.99, eps=1e-3)),
    case("wide_resnet_general_objax_test", "wide_resnet", "WideResNetGeneral", nin=3,
         nclass=10, blocks_per_group=[4, 4, 4, 4], width=2),
    case("wide_resnet_general_fractional", "wide_resnet", "WideResNetGeneral", 3, 7, [1, 2],
         1.5),
    case("resnet_v2_block_plain", "resnet_v2", "ResNetV2Block", 16, 16, 1, False, False),
    case("resnet_v2_block_bottleneck", "resnet_v2", "ResNetV2Block", nin=16, nout=64, stride=2,
         use_projection=True, bottleneck=True),
    case("resnet_v2_block_bottleneck_noproj", "resnet_v2", "ResNetV2Block", 64, 64, 2, False,
         True),
    case("resnet_v2_block_group", "resnet_v2", "ResNetV2BlockGroup", 64, 128, num_blocks=3,
         stride=2, use_projection=True, bottleneck=False),
    case("resnet_v2_custom", "resnet_v2", "ResNetV2", 3, 10, blocks_per_group=[1, 2],
         bottleneck=False, channels_per_group=[32, 64], group_strides=[1, 2],
         group_use_projection=[True, False]),
    case("resnet_v2_defaults", "resnet_v2", "ResNetV2", 1, 5, [1, 1, 1, 1]),
    case("resnet18", "resnet_v2", "ResNet18", in_channels=3, num_classes=10),
    case("resnet18_custom_norm", "resnet_v2", "ResNet18", 1, 2,
         normalization_fn=ref("nn.BatchNorm2D", momentum=0.9),
         activation_fn=ref("functional.elu")),
    case("resnet34", "resnet_v2", "ResNet34", 3, 10),
    case("resnet50", "resnet_v2", "ResNet50", in_channels=3, num_classes=1000),
    case("resnet101", "resnet_v2", "ResNet101", 3, 10),
    case("resnet152", "resnet_v2", "ResNet152", 3, 10),
    case("resnet200", "resnet_v2", "ResNet200", 3, 10),
    case("rnn", "rnn", "RNN", 8, 3, 4),
    case("rnn_with_state", "rnn", "RNN", nstate=16, nin=5, nout=5, activation=relu,
         calls=[("init_state", [2])]),
    case("vgg19", "vgg", "VGG19"),
]

# (case, input shape, call keyword sets): small models whose outputs we record.
OUTPUT_CASES = [
    (case("dnnet", "dnnet", "DNNet", [3, 5, 2], leaky_relu), (4, 3), [{}]),
    (case("convnet", "convnet", "ConvNet", 3, 4, scales=1, filters=4, filters_max=8),
     (2, 3, 8, 8), [{}]),
    (case("wide_resnet", "wide_resnet", "WideResNetGeneral", 3, 4, [1, 1], 1),
     (2, 3, 8, 8), [{"training": False}, {"training": True}, {"training": False}]),
    (case("resnet_v2_bottleneck", "resnet_v2", "ResNetV2", 3, 4, [1, 1], bottleneck=True,
          channels_per_group=[16, 32], group_strides=[2, 1],
          group_use_projection=[True, True]),
     (2, 3, 16, 16), [{"training": False}, {"training": True}, {"training": False}]),
    (case("resnet_v2_plain", "resnet_v2", "ResNetV2", 3, 4, [2, 1], bottleneck=False,
          channels_per_group=[8, 16], group_strides=[2, 2],
          group_use_projection=[True, True]),
     (2, 3, 16, 16), [{"training": False}, {"training": True}, {"training": False}]),
    (case("rnn", "rnn", "RNN", 6, 3, 4, calls=[("init_state", [2])]),
     (5, 2, 3), [{}, {"only_return_final": True}]),
]

# This model is also saved, after its calls, with ``objax.io.save_var_collection``.
CHECKPOINT_CASE, CHECKPOINT_FILE = "wide_resnet", "objax_wide_resnet_checkpoint.npz"


def resolve(value, root):
    """Turn the JSON form of an argument into the object it names."""
    if isinstance(value, dict) and "ref" in value:
        target = functools.reduce(getattr, value["ref"].split("."), root)
        return functools.partial(target, **value["partial"]) if "partial" in value else target
    if isinstance(value, dict):
        return {k: resolve(v, root) for k, v in value.items()}
    if isinstance(value, list):
        return [resolve(v, root) for v in value]
    return value


def build(spec: dict, root):
    """Build the model of a case with the package ``root`` (``objax`` here)."""
    module = importlib.import_module(f"{root.__name__}.zoo.{spec['module']}")
    model = getattr(module, spec["class"])(*resolve(spec["args"], root),
                                           **resolve(spec["kwargs"], root))
    for method, args in spec["calls"]:
        getattr(model, method)(*args)
    return model


def build_vgg19(spec: dict, objax):
    """Objax's VGG19 insists on ``./objax/zoo/pretrained/vgg19.npy`` (and downloads the
    class names) even without ``pretrained``: give it empty stand-ins in a scratch
    directory."""
    cwd = os.getcwd()
    with tempfile.TemporaryDirectory() as scratch:
        folder = pathlib.Path(scratch, "objax", "zoo", "pretrained")
        folder.mkdir(parents=True)
        np.save(folder / "vgg19.npy", np.array({}, dtype=object), allow_pickle=True)
        (folder / "synset.txt").write_text("")
        os.chdir(scratch)
        try:
            return build(spec, objax)
        finally:
            os.chdir(cwd)


def describe(model) -> list:
    return [[name, list(var.value.shape), str(var.value.dtype), type(var).__name__]
            for name, var in model.vars().items()]


def to_json(document: dict) -> str:
    """Indented JSON: one line per constructor field and per variable of a case."""
    cases = []
    for spec in document["cases"]:
        fields = [f" {json.dumps(k)}: {json.dumps(v)}" for k, v in spec.items() if k != "vars"]
        if "vars" in spec:
            rows = ",\n".join("   " + json.dumps(row) for row in spec["vars"])
            fields.append(' "vars": [\n' + rows + "\n ]")
        cases.append("{\n" + ",\n".join(fields) + "\n}")
    header = json.dumps(document["header"], indent=1)
    return '{"header": ' + header + ',\n"cases": [\n' + ",\n".join(cases) + "\n]}\n"


def main() -> None:
    import jax
    import objax

    if not objax.__version__.startswith("1.8"):
        sys.exit(f"Objax 1.8 expected, found {objax.__version__} at {objax.__file__}")
    header = {
        "generated_by": "scripts/dump_objax_zoo_vars.py",
        "run_with": (f"the Python of a virtualenv with Objax {objax.__version__} and jax "
                     f"{jax.__version__} (/work/objax-venv/bin/python on the development "
                     f"machine); never bridge"),
        "objax_version": objax.__version__,
        "jax_version": jax.__version__,
        "format": ("cases: constructor (module, class, args, kwargs; {'ref': path} names "
                   "objax.<path>, with 'partial' keywords a functools.partial), calls made "
                   "after construction, and vars: [name, shape, dtype, variable type] in "
                   "vars() order"),
    }
    cases = []
    for spec in CASES:
        objax.random.DEFAULT_GENERATOR.seed(0)
        builder = build_vgg19 if spec["class"] == "VGG19" else build
        model = builder(spec, objax)
        cases.append({**spec, "vars": describe(model)})
        print(f"{spec['id']:40} {len(cases[-1]['vars']):5d} variables", flush=True)
        del model
    path = OUT_DIR / "objax_zoo_vars.json"
    path.write_text(to_json({"header": header, "cases": cases}))
    print("wrote", path)

    arrays = {}
    outputs = []
    rng = np.random.RandomState(0)
    for spec, shape, calls in OUTPUT_CASES:
        objax.random.DEFAULT_GENERATOR.seed(1)
        model = build(spec, objax)
        name = spec["id"]
        for var_name, var in model.vars().items():
            arrays[f"{name}/init/{var_name}"] = np.asarray(var.value)
        x = rng.normal(size=shape).astype(np.float32)
        arrays[f"{name}/x"] = x
        for i, kwargs in enumerate(calls):
            arrays[f"{name}/out{i}"] = np.asarray(model(x, **kwargs))
        for var_name, var in model.vars().items():
            if not isinstance(var, objax.TrainVar):  # weights do not change in a call
                arrays[f"{name}/final/{var_name}"] = np.asarray(var.value)
        outputs.append({**spec, "input_shape": list(shape), "call_kwargs": calls})
        if name == CHECKPOINT_CASE:
            objax.io.save_var_collection(str(OUT_DIR / CHECKPOINT_FILE), model.vars())
    path = OUT_DIR / "objax_zoo_outputs.npz"
    np.savez_compressed(path, **arrays)
    (OUT_DIR / "objax_zoo_outputs.json").write_text(to_json({"header": {**header, "format": (
        "npz keys: <id>/init/<var> the weights Objax initialized, <id>/x the input, "
        "<id>/out<i> the output of the i-th call (keywords call_kwargs[i]) made in order "
        "on the same model, <id>/final/<var> every non-trainable variable (running "
        "statistics, RNN state) after the calls")}, "cases": outputs}))
    print("wrote", path)


if __name__ == "__main__":
    main()
