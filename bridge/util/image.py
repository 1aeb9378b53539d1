"""Image helpers (Objax's ``objax.util.image``): layouts, [-1, 1] floats <-> uint8, PNG.

Images are channel-first, as ``bridge.nn.Conv2D`` expects: one image is ``(C, H, W)``, a
batch ``(N, C, H, W)``. Floats represent the 256 levels of a uint8 pixel by the centres of
256 equal bins of [-1, 1]: level ``k`` is ``(k + 0.5) / 128 - 1``, so 0 maps to
``-1 + 1/256`` and 255 to ``1 - 1/256``.

Reading and writing PNG files (``to_png``, ``from_file``) needs Pillow
(``pip install "jax-bridge[image]"``); the rest is NumPy/JAX only.

Example::

    from bridge.util import image

    x = image.from_file('cat.png')                  # (3, H, W) floats in [-1, 1]
    batch = image.nhwc(x[None])                     # (1, H, W, 3)
    png = image.to_png(x)                           # bytes of a PNG file
"""

from __future__ import annotations

import io
import os
from typing import IO, Any, Union

import jax
import jax.numpy as jnp
import numpy as np

from bridge._optional import import_optional

__all__ = [
    "from_file",
    "image_grid",
    "nchw",
    "nhwc",
    "normalize_to_uint8",
    "normalize_to_unit_float",
    "to_png",
]

ArrayLike = Union[np.ndarray, jax.Array]


def _pillow() -> Any:
    return import_optional("PIL.Image", "image", "bridge.util.image (PNG files)", "pillow")


def nchw(x: ArrayLike) -> ArrayLike:
    """Channel-last to channel-first: ``(..., H, W, C)`` becomes ``(..., C, H, W)``.

    Any number of leading axes (``(N, H, W, C)``, ``(T, N, H, W, C)``, ...); NumPy arrays
    stay NumPy, JAX arrays stay JAX.
    """
    axes = list(range(x.ndim))
    return x.transpose(axes[:-3] + [axes[-1]] + axes[-3:-1])


def nhwc(x: ArrayLike) -> ArrayLike:
    """Channel-first to channel-last: ``(..., C, H, W)`` becomes ``(..., H, W, C)``.

    The inverse of ``nchw``.
    """
    axes = list(range(x.ndim))
    return x.transpose(axes[:-3] + axes[-2:] + [axes[-3]])


def normalize_to_uint8(x: ArrayLike) -> ArrayLike:
    """Floats in [-1, 1] to uint8 levels 0..255: ``round(128 x + 127.5)``, clipped.

    The inverse of ``normalize_to_unit_float`` on its outputs; values outside
    ``[-1 + 1/256, 1 - 1/256]`` saturate at 0 and 255. Ties round to even.
    """
    return (x * 128 + 127.5).clip(0, 255).round().astype(np.uint8)


def normalize_to_unit_float(x: ArrayLike) -> ArrayLike:
    """uint8 levels 0..255 to floats in [-1, 1]: ``x / 128 - 255/256``, the bin centres.

    For a NumPy integer array the result is float64, for a JAX one float32 (the default
    float), as arithmetic with a Python float gives.
    """
    return x * (1 / 128) - (1 - 1 / 256)


def image_grid(image: ArrayLike) -> ArrayLike:
    """Tile a grid of images into one image: ``(rows, cols, C, H, W)`` to ``(C, rows*H, cols*W)``.

    Image ``[i, j]`` lands at rows ``i*H:(i+1)*H`` and columns ``j*W:(j+1)*W``.
    """
    rows, cols, c, h, w = image.shape
    return image.transpose((2, 0, 3, 1, 4)).reshape((c, rows * h, cols * w))


def to_png(x: ArrayLike) -> bytes:
    """Encode a ``(C, H, W)`` image as PNG bytes.

    Args:
      x: floats in [-1, 1] (converted with ``normalize_to_uint8``) or uint8 levels, with
        ``C`` = 1 (written as grey RGB), 3 (RGB) or 4 (RGBA) channels first.

    Returns:
      The content of a PNG file.

    Raises:
      ValueError: another dtype, or not 1, 3 or 4 channels.

    Unlike Objax, which expected uint8 input channel-last, both dtypes are channel-first.
    """
    x = np.asarray(x)
    if x.dtype != np.uint8:
        if not (np.issubdtype(x.dtype, np.floating) or x.dtype == jnp.bfloat16):
            raise ValueError(f"to_png: expected floats in [-1, 1] or uint8, got dtype {x.dtype}.")
        if x.dtype.itemsize < 4:  # float16 / bfloat16: compute the levels in float32
            x = x.astype(np.float32)
        x = normalize_to_uint8(x)
    if x.ndim != 3 or x.shape[0] not in (1, 3, 4):
        raise ValueError(f"to_png: expected one image of shape (C, H, W) with C = 1, 3 or 4, "
                         f"got shape {x.shape}.")
    pixels = np.ascontiguousarray(nhwc(x))
    if pixels.shape[-1] == 1:
        pixels = np.repeat(pixels, 3, axis=-1)
    with io.BytesIO() as out:
        _pillow().fromarray(pixels).save(out, format="png")
        return out.getvalue()


def from_file(file: Union[str, os.PathLike, IO[bytes]]) -> np.ndarray:
    """Read an image file (any format Pillow reads) as RGB floats.

    Args:
      file: a path or a binary file object.

    Returns:
      A float64 NumPy array of shape ``(3, H, W)`` in [-1, 1]
      (``normalize_to_unit_float`` of the RGB levels).
    """
    with _pillow().open(file) as picture:
        levels = np.asarray(picture.convert("RGB"))
    return normalize_to_unit_float(nchw(levels))
