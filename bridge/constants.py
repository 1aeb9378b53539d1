"""Enumerations under Objax's names: ``bridge.constants.ConvPadding.SAME`` / ``.VALID``.

The same ``ConvPadding`` as ``bridge.nn.ConvPadding`` and ``bridge.functional``'s.
"""

from bridge.functional._padding import ConvPadding

__all__ = ["ConvPadding"]
