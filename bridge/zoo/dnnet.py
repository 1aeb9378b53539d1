"""A multi-layer perceptron, Objax's ``objax.zoo.dnnet.DNNet``."""

from __future__ import annotations

from typing import Callable, Iterable

import jax

from bridge.nn import Linear
from bridge.zoo._common import ZooSequential

__all__ = ["DNNet"]


class DNNet(ZooSequential):
    """A stack of ``Linear`` layers, each followed by ``activation``.

    Args:
      layer_sizes: the widths ``(nin, hidden_1, ..., nout)``, at least two; consecutive
        pairs give the ``Linear`` layers.
      activation: a function applied after every ``Linear``, the last one included (pass
        an identity such as ``lambda x: x`` to get raw outputs).

    The model is a ``Sequential`` alternating ``Linear`` and ``activation``, so its variables
    are ``(DNNet)[0](Linear).b``, ``(DNNet)[0](Linear).w``, ``(DNNet)[2](Linear).b``, ...
    Input ``(N, nin)``, output ``(N, nout)``.

    Example::

        model = DNNet((784, 256, 10), bridge.functional.relu)
        model(jnp.zeros((32, 784))).shape     # (32, 10)
        model[:2]                             # the first layer and its activation
    """

    def __init__(self, layer_sizes: Iterable[int], activation: Callable[[jax.Array], jax.Array]):
        layer_sizes = list(layer_sizes)
        if len(layer_sizes) < 2:
            raise ValueError(f"DNNet needs at least two layer sizes (inputs and outputs), "
                             f"got {layer_sizes}.")
        layers = []
        for nin, nout in zip(layer_sizes[:-1], layer_sizes[1:]):
            layers += [Linear(nin, nout), activation]
        super().__init__(layers)
