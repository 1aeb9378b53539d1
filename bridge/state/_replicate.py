"""Replicated variables: one copy of every variable per local device, for ``bridge.Parallel``.

Inside ``with vc.replicate():`` each variable of ``vc`` holds an array of shape
``(n_devices, *shape)`` whose row ``i`` lives on local device ``i`` (a ``NamedSharding`` over
a one-axis ``Mesh`` of ``jax.local_devices()``, split along axis 0). ``Parallel`` hands row
``i`` to the program running on device ``i`` and writes each device's new value back into
its row, so the copies may drift apart (per-device BatchNorm statistics, for instance).

On exit every variable becomes one array again: ``var.reduce`` of its rows (the mean over
devices by default), placed where the value was before the block. A ``RandomState`` gets
a different key per device on entry (the key is split) and, on exit, the key it was left
with by that split, whatever the devices drew.

The registry below is how ``Parallel`` knows which variables are replicated without
inspecting values on every call: it compares one generation counter, which changes each
time a block is entered or left.
"""

from __future__ import annotations

import contextlib
import functools
from typing import TYPE_CHECKING, Any, Iterator

import jax
import jax.numpy as jnp
import numpy as np
from jax.sharding import Mesh, NamedSharding, PartitionSpec

from bridge.state._scope import _SCOPES
from bridge.state._variables import BaseVar, RandomState, mismatch

if TYPE_CHECKING:  # pragma: no cover
    from bridge.state._collection import VarCollection

__all__ = ["REPLICAS", "local_mesh", "not_replicated", "replicate"]

# Axis name of the mesh replicated values are laid out on. Any name works for ``Parallel``:
# two shardings over the same devices, split the same way, are the same placement.
_AXIS = "device"


class _Replicas:
    """The storage variables currently replicated, and a counter bumped on every change."""

    __slots__ = ("ids", "generation")

    def __init__(self) -> None:
        self.ids: set[int] = set()
        self.generation = 0


REPLICAS = _Replicas()


@functools.cache
def local_mesh(axis_name: str = _AXIS) -> Mesh:
    """A one-axis ``Mesh`` of this process's devices (``jax.local_devices()``, in order)."""
    return Mesh(np.array(jax.local_devices()), (axis_name,))


def not_replicated(vc: VarCollection) -> list[str]:
    """The names of the variables of ``vc`` that are not replicated (each variable once)."""
    names = vc.names()
    return [names[id(v._storage())] for v in vc if id(v._storage()) not in REPLICAS.ids]


def _one_copy_per_device(value: jax.Array, mesh: Mesh) -> jax.Array:
    # Copy straight to each device rather than broadcasting first, which would hold all
    # ``n`` copies on one device.
    row = jnp.expand_dims(value, 0)
    rows = [jax.device_put(row, device) for device in mesh.devices.flat]
    return jax.make_array_from_single_device_arrays(
        (mesh.size, *value.shape), NamedSharding(mesh, PartitionSpec(_AXIS)), rows)


def _placed_like(value: jax.Array, original: Any) -> jax.Array:
    """``value`` where ``original`` was: same sharding if it was committed, else uncommitted."""
    if getattr(original, "committed", False):
        return jax.device_put(value, original.sharding)
    # An uncommitted array (the usual case) can be combined with arrays on any device; a
    # round trip through the host is the public way to get one back.
    return jnp.asarray(np.asarray(value))


@contextlib.contextmanager
def replicate(vc: VarCollection) -> Iterator[None]:
    """Give every variable of ``vc`` one copy per local device for the duration of the block.

    This is what ``VarCollection.replicate()`` returns; ``bridge.Parallel`` requires its
    variables to be replicated this way.

    Args:
      vc: the variables to replicate (a ``TrainRef`` counts as its ``TrainVar``).

    Inside the block each variable holds shape ``(n_devices, *shape)`` (row ``i`` on
    device ``i``); each ``RandomState`` holds ``n_devices`` different keys. On exit, also
    when the block raises, each variable is set to ``var.reduce(rows)`` (the mean over
    devices by default; the row of device 0 for a variable whose ``reduce`` is ``None``),
    put back on the device(s) it was on; each ``RandomState`` gets the key that the split
    on entry left it with.

    Raises:
      ValueError: on entry, if a variable is already replicated (nothing is changed); on
        exit, if some reductions fail or change a shape or dtype: every variable is then
        restored to its value from before the block and the message lists each problem.
      RuntimeError: used inside a transformation (values are being traced).

    Example::

        train_vars = model.vars() + opt.vars()
        step = bridge.Parallel(train_step, train_vars, reduce=lambda x: x[0])
        with train_vars.replicate():
            for x, y in batches:
                loss = step(x, y)
        # back to one value per variable: the mean of the per-device copies
    """
    if _SCOPES:
        raise RuntimeError(f"VarCollection.replicate() was called inside {_SCOPES[-1].owner}; "
                           "replicate outside any transformation, around the Parallel call.")
    names = vc.names()
    storages: list[BaseVar] = [v._storage() for v in vc]
    already = [names[id(s)] for s in storages if id(s) in REPLICAS.ids]
    if already:
        raise ValueError("VarCollection.replicate: these variables are already replicated by "
                         f"an enclosing replicate() block: {', '.join(already)}. Nothing was "
                         "changed.")
    mesh = local_mesh()
    originals = [s.value for s in storages]
    copies, keys_after = [], {}
    for s, value in zip(storages, originals):
        if isinstance(s, RandomState):
            keys = jax.random.split(value, mesh.size + 1)
            keys_after[id(s)] = keys[0]
            copies.append(jax.device_put(keys[1:], NamedSharding(mesh, PartitionSpec(_AXIS))))
        else:
            copies.append(_one_copy_per_device(value, mesh))
    # Everything is computed: from here on nothing can fail half-way.
    for s, copy in zip(storages, copies):
        s.assign(copy, check=False)
    REPLICAS.ids.update(id(s) for s in storages)
    REPLICAS.generation += 1
    try:
        yield
    finally:
        REPLICAS.ids.difference_update(id(s) for s in storages)
        REPLICAS.generation += 1
        _reduce_back(storages, names, originals, keys_after)


def _reduce_back(storages: list[BaseVar], names: dict[int, str], originals: list,
                 keys_after: dict[int, jax.Array]) -> None:
    reduced, problems = [], []
    for s, original in zip(storages, originals):
        if id(s) in keys_after:
            reduced.append(_placed_like(keys_after[id(s)], original))
            continue
        rows = s.value
        try:
            value = rows[0] if s._reduce is None else jnp.asarray(s._reduce(rows))
        except Exception as error:  # noqa: BLE001 -- reported below with the variable's name
            problems.append(f"  {names[id(s)]}: its reduce raised {type(error).__name__}: "
                            f"{error}")
            continue
        problem = mismatch(original, value)
        if problem:
            problems.append(f"  {names[id(s)]}: reducing the per-device values of shape "
                            f"{tuple(rows.shape)} gave a wrong value: {problem}")
            continue
        reduced.append(_placed_like(value, original))
    if problems:
        for s, original in zip(storages, originals):
            s.assign(original, check=False)
        raise ValueError("VarCollection.replicate: could not turn the per-device copies back "
                         "into one value, so every variable was restored to its value from "
                         "before the block:\n" + "\n".join(problems))
    for s, value in zip(storages, reduced):
        s.assign(value, check=False)
