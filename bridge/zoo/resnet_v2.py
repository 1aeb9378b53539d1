"""ResNet v2, the pre-activation residual network (He et al., https://arxiv.org/abs/1603.05027),
with Objax's module path, names and variable layout (``objax.zoo.resnet_v2``).

``load_pretrained_weights_from_keras`` builds ResNet50/101/152 with the ImageNet weights of
``tf.keras.applications.ResNet*V2``; it needs TensorFlow, imported only when called.
"""

from __future__ import annotations

import functools
from typing import Any, Callable, Optional, Sequence, Union

import jax
import jax.numpy as jnp
import numpy as np

from bridge import functional
from bridge.functional import ConvPadding
from bridge.functional._padding import ConvPaddingInt, to_tuple
from bridge.nn import BatchNorm2D, Conv2D, Linear
from bridge.nn.init import xavier_normal
from bridge.state import BaseVar, Module, StateVar, TrainVar
from bridge.zoo._common import ZooSequential, mean_hw, scaled_normal

__all__ = ["ResNetV2", "ResNet18", "ResNet34", "ResNet50", "ResNet101", "ResNet152", "ResNet200",
           "load_pretrained_weights_from_keras"]

Activation = Callable[[jax.Array], jax.Array]
Normalization = Callable[..., Module]


def conv_args(kernel_size: int, nout: int,
              padding: Union[ConvPadding, str, ConvPaddingInt] = ConvPadding.VALID,
              ) -> dict[str, Any]:
    """The ``Conv2D`` keyword arguments every ResNet-v2 convolution shares.

    Args:
      kernel_size: the (square) kernel size.
      nout: output channels.
      padding: the convolution's padding (explicit pairs such as ``(1, 1)`` for 3x3
        kernels, so that strided convolutions pad as Keras' ResNets do).

    Returns:
      ``dict(w_init=..., use_bias=False, padding=padding)`` where ``w_init`` draws normal
      weights of standard deviation ``1 / sqrt(0.5 * kernel_size**2 * nout)``.
    """
    return dict(w_init=scaled_normal(kernel_size, nout), use_bias=False, padding=padding)


class ResNetV2Block(Module):
    """A pre-activation residual block, plain (two 3x3 convolutions) or bottleneck (1x1, 3x3,
    1x1 with ``nout // 4`` inner channels).

    Args:
      nin: input channels.
      nout: output channels.
      stride: stride of the 3x3 convolution that ends (plain) or sits in the middle of
        (bottleneck) the block, and of the projection.
      use_projection: make the shortcut a 1x1 convolution (``proj_conv``) of the first
        activation; otherwise the shortcut is the input, subsampled by ``stride`` when it
        is above 1 (so ``nin`` must equal ``nout``).
      bottleneck: build the bottleneck form.
      normalization_fn: called as ``normalization_fn(channels)`` for each normalization
        layer; the layers are called as ``layer(x, training)``.
      activation_fn: the activation after each normalization.

    Each stage ``i`` computes ``conv_i(activation_fn(norm_i(x)))``. Variables, in order:
    ``proj_conv`` (only when ``use_projection``; otherwise there is no such attribute),
    ``norm_0``, ``conv_0``, ``norm_1``, ``conv_1`` and, for bottlenecks, ``norm_2``,
    ``conv_2``. Input ``(N, nin, H, W)``, output ``(N, nout, H', W')`` with
    ``H' = (H - 1) // stride + 1``.

    Example::

        block = ResNetV2Block(64, 256, stride=2, use_projection=True, bottleneck=True)
        block(jnp.zeros((2, 64, 16, 16)), training=False).shape    # (2, 256, 8, 8)
    """

    def __init__(self, nin: int, nout: int, stride: Union[int, Sequence[int]],
                 use_projection: bool, bottleneck: bool,
                 normalization_fn: Normalization = BatchNorm2D,
                 activation_fn: Activation = functional.relu):
        self.use_projection = use_projection
        self.activation_fn = activation_fn
        self.stride = stride
        if use_projection:
            self.proj_conv = Conv2D(nin, nout, 1, strides=stride, **conv_args(1, nout))
        if bottleneck:
            inner = nout // 4
            self.norm_0 = normalization_fn(nin)
            self.conv_0 = Conv2D(nin, inner, 1, strides=1, **conv_args(1, inner))
            self.norm_1 = normalization_fn(inner)
            self.conv_1 = Conv2D(inner, inner, 3, strides=stride, **conv_args(3, inner, (1, 1)))
            self.norm_2 = normalization_fn(inner)
            self.conv_2 = Conv2D(inner, nout, 1, strides=1, **conv_args(1, nout))
            self.layers = ((self.norm_0, self.conv_0), (self.norm_1, self.conv_1),
                           (self.norm_2, self.conv_2))
        else:
            self.norm_0 = normalization_fn(nin)
            self.conv_0 = Conv2D(nin, nout, 3, strides=1, **conv_args(3, nout, (1, 1)))
            self.norm_1 = normalization_fn(nout)
            self.conv_1 = Conv2D(nout, nout, 3, strides=stride, **conv_args(3, nout, (1, 1)))
            self.layers = ((self.norm_0, self.conv_0), (self.norm_1, self.conv_1))

    def __call__(self, x: jax.Array, training: bool) -> jax.Array:
        """Apply the block; ``training`` selects batch (True) or running (False) statistics."""
        if any(s > 1 for s in to_tuple(self.stride, 2)):
            # A 1x1 max pool with a stride is plain subsampling, matching the strided conv.
            shortcut = functional.max_pool_2d(x, size=1, strides=self.stride)
        else:
            shortcut = x
        for i, (norm, conv) in enumerate(self.layers):
            x = self.activation_fn(norm(x, training))
            if i == 0 and self.use_projection:
                shortcut = self.proj_conv(x)
            x = conv(x)
        return x + shortcut


class ResNetV2BlockGroup(ZooSequential):
    """``num_blocks`` consecutive ``ResNetV2Block``: the first maps ``nin`` to ``nout``
    channels (with a projection if ``use_projection``), the last carries the ``stride``.

    Args:
      nin: input channels.
      nout: output channels of every block.
      num_blocks: number of blocks.
      stride: stride of the last block (the others have stride 1).
      use_projection: give the first block a projection shortcut.
      bottleneck: use bottleneck blocks.
      normalization_fn: as in ``ResNetV2Block``.
      activation_fn: as in ``ResNetV2Block``.

    Example::

        group = ResNetV2BlockGroup(64, 128, num_blocks=2, stride=2, use_projection=True,
                                   bottleneck=False)
        group(jnp.zeros((2, 64, 16, 16)), training=True).shape    # (2, 128, 8, 8)
    """

    def __init__(self, nin: int, nout: int, num_blocks: int, stride: Union[int, Sequence[int]],
                 use_projection: bool, bottleneck: bool,
                 normalization_fn: Normalization = BatchNorm2D,
                 activation_fn: Activation = functional.relu):
        super().__init__([
            ResNetV2Block(nin=nin if i == 0 else nout, nout=nout,
                          stride=stride if i == num_blocks - 1 else 1,
                          use_projection=use_projection and i == 0, bottleneck=bottleneck,
                          normalization_fn=normalization_fn, activation_fn=activation_fn)
            for i in range(num_blocks)])


def _pad_hw_by_one(x: jax.Array) -> jax.Array:
    """Zero-pad height and width by one pixel on each side (before the stem's max pool)."""
    return jnp.pad(x, ((0, 0), (0, 0), (1, 1), (1, 1)))


class ResNetV2(ZooSequential):
    """A ResNet v2 with any number of block groups.

    Args:
      in_channels: channels of the input images.
      num_classes: number of classes.
      blocks_per_group: the number of blocks in each group.
      bottleneck: use bottleneck blocks.
      channels_per_group: output channels of each group.
      group_strides: stride of each group (carried by its last block).
      group_use_projection: whether each group's first block has a projection shortcut.
      normalization_fn: called as ``normalization_fn(channels)`` for each normalization
        layer (for example ``functools.partial(bridge.nn.BatchNorm2D, momentum=0.9)``).
      activation_fn: the activation after each normalization.

    Layers (indices matter to ``convert_keras_model``): ``[0]`` a 7x7 stride-2
    ``Conv2D(in_channels, 64)`` with padding 3, ``[1]`` zero padding by 1, ``[2]`` a 3x3
    stride-2 max pool, then one ``ResNetV2BlockGroup`` per group, then the final
    normalization, the activation, the mean over height and width and a ``Linear`` to
    ``num_classes`` logits. Input ``(N, in_channels, H, W)``, output
    ``(N, num_classes)``; call it as ``model(x, training=...)``.

    Example::

        model = ResNetV2(3, 10, blocks_per_group=(1, 1), bottleneck=False,
                         channels_per_group=(64, 128), group_strides=(1, 2),
                         group_use_projection=(False, True))
        model(jnp.zeros((2, 3, 64, 64)), training=False).shape   # (2, 10)
    """

    def __init__(self, in_channels: int, num_classes: int, blocks_per_group: Sequence[int],
                 bottleneck: bool = True,
                 channels_per_group: Sequence[int] = (256, 512, 1024, 2048),
                 group_strides: Sequence[int] = (1, 2, 2, 2),
                 group_use_projection: Sequence[bool] = (True, True, True, True),
                 normalization_fn: Normalization = BatchNorm2D,
                 activation_fn: Activation = functional.relu):
        groups = len(blocks_per_group)
        for name, value in [("channels_per_group", channels_per_group),
                            ("group_strides", group_strides),
                            ("group_use_projection", group_use_projection)]:
            if len(value) != groups:
                raise ValueError(f"ResNetV2: {name} has {len(value)} entries, but "
                                 f"blocks_per_group has {groups}.")
        nout = 64
        layers: list = [
            Conv2D(in_channels, nout, k=7, strides=2, **conv_args(7, nout, (3, 3))),
            _pad_hw_by_one,
            functools.partial(functional.max_pool_2d, size=3, strides=2,
                              padding=ConvPadding.VALID),
        ]
        for num_blocks, channels, stride, projection in zip(
                blocks_per_group, channels_per_group, group_strides, group_use_projection):
            nin, nout = nout, channels
            layers.append(ResNetV2BlockGroup(nin, nout, num_blocks=num_blocks, stride=stride,
                                             use_projection=projection, bottleneck=bottleneck,
                                             normalization_fn=normalization_fn,
                                             activation_fn=activation_fn))
        layers += [normalization_fn(nout), activation_fn, mean_hw,
                   Linear(nout, num_classes, w_init=xavier_normal)]
        super().__init__(layers)


class ResNet18(ResNetV2):
    """ResNet v2 with 18 layers: plain blocks ``(2, 2, 2, 2)``, channels 64 to 512.

    Args:
      in_channels: channels of the input images.
      num_classes: number of classes.
      normalization_fn: as in ``ResNetV2``.
      activation_fn: as in ``ResNetV2``.

    Example::

        model = ResNet18(in_channels=3, num_classes=10)
        model(jnp.zeros((2, 3, 64, 64)), training=True).shape    # (2, 10)
    """

    def __init__(self, in_channels: int, num_classes: int,
                 normalization_fn: Normalization = BatchNorm2D,
                 activation_fn: Activation = functional.relu):
        super().__init__(in_channels, num_classes, blocks_per_group=(2, 2, 2, 2),
                         bottleneck=False, channels_per_group=(64, 128, 256, 512),
                         group_use_projection=(False, True, True, True),
                         normalization_fn=normalization_fn, activation_fn=activation_fn)


class ResNet34(ResNetV2):
    """ResNet v2 with 34 layers: plain blocks ``(3, 4, 6, 3)``, channels 64 to 512.

    Arguments as in ``ResNet18``. Example: ``ResNet34(3, 1000)``.
    """

    def __init__(self, in_channels: int, num_classes: int,
                 normalization_fn: Normalization = BatchNorm2D,
                 activation_fn: Activation = functional.relu):
        super().__init__(in_channels, num_classes, blocks_per_group=(3, 4, 6, 3),
                         bottleneck=False, channels_per_group=(64, 128, 256, 512),
                         group_use_projection=(False, True, True, True),
                         normalization_fn=normalization_fn, activation_fn=activation_fn)


class _BottleneckResNet(ResNetV2):
    """The deep ResNets v2: bottleneck blocks, channels 256 to 2048, strides (2, 2, 2, 1),
    the layout of Keras' ``ResNet*V2`` (the stride sits at the end of each group)."""

    BLOCKS: tuple[int, int, int, int]

    def __init__(self, in_channels: int, num_classes: int,
                 normalization_fn: Normalization = BatchNorm2D,
                 activation_fn: Activation = functional.relu):
        super().__init__(in_channels, num_classes, blocks_per_group=self.BLOCKS,
                         group_strides=(2, 2, 2, 1), bottleneck=True,
                         normalization_fn=normalization_fn, activation_fn=activation_fn)


class ResNet50(_BottleneckResNet):
    """ResNet v2 with 50 layers: bottleneck blocks ``(3, 4, 6, 3)``.

    Arguments as in ``ResNet18``. Example: ``ResNet50(3, 1000)``.
    """

    BLOCKS = (3, 4, 6, 3)


class ResNet101(_BottleneckResNet):
    """ResNet v2 with 101 layers: bottleneck blocks ``(3, 4, 23, 3)``.

    Arguments as in ``ResNet18``. Example: ``ResNet101(3, 1000)``.
    """

    BLOCKS = (3, 4, 23, 3)


class ResNet152(_BottleneckResNet):
    """ResNet v2 with 152 layers: bottleneck blocks ``(3, 8, 36, 3)``.

    Arguments as in ``ResNet18``. Example: ``ResNet152(3, 1000)``.
    """

    BLOCKS = (3, 8, 36, 3)


class ResNet200(_BottleneckResNet):
    """ResNet v2 with 200 layers: bottleneck blocks ``(3, 24, 36, 3)``.

    Arguments as in ``ResNet18``. Example: ``ResNet200(3, 1000)``.
    """

    BLOCKS = (3, 24, 36, 3)


# ----- Keras weights ------------------------------------------------------------------------
# A conversion first reads and checks every array, then writes them all, so a Keras model
# that does not fit leaves the bridge model unchanged.

_Write = tuple[Module, str, Optional[np.ndarray], type]


def _keras_array(keras_layer: Any, name: str) -> Optional[np.ndarray]:
    value = getattr(keras_layer, name, None)
    return None if value is None else np.asarray(value)


def _layer_name(keras_layer: Any) -> str:
    return getattr(keras_layer, "name", type(keras_layer).__name__)


def _fit(array: np.ndarray, shape: tuple[int, ...], what: str) -> np.ndarray:
    if array.size != int(np.prod(shape)):
        raise ValueError(f"Keras weights do not fit: {what} has shape {array.shape}, "
                         f"the bridge variable {shape}.")
    return array.reshape(shape)


def _plan_bn(keras_layer: Any, layer: Module) -> list[_Write]:
    shape = tuple(layer.gamma.value.shape)
    writes = []
    for ours, theirs, kind in [("gamma", "gamma", TrainVar), ("beta", "beta", TrainVar),
                               ("running_mean", "moving_mean", StateVar),
                               ("running_var", "moving_variance", StateVar)]:
        array = _keras_array(keras_layer, theirs)
        if array is None:
            raise ValueError(f"Keras layer {_layer_name(keras_layer)!r} has no {theirs!r} "
                             f"(built with center/scale disabled?).")
        writes.append((layer, ours, _fit(array, shape, f"{_layer_name(keras_layer)}.{theirs}"),
                       kind))
    return writes


def _plan_conv_or_linear(keras_layer: Any, layer: Module) -> list[_Write]:
    name = _layer_name(keras_layer)
    kernel = _keras_array(keras_layer, "kernel")
    if kernel is None:
        raise ValueError(f"Keras layer {name!r} has no 'kernel'.")
    if kernel.shape != tuple(layer.w.value.shape):
        raise ValueError(f"Keras weights do not fit: {name}.kernel has shape {kernel.shape}, "
                         f"the bridge variable w {tuple(layer.w.value.shape)}.")
    bias = _keras_array(keras_layer, "bias")
    if bias is not None:
        # Conv2D keeps its bias as (C, 1, 1) to broadcast over NCHW; Linear as (C,).
        shape = (kernel.shape[-1], 1, 1) if kernel.ndim == 4 else (kernel.shape[-1],)
        bias = _fit(bias, shape, f"{name}.bias")
    return [(layer, "w", kernel, TrainVar), (layer, "b", bias, TrainVar)]


def _plan_resblock(keras_block: Sequence[Any], block: ResNetV2Block) -> list[_Write]:
    def find(suffix: str) -> Any:
        for keras_layer in keras_block:
            if _layer_name(keras_layer).endswith(suffix):
                return keras_layer
        names = [_layer_name(k) for k in keras_block]
        raise ValueError(f"No Keras layer ending in {suffix!r} among {names}.")

    if not hasattr(block, "conv_2"):
        raise ValueError("Keras' ResNet*V2 blocks are bottleneck blocks; this block is not.")
    writes = []
    if hasattr(block, "proj_conv"):
        writes += _plan_conv_or_linear(find("0_conv"), block.proj_conv)
    for suffix, conv in [("1_conv", block.conv_0), ("2_conv", block.conv_1),
                         ("3_conv", block.conv_2)]:
        writes += _plan_conv_or_linear(find(suffix), conv)
    for suffix, norm in [("preact_bn", block.norm_0), ("1_bn", block.norm_1),
                         ("2_bn", block.norm_2)]:
        writes += _plan_bn(find(suffix), norm)
    return writes


def _apply(writes: Sequence[_Write]) -> None:
    for layer, name, array, kind in writes:
        current = getattr(layer, name, None)
        if array is None:
            setattr(layer, name, None)
        elif isinstance(current, BaseVar) and current.value.shape == array.shape:
            # Assign in place: optimizers built on the model keep seeing the same variables.
            current.assign(jnp.asarray(array, dtype=current.value.dtype))
        else:
            # A bias the bridge layer was built without (Keras' convolutions have one).
            setattr(layer, name, kind(jnp.asarray(array)))


def convert_bn_layer(keras_layer: Any, objax_layer: Module) -> None:
    """Copy a Keras ``BatchNormalization`` layer's weights into a ``BatchNorm2D``.

    ``gamma``, ``beta``, ``moving_mean`` and ``moving_variance`` (shape ``(C,)``) go to
    ``gamma``, ``beta``, ``running_mean`` and ``running_var`` (shape ``(1, C, 1, 1)``).
    Nothing is written unless all four fit.
    """
    _apply(_plan_bn(keras_layer, objax_layer))


def convert_conv_or_linear_layer(keras_layer: Any, objax_layer: Module) -> None:
    """Copy a Keras ``Conv2D`` (kernel HWIO, as bridge's) or ``Dense`` layer into a
    ``Conv2D`` or ``Linear``.

    The kernel must have the bridge layer's shape. The Keras bias, if any, becomes ``b``
    (shape ``(C, 1, 1)`` for convolutions, ``(C,)`` for dense layers; a new ``TrainVar`` if
    the bridge layer had none); without a Keras bias ``b`` is set to ``None``.
    """
    _apply(_plan_conv_or_linear(keras_layer, objax_layer))


def convert_resblock(keras_block: Sequence[Any], objax_block: ResNetV2Block) -> None:
    """Copy the Keras layers of one ``ResNet*V2`` block into a bottleneck ``ResNetV2Block``.

    Keras names (by suffix) map to bridge attributes: ``0_conv`` → ``proj_conv`` (when the
    block has one), ``1_conv``/``2_conv``/``3_conv`` → ``conv_0``/``conv_1``/``conv_2``,
    ``preact_bn``/``1_bn``/``2_bn`` → ``norm_0``/``norm_1``/``norm_2``.

    Args:
      keras_block: the Keras layers of the block (any order).
      objax_block: the block to write into; unchanged if anything is missing or mis-shaped.
    """
    _apply(_plan_resblock(keras_block, objax_block))


def convert_keras_model(model_keras: Any, model_objax: ResNetV2, num_blocks: Sequence[int],
                        include_top: bool = True) -> None:
    """Copy the weights of a Keras ``ResNet50V2``/``101V2``/``152V2`` into a 4-group
    bottleneck ``ResNetV2`` of the same architecture, in place.

    Args:
      model_keras: the Keras model (``tf.keras.applications.ResNet50V2(...)``).
      model_objax: the bridge model; its layer ``[0]`` receives ``conv1_conv``, group
        ``[3 + g]`` block ``i`` the layers named ``conv{g + 2}_block{i + 1}_*``, ``[7]``
        ``post_bn`` and, with ``include_top``, ``[10]`` ``predictions``.
      num_blocks: blocks per group, e.g. ``[3, 4, 6, 3]`` for ResNet50.
      include_top: also copy the classifier.

    Raises:
      ValueError: a layer is missing or a shape differs; nothing has been written then.
    """
    writes = _plan_conv_or_linear(model_keras.get_layer("conv1_conv"), model_objax[0])
    for group, blocks in enumerate(num_blocks):
        for i in range(blocks):
            prefix = f"conv{group + 2}_block{i + 1}"
            keras_block = [layer for layer in model_keras.layers
                           if layer.name.startswith(prefix + "_")]
            writes += _plan_resblock(keras_block, model_objax[group + 3][i])
    writes += _plan_bn(model_keras.get_layer("post_bn"), model_objax[7])
    if include_top:
        writes += _plan_conv_or_linear(model_keras.get_layer("predictions"), model_objax[10])
    _apply(writes)


_KERAS_BLOCKS = {"ResNet50": (3, 4, 6, 3), "ResNet101": (3, 4, 23, 3),
                 "ResNet152": (3, 8, 36, 3)}


def _keras_applications() -> Any:
    try:
        import tensorflow as tf
        applications = tf.keras.applications
    except (ImportError, AttributeError) as err:
        raise ImportError("Loading Keras' pretrained ResNets needs TensorFlow, which is not "
                          "installed: pip install tensorflow") from err
    try:  # Keep TensorFlow off the GPUs that JAX uses.
        tf.config.experimental.set_visible_devices([], "GPU")
    except (RuntimeError, AttributeError):
        pass  # TensorFlow already initialized its devices; nothing to do then.
    return applications


def load_pretrained_weights_from_keras(arch: str, include_top: bool = True,
                                       num_classes: int = 1000) -> ResNetV2:
    """A ResNet v2 with the ImageNet weights of Keras' ``tf.keras.applications``.

    Args:
      arch: ``'ResNet50'``, ``'ResNet101'`` or ``'ResNet152'``.
      include_top: also load the 1000-class classifier; otherwise the final ``Linear``
        keeps its random initialization with ``num_classes`` outputs.
      num_classes: outputs of the classifier; must be 1000 when ``include_top``.

    Returns:
      The bridge model (``ResNet50`` etc.), built with
      ``BatchNorm2D(momentum=0.99, eps=1.001e-5)`` as Keras' models are. It expects NCHW
      inputs preprocessed as ``tf.keras.applications.resnet_v2.preprocess_input`` does.

    Raises:
      ValueError: unknown ``arch``, or ``include_top`` with ``num_classes != 1000``.
      ImportError: TensorFlow is not installed. Keras downloads the weights on first use
        (into ``~/.keras/models``), so the first call also needs network access.

    Example::

        model = load_pretrained_weights_from_keras("ResNet50")
        logits = model(images, training=False)   # images: (N, 3, 224, 224)
    """
    if arch not in _KERAS_BLOCKS:
        raise ValueError(f"No Keras weights for {arch!r}; choose one of {list(_KERAS_BLOCKS)}.")
    if include_top and num_classes != 1000:
        raise ValueError(f"include_top=True loads Keras' 1000-class classifier; got "
                         f"num_classes={num_classes} (use include_top=False).")
    applications = _keras_applications()
    model_keras = getattr(applications, arch + "V2")(include_top=include_top, weights="imagenet",
                                                     classes=1000, classifier_activation="linear")
    model = globals()[arch](in_channels=3, num_classes=num_classes,
                            normalization_fn=functools.partial(BatchNorm2D, momentum=0.99,
                                                               eps=1.001e-5))
    convert_keras_model(model_keras, model, _KERAS_BLOCKS[arch], include_top)
    return model
