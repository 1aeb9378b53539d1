"""Declarative rules: user name rules (``Rule``) and the layer table (``Layer``, ``Leaf``).

Nothing here imports Flax or Haiku: the rules are plain data about names and shapes.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any, Callable, Optional

__all__ = ["Rule", "Layer", "Leaf", "LAYERS", "PRESETS", "HAIKU_EMA_COUNTER"]

#: The ``counter`` written next to an EMA ``average`` when Haiku state is produced from a
#: plain (already debiased) running average. Haiku divides by ``1 - decay**counter``;
#: at this count that factor is exactly 1 in every float type, so the next training step
#: moves the average as ``decay * average + (1 - decay) * x``, exactly like Linen and
#: ``bridge.nn``. It leaves about a billion further steps before ``int32`` overflows.
HAIKU_EMA_COUNTER = 2 ** 30

#: Preset names accepted in ``rules=``.
PRESETS = ("setup", "compact", "mlp")

_PLACEHOLDER = re.compile(r"\{(\w+)(\*?)\}")


def _compile(pattern: str) -> re.Pattern:
    out, pos = [], 0
    for m in _PLACEHOLDER.finditer(pattern):
        out.append(re.escape(pattern[pos:m.start()]))
        out.append(f"(?P<{m.group(1)}>.*?)" if m.group(2) else rf"(?P<{m.group(1)}>[^/.()\[\]]+)")
        pos = m.end()
    out.append(re.escape(pattern[pos:]))
    return re.compile("".join(out) + r"\Z")


class Rule:
    """Map names matching ``source`` to ``target``, optionally transforming the value.

    Patterns are literal text with placeholders: ``{name}`` matches one name part (no
    ``/ . ( ) [ ]``), ``{name*}`` matches anything, including nothing. The target uses the
    same placeholders. ``target=None`` drops the matching entries (they are neither
    converted nor expected when loading).

    A rule is matched against the *whole* source name (a ``VarCollection`` name for the
    converters, a flat key such as ``params/Dense_0/kernel`` or
    ``params/mlp/~/linear_0/w`` for ``port``) and produces the whole target name. Rules
    given by the user are tried in order before the default translation.

    Args:
      source: pattern of the names this rule applies to.
      target: template of the translated name, or ``None`` to drop.
      transform: applied to the value on the way source → target (e.g. a transpose).
      inverse: applied on the way back, when loading target values into the source.

    Example::

        Rule("(Net).head(Linear).w", "params/Classifier/kernel")
        Rule("{p*}(MyDense).weight", "params/{p}/kernel", transform=lambda w: w.T,
             inverse=lambda w: w.T)
        Rule("{p*}(Adam){rest*}", None)            # leave the optimizer state out
    """

    def __init__(self, source: str, target: Optional[str],
                 transform: Optional[Callable[[Any], Any]] = None,
                 inverse: Optional[Callable[[Any], Any]] = None):
        self.source = source
        self.target = target
        self.transform = transform
        self.inverse = inverse
        self._regex = _compile(source)
        if target is not None:
            unknown = {m.group(1) for m in _PLACEHOLDER.finditer(target)} - set(
                self._regex.groupindex)
            if unknown:
                raise ValueError(f"Rule target {target!r} uses placeholders not in the source "
                                 f"{source!r}: {', '.join(sorted(unknown))}.")

    def apply(self, name: str) -> tuple[bool, Optional[str]]:
        """``(matched, target name or None when dropped)``."""
        m = self._regex.match(name)
        if m is None:
            return False, None
        if self.target is None:
            return True, None
        groups = m.groupdict()
        return True, _PLACEHOLDER.sub(lambda p: groups[p.group(1)], self.target)

    def __repr__(self) -> str:
        return f"Rule({self.source!r}, {self.target!r})"


@dataclass(frozen=True)
class Leaf:
    """One variable of a layer, named in each scheme.

    Args:
      objax: attribute name on the ``bridge.nn`` layer (``None``: no bridge layer).
      linen: ``collection/name`` in Linen (and NNX, which uses the same names).
      haiku: ``params/name``, ``state/name``, or ``state/<sub-module>/name``.
      objax_layout: how the value is laid out on the ``bridge`` layer when it differs from
        Linen's ``(C,)`` vector: ``"c1"`` is ``(C, 1, ..., 1)`` (``Conv2D.b``), ``"1c"`` is
        ``(1, C, 1, ..., 1)`` (channels-first statistics), ``"1..c"`` is
        ``(1, ..., 1, C)`` (channels-last statistics).
      haiku_layout: the same for Haiku's layout.
      ema: the Haiku side is an ``ExponentialMovingAverage`` (``average`` holds the
        value; ``hidden`` and ``counter`` are derived, see ``HAIKU_EMA_COUNTER``).
    """

    objax: Optional[str]
    linen: str
    haiku: str
    objax_layout: Optional[str] = None
    haiku_layout: Optional[str] = None
    ema: bool = False


@dataclass(frozen=True)
class Layer:
    """How one kind of layer is named in the three schemes.

    Args:
      objax: ``bridge`` class names of the layer (``()`` if there is none).
      linen: Linen class name; compact names are ``{linen}_{k}``.
      haiku: Haiku module name; automatic names are ``{haiku}``, ``{haiku}_1``, ...
      leaves: its variables.

    Example (a user layer with ``weight``/``bias`` that is a ``Dense`` in Linen)::

        Layer(("MyDense",), "Dense", "linear",
              (Leaf("weight", "params/kernel", "params/w"),
               Leaf("bias", "params/bias", "params/b")))
    """

    objax: tuple[str, ...]
    linen: str
    haiku: str
    leaves: tuple[Leaf, ...] = field(default=())


_BN_LEAVES = (
    Leaf("gamma", "params/scale", "params/scale", "1c", "1..c"),
    Leaf("beta", "params/bias", "params/offset", "1c", "1..c"),
    Leaf("running_mean", "batch_stats/mean", "state/mean_ema/average", "1c", "1..c", ema=True),
    Leaf("running_var", "batch_stats/var", "state/var_ema/average", "1c", "1..c", ema=True),
)

#: The built-in layer table.
LAYERS: tuple[Layer, ...] = (
    Layer(("Linear",), "Dense", "linear",
          (Leaf("w", "params/kernel", "params/w"), Leaf("b", "params/bias", "params/b"))),
    Layer(("Conv2D",), "Conv", "conv2_d",
          (Leaf("w", "params/kernel", "params/w"),
           Leaf("b", "params/bias", "params/b", objax_layout="c1"))),
    Layer(("BatchNorm", "BatchNorm0D", "BatchNorm1D", "BatchNorm2D"), "BatchNorm",
          "batch_norm", _BN_LEAVES),
    Layer((), "LayerNorm", "layer_norm",
          (Leaf(None, "params/scale", "params/scale"), Leaf(None, "params/bias", "params/offset"))),
    Layer((), "Embed", "embed", (Leaf(None, "params/embedding", "params/embeddings"),)),
)
