"""``find_used_variables`` under Objax's module path (``objax.util.tracing``).

Implemented in the state layer, ``bridge.state._find_used``.
"""

from bridge.state._find_used import find_used_variables

__all__ = ["find_used_variables"]
