"""Object-style entry points: gather variable values, call ``bridge.pure``, assign back."""

from bridge.facades._gradients import Grad, GradValues
from bridge.facades._jit import Jit
from bridge.facades._vectorize import Vectorize

__all__ = ["Grad", "GradValues", "Jit", "Vectorize"]
