"""bridge: object-style (Objax/BrainPy) and functional (Flax/Haiku/Optax) JAX in one program.

The top level is Objax-compatible: ``import bridge as objax`` runs Objax code.

Layers (imports point downwards only):

* ``bridge.state``: variables, collections, modules;
* ``bridge.pure``: every gradient semantic once, as pure functions over pytrees;
* facades: Objax's ``Jit``, ``Parallel``, ``Vectorize``, ``GradValues``, ``Grad``,
  ``Jacobian``, ``Hessian``; BrainPy's ``grad``, ``vector_grad``, ``jacobian``, ``jacrev``,
  ``jacfwd``, ``hessian``; ``bridge.optimizer`` and ``bridge.privacy``;
* interop: ``bridge.flax`` and ``bridge.haiku`` (attributes loaded on first use, so
  ``import bridge`` does not import Flax or Haiku; they need the ``flax``/``haiku``
  extras), the library-independent name rules ``bridge.interop``, and
  ``bridge.checkpoint`` (with Objax's ``bridge.io`` names);
* ready-made layers: ``bridge.nn``, ``bridge.functional``, ``bridge.random``; Objax's
  ``bridge.constants``, ``bridge.typing`` and ``bridge.util`` names, and ``bridge.jaxboard``
  (TensorBoard logging; writing needs the ``jaxboard`` extra).
"""

import importlib as _importlib
from typing import Any as _Any

from bridge import (
    checkpoint,
    constants,
    functional,
    gradient,
    interop,
    io,
    jaxboard,
    module,
    nn,
    optimizer,
    privacy,
    pure,
    random,
    sharding,
    typing,
    util,
    variable,
    zoo,
)
from bridge.constants import ConvPadding, Interpolate
from bridge.facades import (
    Grad,
    GradValues,
    Hessian,
    Jacobian,
    Jit,
    Parallel,
    Vectorize,
    grad,
    hessian,
    jacfwd,
    jacobian,
    jacrev,
    vector_grad,
)
from bridge.state import (
    AssignmentError,
    BaseState,
    BaseVar,
    ExpiredValueError,
    ForceArgs,
    Function,
    Module,
    ModuleList,
    RandomState,
    StateVar,
    TrainRef,
    TrainVar,
    UndeclaredVariableError,
    VarCollection,
)

__version__ = "0.1.0"

__all__ = [
    "AssignmentError",
    "BaseState",
    "BaseVar",
    "ConvPadding",
    "ExpiredValueError",
    "ForceArgs",
    "Function",
    "Grad",
    "GradValues",
    "Hessian",
    "Interpolate",
    "Jacobian",
    "Jit",
    "Module",
    "ModuleList",
    "Parallel",
    "RandomState",
    "StateVar",
    "TrainRef",
    "TrainVar",
    "UndeclaredVariableError",
    "VarCollection",
    "Vectorize",
    "checkpoint",
    "constants",
    "functional",
    "grad",
    "gradient",
    "hessian",
    "interop",
    "io",
    "jacfwd",
    "jacobian",
    "jacrev",
    "jaxboard",
    "module",
    "nn",
    "optimizer",
    "privacy",
    "pure",
    "random",
    "sharding",
    "typing",
    "util",
    "variable",
    "vector_grad",
    "zoo",
]


_LAZY = ("flax", "haiku")   # they import Flax / Haiku: loaded when first used


def __getattr__(name: str) -> _Any:
    if name in _LAZY:
        return _importlib.import_module(f"bridge.{name}")
    raise AttributeError(f"module 'bridge' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_LAZY))
