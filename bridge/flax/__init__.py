"""Flax interop: Linen and NNX variables <-> bridge variables, and wrappers both ways.

Imports Flax only when this package is first used (``import bridge.flax`` or the
attribute ``bridge.flax``), so ``import bridge`` works without it. Install with
``pip install "jax-bridge[flax]"``; without it, importing this package says so.
"""

from bridge._optional import import_optional

import_optional("flax", "flax", "bridge.flax")

from bridge.flax._convert import (  # noqa: E402 - after the check above
    load_linen_variables,
    load_nnx_state,
    to_linen_variables,
    to_nnx_state,
)
from bridge.flax._wrappers import FlaxModule, MissingRngStreamError, NNXModule, to_linen  # noqa: E402 - after the check above

__all__ = ["FlaxModule", "MissingRngStreamError", "NNXModule", "load_linen_variables",
           "load_nnx_state", "to_linen", "to_linen_variables", "to_nnx_state"]
