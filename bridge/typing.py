"""Type names for annotations, under Objax's names (``from objax.typing import JaxArray``).

``JaxArray`` is ``jax.Array``; ``JaxDType`` is anything ``jnp.dtype`` accepts; ``FileOrStr``
is a path or an open binary file (what ``bridge.io`` and ``bridge.checkpoint`` take);
``ConvPaddingInt`` is every padding form the convolution and pooling layers accept.
"""

from __future__ import annotations

import os
from typing import IO, Union

import jax

from bridge.functional._padding import ConvPaddingInt

__all__ = ["ConvPaddingInt", "FileOrStr", "JaxArray", "JaxDType"]

JaxArray = jax.Array
JaxDType = jax.typing.DTypeLike
FileOrStr = Union[str, os.PathLike, IO[bytes]]
