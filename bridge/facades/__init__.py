"""Object-style entry points: gather variable values, call ``bridge.pure``, assign back."""

from bridge.facades._autograd import grad, hessian, jacfwd, jacobian, jacrev, vector_grad
from bridge.facades._gradients import Grad, GradValues, Hessian, Jacobian
from bridge.facades._jit import Jit
from bridge.facades._parallel import Parallel
from bridge.facades._vectorize import BatchAxisError, Vectorize

__all__ = ["BatchAxisError", "Grad", "GradValues", "Hessian", "Jacobian", "Jit", "Parallel",
           "Vectorize", "grad", "hessian", "jacfwd", "jacobian", "jacrev", "vector_grad"]
