"""The object state model: variables, collections and modules.

This layer knows nothing of the transformations built on it; it only provides the
trace scopes they use to bind values to variables (``bridge.state._scope``).
"""

from bridge.state._collection import VarCollection
from bridge.state._module import ForceArgs, Function, Module, ModuleList
from bridge.state._renamer import Renamer
from bridge.state._scope import ExpiredValueError, UndeclaredVariableError
from bridge.state._variables import (
    AssignmentError,
    BaseState,
    BaseVar,
    RandomState,
    StateVar,
    TrainRef,
    TrainVar,
    reduce_mean,
)

__all__ = [
    "AssignmentError",
    "BaseState",
    "ExpiredValueError",
    "BaseVar",
    "ForceArgs",
    "Function",
    "Module",
    "ModuleList",
    "RandomState",
    "Renamer",
    "StateVar",
    "TrainRef",
    "TrainVar",
    "UndeclaredVariableError",
    "VarCollection",
    "reduce_mean",
]
