"""Objax's ``objax.io`` names, served by ``bridge.checkpoint``.

``import bridge as objax`` code that calls ``objax.io.Checkpoint`` (or
``objax.io.checkpoint.Checkpoint``), ``objax.io.save_var_collection`` or
``objax.io.load_var_collection`` keeps working; the files are written in bridge's safe
formats (never pickled).
"""

from bridge.checkpoint import Checkpoint, load_var_collection, save_var_collection
from bridge.io import checkpoint

__all__ = ["Checkpoint", "checkpoint", "load_var_collection", "save_var_collection"]
