"""ResNet-18 three ways for the PyTorch-weights tests (issue 11): a PyTorch ``state_dict``,
a Flax Linen model and an object-style ``bridge`` model.

The architecture is torchvision's ``resnet18`` (He et al., 2016, with BasicBlocks):
conv 7x7/2 (padding 3, no bias), batch norm, ReLU, max pool 3x3/2 (padding 1), four stages
of two BasicBlocks (64, 128, 256, 512 channels; the first block of stages 2-4 has stride 2
and a downsample branch, a 1x1 conv then a batch norm), global average pool, fully
connected. Batch norms run in evaluation mode with PyTorch's epsilon 1e-5.

The module names are PyTorch's in both models, so that a ``state_dict`` name points at a
variable: ``layer2.0.downsample.1.running_var`` is, in Linen,
``batch_stats/layer2_0/downsample_1/var`` (a list attribute ``layer2`` set in ``setup``
names its items ``layer2_0``, ``layer2_1``) and, in the object model,
``(ResNet18).layer2(ModuleList)[0](BasicBlock).downsample(Sequential)[1](BatchNorm2D)
.running_var``.

PyTorch pads convolutions and pools symmetrically, so both models give explicit paddings
(``'SAME'`` would pad a stride-2 layer asymmetrically).
"""

from __future__ import annotations

from typing import Optional

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

import bridge
from bridge.nn import BatchNorm2D, Conv2D, Linear, Sequential

#: (name, input channels, output channels, stride of the first block) of each stage.
STAGES = (("layer1", 64, 64, 1), ("layer2", 64, 128, 2), ("layer3", 128, 256, 2),
          ("layer4", 256, 512, 2))
BLOCKS_PER_STAGE = 2
# PyTorch's BatchNorm2d defaults: running stats move by 0.1 of the batch statistic.
EPSILON = 1e-5
TORCH_MOMENTUM = 0.1


def _needs_downsample(nin: int, nout: int, stride: int) -> bool:
    return stride != 1 or nin != nout


# ----- the PyTorch state_dict -------------------------------------------------------------
def torch_resnet18_state_dict(seed: int, num_classes: int = 10) -> dict[str, np.ndarray]:
    """Random weights with torchvision ``resnet18(num_classes=...)``'s names and shapes.

    In ``state_dict`` order: ``conv1.weight`` (64, 3, 7, 7); ``bn1.weight``, ``.bias``,
    ``.running_mean``, ``.running_var`` (64,) and ``.num_batches_tracked`` (int64 scalar);
    ``layerN.i.conv1/bn1/conv2/bn2`` for N in 1..4 and i in 0, 1, with
    ``layerN.0.downsample.0`` (1x1 conv) and ``.downsample.1`` (batch norm) for N in 2..4;
    ``fc.weight`` (num_classes, 512) and ``fc.bias``. 122 entries for any ``num_classes``.

    Values are float32 (num_batches_tracked int64), drawn from
    ``np.random.default_rng(seed)``: conv weights He-normal, batch norm weights in
    [0.5, 1.5), biases and running means of scale 0.1, running variances in [0.5, 1.5)
    (positive), ``fc`` weights of scale ``1 / sqrt(512)``.
    """
    rng = np.random.default_rng(seed)
    out: dict[str, np.ndarray] = {}

    def f32(x: np.ndarray) -> np.ndarray:
        return np.asarray(x, np.float32)

    def conv(name: str, nin: int, nout: int, k: int) -> None:
        std = np.sqrt(2.0 / (nin * k * k))
        out[f"{name}.weight"] = f32(rng.standard_normal((nout, nin, k, k)) * std)

    def batch_norm(name: str, c: int) -> None:
        out[f"{name}.weight"] = f32(rng.uniform(0.5, 1.5, c))
        out[f"{name}.bias"] = f32(rng.standard_normal(c) * 0.1)
        out[f"{name}.running_mean"] = f32(rng.standard_normal(c) * 0.1)
        out[f"{name}.running_var"] = f32(rng.uniform(0.5, 1.5, c))
        out[f"{name}.num_batches_tracked"] = np.array(int(rng.integers(0, 1000)), np.int64)

    conv("conv1", 3, 64, 7)
    batch_norm("bn1", 64)
    for stage, nin, nout, stride in STAGES:
        for i in range(BLOCKS_PER_STAGE):
            block = f"{stage}.{i}"
            block_in = nin if i == 0 else nout
            conv(f"{block}.conv1", block_in, nout, 3)
            batch_norm(f"{block}.bn1", nout)
            conv(f"{block}.conv2", nout, nout, 3)
            batch_norm(f"{block}.bn2", nout)
            if i == 0 and _needs_downsample(nin, nout, stride):
                conv(f"{block}.downsample.0", nin, nout, 1)
                batch_norm(f"{block}.downsample.1", nout)
    out["fc.weight"] = f32(rng.standard_normal((num_classes, 512)) / np.sqrt(512))
    out["fc.bias"] = f32(rng.standard_normal(num_classes) * 0.1)
    return out


# ----- Flax Linen (NHWC) ------------------------------------------------------------------
def _linen_conv(features: int, k: int, stride: int, pad: int) -> nn.Conv:
    return nn.Conv(features, (k, k), strides=(stride, stride), padding=((pad, pad), (pad, pad)),
                   use_bias=False)


def _linen_batch_norm() -> nn.BatchNorm:
    return nn.BatchNorm(use_running_average=True, momentum=1 - TORCH_MOMENTUM, epsilon=EPSILON)


class LinenBasicBlock(nn.Module):
    """Two 3x3 convs with batch norms, plus the input (through ``downsample`` if the shape
    changes); evaluation mode."""

    nin: int
    nout: int
    stride: int = 1

    def setup(self):
        self.conv1 = _linen_conv(self.nout, 3, self.stride, 1)
        self.bn1 = _linen_batch_norm()
        self.conv2 = _linen_conv(self.nout, 3, 1, 1)
        self.bn2 = _linen_batch_norm()
        if _needs_downsample(self.nin, self.nout, self.stride):
            self.downsample = [_linen_conv(self.nout, 1, self.stride, 0), _linen_batch_norm()]

    def __call__(self, x: jax.Array) -> jax.Array:
        y = nn.relu(self.bn1(self.conv1(x)))
        y = self.bn2(self.conv2(y))
        if _needs_downsample(self.nin, self.nout, self.stride):
            x = self.downsample[1](self.downsample[0](x))
        return nn.relu(y + x)


class LinenResNet18(nn.Module):
    """ResNet-18 on NHWC images ``(N, H, W, 3)`` → logits ``(N, num_classes)``."""

    num_classes: int = 10

    def setup(self):
        self.conv1 = _linen_conv(64, 7, 2, 3)
        self.bn1 = _linen_batch_norm()
        self.layer1, self.layer2, self.layer3, self.layer4 = (
            [LinenBasicBlock(nin if i == 0 else nout, nout, stride if i == 0 else 1)
             for i in range(BLOCKS_PER_STAGE)]
            for _, nin, nout, stride in STAGES)
        self.fc = nn.Dense(self.num_classes)

    def __call__(self, x: jax.Array) -> jax.Array:
        x = nn.relu(self.bn1(self.conv1(x)))
        x = nn.max_pool(x, (3, 3), strides=(2, 2), padding=((1, 1), (1, 1)))
        for stage in (self.layer1, self.layer2, self.layer3, self.layer4):
            for block in stage:
                x = block(x)
        return self.fc(jnp.mean(x, axis=(1, 2)))


# ----- object-style bridge (NCHW) ---------------------------------------------------------
def _bridge_batch_norm(c: int) -> BatchNorm2D:
    # bridge's momentum is the weight of the old running statistic: 1 - PyTorch's.
    return BatchNorm2D(c, momentum=1 - TORCH_MOMENTUM, eps=EPSILON)


class BasicBlock(bridge.Module):
    """Two 3x3 convs with batch norms, plus the input (through ``downsample`` if the shape
    changes); ``downsample`` is ``None`` otherwise."""

    def __init__(self, nin: int, nout: int, stride: int = 1):
        self.conv1 = Conv2D(nin, nout, 3, strides=stride, padding=1, use_bias=False)
        self.bn1 = _bridge_batch_norm(nout)
        self.conv2 = Conv2D(nout, nout, 3, padding=1, use_bias=False)
        self.bn2 = _bridge_batch_norm(nout)
        self.downsample: Optional[Sequential] = None
        if _needs_downsample(nin, nout, stride):
            self.downsample = Sequential([
                Conv2D(nin, nout, 1, strides=stride, padding=0, use_bias=False),
                _bridge_batch_norm(nout)])

    def __call__(self, x: jax.Array, training: bool = False) -> jax.Array:
        y = bridge.functional.relu(self.bn1(self.conv1(x), training=training))
        y = self.bn2(self.conv2(y), training=training)
        if self.downsample is not None:
            x = self.downsample(x, training=training)
        return bridge.functional.relu(y + x)


class ResNet18(bridge.Module):
    """ResNet-18 on NCHW images ``(N, 3, H, W)`` → logits ``(N, num_classes)``."""

    def __init__(self, num_classes: int = 10):
        self.conv1 = Conv2D(3, 64, 7, strides=2, padding=3, use_bias=False)
        self.bn1 = _bridge_batch_norm(64)
        self.layer1, self.layer2, self.layer3, self.layer4 = (
            bridge.ModuleList([BasicBlock(nin if i == 0 else nout, nout, stride if i == 0 else 1)
                               for i in range(BLOCKS_PER_STAGE)])
            for _, nin, nout, stride in STAGES)
        self.fc = Linear(512, num_classes)

    def __call__(self, x: jax.Array, training: bool = False) -> jax.Array:
        x = bridge.functional.relu(self.bn1(self.conv1(x), training=training))
        x = bridge.functional.max_pool_2d(x, 3, strides=2, padding=1)
        for stage in (self.layer1, self.layer2, self.layer3, self.layer4):
            for block in stage:
                x = block(x, training=training)
        return self.fc(jnp.mean(x, axis=(2, 3)))
