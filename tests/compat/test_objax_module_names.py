"""Objax module paths that code imports from: ``objax.util``, ``objax.typing``,
``objax.constants``, ``objax.io.checkpoint``; and the error a mismatched restore raises."""

import importlib

import jax
import numpy as np
import pytest

import bridge


@pytest.mark.parametrize("module, names", [
    ("bridge.util", ["Renamer"]),
    ("bridge.typing", ["JaxArray", "JaxDType", "FileOrStr", "ConvPaddingInt"]),
    ("bridge.constants", ["ConvPadding"]),
    ("bridge.io.checkpoint", ["Checkpoint"]),
    ("bridge.variable", ["BaseVar", "BaseState", "RandomState", "TrainRef", "StateVar",
                         "TrainVar", "VarCollection"]),
    ("bridge.module", ["ForceArgs", "Function", "Jit", "Module", "ModuleList", "Parallel",
                       "Vectorize"]),
    ("bridge.gradient", ["Grad", "GradValues", "Hessian", "Jacobian"]),
    ("bridge", ["ConvPadding"]),
])
def test_objax_module_paths_import(module, names):
    imported = importlib.import_module(module)
    for name in names:
        assert hasattr(imported, name), f"{module}.{name}"


def test_jax_array_is_jax_array():
    assert bridge.typing.JaxArray is jax.Array


def test_constants_conv_padding_configures_conv2d():
    same = bridge.nn.Conv2D(3, 4, 3, padding=bridge.constants.ConvPadding.SAME)
    valid = bridge.nn.Conv2D(3, 4, 3, padding=bridge.constants.ConvPadding.VALID)
    x = np.zeros((1, 3, 8, 8), np.float32)
    assert same(x).shape == (1, 4, 8, 8)
    assert valid(x).shape == (1, 4, 6, 6)


def test_io_checkpoint_module_is_the_checkpoint_manager():
    assert bridge.io.checkpoint.Checkpoint is bridge.checkpoint.Checkpoint


def test_mismatched_restore_raises_assertion_error_as_objax_did(tmp_path):
    small, large = bridge.nn.Linear(2, 3), bridge.nn.Linear(2, 5)
    ckpt = bridge.io.checkpoint.Checkpoint(str(tmp_path), keep_ckpts=2)
    ckpt.save(small.vars(), 1)
    before = np.asarray(large.w.value)
    with pytest.raises(AssertionError):
        ckpt.restore(large.vars())
    with pytest.raises(bridge.checkpoint.CheckpointMismatchError):
        ckpt.restore(large.vars())
    np.testing.assert_array_equal(large.w.value, before)


def test_objax_module_paths_hold_the_same_objects_as_the_top_level():
    assert bridge.variable.TrainVar is bridge.TrainVar
    assert bridge.module.Jit is bridge.Jit and bridge.module.Parallel is bridge.Parallel
    assert bridge.gradient.GradValues is bridge.GradValues
    assert bridge.ConvPadding is bridge.constants.ConvPadding


def test_checkpoint_idx_reads_objax_file_names():
    Checkpoint = bridge.io.Checkpoint
    assert Checkpoint.checkpoint_idx("/logs/ckpt/0000000007.npz") == 7
    assert Checkpoint.checkpoint_idx("ckpt/0000000042.msgpack") == 42
    with pytest.raises(ValueError, match="not a checkpoint file name"):
        Checkpoint.checkpoint_idx("model.pkl")
