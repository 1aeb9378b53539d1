"""PyTorch weights as a scheme (issue 11): a ``state_dict`` ↔ the hub, safetensors files,
and a torchvision-named ResNet-18 running in Linen and in bridge with PyTorch's logits.

The last section uses ``bridge.interop.port(..., "torch", ...)``,
``load_torch_state_dict`` and ``to_torch_state_dict``.
"""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax.traverse_util import flatten_dict, unflatten_dict

import bridge
from bridge.interop._torch import load_safetensors, read_torch, save_safetensors, write_torch

HERE = Path(__file__).resolve().parent
ROOT = HERE.parents[1]
LOGITS = HERE / "data" / "resnet18_torch_logits.npy"
# Tolerances on logits, relative to the largest |logit| of the reference (about 77): float32
# through 20 layers, with sums ordered differently by XLA and PyTorch, differ by about 1e-6
# of it; a batch norm epsilon of 1e-6 instead of PyTorch's 1e-5 moves them by 5e-5 of it.
RTOL_BETWEEN_MODELS = 1e-5
RTOL_TO_TORCH = 2e-5


def _import_by_path(name: str, path: Path):
    spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    spec.loader.exec_module(module)
    return module


models = _import_by_path("resnet18_models", HERE / "models" / "resnet18.py")


# ----- helpers: independent reference loaders ----------------------------------------------
def reference_input() -> np.ndarray:
    """The fixture's input: NCHW float32, as in scripts/make_torch_reference.py."""
    return np.random.default_rng(1).standard_normal((2, 3, 64, 64)).astype(np.float32)


def nhwc(x: np.ndarray) -> np.ndarray:
    return np.transpose(x, (0, 2, 3, 1))


def linen_names(torch_path: list[str]) -> list[str]:
    """``['layer1', '0', 'downsample', '1']`` → ``['layer1_0', 'downsample_1']``."""
    out: list[str] = []
    for part in torch_path:
        if part.isdigit():
            out[-1] = f"{out[-1]}_{part}"
        else:
            out.append(part)
    return out


def reference_linen_variables(state_dict: dict) -> dict:
    """The LinenResNet18 variables of a torch ResNet-18 state_dict, by hand."""
    flat = {}
    for key, value in state_dict.items():
        *path, leaf = key.split(".")
        names = tuple(linen_names(path))
        value = np.asarray(value)
        if leaf == "num_batches_tracked":
            continue
        if leaf == "running_mean":
            flat["batch_stats", *names, "mean"] = value
        elif leaf == "running_var":
            flat["batch_stats", *names, "var"] = value
        elif leaf == "weight" and value.ndim == 4:        # OIHW -> HWIO
            flat["params", *names, "kernel"] = value.transpose(2, 3, 1, 0)
        elif leaf == "weight" and value.ndim == 2:        # (out, in) -> (in, out)
            flat["params", *names, "kernel"] = value.T
        elif leaf == "weight":
            flat["params", *names, "scale"] = value
        else:
            flat["params", *names, leaf] = value
    return unflatten_dict(flat)


def reference_load_object(model: bridge.Module, state_dict: dict) -> None:
    """Assign a torch ResNet-18 state_dict to the object ResNet18, variable by variable."""
    for key, value in state_dict.items():
        *path, leaf = key.split(".")
        if leaf == "num_batches_tracked":
            continue
        layer = model
        for part in path:
            layer = layer[int(part)] if part.isdigit() else getattr(layer, part)
        value = np.asarray(value)
        if isinstance(layer, bridge.nn.Conv2D):
            assert leaf == "weight"
            layer.w.assign(jnp.asarray(value.transpose(2, 3, 1, 0)))
        elif isinstance(layer, bridge.nn.Linear):
            target = layer.w if leaf == "weight" else layer.b
            target.assign(jnp.asarray(value.T if leaf == "weight" else value))
        else:
            assert isinstance(layer, bridge.nn.BatchNorm2D)
            target = {"weight": layer.gamma, "bias": layer.beta,
                      "running_mean": layer.running_mean, "running_var": layer.running_var}[leaf]
            target.assign(jnp.asarray(value.reshape(1, -1, 1, 1)))


def assert_close_logits(actual, expected, rtol: float) -> float:
    """``|actual - expected| <= rtol * max|expected|``; returns the max abs difference."""
    actual, expected = np.asarray(actual), np.asarray(expected)
    assert actual.shape == expected.shape and actual.dtype == np.float32
    difference = float(np.max(np.abs(actual - expected)))
    assert difference <= rtol * float(np.max(np.abs(expected))), difference
    return difference


def linen_logits(variables: dict) -> jax.Array:
    return models.LinenResNet18().apply(variables, jnp.asarray(nhwc(reference_input())))


def object_logits(model: bridge.Module) -> jax.Array:
    return model(jnp.asarray(reference_input()), training=False)


@pytest.fixture(scope="module")
def state_dict() -> dict:
    return models.torch_resnet18_state_dict(seed=0)


@pytest.fixture(scope="module")
def linen_like() -> dict:
    """Zero LinenResNet18 variables (shapes from ``jax.eval_shape``: no eager init)."""
    shapes = jax.eval_shape(models.LinenResNet18().init, jax.random.PRNGKey(0),
                            jnp.zeros((1, 32, 32, 3)))
    return jax.tree.map(lambda s: np.zeros(s.shape, s.dtype), shapes)


@pytest.fixture(scope="module")
def torch_logits() -> np.ndarray:
    return np.load(LOGITS)


def tree_equal(a, b) -> bool:
    fa, fb = flatten_dict(a), flatten_dict(b)
    return fa.keys() == fb.keys() and all(
        np.asarray(fa[k]).dtype == np.asarray(fb[k]).dtype
        and np.array_equal(np.asarray(fa[k]), np.asarray(fb[k])) for k in fa)


def state_dicts_equal(a: dict, b: dict) -> bool:
    return list(a) == list(b) and all(
        np.asarray(a[k]).dtype == np.asarray(b[k]).dtype
        and np.array_equal(np.asarray(a[k]), np.asarray(b[k])) for k in a)


def without_step_counts(sd: dict) -> dict:
    return {k: v for k, v in sd.items() if not k.endswith(".num_batches_tracked")}


# ----- read_torch: names, kinds, layouts --------------------------------------------------
def test_read_torch_splits_names_into_module_paths_with_int_list_indices():
    hub, _ = read_torch({"layer1.0.downsample.1.bias": np.zeros(3, np.float32)})
    assert list(hub) == [("params", ("layer1", 0, "downsample", 1), "bias")]


def test_read_torch_transposes_a_linear_weight_to_an_in_out_kernel():
    weight = np.arange(6, dtype=np.float32).reshape(2, 3)   # (out, in)
    hub, _ = read_torch({"fc.weight": weight})
    np.testing.assert_array_equal(hub["params", ("fc",), "kernel"], weight.T)


@pytest.mark.parametrize("kernel_size", [(3,), (3, 5), (3, 5, 2)])
def test_read_torch_moves_a_conv_weight_from_out_in_spatial_to_spatial_in_out(kernel_size):
    weight = np.random.default_rng(0).standard_normal((4, 2, *kernel_size))
    hub, _ = read_torch({"conv.weight": weight})
    kernel = hub["params", ("conv",), "kernel"]
    assert kernel.shape == (*kernel_size, 2, 4)
    np.testing.assert_array_equal(kernel[(0,) * len(kernel_size) + (1, 3)],
                                  weight[(3, 1) + (0,) * len(kernel_size)])


def test_read_torch_maps_batch_norm_leaves_to_scale_bias_and_batch_stats():
    leaves = {leaf: np.full(3, i, np.float32)
              for i, leaf in enumerate(["weight", "bias", "running_mean", "running_var"])}
    hub, _ = read_torch({f"bn.{leaf}": value for leaf, value in leaves.items()})
    assert hub == {("params", ("bn",), "scale"): leaves["weight"],
                   ("params", ("bn",), "bias"): leaves["bias"],
                   ("batch_stats", ("bn",), "mean"): leaves["running_mean"],
                   ("batch_stats", ("bn",), "var"): leaves["running_var"]}


def test_read_torch_reads_running_statistics_without_affine_parameters_as_a_batch_norm():
    mean, var = np.zeros(3, np.float32), np.ones(3, np.float32)
    hub, _ = read_torch({"bn.running_mean": mean, "bn.running_var": var})
    assert hub == {("batch_stats", ("bn",), "mean"): mean, ("batch_stats", ("bn",), "var"): var}


def test_read_torch_drops_num_batches_tracked_and_lists_the_keys():
    hub, dropped = read_torch({"bn.running_mean": np.zeros(3), "bn.running_var": np.ones(3),
                               "bn.num_batches_tracked": np.array(7, np.int64)})
    assert dropped == ["bn.num_batches_tracked"]
    assert all(leaf != "num_batches_tracked" for _, _, leaf in hub)


def test_read_torch_reads_a_rank_one_weight_without_running_stats_as_a_norm_scale():
    weight, bias = np.ones(5, np.float32), np.zeros(5, np.float32)
    hub, _ = read_torch({"ln.weight": weight, "ln.bias": bias})
    assert hub == {("params", ("ln",), "scale"): weight, ("params", ("ln",), "bias"): bias}


def test_read_torch_kinds_reads_a_two_dimensional_weight_as_an_untransposed_embedding():
    weight = np.arange(12, dtype=np.float32).reshape(4, 3)   # (num, features)
    hub, _ = read_torch({"embed.weight": weight}, kinds={("embed",): "embedding"})
    assert list(hub) == [("params", ("embed",), "embedding")]
    np.testing.assert_array_equal(hub["params", ("embed",), "embedding"], weight)


def test_read_torch_ignores_kinds_for_modules_absent_from_the_state_dict():
    hub, _ = read_torch({"fc.bias": np.zeros(2)}, kinds={("embed",): "embedding"})
    assert list(hub) == [("params", ("fc",), "bias")]


def test_read_torch_keeps_unclassified_entries_under_their_own_names_in_params():
    token, odd = np.zeros((1, 1, 8), np.float32), np.zeros((2, 2, 2, 2, 2, 2), np.float32)
    hub, dropped = read_torch({"cls_token": token, "encoder.pos_embedding": token,
                               "odd.weight": odd})
    assert hub == {("params", (), "cls_token"): token,
                   ("params", ("encoder",), "pos_embedding"): token,
                   ("params", ("odd",), "weight"): odd}
    assert dropped == []


def test_read_torch_rejects_an_unknown_kind():
    with pytest.raises(ValueError):
        read_torch({"fc.weight": np.zeros((2, 3))}, kinds={("fc",): "dense"})


def test_read_torch_rejects_a_kind_whose_weight_has_another_rank():
    with pytest.raises(ValueError):
        read_torch({"fc.weight": np.zeros((2, 3))}, kinds={("fc",): "conv"})


def test_read_torch_rejects_two_keys_that_land_on_one_hub_entry():
    with pytest.raises(ValueError):
        read_torch({"ln.weight": np.ones(3), "ln.scale": np.ones(3)})


def test_read_torch_keeps_dtypes_and_passes_unmoved_values_through():
    bias = np.zeros(3, np.float16)
    hub, _ = read_torch({"fc.weight": np.zeros((3, 2), np.float32), "fc.bias": bias})
    assert hub["params", ("fc",), "kernel"].dtype == np.float32
    assert hub["params", ("fc",), "bias"] is bias


def test_read_torch_moves_jax_arrays_as_jax_arrays():
    hub, _ = read_torch({"conv.weight": jnp.ones((4, 2, 3, 3), jnp.bfloat16)})
    kernel = hub["params", ("conv",), "kernel"]
    assert isinstance(kernel, jax.Array) and kernel.dtype == jnp.bfloat16
    assert kernel.shape == (3, 3, 2, 4)


def test_read_torch_of_resnet18_has_the_linen_models_names_and_shapes(state_dict, linen_like):
    hub, _ = read_torch(state_dict)
    as_linen = {(collection, *linen_names([str(p) for p in path]), leaf): np.shape(value)
                for (collection, path, leaf), value in hub.items()}
    assert as_linen == {k: np.shape(v) for k, v in flatten_dict(linen_like).items()}


# ----- write_torch and the round trips ----------------------------------------------------
def test_write_torch_of_read_torch_gives_back_the_state_dict_with_zero_step_counts(state_dict):
    hub, dropped = read_torch(state_dict)
    back = write_torch(hub)
    assert state_dicts_equal(without_step_counts(back), without_step_counts(state_dict))
    assert [k for k in back if k.endswith("num_batches_tracked")] == dropped


def test_read_torch_of_write_torch_gives_back_the_hub():
    rng = np.random.default_rng(0)
    hub = {
        ("params", ("embed",), "embedding"): rng.standard_normal((7, 4)).astype(np.float32),
        ("params", ("blocks", 0, "conv"), "kernel"): rng.standard_normal((3, 4, 6)),
        ("params", ("blocks", 0, "conv"), "bias"): rng.standard_normal(6),
        ("params", ("blocks", 0, "bn"), "scale"): rng.standard_normal(6),
        ("params", ("blocks", 0, "bn"), "bias"): rng.standard_normal(6),
        ("batch_stats", ("blocks", 0, "bn"), "mean"): rng.standard_normal(6),
        ("batch_stats", ("blocks", 0, "bn"), "var"): rng.uniform(1, 2, 6),
        ("params", ("ln",), "scale"): rng.standard_normal(6),
        ("params", ("head",), "kernel"): rng.standard_normal((6, 2)).astype(np.float32),
        ("params", (), "cls_token"): rng.standard_normal((1, 1, 4)),
    }
    back, dropped = read_torch(write_torch(hub), kinds={("embed",): "embedding"})
    assert dropped == ["blocks.0.bn.num_batches_tracked"]
    assert back.keys() == hub.keys()
    for key, value in hub.items():
        assert back[key].dtype == value.dtype
        np.testing.assert_array_equal(back[key], value)


def test_read_torch_of_write_torch_gives_back_leaves_that_no_kind_explains():
    hub = {("params", ("odd",), "kernel"): np.zeros((1, 2, 1, 2, 1, 2)),
           ("params", ("grid_norm",), "scale"): np.ones((2, 3))}
    sd = write_torch(hub)
    assert list(sd) == ["odd.kernel", "grid_norm.scale"]
    assert read_torch(sd) == (hub, [])


def test_write_torch_names_and_layouts_match_pytorch():
    kernel = np.zeros((3, 3, 2, 5), np.float32)    # HWIO
    sd = write_torch({("params", ("features", 0), "kernel"): kernel,
                      ("params", ("fc",), "kernel"): np.zeros((5, 10), np.float32)})
    assert {k: v.shape for k, v in sd.items()} == {"features.0.weight": (5, 2, 3, 3),
                                                   "fc.weight": (10, 5)}


def test_write_torch_adds_an_int64_zero_num_batches_tracked_to_each_batch_norm():
    sd = write_torch({("params", ("bn",), "scale"): np.ones(2),
                      ("batch_stats", ("bn",), "mean"): np.zeros(2),
                      ("batch_stats", ("bn",), "var"): np.ones(2),
                      ("params", ("ln",), "scale"): np.ones(2)})
    step = sd["bn.num_batches_tracked"]
    assert step.shape == () and step.dtype == np.int64 and step == 0
    assert "ln.num_batches_tracked" not in sd


def test_write_torch_rejects_an_entry_outside_params_that_is_not_a_batch_statistic():
    with pytest.raises(ValueError):
        write_torch({("cache", ("attention",), "cached_key"): np.zeros(2)})


def test_write_torch_rejects_a_key_that_is_not_collection_path_leaf():
    with pytest.raises(TypeError):
        write_torch({("params", "fc", "bias"): np.zeros(2)})


# ----- safetensors files ------------------------------------------------------------------
def test_save_then_load_safetensors_keeps_names_shapes_dtypes_and_values(state_dict, tmp_path):
    path = tmp_path / "resnet18.safetensors"
    save_safetensors(state_dict, path)
    loaded = load_safetensors(path)
    assert all(isinstance(v, np.ndarray) for v in loaded.values())
    assert state_dicts_equal(dict(sorted(loaded.items())), dict(sorted(state_dict.items())))


def test_save_safetensors_writes_transposed_views_and_jax_arrays(tmp_path):
    view = np.arange(6, dtype=np.float32).reshape(2, 3).T
    save_safetensors({"view": view, "jax": jnp.arange(3, dtype=jnp.int32)},
                     tmp_path / "x.safetensors")
    loaded = load_safetensors(tmp_path / "x.safetensors")
    np.testing.assert_array_equal(loaded["view"], view)
    assert loaded["jax"].dtype == np.int32


@pytest.mark.parametrize("function", [load_safetensors,
                                      lambda path: save_safetensors({}, path)])
def test_safetensors_files_without_the_package_raise_import_error_naming_the_extra(
        function, monkeypatch, tmp_path):
    monkeypatch.setitem(sys.modules, "safetensors", None)
    monkeypatch.setitem(sys.modules, "safetensors.numpy", None)
    with pytest.raises(ImportError, match=r'pip install "jax-bridge\[torch\]"'):
        function(tmp_path / "x.safetensors")


# ----- the ResNet-18 models ---------------------------------------------------------------
def test_torch_resnet18_state_dict_has_torchvision_names_shapes_and_dtypes(state_dict):
    assert len(state_dict) == 122
    assert list(state_dict)[:6] == ["conv1.weight", "bn1.weight", "bn1.bias",
                                    "bn1.running_mean", "bn1.running_var",
                                    "bn1.num_batches_tracked"]
    assert list(state_dict)[-2:] == ["fc.weight", "fc.bias"]
    shapes = {k: v.shape for k, v in state_dict.items()}
    assert shapes["conv1.weight"] == (64, 3, 7, 7)
    assert shapes["layer1.1.conv2.weight"] == (64, 64, 3, 3)
    assert shapes["layer2.0.conv1.weight"] == (128, 64, 3, 3)
    assert shapes["layer4.0.downsample.0.weight"] == (512, 256, 1, 1)
    assert shapes["layer4.0.downsample.1.running_var"] == (512,)
    assert shapes["fc.weight"] == (10, 512)
    assert not any(k.startswith("layer1.0.downsample") for k in state_dict)
    steps = [v for k, v in state_dict.items() if k.endswith("num_batches_tracked")]
    assert len(steps) == 20 and all(v.dtype == np.int64 and v.shape == () for v in steps)
    others = [v for k, v in state_dict.items() if not k.endswith("num_batches_tracked")]
    assert all(v.dtype == np.float32 for v in others)
    assert all(np.all(v > 0) for k, v in state_dict.items() if k.endswith("running_var"))


def test_torch_resnet18_state_dict_is_a_function_of_the_seed(state_dict):
    again = models.torch_resnet18_state_dict(seed=0)
    other = models.torch_resnet18_state_dict(seed=1)
    assert state_dicts_equal(again, state_dict)
    assert not np.array_equal(other["fc.weight"], state_dict["fc.weight"])


def test_linen_resnet18_variables_are_named_after_the_torch_modules(state_dict, linen_like):
    reference = reference_linen_variables(state_dict)
    assert jax.tree.map(np.shape, reference) == jax.tree.map(np.shape, linen_like)


def test_object_resnet18_variable_names_read_like_the_torch_modules():
    names = list(models.ResNet18().vars().keys())
    assert names[0] == "(ResNet18).conv1(Conv2D).w"
    assert "(ResNet18).layer1(ModuleList)[0](BasicBlock).conv1(Conv2D).w" in names
    assert ("(ResNet18).layer2(ModuleList)[0](BasicBlock).downsample(Sequential)[1]"
            "(BatchNorm2D).running_var") in names
    assert names[-2:] == ["(ResNet18).fc(Linear).b", "(ResNet18).fc(Linear).w"]
    assert len(names) == 102   # the 122 torch entries less 20 num_batches_tracked


def test_linen_and_object_resnet18_with_the_same_torch_weights_give_the_same_logits(
        state_dict):
    model = models.ResNet18()
    reference_load_object(model, state_dict)
    expected = linen_logits(reference_linen_variables(state_dict))
    assert_close_logits(object_logits(model), expected, RTOL_BETWEEN_MODELS)


def test_linen_resnet18_with_torch_weights_gives_pytorchs_logits(state_dict, torch_logits):
    actual = linen_logits(reference_linen_variables(state_dict))
    assert_close_logits(actual, torch_logits, RTOL_TO_TORCH)


def test_object_resnet18_with_torch_weights_gives_pytorchs_logits(state_dict, torch_logits):
    model = models.ResNet18()
    reference_load_object(model, state_dict)
    assert_close_logits(object_logits(model), torch_logits, RTOL_TO_TORCH)


def test_live_pytorch_resnet18_gives_the_fixtures_logits(state_dict, torch_logits):
    pytest.importorskip("torch")
    script = _import_by_path("make_torch_reference", ROOT / "scripts" / "make_torch_reference.py")
    live = script.torch_logits(state_dict, reference_input())
    assert_close_logits(live, torch_logits, RTOL_TO_TORCH)


def test_live_pytorch_resnet18_and_the_linen_model_give_the_same_logits(state_dict):
    pytest.importorskip("torch")
    script = _import_by_path("make_torch_reference", ROOT / "scripts" / "make_torch_reference.py")
    live = script.torch_logits(state_dict, reference_input())
    actual = linen_logits(reference_linen_variables(state_dict))
    assert_close_logits(actual, live, RTOL_TO_TORCH)


# ======================================================================================
# ----- with bridge.interop's API: port(..., "torch", ...), load/to_torch_state_dict ---
# ======================================================================================
def test_port_torch_to_linen_like_the_linen_variables_equals_the_reference_loader(
        state_dict, linen_like):
    variables = bridge.interop.port(state_dict, "torch", "linen", like=linen_like)
    assert tree_equal(variables, reference_linen_variables(state_dict))


def test_port_torch_to_linen_gives_pytorchs_logits(state_dict, linen_like, torch_logits):
    variables = bridge.interop.port(state_dict, "torch", "linen", like=linen_like)
    assert_close_logits(linen_logits(variables), torch_logits, RTOL_TO_TORCH)


def test_load_torch_state_dict_loads_the_object_model_and_reports(state_dict, torch_logits):
    model = models.ResNet18()
    report = bridge.interop.load_torch_state_dict(model.vars(), state_dict)
    assert isinstance(report, bridge.interop.LoadReport)
    assert_close_logits(object_logits(model), torch_logits, RTOL_TO_TORCH)


def test_load_torch_state_dict_assigns_what_the_reference_loader_assigns(state_dict):
    model, reference = models.ResNet18(), models.ResNet18()
    bridge.interop.load_torch_state_dict(model.vars(), state_dict)
    reference_load_object(reference, state_dict)
    for (name, var), (_, ref) in zip(model.vars().items(), reference.vars().items()):
        np.testing.assert_array_equal(var.value, ref.value, err_msg=name)


def test_to_torch_state_dict_gives_back_the_torch_names_and_arrays(state_dict):
    model = models.ResNet18()
    reference_load_object(model, state_dict)
    back = bridge.interop.to_torch_state_dict(model.vars())
    assert sorted(back) == sorted(state_dict)
    for name, value in state_dict.items():
        if name.endswith("num_batches_tracked"):
            assert np.asarray(back[name]).dtype == np.int64 and np.shape(back[name]) == ()
        else:
            np.testing.assert_array_equal(np.asarray(back[name]), value, err_msg=name)


def test_bfloat16_weights_load_as_bfloat16(tmp_path):
    weight = np.arange(6, dtype=np.float32).reshape(2, 3).astype(jnp.bfloat16)
    save_safetensors({"fc.weight": weight}, tmp_path / "bf16.safetensors")
    loaded = load_safetensors(tmp_path / "bf16.safetensors")
    assert loaded["fc.weight"].dtype == jnp.bfloat16
    hub, _ = read_torch(loaded)
    np.testing.assert_array_equal(np.asarray(hub["params", ("fc",), "kernel"], np.float32),
                                  weight.T.astype(np.float32))


@pytest.mark.parametrize("scheme", ["haiku", "nnx", "linen"])
def test_torch_weights_cross_every_scheme_and_come_back_unchanged(state_dict, scheme):
    back = bridge.interop.port(bridge.interop.port(state_dict, "torch", scheme), scheme,
                               "torch")
    assert back.keys() == state_dict.keys()
    for name, value in state_dict.items():
        if name.endswith("num_batches_tracked"):
            assert int(back[name]) == 0      # a step counter nothing in JAX keeps
            continue
        np.testing.assert_array_equal(np.asarray(back[name]), value, err_msg=name)


def test_torch_weights_reach_an_nnx_model_as_typed_variables(state_dict):
    from flax import nnx

    state = bridge.interop.port(state_dict, "torch", "nnx")
    assert isinstance(state["layer1"][0]["conv1"]["kernel"], nnx.Param)
    assert isinstance(state["bn1"]["mean"], nnx.BatchStat)
    assert state["layer1"][0]["conv1"]["kernel"].get_value().shape == (3, 3, 64, 64)


def test_a_top_level_torch_sequential_ports_into_a_linen_sequential():
    import flax.linen as nn

    rng = np.random.default_rng(0)
    sd = {"0.weight": rng.standard_normal((8, 4)).astype(np.float32),
          "0.bias": rng.standard_normal(8).astype(np.float32),
          "2.weight": rng.standard_normal((3, 8)).astype(np.float32),
          "2.bias": rng.standard_normal(3).astype(np.float32)}
    model = nn.Sequential([nn.Dense(8), nn.relu, nn.Dense(3)])
    x = rng.standard_normal((2, 4)).astype(np.float32)
    variables = bridge.interop.port(sd, "torch", "linen", like=model.init(jax.random.PRNGKey(0), x))
    assert sorted(variables["params"]) == ["layers_0", "layers_2"]
    expected = np.maximum(x @ sd["0.weight"].T + sd["0.bias"], 0) @ sd["2.weight"].T + sd["2.bias"]
    np.testing.assert_allclose(model.apply(variables, x), expected, rtol=1e-5, atol=1e-5)
