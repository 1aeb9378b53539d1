"""Jacobians, Hessians and Hessian-vector products on pytrees."""

from __future__ import annotations

from typing import Any, Callable

import jax

from bridge.pure._gradients import ArgNums, _split_aux, grad, package

__all__ = ["jacobian", "hessian", "hvp"]


def jacobian(f: Callable, argnums: ArgNums = 0, has_aux: bool = False,
             return_value: bool = False, mode: str = "reverse") -> Callable:
    """The Jacobian of ``f`` (``jax.jacrev`` or ``jax.jacfwd``), shared return format.

    Args:
      f: ``f(*args)`` returns an array pytree (or ``(output, aux)`` with ``has_aux``).
      argnums: as in ``grad``.
      has_aux: as in ``grad``.
      return_value: as in ``grad``.
      mode: ``'reverse'`` (better for few outputs) or ``'forward'`` (few inputs).

    Returns:
      ``g(*args)``; for an output of shape ``(m,)`` and an input of shape ``(n,)`` the
      Jacobian has shape ``(m, n)``.

    Example::

        f = lambda x: jnp.array([x[0] * x[1], jnp.sin(x[0])])
        bridge.pure.jacobian(f)(jnp.array([1., 2.]))    # shape (2, 2)
    """
    if mode not in ("reverse", "forward"):
        raise ValueError(f"mode must be 'reverse' or 'forward', got {mode!r}.")
    transform = jax.jacrev if mode == "reverse" else jax.jacfwd

    def with_value(*args: Any, **kwargs: Any):
        value, aux = _split_aux(f(*args, **kwargs), has_aux)
        return value, (value, aux)

    jac = transform(with_value, argnums=argnums, has_aux=True)

    def g(*args: Any, **kwargs: Any):
        grads, (value, aux) = jac(*args, **kwargs)
        return package(grads, value, aux, return_value, has_aux)

    return g


def hessian(f: Callable, argnums: ArgNums = 0, has_aux: bool = False,
            return_value: bool = False) -> Callable:
    """The Hessian of a scalar ``f`` (forward over reverse), shared return format.

    Example::

        bridge.pure.hessian(lambda x: x @ x)(jnp.ones(3))   # 2 * eye(3)
    """
    first = grad(f, argnums=argnums, has_aux=has_aux, return_value=True)

    def first_with_rest(*args: Any, **kwargs: Any):
        grads, value, *aux = first(*args, **kwargs)
        return grads, (value, aux[0] if has_aux else None)

    second = jax.jacfwd(first_with_rest, argnums=argnums, has_aux=True)

    def g(*args: Any, **kwargs: Any):
        h, (value, aux) = second(*args, **kwargs)
        return package(h, value, aux, return_value, has_aux)

    return g


def hvp(f: Callable, x: Any, v: Any) -> Any:
    """The Hessian of scalar ``f`` at ``x`` times ``v``, without forming the Hessian.

    Forward-mode differentiation of ``jax.grad(f)`` in direction ``v``; ``x`` and ``v`` are
    pytrees of the same structure and the result has that structure too.

    Example::

        bridge.pure.hvp(lambda x: (x ** 3).sum(), x, v)   # == 6 * x * v
    """
    return jax.jvp(grad(f), (x,), (v,))[1]
