"""Objax's module path ``objax.gradient``: ``Grad``, ``GradValues``, ``Jacobian``, ``Hessian``.

The facades live in ``bridge.facades``; this module only gives them the import path Objax
code uses (``from objax.gradient import GradValues``).
"""

from bridge.facades import Grad, GradValues, Hessian, Jacobian

__all__ = ["Grad", "GradValues", "Hessian", "Jacobian"]
