"""Pretrained weights: Keras ResNet-v2 conversion (with stand-in Keras layers, TensorFlow
being optional) and VGG19's weight and class-name files, offline."""

from __future__ import annotations

import os
import sys
import types

import jax.numpy as jnp
import numpy as np
import pytest

import bridge
from bridge.zoo import vgg
from bridge.zoo.resnet_v2 import (
    ResNetV2,
    convert_bn_layer,
    convert_conv_or_linear_layer,
    convert_keras_model,
    load_pretrained_weights_from_keras,
)

# ----- Keras ResNet-v2 ----------------------------------------------------------------------


class FakeKerasModel:
    """What ``convert_keras_model`` uses of a Keras model: ``layers`` and ``get_layer``."""

    def __init__(self, layers):
        self.layers = layers

    def get_layer(self, name):
        for layer in self.layers:
            if layer.name == name:
                return layer
        raise ValueError(f"No such layer: {name}")


def fake_keras_resnet_v2(num_blocks, channels, num_classes=None, seed=0):
    """Layers named and shaped as in ``tf.keras.applications.ResNet50V2`` (kernels HWIO;
    biases only where Keras has them), plus weightless layers Keras also has."""
    rng = np.random.RandomState(seed)

    def conv(name, k, nin, nout, bias):
        return types.SimpleNamespace(
            name=name, kernel=rng.normal(size=(k, k, nin, nout)).astype(np.float32),
            bias=rng.normal(size=nout).astype(np.float32) if bias else None)

    def bn(name, c):
        return types.SimpleNamespace(
            name=name, gamma=rng.uniform(0.5, 2, c).astype(np.float32),
            beta=rng.normal(size=c).astype(np.float32),
            moving_mean=rng.normal(size=c).astype(np.float32),
            moving_variance=rng.uniform(0.5, 2, c).astype(np.float32))

    layers = [types.SimpleNamespace(name="input_1"), types.SimpleNamespace(name="conv1_pad"),
              conv("conv1_conv", 7, 3, 64, bias=True), types.SimpleNamespace(name="pool1_pool")]
    nin = 64
    for group, (blocks, nout) in enumerate(zip(num_blocks, channels)):
        inner = nout // 4
        for i in range(blocks):
            prefix = f"conv{group + 2}_block{i + 1}_"
            block_in = nin if i == 0 else nout
            layers.append(bn(prefix + "preact_bn", block_in))
            layers.append(types.SimpleNamespace(name=prefix + "preact_relu"))
            if i == 0:
                layers.append(conv(prefix + "0_conv", 1, block_in, nout, bias=True))
            layers += [conv(prefix + "1_conv", 1, block_in, inner, bias=False),
                       bn(prefix + "1_bn", inner),
                       conv(prefix + "2_conv", 3, inner, inner, bias=False),
                       bn(prefix + "2_bn", inner),
                       conv(prefix + "3_conv", 1, inner, nout, bias=True),
                       types.SimpleNamespace(name=prefix + "out")]
        nin = nout
    layers.append(bn("post_bn", nin))
    if num_classes is not None:
        layers.append(types.SimpleNamespace(
            name="predictions", kernel=rng.normal(size=(nin, num_classes)).astype(np.float32),
            bias=rng.normal(size=num_classes).astype(np.float32)))
    return FakeKerasModel(layers)


BLOCKS, CHANNELS = [1, 2, 1, 1], [8, 8, 16, 16]


def small_resnet():
    """A 4-group bottleneck ResNetV2, the layout ``convert_keras_model`` expects."""
    return ResNetV2(3, 5, blocks_per_group=BLOCKS, channels_per_group=CHANNELS,
                    group_strides=(2, 2, 2, 1))


def snapshot(model):
    return {k: np.asarray(v.value) for k, v in model.vars().items()}


def test_convert_keras_model_puts_every_array_in_place():
    model = small_resnet()
    keras = fake_keras_resnet_v2(BLOCKS, CHANNELS, num_classes=5)
    stem_w = model[0].w
    convert_keras_model(keras, model, BLOCKS)
    layer = keras.get_layer

    # Weights are assigned in place (optimizers built before keep working).
    assert model[0].w is stem_w
    np.testing.assert_array_equal(model[0].w.value, layer("conv1_conv").kernel)
    np.testing.assert_array_equal(model[0].b.value, layer("conv1_conv").bias[:, None, None])
    for group, blocks in enumerate(BLOCKS):
        for i in range(blocks):
            block, prefix = model[3 + group][i], f"conv{group + 2}_block{i + 1}_"
            for conv, suffix in [(block.conv_0, "1_conv"), (block.conv_1, "2_conv"),
                                 (block.conv_2, "3_conv")]:
                np.testing.assert_array_equal(conv.w.value, layer(prefix + suffix).kernel)
            assert block.conv_0.b is None and block.conv_1.b is None
            np.testing.assert_array_equal(block.conv_2.b.value[:, 0, 0],
                                          layer(prefix + "3_conv").bias)
            if i == 0:
                np.testing.assert_array_equal(block.proj_conv.w.value,
                                              layer(prefix + "0_conv").kernel)
            for norm, suffix in [(block.norm_0, "preact_bn"), (block.norm_1, "1_bn"),
                                 (block.norm_2, "2_bn")]:
                keras_bn = layer(prefix + suffix)
                np.testing.assert_array_equal(norm.gamma.value.ravel(), keras_bn.gamma)
                np.testing.assert_array_equal(norm.beta.value.ravel(), keras_bn.beta)
                np.testing.assert_array_equal(norm.running_mean.value.ravel(),
                                              keras_bn.moving_mean)
                np.testing.assert_array_equal(norm.running_var.value.ravel(),
                                              keras_bn.moving_variance)
                assert norm.running_var.value.shape == (1, keras_bn.gamma.size, 1, 1)
    np.testing.assert_array_equal(model[7].gamma.value.ravel(), layer("post_bn").gamma)
    np.testing.assert_array_equal(model[10].w.value, layer("predictions").kernel)
    np.testing.assert_array_equal(model[10].b.value, layer("predictions").bias)

    # The Keras biases are new variables of the model, and it still runs.
    assert "(ResNetV2)[0](Conv2D).b" in model.vars()
    assert model(jnp.ones((2, 3, 32, 32)), training=False).shape == (2, 5)


def test_convert_keras_model_without_top_leaves_the_classifier():
    model = small_resnet()
    head = np.asarray(model[10].w.value)
    convert_keras_model(fake_keras_resnet_v2(BLOCKS, CHANNELS), model, BLOCKS,
                        include_top=False)
    np.testing.assert_array_equal(model[10].w.value, head)


def test_convert_keras_model_is_all_or_nothing():
    model = small_resnet()
    before = snapshot(model)
    keras = fake_keras_resnet_v2(BLOCKS, CHANNELS, num_classes=6)  # the model has 5 classes
    with pytest.raises(ValueError, match="predictions"):
        convert_keras_model(keras, model, BLOCKS)
    after = snapshot(model)
    assert list(after) == list(before)
    for name in before:
        np.testing.assert_array_equal(after[name], before[name], err_msg=name)

    keras = fake_keras_resnet_v2(BLOCKS, CHANNELS, num_classes=5)
    keras.layers = [la for la in keras.layers if la.name != "conv3_block2_2_bn"]
    with pytest.raises(ValueError, match="2_bn"):
        convert_keras_model(keras, model, BLOCKS)
    assert list(snapshot(model)) == list(before)


def test_convert_single_layers():
    conv = bridge.nn.Conv2D(2, 3, 3, use_bias=False)
    keras_conv = types.SimpleNamespace(name="c", kernel=np.ones((3, 3, 2, 3), np.float32),
                                       bias=np.arange(3, dtype=np.float32))
    convert_conv_or_linear_layer(keras_conv, conv)
    assert conv.b.value.shape == (3, 1, 1)

    linear = bridge.nn.Linear(4, 2)
    convert_conv_or_linear_layer(types.SimpleNamespace(
        name="d", kernel=np.ones((4, 2), np.float32), bias=None), linear)
    assert linear.b is None
    np.testing.assert_array_equal(linear(jnp.ones((1, 4))), [[4.0, 4.0]])

    norm = bridge.nn.BatchNorm2D(3)
    with pytest.raises(ValueError, match="moving_variance"):
        convert_bn_layer(types.SimpleNamespace(name="bn", gamma=np.ones(3), beta=np.ones(3),
                                               moving_mean=np.ones(3),
                                               moving_variance=np.ones(4)), norm)
    np.testing.assert_array_equal(norm.gamma.value, np.ones((1, 3, 1, 1)))
    np.testing.assert_array_equal(norm.beta.value, np.zeros((1, 3, 1, 1)))


@pytest.mark.parametrize("stand_in", [None, types.ModuleType("tensorflow")],
                         ids=["not installed", "stub without keras"])
def test_keras_weights_need_tensorflow(monkeypatch, stand_in):
    monkeypatch.setitem(sys.modules, "tensorflow", stand_in)
    with pytest.raises(ImportError, match="pip install tensorflow"):
        load_pretrained_weights_from_keras("ResNet50")


def test_keras_weights_argument_errors(monkeypatch):
    monkeypatch.setitem(sys.modules, "tensorflow", None)  # checked before TensorFlow
    with pytest.raises(ValueError, match="ResNet18"):
        load_pretrained_weights_from_keras("ResNet18")
    with pytest.raises(ValueError, match="num_classes=10"):
        load_pretrained_weights_from_keras("ResNet50", include_top=True, num_classes=10)


# ----- VGG19 --------------------------------------------------------------------------------


@pytest.fixture
def vgg_files(tmp_path, monkeypatch):
    """Point VGG19 at files in a temporary directory; the download URL is local."""
    weights, synset = tmp_path / "vgg19.npy", tmp_path / "sub" / "synset.txt"
    monkeypatch.setattr(vgg, "_VGG19_NPY", str(weights))
    monkeypatch.setattr(vgg, "_SYNSET_PATH", str(synset))
    monkeypatch.setattr(vgg, "_SYNSET_URL", (tmp_path / "missing.txt").as_uri())
    return weights, synset


def save_weights(path, weights):
    np.save(path, np.array(weights, dtype=object), allow_pickle=True)


def test_vgg19_pretrained_needs_the_weights_file(vgg_files):
    weights, _ = vgg_files
    with pytest.raises(FileNotFoundError, match="vgg19.npy") as info:
        vgg.VGG19(pretrained=True)
    assert str(weights) in str(info.value)
    assert vgg._VGG19_URL in str(info.value)


def test_vgg19_offline_class_names_error(vgg_files):
    weights, synset = vgg_files
    save_weights(weights, {})
    with pytest.raises(OSError, match="synset.txt") as info:
        vgg.VGG19(pretrained=True)
    assert vgg._SYNSET_URL in str(info.value) and "by hand" in str(info.value)
    assert not synset.exists()


def test_vgg19_class_names_download(vgg_files, tmp_path, monkeypatch):
    _, synset = vgg_files
    source = tmp_path / "served_synset.txt"
    source.write_text("n01440764 tench\n")
    monkeypatch.setattr(vgg, "_SYNSET_URL", source.as_uri())
    vgg._fetch_synset()
    assert synset.read_text() == "n01440764 tench\n"


def test_vgg19_rejects_weights_of_the_wrong_shape(vgg_files):
    weights, _ = vgg_files
    save_weights(weights, {"conv1_1": [np.zeros((3, 3, 3, 32)), np.zeros(32)],
                           "conv9_9": [np.zeros(1), np.zeros(1)]})
    with pytest.raises(ValueError, match="conv1_1.*conv9_9"):
        vgg.VGG19(pretrained=True)


class _RunsCode:
    def __reduce__(self):
        return (os.system, ("echo unpickled > /dev/null",))


def test_vgg19_weights_file_that_names_other_objects_is_refused(vgg_files):
    weights, _ = vgg_files
    save_weights(weights, {"conv1_1": [_RunsCode(), np.zeros(64)]})
    with pytest.raises(ValueError, match="not allowed in a weights file"):
        vgg.VGG19(pretrained=True)


def test_fc6_rows_follow_the_nchw_flattening():
    """A dense kernel for NHWC-flattened features, reordered, gives the same outputs on the
    NCHW-flattened features (what ``bridge.functional.flatten`` produces)."""
    rng = np.random.RandomState(0)
    n, c, h, w, out = 2, 5, 3, 4, 6
    x = rng.normal(size=(n, c, h, w))
    kernel = rng.normal(size=(h * w * c, out))
    nhwc = x.transpose(0, 2, 3, 1).reshape(n, -1)
    np.testing.assert_allclose(x.reshape(n, -1) @ vgg._fc6_from_hwc(kernel, h, w, c),
                               nhwc @ kernel)


def test_vgg_preprocess_is_bgr_minus_means():
    x = np.random.RandomState(0).uniform(0, 255, size=(2, 3, 4, 4)).astype(np.float32)
    expected = x[:, ::-1] - np.array([103.939, 116.779, 123.68], np.float32)[:, None, None]
    np.testing.assert_allclose(vgg.preprocess(x), expected, rtol=1e-6)


@pytest.mark.slow
def test_vgg19_loads_pretrained_weights(vgg_files):
    weights, synset = vgg_files
    synset.parent.mkdir()
    synset.write_text("")
    rng = np.random.RandomState(0)
    conv1 = [rng.normal(size=(3, 3, 3, 64)).astype(np.float32), np.arange(64, dtype=np.float32)]
    fc8 = [rng.normal(size=(4096, 1000)).astype(np.float32), np.ones(1000, np.float32)]
    save_weights(weights, {"conv1_1": conv1, "fc8": fc8})
    model = vgg.VGG19(pretrained=True)
    assert model.conv1_1 is model[0] and model.fc8 is model[-1]
    np.testing.assert_array_equal(model[0].w.value, conv1[0])
    np.testing.assert_array_equal(model[0].b.value, conv1[1][:, None, None])
    np.testing.assert_array_equal(model[-1].w.value, fc8[0])
    assert len(model.vars()) == 38
    assert model(jnp.zeros((1, 3, 224, 224))).shape == (1, 1000)
