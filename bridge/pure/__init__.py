"""The pure core: every gradient semantic, once, as functions over pytrees.

Nothing here needs an object: a Flax or Haiku user can call these on their params. The
object facades (``bridge.GradValues``, ``bridge.Jit``, ...) gather variable values, call a
function from here, and write results back. ``functionalize`` is the bridge between the
two worlds: it turns object code into a pure function of its variables' values.
"""

from bridge.pure._functionalize import changed_entries, functionalize
from bridge.pure._gradients import grad_values, split_loss

__all__ = ["changed_entries", "functionalize", "grad_values", "split_loss"]
