"""Differential privacy, Objax style: ``PrivateGradValues`` (DP-SGD gradients).

The math (per-example clipping without materialising per-example gradients, noise) is
``bridge.pure.clipped_grad``; this package holds the object facade. ``bridge.privacy.dpsgd``
is the same name under Objax's module path (``objax.privacy.dpsgd.PrivateGradValues``).
"""

from bridge.privacy import dpsgd
from bridge.privacy._private_grad_values import PrivateGradValues

__all__ = ["PrivateGradValues", "dpsgd"]
