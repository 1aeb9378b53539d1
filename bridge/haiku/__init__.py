"""Haiku interop: Haiku params/state <-> bridge variables, and wrappers both ways.

Imports Haiku only when this package is first used (``import bridge.haiku`` or the
attribute ``bridge.haiku``), so ``import bridge`` works without it. Install with
``pip install "jax-bridge[haiku]"``; without it, importing this package says so.
"""

from bridge._optional import import_optional

import_optional("haiku", "haiku", "bridge.haiku", "dm-haiku")

from bridge.haiku._convert import load_haiku_params, to_haiku_params  # noqa: E402 - after the check above
from bridge.haiku._wrappers import HaikuModule, to_haiku  # noqa: E402 - after the check above

__all__ = ["HaikuModule", "load_haiku_params", "to_haiku", "to_haiku_params"]
