"""VGG-19 (Simonyan & Zisserman, https://arxiv.org/abs/1409.1556), Objax's
``objax.zoo.vgg.VGG19``, optionally with the ImageNet weights of
https://github.com/machrisaa/tensorflow-vgg (a ``vgg19.npy`` file you download yourself).
"""

from __future__ import annotations

import os
import pickle
import urllib.error
import urllib.request
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from bridge import functional
from bridge.functional import ConvPadding
from bridge.nn import Conv2D, Linear
from bridge.state._access import commit
from bridge.zoo._common import ZooSequential

__all__ = ["VGG19", "preprocess", "max_pool_2d"]

# Where Objax looks for the files (relative to the working directory), so that a setup made
# for Objax works unchanged; assign other paths to these module attributes if you keep the
# files elsewhere.
_VGG19_URL = "https://github.com/machrisaa/tensorflow-vgg"
_VGG19_NPY = "./objax/zoo/pretrained/vgg19.npy"
_SYNSET_URL = "https://raw.githubusercontent.com/machrisaa/tensorflow-vgg/master/synset.txt"
_SYNSET_PATH = "./objax/zoo/pretrained/synset.txt"

_BGR_MEAN = (103.939, 116.779, 123.68)

# (name, input channels, output channels) of the convolutions; a pooling ends each stage.
_STAGES = [
    [("conv1_1", 3, 64), ("conv1_2", 64, 64)],
    [("conv2_1", 64, 128), ("conv2_2", 128, 128)],
    [("conv3_1", 128, 256), ("conv3_2", 256, 256), ("conv3_3", 256, 256), ("conv3_4", 256, 256)],
    [("conv4_1", 256, 512), ("conv4_2", 512, 512), ("conv4_3", 512, 512), ("conv4_4", 512, 512)],
    [("conv5_1", 512, 512), ("conv5_2", 512, 512), ("conv5_3", 512, 512), ("conv5_4", 512, 512)],
]
_DENSE = [("fc6", 512 * 7 * 7, 4096), ("fc7", 4096, 4096), ("fc8", 4096, 1000)]


def preprocess(x: jax.Array) -> jax.Array:
    """RGB images in ``[0, 255]``, shape ``(N, 3, H, W)``, to the network's input: BGR
    channel order with the ImageNet channel means subtracted.

    ``VGG19`` does not call this itself (as in Objax): apply it to the images first.
    """
    red, green, blue = x[:, 0], x[:, 1], x[:, 2]
    return jnp.stack([blue - _BGR_MEAN[0], green - _BGR_MEAN[1], red - _BGR_MEAN[2]], axis=1)


def max_pool_2d(x: jax.Array) -> jax.Array:
    """The 2x2, stride-2, VALID max pool that ends each VGG stage."""
    return functional.max_pool_2d(x, size=2, strides=2, padding=ConvPadding.VALID)


def _fc6_from_hwc(kernel: np.ndarray, height: int = 7, width: int = 7,
                  channels: int = 512) -> np.ndarray:
    """Reorder the rows of a dense kernel trained on NHWC-flattened features for
    NCHW-flattened ones (``bridge.functional.flatten`` of an NCHW tensor)."""
    out = kernel.shape[-1]
    hwc = kernel.reshape(height, width, channels, out)
    return hwc.transpose(2, 0, 1, 3).reshape(channels * height * width, out)


def _expected_shapes() -> dict[str, tuple[tuple[int, ...], tuple[int, ...]]]:
    """``{layer: (kernel shape, bias shape)}`` as stored in ``vgg19.npy``."""
    shapes = {name: ((3, 3, nin, nout), (nout,)) for convs in _STAGES for name, nin, nout in convs}
    shapes.update({name: ((nin, nout), (nout,)) for name, nin, nout in _DENSE})
    return shapes


class _ArraysOnlyUnpickler(pickle.Unpickler):
    """Unpickles NumPy arrays inside plain containers, and refuses every other object.

    ``vgg19.npy`` is a pickled ``{layer: [kernel, bias]}`` dict. A general unpickler would
    run whatever callable a file names; this one resolves only the NumPy constructors an
    array needs, so a tampered file fails instead of running code.
    """

    _ALLOWED = {(module, name)
                for module in ("numpy.core.multiarray", "numpy._core.multiarray")
                for name in ("_reconstruct", "scalar")} | {("numpy", "ndarray"),
                                                            ("numpy", "dtype")}

    def find_class(self, module: str, name: str) -> Any:
        if (module, name) not in self._ALLOWED:
            raise pickle.UnpicklingError(
                f"{module}.{name} is not allowed in a weights file: only NumPy arrays in "
                "dicts and lists are read.")
        return super().find_class(module, name)


def _read_pickled_arrays(path: str) -> Any:
    """The object stored in an ``.npy`` file of dtype object, read with the unpickler above.

    (``np.load(path, allow_pickle=True)`` would unpickle without restriction.)
    """
    with open(path, "rb") as f:
        version = np.lib.format.read_magic(f)
        read_header = (np.lib.format.read_array_header_1_0 if version == (1, 0)
                       else np.lib.format.read_array_header_2_0)
        shape, _, dtype = read_header(f)
        if dtype != np.dtype(object) or shape != ():
            raise ValueError(f"{path} does not hold VGG19 weights: expected one pickled dict, "
                             f"found an array of dtype {dtype} and shape {shape}.")
        try:
            stored = _ArraysOnlyUnpickler(f, encoding="latin1").load()
        except pickle.UnpicklingError as error:
            raise ValueError(f"{path} does not hold VGG19 weights: {error}") from error
    return stored.item() if isinstance(stored, np.ndarray) else stored


def _load_weights() -> dict[str, Any]:
    """Read ``vgg19.npy`` and check every layer it holds against VGG-19's shapes."""
    if not os.path.exists(_VGG19_NPY):
        raise FileNotFoundError(
            f"VGG19(pretrained=True) needs the ImageNet weights file vgg19.npy: download it "
            f"as described at {_VGG19_URL} and save it to {_VGG19_NPY} (or set "
            f"bridge.zoo.vgg._VGG19_NPY to its path).")
    weights = _read_pickled_arrays(_VGG19_NPY)
    expected, problems = _expected_shapes(), []
    for name, arrays in weights.items():
        if not name.startswith(("conv", "fc")):
            continue  # Objax skips other entries too
        if name not in expected:
            problems.append(f"{name}: not a VGG19 layer")
            continue
        got = tuple(tuple(np.shape(a)) for a in arrays)
        if got != expected[name]:
            problems.append(f"{name}: kernel and bias of shapes {got}, expected {expected[name]}")
    if problems:
        raise ValueError(f"{_VGG19_NPY} does not hold VGG19 weights: " + "; ".join(problems))
    return weights


def _fetch_synset() -> None:
    """Download the ImageNet class names next to the weights, once."""
    if os.path.exists(_SYNSET_PATH):
        return
    try:
        os.makedirs(os.path.dirname(_SYNSET_PATH) or ".", exist_ok=True)
        urllib.request.urlretrieve(_SYNSET_URL, _SYNSET_PATH)
    except (urllib.error.URLError, OSError) as err:
        raise OSError(
            f"Could not download the ImageNet class names (synset.txt) from {_SYNSET_URL} to "
            f"{_SYNSET_PATH}: {err}. Offline, copy the file there by hand (or set "
            f"bridge.zoo.vgg._SYNSET_PATH to a copy).") from err


class VGG19(ZooSequential):
    """VGG-19 for 224x224 images: 16 3x3 convolutions in five stages, each stage ending in
    a 2x2 max pool, then three ``Linear`` layers to 1000 logits.

    Args:
      pretrained: load the ImageNet weights from ``vgg19.npy`` (at ``_VGG19_NPY``, by
        default ``./objax/zoo/pretrained/vgg19.npy`` as in Objax; see
        https://github.com/machrisaa/tensorflow-vgg) and download the class names
        ``synset.txt`` beside it if missing. Without it the weights are random and no file
        is needed.

    Raises:
      FileNotFoundError: ``pretrained`` and the weights file is missing.
      ValueError: ``pretrained`` and the file holds an unknown layer or a wrong shape (all
        problems are listed; nothing is built).
      OSError: ``pretrained``, ``synset.txt`` is missing and cannot be downloaded.

    The layers are also attributes named as in the weights file (``conv1_1`` ... ``conv5_4``,
    ``fc6``, ``fc7``, ``fc8``, and ``relu*``, ``pool*``, ``flatten``); ``vars()`` names them by
    position, ``(VGG19)[0](Conv2D).b`` ... ``(VGG19)[42](Linear).w``, as in Objax.
    Input ``(N, 3, 224, 224)`` already passed through ``preprocess``, output ``(N, 1000)``.

    Example::

        model = VGG19(pretrained=True)
        logits = model(preprocess(images))   # images: RGB in [0, 255], (N, 3, 224, 224)
    """

    def __init__(self, pretrained: bool = False):
        self.pretrained = pretrained
        if pretrained:
            # Read the file before building anything, so a missing file fails fast.
            self.data_dict = _load_weights()
            _fetch_synset()
        else:
            self.data_dict = {}
        self.ops = self.build()
        super().__init__(self.ops)

    def build(self) -> list:
        """Make the layers (as attributes), load ``data_dict`` into them, return them in order."""
        self.preprocess = preprocess
        ops: list = []
        for stage, convs in enumerate(_STAGES, start=1):
            for name, nin, nout in convs:
                setattr(self, name, Conv2D(nin=nin, nout=nout, k=3))
                setattr(self, "relu" + name[4:], functional.relu)
                ops += [getattr(self, name), functional.relu]
            setattr(self, f"pool{stage}", max_pool_2d)
            ops.append(max_pool_2d)
        self.flatten = functional.flatten
        ops.append(functional.flatten)
        for name, nin, nout in _DENSE:
            setattr(self, name, Linear(nin=nin, nout=nout))
            ops.append(getattr(self, name))
            if name != "fc8":
                setattr(self, "relu" + name[2:], functional.relu)
                ops.append(functional.relu)
        self._load(self.data_dict)
        return ops

    def _load(self, weights: dict[str, Any]) -> None:
        """Assign ``{layer name: [kernel, bias]}`` (checked by ``_load_weights``), all in one
        commit."""
        variables, values = [], []
        for name, (kernel, bias) in weights.items():
            if not name.startswith(("conv", "fc")):
                continue
            layer = getattr(self, name)
            kernel, bias = np.asarray(kernel), np.asarray(bias)
            if name == "fc6":
                kernel = _fc6_from_hwc(kernel)
            if name.startswith("conv"):
                bias = bias[:, None, None]
            variables += [layer.w, layer.b]
            values += [jnp.asarray(kernel, dtype=layer.w.value.dtype),
                       jnp.asarray(bias, dtype=layer.b.value.dtype)]
        commit(variables, values, owner="VGG19 pretrained weights")
