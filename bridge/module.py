"""Objax's module path ``objax.module``: modules and the transformations that wrap them.

``Module``, ``ModuleList``, ``Function`` and ``ForceArgs`` live in the state layer,
``Jit``, ``Vectorize`` and ``Parallel`` among the facades; this module only gives them the
import path Objax code uses (``from objax.module import Module``).
"""

from bridge.facades import Jit, Parallel, Vectorize
from bridge.state import ForceArgs, Function, Module, ModuleList

__all__ = ["ForceArgs", "Function", "Jit", "Module", "ModuleList", "Parallel", "Vectorize"]
