"""Checkpoints of ``VarCollection``s: safe formats, atomic writes, all-or-nothing restores.

* ``save(path, vc, step=None)`` writes every variable of ``vc`` once (optimizer state too,
  when ``opt.vars()`` is part of ``vc``) to ``path``: msgpack by default, ``.npz`` when the
  path ends with ``.npz``. The file is written to a temporary file beside ``path``, fsync'ed
  and moved into place, so ``path`` is always the old or the complete new checkpoint.
* ``restore(path, vc)`` verifies the file (format marker, version, SHA-256) and checks
  every name, shape and dtype before assigning anything: a damaged file raises
  ``CorruptCheckpointError``, a file that does not fit raises ``CheckpointMismatchError``
  listing every problem, and in both cases the model is unchanged. ``strict=False`` loads
  what fits and returns a ``RestoreReport`` of what was skipped. Restores run on the same
  engine as the Flax/Haiku loaders (``bridge.state._load``): ``RestoreReport`` is a
  ``bridge.interop.LoadReport`` with ``path`` and ``step``, and ``CheckpointMismatchError``
  a ``bridge.interop.LoadMismatchError``.
* ``to_tree(vc)`` / ``from_tree(vc, tree)``: ``{name: array}`` for any pytree
  checkpointer (Orbax, ``flax.serialization``), with the same checks on the way back.
* ``Checkpoint(logdir, keep_ckpts=5)``: numbered files, keeps the latest few (as Objax's
  ``objax.io.Checkpoint``); ``save_var_collection``/``load_var_collection`` are Objax's
  names for ``save``/``restore``.

Nothing is ever unpickled. Only msgpack and NumPy are needed (Flax and Orbax are not).

Example::

    import bridge.checkpoint as ckpt

    ckpt.save("model.msgpack", model.vars() + opt.vars(), step=1000)
    report = ckpt.restore("model.msgpack", model.vars() + opt.vars())
    report.step                                # 1000
"""

from bridge.checkpoint._core import (
    from_tree,
    load_var_collection,
    restore,
    save,
    save_var_collection,
    to_tree,
)
from bridge.checkpoint._errors import (
    CheckpointError,
    CheckpointMismatchError,
    CorruptCheckpointError,
    RestoreReport,
)
from bridge.checkpoint._format import DTYPES as SUPPORTED_DTYPES
from bridge.checkpoint._manager import Checkpoint

__all__ = [
    "SUPPORTED_DTYPES",
    "Checkpoint",
    "CheckpointError",
    "CheckpointMismatchError",
    "CorruptCheckpointError",
    "RestoreReport",
    "from_tree",
    "load_var_collection",
    "restore",
    "save",
    "save_var_collection",
    "to_tree",
]
