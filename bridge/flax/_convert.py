"""Linen variables and NNX state <-> ``VarCollection`` (names translated, arrays not copied).

See ``bridge.interop`` for the naming rules and docs/interop.md for the conventions.
"""

from __future__ import annotations

from typing import Any, Mapping

import jax
from flax import nnx
from flax.nnx import variablelib

from bridge.interop import _engine
from bridge.interop import _names as nm
from bridge.interop._engine import LoadReport, RulesArg
from bridge.state import RandomState, TrainVar, VarCollection

__all__ = ["to_linen_variables", "load_linen_variables", "to_nnx_state", "load_nnx_state"]


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
      layout differs, e.g. ``Conv2D.b`` ``(C, 1, 1)`` → ``(C,)``).

    Raises:
      ValueError: two variables translate to one name, or one's name would be a branch
        holding another's (attributes ``a`` and ``a/b``: ``params/a``, ``params/a/b``);
        rename one with a ``bridge.interop.Rule``. Nothing is built.

    Example::

        variables = bridge.flax.to_linen_variables(model.vars(), rules="compact")
        linen_model.apply(variables, x)
    """
    flat = _engine.export(vc, "linen", rules, "to_linen_variables")
    return _engine.unflatten_linen(flat)


def load_linen_variables(vc: VarCollection, variables: Mapping[str, Any], strict: bool = True,
                         rules: RulesArg = None) -> LoadReport:
    """Assign Linen ``variables`` (every collection) to the variables of ``vc``.

    The naming style ("setup" or "compact") is chosen automatically as the one that fits
    unless ``rules`` names one. The arrays are assigned as they are (no copy).

    Every entry must have the variable's shape (in Linen's layout) and exact dtype: a
    float64 NumPy array does not fit a float32 variable (cast it first), as for any
    assignment and checkpoint restore.

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
    flat = _engine.flatten_linen(variables, "load_linen_variables")
    return _engine.load(vc, flat, "linen", strict, rules, "load_linen_variables")


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

    Only list items get int keys: an attribute named by digits (``'0'``, ``'01'``) keeps
    its name, as in NNX. Where a user rule's target or an ``NNXModule``'s names (text)
    hold a part such as ``'0'``, it is read as a list index, unless keys that are not
    numbers sit beside it (then all are text). As for ``to_linen_variables``, a name that
    would be a branch holding another's (``a`` and ``a/b``) raises a ``ValueError``.

    Example::

        nnx.update(nnx_model, bridge.flax.to_nnx_state(model.vars()))
    """
    targets = _engine.targets_for_export(vc, "nnx", rules)
    export = _engine.export(vc, "nnx", rules, "to_nnx_state")
    paths = nm.nnx_state_paths([t.nnx_path() for t in targets])
    flat = {}
    for t, path in zip(targets, paths):
        kind = _nnx_type(t)
        value = export[t.key]
        if issubclass(kind, nnx.RngKey) and not _is_key(value):
            value = jax.random.wrap_key_data(value)  # a RandomState holds the raw key data
        flat[path] = kind(value)
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

    Example::

        _, state = nnx.split(nnx_model)
        bridge.flax.load_nnx_state(model.vars(), state)
    """
    flat = _nnx_flat(state)
    return _engine.load(vc, flat, "nnx", strict, rules, "load_nnx_state",
                        check=_check_nnx_type, value_of=_nnx_value)
