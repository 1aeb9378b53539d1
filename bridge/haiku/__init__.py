"""Haiku interop: Haiku params/state <-> bridge variables, and wrappers both ways.

Imports Haiku lazily (only when this package is imported), so ``import bridge`` works
without it. Install with ``pip install "jax-bridge[haiku]"``.
"""

from bridge.haiku._convert import load_haiku_params, to_haiku_params
from bridge.haiku._wrappers import HaikuModule, to_haiku

__all__ = ["HaikuModule", "load_haiku_params", "to_haiku", "to_haiku_params"]
