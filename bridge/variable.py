"""Objax's module path ``objax.variable``: the variable classes and ``VarCollection``.

The classes live in the state layer (``bridge.state``); this module only gives them the
import path Objax code uses (``from objax.variable import TrainVar, VarCollection``).
"""

from bridge.state import (
    BaseState,
    BaseVar,
    RandomState,
    StateVar,
    TrainRef,
    TrainVar,
    VarCollection,
    reduce_mean,
)

__all__ = ["BaseState", "BaseVar", "RandomState", "StateVar", "TrainRef", "TrainVar",
           "VarCollection", "reduce_mean"]
