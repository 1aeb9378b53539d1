"""Interpolation methods for resizing (``interpolate``, ``upsample_2d``)."""

from __future__ import annotations

import enum
from typing import Union

__all__ = ["Interpolate", "to_interpolate"]


class Interpolate(enum.Enum):
    """The resampling methods of ``jax.image.resize``, under Objax's names.

    ``NEAREST``; ``LINEAR``, ``BILINEAR``, ``TRILINEAR`` and ``TRIANGLE`` (the same linear
    kernel, whatever the number of resized axes); ``CUBIC``, ``BICUBIC``, ``TRICUBIC``
    (Keys cubic kernel); ``LANCZOS3`` and ``LANCZOS5``.

    Example::

        bridge.functional.upsample_2d(x, 2, method=bridge.constants.Interpolate.NEAREST)
    """

    NEAREST = "nearest"
    LINEAR = "linear"
    BILINEAR = "bilinear"
    TRILINEAR = "trilinear"
    TRIANGLE = "triangle"
    CUBIC = "cubic"
    BICUBIC = "bicubic"
    TRICUBIC = "tricubic"
    LANCZOS3 = "lanczos3"
    LANCZOS5 = "lanczos5"


def to_interpolate(interpolate: Union[Interpolate, str]) -> str:
    """The ``jax.image.resize`` method name for an ``Interpolate`` or its name (any case).

    Example: ``to_interpolate(Interpolate.BICUBIC) == to_interpolate('Bicubic') == 'bicubic'``.
    """
    if isinstance(interpolate, Interpolate):
        return interpolate.value
    if isinstance(interpolate, str):
        try:
            return Interpolate[interpolate.upper()].value
        except KeyError:
            names = ", ".join(repr(m.value) for m in Interpolate)
            raise ValueError(f"Unknown interpolation {interpolate!r}: use one of {names} "
                             "or a bridge.constants.Interpolate.") from None
    raise TypeError(f"Interpolation must be a string or a bridge.constants.Interpolate, got "
                    f"{type(interpolate).__name__} {interpolate!r}.")
