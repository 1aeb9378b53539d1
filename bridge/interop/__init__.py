"""Names and layouts across schemes: object (``bridge``/Objax), Flax Linen/NNX and Haiku.

The library-independent engine behind ``bridge.flax`` and ``bridge.haiku`` converters
(it imports neither library). Public surface:

* ``port(tree, from_, to, rules=None, like=None)``: a Linen variables dict ↔ Haiku
  ``(params, state)``, names, layouts and BatchNorm statistics translated;
* ``translate(vc, to, rules=None)``: the name each variable gets in a library (to see,
  before converting, what the converters will do);
* ``Rule``: a user name rule (pattern → name, optional value transform), ``Layer`` and
  ``Leaf``: how a kind of layer is named in each scheme (``LAYERS`` are the built-ins);
  presets ``"setup"``, ``"compact"``, ``"mlp"`` (see docs/interop.md);
* ``LoadReport``: what a load did (the report of every load, checkpoint restores
  included); ``LoadMismatchError``: what a strict load raises (a ``ValueError`` carrying
  the report); ``HAIKU_EMA_COUNTER``.
"""

from __future__ import annotations

from bridge.interop._engine import (
    LoadMismatchError,
    LoadReport,
    RulesArg,
    port,
    targets_for_export,
)
from bridge.interop._rules import HAIKU_EMA_COUNTER, LAYERS, PRESETS, Layer, Leaf, Rule
from bridge.interop._torch import load_safetensors, save_safetensors
from bridge.interop._torch_convert import load_torch_state_dict, to_torch_state_dict
from bridge.state import VarCollection

__all__ = ["HAIKU_EMA_COUNTER", "LAYERS", "PRESETS", "Layer", "Leaf", "LoadMismatchError",
           "LoadReport", "Rule", "load_safetensors", "load_torch_state_dict", "port",
           "save_safetensors", "to_torch_state_dict", "translate"]


def translate(vc: VarCollection, to: str, rules: RulesArg = None) -> dict[str, str]:
    """``{variable name: flat library key}`` as the converters name them (no values).

    Args:
      vc: the variables (each appears once, under its first name).
      to: ``"linen"`` (``params/Dense_0/kernel``), ``"nnx"`` (``layers/0/kernel``) or
        ``"haiku"`` (``params/mlp/~/linear_0/w``).
      rules: as for the converters.

    Example::

        bridge.interop.translate(model.vars(), "linen", rules="compact")
        # {'(Sequential)[0](Linear).b': 'params/Dense_0/bias', ...}
    """
    if to not in ("linen", "nnx", "haiku"):
        raise ValueError(f"translate: unknown scheme {to!r}; expected 'linen', 'nnx' or 'haiku'.")
    return {t.name: t.key for t in targets_for_export(vc, to, rules)}
