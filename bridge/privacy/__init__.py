"""Differential privacy, Objax style: DP-SGD gradients and their privacy analysis.

``PrivateGradValues`` is the object facade over ``bridge.pure.clipped_grad`` (per-example
clipping without materialising per-example gradients, then noise). ``bridge.privacy.dpsgd``
is Objax's module path (``objax.privacy.dpsgd``): it holds ``PrivateGradValues`` and the
privacy analysis (``analyze_dp``, ``analyze_renyi``, ...; needs the ``privacy`` extra).
"""

from bridge.privacy import dpsgd
from bridge.privacy.dpsgd import PrivateGradValues

__all__ = ["PrivateGradValues", "dpsgd"]
