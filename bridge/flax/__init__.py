"""Flax interop: Linen and NNX variables <-> bridge variables, and wrappers both ways.

Imports Flax lazily (only when this package is imported), so ``import bridge`` works
without it. Install with ``pip install "jax-bridge[flax]"``.
"""

from bridge.flax._convert import (
    load_linen_variables,
    load_nnx_state,
    to_linen_variables,
    to_nnx_state,
)
from bridge.flax._wrappers import FlaxModule, MissingRngStreamError, NNXModule, to_linen

__all__ = ["FlaxModule", "MissingRngStreamError", "NNXModule", "load_linen_variables",
           "load_nnx_state", "to_linen", "to_linen_variables", "to_nnx_state"]
