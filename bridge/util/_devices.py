"""Objax's device helpers on current JAX: shardings over the local devices, not ``pmap``."""

from __future__ import annotations

from typing import Any

import jax
import numpy as np
from jax.experimental import multihost_utils
from jax.sharding import Mesh, NamedSharding, PartitionSpec

__all__ = ["get_local_devices", "map_to_device", "multi_host_barrier"]


def get_local_devices() -> list[jax.Device]:
    """This process's devices, in the order ``map_to_device`` places slices on them.

    The same list as ``jax.local_devices()``.
    """
    return list(jax.local_devices())


def _split_over_devices(x: Any, devices: list[jax.Device]) -> jax.Array:
    shape = np.shape(x)
    if not shape or not 1 <= shape[0] <= len(devices):
        raise ValueError(
            f"map_to_device: each array needs a leading axis of length 1 to {len(devices)} "
            f"(one slice per local device), got shape {shape}.")
    mesh = Mesh(np.asarray(devices[:shape[0]]), ("device",))
    return jax.device_put(x, NamedSharding(mesh, PartitionSpec("device")))


def map_to_device(tree: Any) -> Any:
    """Place slice ``i`` of every array in ``tree`` on local device ``i``.

    What Objax did with ``pmap`` of the identity, done with a sharding: each leaf of shape
    ``(k, ...)``, ``k`` at most the number of local devices, becomes one ``jax.Array`` of the
    same shape and values whose row ``i`` lives on ``get_local_devices()[i]``.

    Args:
      tree: an array or any pytree of arrays (a list, a dict, ...).

    Returns:
      The same structure of arrays, each sharded along its first axis (``PartitionSpec``
      ``('device',)`` over a one-axis ``Mesh`` of the first ``k`` local devices).

    Raises:
      ValueError: a leaf is a scalar or its leading axis is longer than the number of local
        devices.

    Example::

        n = jax.local_device_count()
        x = map_to_device(jnp.zeros((n, 3)))
        [s.device for s in x.addressable_shards] == get_local_devices()   # True
    """
    devices = get_local_devices()
    return jax.tree_util.tree_map(lambda x: _split_over_devices(x, devices), tree)


def multi_host_barrier() -> None:
    """Wait until every process of a multi-host run reaches this point.

    JAX's ``multihost_utils.sync_global_devices`` (a small collective over every device);
    with a single process there is nobody to wait for and it returns at once.
    """
    multihost_utils.sync_global_devices("bridge.util.multi_host_barrier")
