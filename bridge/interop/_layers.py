"""How each kind of layer is named and laid out in Linen, NNX, Haiku and PyTorch: the data.

This is the one place to read, and to extend, when a layer does not port. ``port`` goes
from any scheme to any other through one intermediate form, the *hub*: Linen's names and
Linen's layouts (``bridge.interop._port``). So every entry here says how a layer differs
from Linen, in one direction; the other direction is its inverse.

* ``AUTO_NAMES``: the names a library gives a layer it was not asked to name (Linen
  ``Dense_0``, ``Dense_1``; Haiku ``linear``, ``linear_1``). Only these are translated;
  any other name (``block_group_0``, ``conv_0``, ``fc1``) is the same in every scheme.
* ``LEAF_NAMES``: leaf renames by the kind of module, found from the module's own leaves
  (a Haiku module holding ``w`` is dense-like whatever its name).
* ``STRUCTURES``: layers whose Haiku layout differs from Linen's by more than a rename
  (batch norm statistics, attention heads, the fused LSTM, transposed kernels), each
  with the reshapes, splits and concatenations that turn one into the other.

Adding a layer: one ``AutoName`` if libraries name it automatically, one entry in
``LEAF_NAMES`` if its leaves are named differently, one ``Structure`` if its arrays are
laid out differently. CONTRIBUTING.md ("Porting a new layer") walks through an example.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable, Mapping, Optional

import numpy as np

__all__ = ["AUTO_NAMES", "AutoName", "LEAF_NAMES", "STRUCTURES", "Structure",
           "HAIKU_LSTM_FORGET_BIAS"]


@dataclass(frozen=True)
class AutoName:
    """A layer's automatic names: Linen ``{linen}_{k}``, Haiku ``{haiku}`` then ``{haiku}_{k}``.

    ``{rank}`` in ``haiku`` stands for the number of spatial dimensions of the layer's
    kernel (``conv2_d`` for a ``(3, 3, I, O)`` kernel), which Linen's class name omits.
    """

    linen: str
    haiku: str


AUTO_NAMES: tuple[AutoName, ...] = (
    AutoName("Dense", "linear"),
    AutoName("Conv", "conv{rank}_d"),
    AutoName("ConvTranspose", "conv{rank}_d_transpose"),
    AutoName("BatchNorm", "batch_norm"),
    AutoName("LayerNorm", "layer_norm"),
    AutoName("GroupNorm", "group_norm"),
    AutoName("RMSNorm", "rms_norm"),
    AutoName("InstanceNorm", "instance_norm"),
    AutoName("Embed", "embed"),
    AutoName("MultiHeadDotProductAttention", "multi_head_attention"),
    AutoName("LSTMCell", "lstm"),
)

#: Haiku leaf -> Linen leaf, by kind of module. A module's kind comes from its leaves:
#: ``dense`` holds ``w`` or ``kernel``; ``embed`` holds ``embeddings`` or ``embedding``;
#: ``norm`` holds ``scale`` or ``offset``, or nothing but ``bias``. Names of one side that
#: appear on the other are swapped (a Haiku leaf literally called ``kernel`` becomes
#: Linen's ``w``), so every translation can be undone.
LEAF_NAMES: dict[str, dict[str, str]] = {
    "dense": {"w": "kernel", "b": "bias"},
    "embed": {"embeddings": "embedding"},
    "norm": {"scale": "scale", "offset": "bias"},
}

#: Haiku's ``hk.LSTM`` adds this to the forget gate before its sigmoid; Linen's cells
#: do not, so the ported forget bias carries it.
HAIKU_LSTM_FORGET_BIAS = 1.0

Module = dict[str, Any]   # one module's leaves ('w', 'b', ...) and children ('query/w', ...)


def _reshape_last(x: Any, shape: tuple[int, ...]) -> Any:
    return x.reshape(tuple(x.shape[:-1]) + shape)


def _merge_last(x: Any, n: int) -> Any:
    return x.reshape(tuple(x.shape[:-n]) + (-1,))


def _np(x: Any) -> Any:
    return x if hasattr(x, "reshape") else np.asarray(x)


@dataclass(frozen=True)
class Structure:
    """A layer whose Haiku arrays differ from Linen's by more than a rename.

    Args:
      name: what the layer is, for messages.
      haiku_children, linen_children: the child modules that identify it (exactly these).
      to_linen: Haiku module (``{'query/w': ..., ...}``, Haiku leaf names) -> Linen module
        (``{'query/kernel': ...}``); ``hint`` holds Linen shapes of the target where the
        Haiku arrays do not say everything (the head count of attention).
      to_haiku: the inverse.
      haiku_names: automatic Haiku names that identify it by name alone (the LSTM, whose
        only child is a plain ``linear``).
    """

    name: str
    haiku_children: frozenset
    linen_children: frozenset
    to_linen: Callable[[Module, Mapping[str, tuple]], Module]
    to_haiku: Callable[[Module], Module]
    haiku_names: tuple[str, ...] = ()


# ----- attention: Haiku (d, h*k) <-> Linen (d, h, k) ------------------------------------
_QKV = ("query", "key", "value")


def _attention_to_linen(m: Module, hint: Mapping[str, tuple]) -> Module:
    shape = hint.get("query/kernel")
    if shape is None:
        raise _NeedsLike("the number of attention heads is not in Haiku's weights")
    heads, size = shape[-2], shape[-1]
    out: Module = {}
    for c in _QKV:
        out[f"{c}/kernel"] = _reshape_last(_np(m[f"{c}/w"]), (heads, size))
        if f"{c}/b" in m:
            out[f"{c}/bias"] = _reshape_last(_np(m[f"{c}/b"]), (heads, size))
    w = _np(m["linear/w"])
    out["out/kernel"] = w.reshape((heads, size) + tuple(w.shape[1:]))
    if "linear/b" in m:
        out["out/bias"] = m["linear/b"]
    return out


def _attention_to_haiku(m: Module) -> Module:
    out: Module = {}
    for c in _QKV:
        out[f"{c}/w"] = _merge_last(_np(m[f"{c}/kernel"]), 2)
        if f"{c}/bias" in m:
            out[f"{c}/b"] = _merge_last(_np(m[f"{c}/bias"]), 2)
    k = _np(m["out/kernel"])
    out["linear/w"] = k.reshape((-1,) + tuple(k.shape[2:]))
    if "out/bias" in m:
        out["linear/b"] = m["out/bias"]
    return out


# ----- LSTM: Haiku's one linear over [x, h], gates i, g, f, o <-> Linen ii..ho -----------
_GATES = ("i", "g", "f", "o")   # Haiku's order of the fused gate columns


def _lstm_to_linen(m: Module, hint: Mapping[str, tuple]) -> Module:
    w, b = _np(m["linear/w"]), _np(m["linear/b"])
    hidden = w.shape[1] // 4
    n_in = w.shape[0] - hidden
    out: Module = {}
    for g, cols in zip(_GATES, np.split(np.arange(4 * hidden), 4)):
        lo, hi = int(cols[0]), int(cols[-1]) + 1
        out[f"i{g}/kernel"] = w[:n_in, lo:hi]
        out[f"h{g}/kernel"] = w[n_in:, lo:hi]
        bias = b[lo:hi]
        out[f"h{g}/bias"] = bias + HAIKU_LSTM_FORGET_BIAS if g == "f" else bias
    return out


def _lstm_to_haiku(m: Module) -> Module:
    xp = _array_module(m["ii/kernel"])
    w = xp.concatenate([xp.concatenate([m[f"i{g}/kernel"], m[f"h{g}/kernel"]], axis=0)
                        for g in _GATES], axis=1)
    b = xp.concatenate([m[f"h{g}/bias"] - HAIKU_LSTM_FORGET_BIAS if g == "f"
                        else m[f"h{g}/bias"] for g in _GATES])
    return {"linear/w": w, "linear/b": b}


def _array_module(x: Any) -> Any:
    if isinstance(x, np.ndarray):
        return np
    import jax.numpy as jnp
    return jnp


STRUCTURES: tuple[Structure, ...] = (
    Structure("attention", frozenset({"query", "key", "value", "linear"}),
              frozenset({"query", "key", "value", "out"}),
              _attention_to_linen, _attention_to_haiku),
    Structure("LSTM", frozenset({"linear"}),
              frozenset({"ii", "if", "ig", "io", "hi", "hf", "hg", "ho"}),
              _lstm_to_linen, _lstm_to_haiku,
              haiku_names=("lstm", "LSTMCell", "OptimizedLSTMCell")),
)

#: NNX names some children differently from Linen: ``nnx.LSTMCell``'s forget-gate input
#: is ``if_`` (``if`` is a Python keyword). Linen child -> NNX child, inside a structure.
NNX_CHILD_NAMES: dict[str, dict[str, str]] = {"LSTM": {"if": "if_"}}


class _NeedsLike(Exception):
    """A translation needs the target's shapes (``like=``); ``reason`` says which."""

    def __init__(self, reason: str):
        super().__init__(reason)
        self.reason = reason


def needs_like(error: BaseException) -> Optional[str]:
    """The reason when ``error`` says a translation needs ``like=``, else ``None``."""
    return error.reason if isinstance(error, _NeedsLike) else None
