"""Ready-made models under Objax's module paths (``objax.zoo.*``).

Each model is built from ``bridge.nn`` layers exactly as Objax 1.8 builds it, so ``vars()``
names, shapes and order match and an Objax checkpoint of a zoo model restores into it:

* ``bridge.zoo.dnnet``: ``DNNet``, a multi-layer perceptron;
* ``bridge.zoo.convnet``: ``ConvNet``, a plain convolutional classifier;
* ``bridge.zoo.wide_resnet``: ``WideResNet``, ``WideResNetGeneral``, ``WRNBlock``;
* ``bridge.zoo.resnet_v2``: ``ResNetV2``, ``ResNet18`` ... ``ResNet200``, their blocks,
  and the Keras weight converters (``load_pretrained_weights_from_keras`` needs TensorFlow);
* ``bridge.zoo.rnn``: ``RNN``, a simple recurrent network;
* ``bridge.zoo.vgg``: ``VGG19``, optionally with ImageNet weights from a ``vgg19.npy`` file.

Images are NCHW. Example::

    from bridge.zoo.wide_resnet import WideResNet

    model = WideResNet(nin=3, nclass=10, depth=16, width=1)
    logits = model(jnp.zeros((8, 3, 32, 32)), training=False)   # (8, 10)
"""

from bridge.zoo import convnet, dnnet, resnet_v2, rnn, vgg, wide_resnet
from bridge.zoo.convnet import ConvNet
from bridge.zoo.dnnet import DNNet
from bridge.zoo.resnet_v2 import (
    ResNet18,
    ResNet34,
    ResNet50,
    ResNet101,
    ResNet152,
    ResNet200,
    ResNetV2,
)
from bridge.zoo.rnn import RNN
from bridge.zoo.vgg import VGG19
from bridge.zoo.wide_resnet import WideResNet, WideResNetGeneral, WRNBlock

__all__ = [
    "RNN",
    "VGG19",
    "ConvNet",
    "DNNet",
    "ResNet18",
    "ResNet34",
    "ResNet50",
    "ResNet101",
    "ResNet152",
    "ResNet200",
    "ResNetV2",
    "WRNBlock",
    "WideResNet",
    "WideResNetGeneral",
    "convnet",
    "dnnet",
    "resnet_v2",
    "rnn",
    "vgg",
    "wide_resnet",
]
