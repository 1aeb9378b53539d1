"""Haiku ``(params, state)`` <-> ``VarCollection`` (names translated, arrays not copied).

See ``bridge.interop`` for the naming rules and docs/interop.md for the conventions.
"""

from __future__ import annotations

from typing import Any, Mapping, Optional

from bridge.interop import _engine
from bridge.interop._engine import LoadReport, RulesArg
from bridge.state import VarCollection

__all__ = ["to_haiku_params", "load_haiku_params"]

Tree = Mapping[str, Mapping[str, Any]]


def to_haiku_params(vc: VarCollection, rules: RulesArg = None) -> tuple[dict, dict]:
    """Haiku ``(params, state)`` of ``vc``: ``{'module/~/sub': {'w': ..., 'b': ...}}``.

    Variables of a ``HaikuModule`` come back under their own module names (the same
    arrays). Native ``bridge`` modules get Haiku's automatic names: ``linear``,
    ``linear_1``, ``conv2_d``, ``batch_norm`` for the layers of the root module, nested
    modules as ``parent/~/child`` (the preset ``"mlp"`` names the top-level linear layers
    ``mlp/~/linear_k``, as ``hk.nets.MLP`` does). ``BatchNorm`` becomes ``scale, offset``
    (params) and ``~/mean_ema``, ``~/var_ema`` (state) with the channel last
    (``(1, C, 1, 1)`` → ``(1, 1, 1, C)``); each EMA gets ``average`` = ``hidden`` = the
    running value and ``counter`` = ``bridge.interop.HAIKU_EMA_COUNTER``, so Haiku goes on
    from that average without re-debiasing it.

    Example::

        params, state = bridge.haiku.to_haiku_params(model.vars(), rules="mlp")
        out, _ = transformed.apply(params, state, None, x)
    """
    flat = _engine.export(vc, "haiku", rules, "to_haiku_params")
    return _engine.unflatten_haiku(flat)


def load_haiku_params(vc: VarCollection, params: Tree, state: Optional[Tree] = None,
                      strict: bool = True, rules: RulesArg = None) -> LoadReport:
    """Assign Haiku ``params`` (and ``state``) to the variables of ``vc``.

    The EMA ``average`` of a Haiku ``BatchNorm`` is its debiased value and is what is
    loaded; ``hidden`` and ``counter`` are consumed. With ``state=None`` only parameters
    are loaded and variables that would come from the state are not reported missing.

    Every entry must have the variable's shape (in Haiku's layout) and exact dtype: a
    float64 NumPy array does not fit a float32 variable (cast it first).

    Args:
      vc: the variables to fill.
      params: Haiku parameters ``{module name: {name: array}}``.
      state: Haiku state, or ``None``.
      strict: if any entry is missing, unexpected, or of the wrong shape or dtype, raise
        ``bridge.interop.LoadMismatchError`` (a ``ValueError``) listing all of them and
        assign nothing; with ``strict=False`` load what fits and report the rest.
      rules: ``Rule``s, ``Layer``s and presets (see ``bridge.interop``).

    Returns:
      A ``LoadReport`` (see ``bridge.flax.load_linen_variables``).

    Example::

        params, state = transformed.init(rng, x)
        bridge.haiku.load_haiku_params(model.vars(), params, state)
    """
    flat = _engine.flatten_haiku(params, state, "load_haiku_params")
    ignore = (lambda key: key.startswith("state/")) if state is None else (lambda key: False)
    return _engine.load(vc, flat, "haiku", strict, rules, "load_haiku_params", ignore=ignore)
