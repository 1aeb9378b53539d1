"""A simple recurrent network, Objax's ``objax.zoo.rnn.RNN``."""

from __future__ import annotations

from typing import Callable

import jax
import jax.numpy as jnp

from bridge.nn import Linear
from bridge.nn.init import kaiming_normal
from bridge.state import Module, StateVar, TrainVar

__all__ = ["RNN"]


class RNN(Module):
    """An Elman network: ``h_t = activation(x_t @ w_xh + h_{t-1} @ w_hh + b_h)``, with a
    ``Linear`` read-out ``y_t = output_layer(h_t)``.

    Args:
      nstate: hidden units.
      nin: input features.
      nout: output features.
      activation: the hidden-state non-linearity.
      w_init: called with ``(nin, nstate)`` and ``(nstate, nstate)`` to make ``w_xh`` and
        ``w_hh``.

    Variables: ``w_xh``, ``w_hh``, ``b_h`` (zeros), ``output_layer`` (a ``Linear``), and,
    once ``init_state`` has been called, the hidden state ``state`` (a ``StateVar`` of shape
    ``(batch, nstate)``), which a call advances.

    Example::

        rnn = RNN(nstate=32, nin=10, nout=10)
        rnn.init_state(batch_size=4)
        y = rnn(jnp.zeros((7, 4, 10)))                      # (7 * 4, 10): every step
        y = rnn(jnp.zeros((7, 4, 10)), only_return_final=True)   # (4, 10), continues the state
    """

    def __init__(self, nstate: int, nin: int, nout: int,
                 activation: Callable[[jax.Array], jax.Array] = jnp.tanh,
                 w_init: Callable[[tuple[int, ...]], jax.Array] = kaiming_normal):
        self.num_inputs = nin
        self.num_outputs = nout
        self.nstate = nstate
        self.activation = activation
        self.w_xh = TrainVar(w_init((nin, nstate)))
        self.w_hh = TrainVar(w_init((nstate, nstate)))
        self.b_h = TrainVar(jnp.zeros(nstate))
        self.output_layer = Linear(nstate, nout)

    def init_state(self, batch_size: int) -> None:
        """Create (or reset to zeros) the hidden state ``state``, shape ``(batch_size, nstate)``.

        A new ``StateVar`` is made each time, as in Objax: collect ``vars()`` (for ``Jit``,
        optimizers, checkpoints) after calling this.
        """
        self.state = StateVar(jnp.zeros((batch_size, self.nstate)))

    def __call__(self, inputs: jax.Array, only_return_final: bool = False) -> jax.Array:
        """Run the sequence ``inputs``, shape ``(steps, batch, nin)``, from the current state.

        Returns:
          The outputs of all steps stacked along the batch axis, shape
          ``(steps * batch, nout)`` (step-major), or with ``only_return_final`` the last
          step's, ``(batch, nout)``. ``state`` is left at the last hidden state.
        """
        if "state" not in self.__dict__:
            raise AttributeError("RNN has no hidden state yet: call init_state(batch_size) "
                                 "before running it.")
        w_xh, w_hh, b_h = self.w_xh.value, self.w_hh.value, self.b_h.value

        def step(h: jax.Array, x: jax.Array) -> tuple[jax.Array, jax.Array]:
            h = self.activation(jnp.dot(x, w_xh) + jnp.dot(h, w_hh) + b_h)
            return h, h

        last, states = jax.lax.scan(step, self.state.value, jnp.asarray(inputs))
        self.state.value = last
        if only_return_final:
            return self.output_layer(last)
        outputs = self.output_layer(states)
        return outputs.reshape(-1, outputs.shape[-1])
