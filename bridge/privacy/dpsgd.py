"""Objax's module path for DP-SGD: ``objax.privacy.dpsgd.PrivateGradValues``."""

from bridge.privacy._private_grad_values import PrivateGradValues

__all__ = ["PrivateGradValues"]
