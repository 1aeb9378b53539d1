"""Enumerations under Objax's names: ``bridge.constants.ConvPadding`` and ``Interpolate``.

``ConvPadding`` (``SAME``/``VALID``) is the same enum as ``bridge.nn.ConvPadding`` and
``bridge.functional.ConvPadding``; ``Interpolate`` names the resampling methods of
``bridge.functional.interpolate`` and ``upsample_2d``.
"""

from bridge.functional._interpolate import Interpolate
from bridge.functional._padding import ConvPadding

__all__ = ["ConvPadding", "Interpolate"]
