"""Padding and window-size conventions shared by convolutions and pooling (NCHW layout)."""

from __future__ import annotations

import enum
from typing import Sequence, Union

__all__ = ["ConvPadding", "ConvPaddingInt", "to_padding", "to_tuple"]


class ConvPadding(enum.Enum):
    """How a convolution or pooling window treats the borders of its input.

    ``SAME``
        pad so that the output spatial size is ``ceil(input / stride)``;
    ``VALID``
        no padding: only windows that fit entirely inside the input.

    Example::

        bridge.nn.Conv2D(3, 8, 3, padding=bridge.nn.ConvPadding.VALID)
    """

    SAME = "SAME"
    VALID = "VALID"


# What layers and pooling functions accept as ``padding``.
ConvPaddingInt = Union[ConvPadding, str, int, Sequence[int], Sequence[Sequence[int]]]


def to_tuple(value: Union[int, Sequence[int]], n: int) -> tuple[int, ...]:
    """``value`` repeated ``n`` times if it is an int, else checked to have ``n`` entries.

    Example: ``to_tuple(3, 2) == (3, 3)``; ``to_tuple((1, 2), 2) == (1, 2)``.
    """
    if isinstance(value, int):
        return (value,) * n
    out = tuple(int(v) for v in value)
    if len(out) != n:
        raise ValueError(f"Expected an int or {n} ints, got {value!r}.")
    return out


def to_padding(padding: ConvPaddingInt, n: int) -> Union[str, tuple[tuple[int, int], ...]]:
    """Turn a user padding into what ``jax.lax`` accepts for ``n`` spatial dimensions.

    Accepted forms: a ``ConvPadding`` or its name (any case) → ``'SAME'``/``'VALID'``; an
    int ``p`` → ``((p, p),) * n``; one pair ``(lo, hi)`` → ``((lo, hi),) * n``; ``n`` pairs →
    one per spatial dimension.

    Example: ``to_padding(1, 2) == ((1, 1), (1, 1))``; ``to_padding('same', 2) == 'SAME'``.
    """
    if isinstance(padding, ConvPadding):
        return padding.value
    if isinstance(padding, str):
        try:
            return ConvPadding[padding.upper()].value
        except KeyError:
            raise ValueError(f"Unknown padding {padding!r}: use 'SAME', 'VALID', an int or "
                             "(low, high) pairs.") from None
    if isinstance(padding, int):
        return ((padding, padding),) * n
    pads = tuple(padding)
    if len(pads) == 2 and all(isinstance(p, int) for p in pads):
        return ((int(pads[0]), int(pads[1])),) * n
    if len(pads) == n and all(len(p) == 2 for p in pads):
        return tuple((int(lo), int(hi)) for lo, hi in pads)
    raise ValueError(f"Invalid padding {padding!r}: use 'SAME', 'VALID', an int, one "
                     f"(low, high) pair or {n} such pairs.")
