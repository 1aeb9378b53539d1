"""NNX variable types, their Linen collection names, and their metadata.

A Linen variable tree says what kind of state a leaf is by the collection that
holds it (``'params'``, ``'batch_stats'``, ...); NNX says it with the type of
the ``nnx.Variable`` that holds it (``nnx.Param``, ``nnx.BatchStat``, ...) plus
a metadata dict kept on that variable (a dropout tag, sharding names, ...).
This module is the single place where bridge translates between the two:

* ``variable_type`` / ``collection`` map a collection name to an NNX
  variable type and back;
* ``metadata`` / ``make`` read a variable's metadata and rebuild a
  variable from a type, a value and that metadata;
* ``sharding_names``, ``linen_box_to_nnx_metadata`` and
  ``nnx_metadata_to_linen_box`` carry the axis names of Linen's
  ``nn.Partitioned`` / ``nn.LogicallyPartitioned`` boxes to the NNX metadata
  key read by ``nnx.get_partition_spec`` (``SHARDING_KEY``) and back.

Everything here runs at conversion or construction time, never per call.
"""

from __future__ import annotations

from typing import Any, Mapping, Optional

from flax import nnx
from flax.core import meta
from flax.nnx import variablelib

__all__ = ["LINEN_BOX_KEY", "SHARDING_KEY", "SHARDING_RULES_KEY", "collection",
           "linen_box_to_nnx_metadata", "make", "metadata", "nnx_metadata_to_linen_box",
           "sharding_names", "variable_type"]

#: NNX metadata key holding a variable's sharding axis names.  ``nnx.with_partitioning``
#: and ``nnx.with_metadata(out_sharding=...)`` write it, ``nnx.get_partition_spec`` reads it.
#: (Flax 0.12 renamed the older ``'sharding'`` / ``'sharding_names'`` keys to this one.)
SHARDING_KEY = "out_sharding"
#: NNX metadata key holding logical-axis rules (Linen's ``LogicallyPartitioned.rules``).
SHARDING_RULES_KEY = "sharding_rules"
#: NNX metadata key naming the Linen box class a variable came from (Flax's own
#: Linen<->NNX bridge uses the same key), so ``nn.LogicallyPartitioned`` comes back
#: as itself rather than as ``nn.Partitioned``.
LINEN_BOX_KEY = "linen_meta_type"

_OLD_SHARDING_KEYS = ("sharding", "sharding_names")

_BUILTIN_TYPES = {
    "params": nnx.Param,
    "batch_stats": nnx.BatchStat,
    "cache": nnx.Cache,
    "intermediates": nnx.Intermediate,
}


def variable_type(collection: str) -> type:
    """The ``nnx.Variable`` subclass that holds variables of a Linen collection.

    The four standard collections map to Flax's own types; any other name is
    looked up in Flax's collection registry (``variablelib.variable_type_from_name``)
    and, when it is not registered there, plain ``nnx.Variable`` is used.
    Nothing is registered as a side effect.

    Example::

        >>> variable_type("params") is nnx.Param
        True
        >>> variable_type("batch_stats") is nnx.BatchStat
        True
        >>> variable_type("my_counters") is nnx.Variable
        True
    """
    known = _BUILTIN_TYPES.get(collection)
    if known is not None:
        return known
    try:
        return variablelib.variable_type_from_name(collection, allow_register=False)
    except ValueError:  # not in Flax's registry: an untyped variable
        return nnx.Variable


def collection(var_type: type) -> Optional[str]:
    """The Linen collection of an ``nnx.Variable`` subclass (inverse of ``variable_type``).

    Returns ``None`` for the rng-state types (``nnx.RngKey``, ``nnx.RngCount`` and
    any other ``nnx.RngState`` subclass): Linen and Haiku variable trees have no
    place for them.  A subclass of a registered type that is not registered
    itself gets the collection of its nearest registered base, and a type with no
    registered base at all gets its class name (plain ``nnx.Variable`` -> ``'Variable'``
    is not a meaningful collection, so it is reported as ``None``).

    Example::

        >>> collection(nnx.Param)
        'params'
        >>> collection(nnx.BatchStat)
        'batch_stats'
        >>> collection(nnx.RngCount) is None
        True
    """
    if not isinstance(var_type, type) or not issubclass(var_type, nnx.Variable):
        raise TypeError(f"collection() expects an nnx.Variable subclass, got {var_type!r}")
    if issubclass(var_type, nnx.RngState):
        return None
    for klass in var_type.__mro__:
        if klass is nnx.Variable:
            break
        for name, registered in variablelib.VariableTypeCache.items():
            if registered is klass:
                return name
    if var_type is nnx.Variable:
        return None
    return var_type.__name__


def metadata(variable: nnx.Variable) -> dict:
    """A copy of the variable's metadata: everything it carries other than its value.

    This is Flax's own ``Variable.get_metadata()`` dict, so it includes the
    bookkeeping entries every variable has (``'hijax'``, ``'ref'``,
    ``'eager_sharding'``) next to the interesting ones.

    Example::

        >>> count = nnx.RngCount(jnp.zeros((), jnp.uint32), tag="dropout")
        >>> metadata(count)["tag"]
        'dropout'
    """
    return dict(variable.get_metadata())


def make(var_type: type, value: Any, metadata: Mapping) -> nnx.Variable:
    """Build a ``var_type`` variable holding ``value`` with the given metadata.

    The variable is created directly from its metadata (Flax's
    ``Variable.from_metadata``): no creation hooks run and no eager sharding is
    applied, so a variable whose metadata carries sharding names can be rebuilt
    without a device mesh.  Missing bookkeeping entries (``'hijax'``, ``'ref'``,
    ``'eager_sharding'``) take Flax's current defaults; the older sharding keys
    ``'sharding'`` / ``'sharding_names'`` are renamed to ``SHARDING_KEY``.

    Example::

        >>> p = make(nnx.Param, jnp.ones((2, 3)), {"out_sharding": ("embed", "mlp")})
        >>> type(p).__name__, p.get_metadata("out_sharding")
        ('Param', ('embed', 'mlp'))
    """
    data = dict(metadata)
    for old in _OLD_SHARDING_KEYS:
        if old in data:
            data.setdefault(SHARDING_KEY, data.pop(old))
    defaults = variablelib.var_defaults()
    data.setdefault("hijax", defaults.hijax)
    data.setdefault("ref", defaults.ref)
    data.setdefault("eager_sharding", variablelib.using_eager_sharding())
    return var_type.from_metadata(value, data)


def sharding_names(metadata: Mapping) -> Optional[tuple]:
    """The sharding axis names recorded in an NNX metadata dict, or ``None``.

    Reads ``SHARDING_KEY`` (and the older keys Flax still accepts).  Empty
    names count as none.

    Example::

        >>> sharding_names({"out_sharding": ("embed", None)})
        ('embed', None)
        >>> sharding_names({"tag": "dropout"}) is None
        True
    """
    for key in (SHARDING_KEY, *_OLD_SHARDING_KEYS):
        names = metadata.get(key)
        if names:
            return tuple(names)
    return None


def linen_box_to_nnx_metadata(box: meta.AxisMetadata) -> dict:
    """NNX variable metadata equivalent to a Linen metadata box (value left out).

    ``nn.Partitioned(value, names, mesh)`` gives ``{SHARDING_KEY: names}``, the
    box class under ``LINEN_BOX_KEY``, and ``'mesh'`` when one is set;
    ``nn.LogicallyPartitioned`` also gives its ``rules`` (when set) under
    ``SHARDING_RULES_KEY``.  Any other box contributes the
    metadata it declares through Flax's ``to_nnx_metadata`` hook, if it has one,
    and nothing otherwise.

    Example::

        >>> box = nn.Partitioned(jnp.ones((4, 2)), ("embed", "mlp"))
        >>> linen_box_to_nnx_metadata(box)["out_sharding"]
        ('embed', 'mlp')
    """
    if isinstance(box, meta.Partitioned):
        out = {SHARDING_KEY: tuple(box.names), LINEN_BOX_KEY: type(box)}
        if box.mesh is not None:
            out["mesh"] = box.mesh
        rules = getattr(box, "rules", None)
        if rules is not None:
            out[SHARDING_RULES_KEY] = rules
        return out
    to_nnx = getattr(box, "to_nnx_metadata", None)
    if to_nnx is None:
        return {}
    out = dict(to_nnx())
    out.pop("value", None)
    return {k: v for k, v in out.items() if v is not None}


def nnx_metadata_to_linen_box(value: Any, metadata: Mapping) -> Optional[meta.AxisMetadata]:
    """A Linen box holding ``value`` for NNX metadata that carries sharding names.

    The box class is the one recorded under ``LINEN_BOX_KEY`` when there is
    one; otherwise ``nn.LogicallyPartitioned`` when the metadata has sharding
    rules, else ``nn.Partitioned``.
    Returns ``None`` when the metadata has no sharding names: the value then
    belongs in a Linen tree as a bare array.

    Example::

        >>> box = nnx_metadata_to_linen_box(jnp.ones((4, 2)), {"out_sharding": ("embed", "mlp")})
        >>> type(box).__name__, box.names
        ('Partitioned', ('embed', 'mlp'))
        >>> nnx_metadata_to_linen_box(jnp.ones(3), {"tag": "x"}) is None
        True
    """
    names = sharding_names(metadata)
    if names is None:
        return None
    mesh = metadata.get("mesh")
    rules = metadata.get(SHARDING_RULES_KEY)
    box_type = metadata.get(LINEN_BOX_KEY)
    if isinstance(box_type, type) and issubclass(box_type, meta.Partitioned):
        if rules is not None or hasattr(box_type, "rules"):
            return box_type(value, names, mesh=mesh, rules=rules)
        return box_type(value, names, mesh=mesh)
    if rules is not None:
        # imported here: a program that only uses NNX need not load Linen
        from flax.linen.spmd import LogicallyPartitioned

        return LogicallyPartitioned(value, names, mesh=mesh, rules=rules)
    return meta.Partitioned(value, names, mesh=mesh)
