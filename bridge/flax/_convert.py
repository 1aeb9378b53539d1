"""Linen variables and NNX state <-> ``VarCollection`` (names translated, arrays not copied).

See ``bridge.interop`` for the naming rules and docs/interop.md for the conventions.

What a library tree says about a leaf beyond its array is kept with the bridge variable
that takes the leaf (``bridge.interop._metadata``), under two notes:

``"linen"``
    the Linen metadata box the leaf came in (``nn.Partitioned``,
    ``nn.LogicallyPartitioned``, any ``flax.core.meta.AxisMetadata``), with its value
    removed; ``to_linen_variables`` puts the value back in such a box.
``"nnx"``
    an ``NNXNote``: the leaf's ``nnx.Variable`` type, its metadata, and the PRNG impl of
    a typed key; ``to_nnx_state`` rebuilds that variable.

The two notes agree on sharding names: noting one updates the other (see ``note_linen_box``
and ``note_nnx``). Notes are written when a wrapper is built or a converter loads, never
per call.
"""

from __future__ import annotations

from typing import Any, Mapping, NamedTuple, Optional

import jax
from flax import nnx
from flax.core import meta
from flax.nnx import variablelib

from bridge.flax import _nnx_types as nt
from bridge.interop import _engine, _metadata
from bridge.interop import _names as nm
from bridge.interop._engine import LoadReport, RulesArg
from bridge.state import BaseVar, RandomState, TrainVar, VarCollection

__all__ = ["to_linen_variables", "load_linen_variables", "to_nnx_state", "load_nnx_state"]

LINEN = "linen"  # note: the Linen box (value removed) a variable's leaf came in
NNX = "nnx"      # note: an NNXNote

# NNX metadata entries that describe sharding: a Linen box replaces all of them.
_SHARDING_ENTRIES = frozenset({nt.SHARDING_KEY, nt.SHARDING_RULES_KEY, nt.LINEN_BOX_KEY, "mesh",
                               "sharding", "sharding_names"})


class NNXNote(NamedTuple):
    """What an ``nnx.Variable`` was, besides its value (no arrays are held)."""

    type: type
    metadata: Mapping[str, Any]
    key_impl: Any = None  # the PRNG impl of a typed key (nnx.RngKey), else None


def note_linen_box(var: BaseVar, template: meta.AxisMetadata) -> None:
    """Remember that ``var``'s Linen leaf comes in ``template`` (a box with no value).

    An NNX note of ``var`` takes the box's sharding names in place of its own.
    """
    _metadata.remember(var, LINEN, template)
    note = _metadata.recall(var, NNX)
    if note is not None:
        data = {k: v for k, v in note.metadata.items() if k not in _SHARDING_ENTRIES}
        data.update(nt.linen_box_to_nnx_metadata(template))
        _metadata.remember(var, NNX, note._replace(metadata=data))


def note_nnx(var: BaseVar, var_type: type, metadata: Mapping[str, Any],
             key_impl: Any = None) -> None:
    """Remember that ``var`` is an NNX ``var_type`` variable with ``metadata``.

    The Linen note follows: a box carrying the metadata's sharding names, or none.
    """
    _metadata.remember(var, NNX, NNXNote(var_type, dict(metadata), key_impl))
    _metadata.remember(var, LINEN, nt.nnx_metadata_to_linen_box(None, metadata))


def _unbox(leaf: Any) -> tuple[Any, Optional[meta.AxisMetadata]]:
    """``(array, box with its value removed)`` for a boxed leaf, ``(leaf, None)`` otherwise.

    A sharding box is opened without applying its sharding constraint: the array is
    taken as it is, not moved.
    """
    if not isinstance(leaf, meta.AxisMetadata):
        return leaf, None
    if isinstance(leaf, meta.Partitioned):
        value = leaf.unbox(apply_constraint=False)
    else:
        value = leaf.unbox()
    return value, leaf.replace_boxed(None)


def _note_loaded(vc: VarCollection, report: LoadReport, notes: Mapping[str, Any],
                 note: Any) -> None:
    """``note(variable, notes[key])`` for every loaded variable whose entry has a note."""
    for name in report.loaded:
        key = report.sources.get(name)
        if key in notes:
            note(vc[name], notes[key])


def to_linen_variables(vc: VarCollection, rules: RulesArg = None) -> dict[str, Any]:
    """The Linen variables dict of ``vc``: ``{'params': {...}, 'batch_stats': {...}, ...}``.

    Variables of a ``FlaxModule`` come back under their own collections and paths (so
    ``to_linen_variables(FlaxModule(m, v).vars())`` is ``v``, the same arrays). Native
    ``bridge`` modules use the "setup" naming by default (attribute names, ``layers_i``
    for ``Sequential``), or Linen's compact naming with ``rules="compact"``
    (``Dense_0``, ``Conv_0``, ``BatchNorm_0``); ``Linear.w/b`` become ``kernel/bias``,
    ``BatchNorm`` statistics ``batch_stats/mean, var`` of shape ``(C,)``.

    Args:
      vc: the variables (``model.vars()``); each variable appears once.
      rules: ``Rule``s, ``Layer``s and presets (see ``bridge.interop``).

    Returns:
      A nested dict of the variables' arrays (the same objects; reshaped only where a
      layout differs, e.g. ``Conv2D.b`` ``(C, 1, 1)`` → ``(C,)``). A variable that came
      from a boxed leaf (``nn.Partitioned``, ``nn.LogicallyPartitioned``: a model built
      with ``nn.with_partitioning``, loaded with ``load_linen_variables`` or wrapped by
      ``FlaxModule``) comes back in the same kind of box, with the same names; one whose
      NNX metadata has sharding names (``load_nnx_state``, ``NNXModule``) in an
      ``nn.Partitioned`` carrying them. So ``nn.get_partition_spec`` works on the result.

    Raises:
      ValueError: two variables translate to one name, or one's name would be a branch
        holding another's (attributes ``a`` and ``a/b``: ``params/a``, ``params/a/b``);
        rename one with a ``bridge.interop.Rule``. Nothing is built.

    Example::

        variables = bridge.flax.to_linen_variables(model.vars(), rules="compact")
        linen_model.apply(variables, x)
    """
    flat = _engine.export(vc, "linen", rules, "to_linen_variables")
    parts = {}
    for t in _engine.targets_for_export(vc, "linen", rules):  # cached: no second translation
        template = _metadata.recall(t.var, LINEN)
        if template is not None:
            flat[t.key] = template.replace_boxed(flat[t.key])
        if t.parts is not None:
            parts[t.key] = t.parts
    return _engine.unflatten_linen(flat, parts)


def load_linen_variables(vc: VarCollection, variables: Mapping[str, Any], strict: bool = True,
                         rules: RulesArg = None) -> LoadReport:
    """Assign Linen ``variables`` (every collection) to the variables of ``vc``.

    The naming style ("setup" or "compact") is chosen automatically as the one that fits
    unless ``rules`` names one. The arrays are assigned as they are (no copy).

    Every entry must have the variable's shape (in Linen's layout) and exact dtype: a
    float64 NumPy array does not fit a float32 variable (cast it first), as for any
    assignment and checkpoint restore.

    Boxed leaves (``nn.Partitioned``, ``nn.LogicallyPartitioned`` and any other
    ``flax.core.meta.AxisMetadata``, as ``init`` returns them for a model built with
    ``nn.with_partitioning``) are loaded as the array they hold, taken as it is (no
    sharding constraint is applied). Each variable loaded from a box remembers the box
    (without its value), so ``to_linen_variables`` and ``to_nnx_state`` give it back
    with the same sharding names. A variable loaded from a bare array keeps whatever box
    it remembered before.

    Args:
      vc: the variables to fill.
      variables: ``{'params': ..., 'batch_stats': ..., ...}``.
      strict: if any entry is missing, unexpected, or of the wrong shape or dtype, raise
        ``bridge.interop.LoadMismatchError`` (a ``ValueError``) listing all of them and
        assign nothing. With ``strict=False`` the entries that fit are assigned and the
        rest reported.
      rules: ``Rule``s, ``Layer``s and presets (see ``bridge.interop``).

    Returns:
      A ``LoadReport``: ``loaded`` and ``missing`` (variable names), ``unexpected``
      (library keys), ``mismatched`` (``(variable name, reason)`` pairs), ``sources``
      (``{variable name: library key}``), ``ok``, ``describe()``.

    Example::

        report = bridge.flax.load_linen_variables(model.vars(), variables, strict=False)
        report.missing        # ('(Sequential)[0](Linear).b',)
    """
    vc = _engine._as_vc(vc, "load_linen_variables")
    flat = _engine.flatten_linen(variables, "load_linen_variables")
    templates = {}
    for key, leaf in flat.items():
        flat[key], template = _unbox(leaf)
        if template is not None:
            templates[key] = template
    report = _engine.load(vc, flat, "linen", strict, rules, "load_linen_variables")
    _note_loaded(vc, report, templates, note_linen_box)
    return report


def _nnx_type(target: Any) -> type:
    hint = getattr(target.var, "nnx_type", None)
    if isinstance(hint, type) and issubclass(hint, nnx.Variable):
        return hint
    if isinstance(target.var, TrainVar):
        return nnx.Param
    if isinstance(target.var, RandomState):
        return nnx.RngKey
    parts = target.key.split("/")
    if len(parts) >= 3 and parts[-3] == "rngs" and parts[-1] == "count":
        return nnx.RngCount
    coll = target.entry.coll if target.entry is not None else "batch_stats"
    try:
        return variablelib.variable_type_from_name(coll)
    except (KeyError, ValueError):
        return nnx.Variable


def to_nnx_state(vc: VarCollection, rules: RulesArg = None) -> nnx.State:
    """An ``nnx.State`` of ``vc``: ``TrainVar`` → ``nnx.Param``, others → other types.

    Paths follow NNX: attributes by name, list items by index (``Sequential`` →
    ``layers/0/...``); ``Linear.w/b`` → ``kernel/bias``; ``BatchNorm`` → ``scale, bias``
    (``nnx.Param``) and ``mean, var`` (``nnx.BatchStat``), shape ``(C,)``. The type of
    other state follows its Linen collection (``batch_stats`` → ``BatchStat``), or the
    variable's ``nnx_type`` attribute when it has one; a ``RandomState`` becomes an
    ``nnx.RngKey`` holding a typed key. Values are the same arrays (keys excepted).

    A variable that came from an NNX variable (an ``NNXModule``'s, or one filled by
    ``load_nnx_state``) becomes that variable again: the same type (``Param``,
    ``BatchStat``, ``RngKey``, ``RngCount``, your own ``nnx.Variable`` subclasses), the
    same metadata (a stream's ``tag``, sharding names, ...), and a key of the same PRNG
    impl; so ``nnx.merge(graphdef, to_nnx_state(NNXModule(model).vars()))`` equals
    ``model``. A variable loaded from a Linen box (``nn.Partitioned``) gets its sharding
    names as NNX metadata (``out_sharding``, which ``nnx.get_partition_spec`` reads).

    Only list items get int keys: an attribute named by digits (``'0'``, ``'01'``) keeps
    its name, as in NNX. Where a user rule's target or an ``NNXModule``'s names (text)
    hold a part such as ``'0'``, it is read as a list index, unless keys that are not
    numbers sit beside it (then all are text). As for ``to_linen_variables``, a name that
    would be a branch holding another's (``a`` and ``a/b``) raises a ``ValueError``.

    Example::

        nnx.update(nnx_model, bridge.flax.to_nnx_state(model.vars()))
    """
    export = _engine.export(vc, "nnx", rules, "to_nnx_state")
    targets = _engine.targets_for_export(vc, "nnx", rules)
    paths = nm.nnx_state_paths([t.nnx_path() for t in targets])
    flat = {}
    for t, path in zip(targets, paths):
        note = _metadata.recall(t.var, NNX)
        if note is not None:
            kind, data, impl = note.type, note.metadata, note.key_impl
        else:
            kind, data, impl = _nnx_type(t), {}, None
            template = _metadata.recall(t.var, LINEN)
            if template is not None:
                data = nt.linen_box_to_nnx_metadata(template)
        value = export[t.key]
        if issubclass(kind, nnx.RngKey) and not _is_key(value):
            # a RandomState holds the raw key data
            value = jax.random.wrap_key_data(value) if impl is None \
                else jax.random.wrap_key_data(value, impl=impl)
        flat[path] = nt.make(kind, value, data) if data else kind(value)
    return nnx.from_flat_state(flat)


def _nnx_flat(state: Any) -> dict[str, Any]:
    if isinstance(state, nnx.Module):
        state = nnx.state(state)
    if not isinstance(state, (nnx.State, Mapping)):
        raise TypeError(f"load_nnx_state: expected an nnx.State (`nnx.state(model)` or the "
                        f"second output of `nnx.split`), got {type(state).__name__}.")
    # not nnx.to_flat_state: it sorts the paths, which fails where int and str keys meet
    # under one parent, and entries are matched by their text anyway
    return {"/".join(map(str, path)): leaf
            for path, leaf in nnx.traversals.flatten_to_sequence(state)}


def _check_nnx_type(var: Any, leaf: Any) -> str:
    if not isinstance(leaf, nnx.Variable):
        return ""
    if isinstance(var, TrainVar) and not isinstance(leaf, nnx.Param):
        return f"expected an nnx.Param for a TrainVar, got {type(leaf).__name__}"
    if not isinstance(var, TrainVar) and isinstance(leaf, nnx.Param):
        return f"expected a non-Param NNX variable for a {type(var).__name__}, got Param"
    return ""


def _is_key(x: Any) -> bool:
    return hasattr(x, "dtype") and jax.dtypes.issubdtype(x.dtype, jax.dtypes.prng_key)


def _nnx_value(leaf: Any) -> Any:
    value = leaf.get_value() if isinstance(leaf, nnx.Variable) else leaf
    return jax.random.key_data(value) if _is_key(value) else value


def load_nnx_state(vc: VarCollection, state: Any, strict: bool = True,
                   rules: RulesArg = None) -> LoadReport:
    """Assign an ``nnx.State`` (or an NNX module's state) to the variables of ``vc``.

    ``nnx.Param`` entries go to ``TrainVar``s and other NNX variables to the other
    variables; a crossed type is reported like a wrong shape. A typed PRNG key (an
    ``nnx.Rngs`` stream) is loaded as its raw key data, which a ``RandomState`` holds.
    Strictness and the report are those of ``load_linen_variables``.

    Each loaded variable remembers the NNX variable it came from (its type, its metadata
    and the PRNG impl of a key), so ``to_nnx_state`` rebuilds it as it was and
    ``to_linen_variables`` boxes it in an ``nn.Partitioned`` when its metadata has
    sharding names.

    Example::

        _, state = nnx.split(nnx_model)
        bridge.flax.load_nnx_state(model.vars(), state)
    """
    vc = _engine._as_vc(vc, "load_nnx_state")
    flat = _nnx_flat(state)
    notes = {}
    for key, leaf in flat.items():
        if isinstance(leaf, nnx.Variable):
            value = leaf.get_value()
            impl = jax.random.key_impl(value) if _is_key(value) else None
            notes[key] = NNXNote(type(leaf), nt.metadata(leaf), impl)
    report = _engine.load(vc, flat, "nnx", strict, rules, "load_nnx_state",
                          check=_check_nnx_type, value_of=_nnx_value)
    _note_loaded(vc, report, notes, lambda var, n: note_nnx(var, *n))
    return report
