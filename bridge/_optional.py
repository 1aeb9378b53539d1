"""Optional dependencies: import one, or say which extra installs it.

``bridge`` needs only JAX, Optax, NumPy and msgpack. Everything else (Flax, Haiku,
safetensors, Pillow, tensorboardX, dp-accounting) is an extra, imported when the feature
that needs it is first used, so ``import bridge`` works without them.
"""

from __future__ import annotations

import importlib
from types import ModuleType

__all__ = ["import_optional"]


def import_optional(module: str, extra: str, needed_by: str, package: str = "") -> ModuleType:
    """``importlib.import_module(module)``, or a one-line error naming the extra.

    Args:
      module: what to import (``"flax"``, ``"safetensors.numpy"``).
      extra: the ``jax-bridge`` extra that installs it (``"flax"``).
      needed_by: what needs it, to start the message (``"bridge.flax"``).
      package: the PyPI name when it is not the module's (``"dm-haiku"``).

    Raises:
      ModuleNotFoundError: the module is not installed; the message says
        ``pip install "jax-bridge[<extra>]"``. An error raised while the module itself
        imports (a broken installation) is not masked.

    Example::

        flax = import_optional("flax", "flax", "bridge.flax")
    """
    top = module.split(".")[0]
    try:
        importlib.import_module(top)  # first: a cached submodule would hide its absence
        return importlib.import_module(module)
    except ModuleNotFoundError as error:
        if error.name is None or error.name.split(".")[0] != top:
            raise  # the module is there but something it imports is not
        pip_name = package or top
        raise ModuleNotFoundError(
            f'{needed_by} needs {pip_name}, which is not installed: '
            f'pip install "jax-bridge[{extra}]" (or pip install {pip_name}).',
            name=error.name) from error
