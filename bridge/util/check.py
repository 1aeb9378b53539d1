"""Assignment checks under Objax's name (``objax.util.check``)."""

from __future__ import annotations

from typing import Any

import jax

__all__ = ["assert_assigned_type_and_shape_match"]


def assert_assigned_type_and_shape_match(existing_tensor: Any, new_tensor: Any) -> None:
    """Check that ``new_tensor`` may replace ``existing_tensor`` as a variable's value.

    It must be a ``jax.Array`` (a tracer inside ``jax.jit``/``vmap`` counts) of the same
    shape. When either side is a tracer, matching trailing axes are enough, since a traced
    value may carry extra leading (batch) axes. Dtypes are not compared, as in Objax.

    Raises:
      AssertionError: (Objax's exception type) naming the type or both shapes.

    Example::

        assert_assigned_type_and_shape_match(jnp.zeros(3), jnp.ones(3))      # passes
        assert_assigned_type_and_shape_match(jnp.zeros(3), jnp.ones((2,)))   # AssertionError
    """
    if not isinstance(new_tensor, jax.Array):
        raise AssertionError(f"A variable can only be assigned a jax.Array, got "
                             f"{type(new_tensor).__name__}.")
    old_shape, new_shape = tuple(existing_tensor.shape), tuple(new_tensor.shape)
    if old_shape == new_shape:
        return
    traced = isinstance(new_tensor, jax.core.Tracer) or isinstance(existing_tensor,
                                                                   jax.core.Tracer)
    common = min(len(old_shape), len(new_shape))
    trailing_match = common and old_shape[-common:] == new_shape[-common:]
    if traced and trailing_match:
        return
    raise AssertionError(f"Assignment cannot change a variable's shape: it is {old_shape}, "
                         f"the new value has shape {new_shape}.")
