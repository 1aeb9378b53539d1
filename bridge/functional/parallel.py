"""Collectives over the devices of a ``bridge.Parallel`` call.

Inside a function run by ``bridge.Parallel(f, vc, axis_name='device')`` each device holds
its own slice of the batch and its own copy of the variables; these functions combine a
value across the devices and return the result on every device. They accept any pytree
(a list of gradients, a dict of metrics). Outside ``Parallel`` (or with another
``axis_name``) they raise JAX's ``NameError: unbound axis name``.

Example (data-parallel training: average the gradients, then step)::

    from bridge.functional import parallel

    def train_step(x, y):
        grads, values = gradient(x, y)            # this device's slice of the batch
        opt(lr, parallel.pmean(grads))            # the same update on every device
        return parallel.pmean(values)

    step = bridge.Parallel(train_step, model.vars() + opt.vars(), reduce=lambda v: v[0])
"""

from __future__ import annotations

from functools import partial
from typing import Any

from jax import lax

__all__ = ["partial", "pmax", "pmean", "pmin", "psum"]

PyTree = Any


def pmean(x: PyTree, axis_name: str = "device") -> PyTree:
    """The mean over devices of ``x`` (each leaf keeps its shape), on every device.

    Example: with 8 devices holding ``x = [0.], [1.], ..., [7.]``, ``pmean(x)`` is ``[3.5]``.
    """
    return lax.pmean(x, axis_name)


def psum(x: PyTree, axis_name: str = "device") -> PyTree:
    """The sum over devices of ``x`` (each leaf keeps its shape), on every device.

    Example: ``psum(1)`` is the number of devices.
    """
    return lax.psum(x, axis_name)


def pmax(x: PyTree, axis_name: str = "device") -> PyTree:
    """The element-wise maximum over devices of ``x``, on every device."""
    return lax.pmax(x, axis_name)


def pmin(x: PyTree, axis_name: str = "device") -> PyTree:
    """The element-wise minimum over devices of ``x``, on every device."""
    return lax.pmin(x, axis_name)
