"""``Parallel``: run object code on every local device, one slice of the batch each."""

from __future__ import annotations

from typing import Any, Callable, Optional, Sequence

import jax
import jax.numpy as jnp
from jax.sharding import PartitionSpec

from bridge.facades._gather import (
    as_module,
    declared_collection,
    read,
    split_flags,
    storages,
    write_changes,
)
from bridge.pure import changed_entries, functionalize
from bridge.state import Module, VarCollection
from bridge.state._replicate import REPLICAS, local_mesh, not_replicated
from bridge.state._repr import class_path, function_repr

__all__ = ["Parallel"]

def _label(f: Module) -> str:
    """How error messages name ``f``: its repr, or its class when the repr fails.

    A ``Parallel`` is often built inside ``replicate()``, where every variable has an extra
    device axis that a layer's repr may not expect.
    """
    try:
        return repr(f)
    except Exception:  # noqa: BLE001 -- only a label for messages
        return class_path(f)


class Parallel(Module):
    """Run ``f`` on every local device at once, each on its slice of the batch (Objax style).

    Args:
      f: a module, or a function together with ``vc``.
      vc: the variables ``f`` reads or writes (added to ``f.vars()`` when ``f`` is a
        module). Reading or writing any other variable inside raises
        ``UndeclaredVariableError`` at trace time.
      reduce: applied to each output leaf, stacked over devices with shape
        ``(n_devices, *per_device_shape)``. The default, ``jnp.concatenate``, joins the
        per-device outputs into one batch; ``lambda x: x[0]`` keeps device 0's (for values
        already averaged with ``bridge.functional.parallel.pmean``), ``lambda x: x`` keeps
        them stacked.
      axis_name: the name of the device axis, for the collectives of
        ``bridge.functional.parallel`` (``pmean(g)`` means ``pmean(g, axis_name='device')``).
      static_argnums: positional arguments that are compile-time constants (hashable).

    Semantics, with ``n = jax.local_device_count()``:
      * every leaf of a positional or keyword argument is split along axis 0 into ``n``
        equal slices (the size of axis 0 must divide by ``n``); 0-d arrays and Python
        numbers are given whole to every device;
      * the variables must be replicated (``with vc.replicate():``): device ``i`` uses and
        updates its own copy, so a variable assigned inside ends up with one new value per
        device, reduced by ``var.reduce`` when the ``replicate`` block ends;
      * ``bool``, ``str`` and ``None`` keyword arguments (``training=True``) are
        compile-time constants, as in ``Jit``.

    The call is compiled once per input signature with one ``jax.jit`` of a ``shard_map``
    over a ``Mesh`` of the local devices; outputs come back sharded over those devices.

    Raises:
      ValueError: a variable of ``vc`` is not replicated, or an argument's batch does not
        divide by the number of devices; nothing is run or assigned.

    Example::

        model = bridge.nn.Linear(3, 4)
        predict = bridge.Parallel(model)            # outputs concatenated: (96, 4)
        with model.vars().replicate():
            y = predict(x)                          # x: (96, 3), 12 rows per device on 8
    """

    def __init__(self, f: Callable, vc: Optional[VarCollection] = None,
                 reduce: Callable[[jax.Array], Any] = jnp.concatenate,
                 axis_name: str = "device", static_argnums: Optional[Sequence[int]] = None):
        f = as_module(f, vc, "Parallel")
        self.__wrapped__ = f
        self.vc = declared_collection(f, vc)
        self.reduce = reduce
        self.axis_name = axis_name
        self.static_argnums = tuple(sorted(set(static_argnums or ())))
        self._storages = storages(self.vc)
        self._mesh = local_mesh(axis_name)
        self._pure = functionalize(f, self._storages, owner=f"Parallel({_label(f)})")
        # The replication check runs again only after a replicate() block opens or closes.
        self._checked_generation = -1 if self._storages else None
        self._call = jax.jit(self._compiled, static_argnums=(1,) + tuple(
            i + 2 for i in self.static_argnums))

    def _compiled(self, values: list, flags: tuple, *args: Any, **kwargs: Any) -> tuple:
        """Traced once per signature: split the batch, run ``f`` per device, reduce outputs."""
        axis, static = self.axis_name, set(self.static_argnums)
        dynamic = {i: a for i, a in enumerate(args) if i not in static}
        specs = (PartitionSpec(axis), self._batch_specs(dynamic, "argument "),
                 self._batch_specs(kwargs, "keyword argument "))

        def per_device(rows: list, dynamic: dict, kwargs: dict) -> tuple:
            local = [row[0] for row in rows]  # this device's copy of each variable
            call_args = [dynamic[i] if i in dynamic else a for i, a in enumerate(args)]
            output, new_values = self._pure(local, *call_args, **dict(flags), **kwargs)
            changes = changed_entries(local, new_values)
            return jax.tree.map(lambda x: jnp.expand_dims(x, 0), (output, changes))

        # check_vma=False gives collectives pmap's differentiation rules (the gradient of
        # psum is a psum), which is what Objax code was written against.
        output, changes = jax.shard_map(per_device, mesh=self._mesh, in_specs=specs,
                                        out_specs=PartitionSpec(axis), check_vma=False)(
            values, dynamic, kwargs)
        return jax.tree.map(self._reduce_output, output), changes

    def _reduce_output(self, stacked: jax.Array) -> Any:
        try:
            return self.reduce(stacked)
        except (TypeError, ValueError) as error:
            raise ValueError(
                f"Parallel: reduce={function_repr(self.reduce)} failed on an output stacked "
                f"over devices to shape {tuple(stacked.shape)}: {error} (a scalar output "
                "needs another reduce, e.g. `reduce=lambda x: x.mean(0)`, or "
                "`reduce=lambda x: x[0]` for a value already averaged with pmean).") from error

    def _batch_specs(self, arguments: dict, what: str) -> dict:
        """Split each leaf along axis 0 over the devices; give 0-d leaves whole to each."""
        n = self._mesh.size

        def spec(path: tuple, leaf: Any) -> PartitionSpec:
            shape = jnp.shape(leaf)
            if not shape:
                return PartitionSpec()
            if shape[0] % n:
                where = f"{what}{path[0].key!r}{jax.tree_util.keystr(path[1:])}"
                raise ValueError(
                    f"Parallel: {where} has shape {shape}, whose first axis (the batch) does "
                    f"not divide into {n} equal slices, one per device.")
            return PartitionSpec(self.axis_name)

        return jax.tree_util.tree_map_with_path(spec, arguments)

    def device_reshape(self, x: Any) -> jax.Array:
        """``x`` as one slice per device: shape ``(n * b, ...)`` -> ``(n, b, ...)``.

        A 0-d ``x`` is repeated, shape ``(n,)``. ``Parallel`` splits its arguments itself;
        this is Objax's helper for code that lays out per-device data by hand.

        Raises:
          ValueError: the first axis does not divide into ``n`` equal slices.

        Example: on 8 devices, ``p.device_reshape(jnp.zeros((96, 3))).shape == (8, 12, 3)``.
        """
        x = jnp.asarray(x)
        n = self._mesh.size
        if x.ndim == 0:
            return jnp.broadcast_to(x, (n,))
        if x.shape[0] % n:
            raise ValueError(f"Parallel.device_reshape: shape {x.shape} does not divide into "
                             f"{n} equal slices along its first axis.")
        return x.reshape((n, x.shape[0] // n) + x.shape[1:])

    def _check_replicated(self) -> None:
        missing = not_replicated(self.vc)
        if missing:
            raise ValueError(
                f"Parallel: these variables are not replicated: {', '.join(missing)}. Call it "
                "inside `with vc.replicate():` for a VarCollection that holds them (for "
                "example `with parallel_step.vars().replicate():`).")
        self._checked_generation = REPLICAS.generation

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        """Run on every device; returns ``reduce`` of each stacked output leaf."""
        if self._checked_generation is not None and self._checked_generation != REPLICAS.generation:
            self._check_replicated()
        flags, kwargs = split_flags(kwargs) if kwargs else ((), kwargs)
        output, changes = self._call(read(self._storages), flags, *args, **kwargs)
        write_changes(self._storages, changes)
        return output

    def __repr__(self) -> str:
        static = self.static_argnums or None
        return (f"{class_path(self)}(f={self.__wrapped__!r}, reduce={function_repr(self.reduce)}"
                f", axis_name={self.axis_name!r}, static_argnums={static})")
