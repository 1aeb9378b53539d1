"""Objax's ``objax.util`` names: small helpers that Objax code imports from here.

Submodules: ``bridge.util.image`` (image layouts, PNG; PNG needs Pillow),
``bridge.util.check`` (assignment checks) and ``bridge.util.tracing``
(``find_used_variables``).

Several names are re-exported from where bridge keeps them: ``Renamer`` and
``find_used_variables`` from the state layer, ``local_kwargs`` and
``override_args_kwargs`` (what ``ForceArgs`` binds with) from ``bridge.state``'s modules,
``class_name``/``repr_function`` (the rules every ``__repr__`` follows) from
``bridge.state._repr``, and ``to_padding``/``to_interpolate`` from ``bridge.functional``.
``Objax2Tf`` (export to TensorFlow) is not provided.

Example::

    from bridge import util

    cfg = util.EasyDict(lr=0.1)
    cfg.lr                                        # 0.1
    util.to_tuple(3, 2)                           # (3, 3)
    util.find_used_variables(loss)                # the variables `loss` refers to
"""

from bridge.functional._interpolate import to_interpolate
from bridge.functional._padding import to_padding
from bridge.state._find_used import find_used_variables
from bridge.state._module import local_kwargs, override_args_kwargs
from bridge.state._renamer import Renamer
from bridge.state._repr import class_path as class_name
from bridge.state._repr import function_repr as repr_function
from bridge.util import check, image, tracing
from bridge.util._devices import get_local_devices, map_to_device, multi_host_barrier
from bridge.util._misc import (
    EasyDict,
    args_indexes,
    dummy_context_mgr,
    ilog2,
    positional_args_names,
    re_sign,
    to_tuple,
)

__all__ = [
    "EasyDict",
    "Renamer",
    "args_indexes",
    "check",
    "class_name",
    "dummy_context_mgr",
    "find_used_variables",
    "get_local_devices",
    "ilog2",
    "image",
    "local_kwargs",
    "map_to_device",
    "multi_host_barrier",
    "override_args_kwargs",
    "positional_args_names",
    "re_sign",
    "repr_function",
    "to_interpolate",
    "to_padding",
    "to_tuple",
    "tracing",
]
