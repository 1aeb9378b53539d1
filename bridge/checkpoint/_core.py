"""``save``/``restore`` of a ``VarCollection``, and ``to_tree``/``from_tree``."""

from __future__ import annotations

import functools
import operator
import os
from typing import IO, Any, Mapping, NamedTuple, Optional, Sequence, Union

import jax
import jax.numpy as jnp
import numpy as np

from bridge.checkpoint import _atomic, _format
from bridge.checkpoint._errors import CheckpointError, CheckpointMismatchError, RestoreReport
from bridge.state import BaseVar, VarCollection, _load
from bridge.state._access import current, storage_of
from bridge.state._renamer import RenameRules, as_rename_function

__all__ = ["save", "restore", "to_tree", "from_tree", "save_var_collection",
           "load_var_collection"]

PathOrFile = Union[str, "os.PathLike[str]", IO[bytes]]
_FORMATS = ("msgpack", "npz")


# ----- the collection side -----------------------------------------------------------------
class _Var(NamedTuple):
    storage: BaseVar  # the variable that holds the array (a TrainRef's target)
    name: str  # the name it is saved under
    names: tuple[str, ...]  # every name it has in the collection, ``name`` first


def _as_collection(vc: Any) -> VarCollection:
    if isinstance(vc, VarCollection):
        return vc
    if callable(getattr(vc, "vars", None)):  # a Module
        return vc.vars()
    if isinstance(vc, Mapping):
        return VarCollection(vc)
    raise TypeError(f"Expected a VarCollection (e.g. `model.vars()`), got {type(vc).__name__}.")


def _variables(vc: VarCollection) -> list[_Var]:
    """Each variable once, in the collection's order, with the name it is saved under.

    That name is the first under which the variable itself appears; a ``TrainRef``'s own
    name is used only when its target is not in the collection.
    """
    names: dict[int, list[str]] = {}
    own: dict[int, str] = {}
    for name, v in vc.items():
        storage = storage_of(v)
        names.setdefault(id(storage), []).append(name)
        if v is storage:
            own.setdefault(id(storage), name)
    out = []
    for v in vc:
        storage = storage_of(v)
        all_names = names[id(storage)]
        name = own.get(id(storage), all_names[0])
        out.append(_Var(storage, name, (name, *(n for n in all_names if n != name))))
    return out


def _is_key(value: Any) -> bool:
    return jax.dtypes.issubdtype(getattr(value, "dtype", None), jax.dtypes.prng_key)


def _spec(value: Any) -> _load.Spec:
    """Shape and dtype as a file stores them: a key array is described by its key data,
    shape ``(2,)`` for one key, and the name ``key<threefry2x32>`` (a NumPy dtype and
    such a name compare unequal, as they should)."""
    if _is_key(value):
        impl = str(jax.random.key_impl(value))
        return _load.Spec(tuple(jax.random.key_data(value).shape), f"key<{impl}>")
    return _load.Spec(tuple(np.shape(value)), value.dtype)


def _record(name: str, value: Any) -> _format.Record:
    try:
        if _is_key(value):
            data = np.asarray(jax.random.key_data(value))
            impl = str(jax.random.key_impl(value))
            return _format.Record(name, data.dtype.name, data.shape, data, impl)
        arr = np.asarray(value)
    except jax.errors.TracerArrayConversionError:
        raise CheckpointError(f"Cannot save {name!r}: its value is being traced (a checkpoint "
                              "is written outside jax.jit / Jit, from concrete values).") from None
    if arr.dtype.name not in _format.DTYPES:
        raise CheckpointError(f"Cannot save {name!r}: dtype {arr.dtype} is not supported "
                              f"(supported: {', '.join(_format.DTYPES)}).")
    return _format.Record(name, arr.dtype.name, arr.shape, arr)


def _to_device(arr: np.ndarray, like: Any) -> jax.Array:
    """On the default device, or with ``like``'s sharding when that spans several devices."""
    sharding = getattr(like, "sharding", None)
    if sharding is not None and len(sharding.device_set) > 1:
        return jax.device_put(arr, sharding)
    return jnp.asarray(arr)


def _keep_sharding(value: jax.Array, like: Any) -> jax.Array:
    """``value`` as it is, unless ``like`` spans several devices and ``value`` is laid out
    otherwise: then ``value`` is put with ``like``'s sharding (a sharded variable stays
    sharded, as it does through ``restore``)."""
    sharding = getattr(like, "sharding", None)
    if (sharding is None or len(sharding.device_set) <= 1
            or value.sharding.is_equivalent_to(sharding, value.ndim)):
        return value
    return jax.device_put(value, sharding)


# ----- entries and targets for the load engine ---------------------------------------------
_RENAME_HINT = ("(if variables were renamed, pass `renamer=` to map the stored names onto "
                "the collection's)")


def _targets(vc: VarCollection) -> list[_load.Target]:
    """Each variable once, taking an entry stored under any of its names."""
    return [_load.Target(var.storage, var.name, var.names, spec=_spec(current(var.storage)))
            for var in _variables(vc)]


def _from_record(r: _format.Record, key: str) -> _load.Entry:
    if r.key_impl is not None:
        def make(like: Any) -> jax.Array:
            return jax.random.wrap_key_data(_to_device(r.data, like), impl=r.key_impl)
        return _load.Entry(key, r.name, make, _load.Spec(r.shape, f"key<{r.key_impl}>"))
    return _load.Entry(key, r.name, lambda like: _to_device(r.data, like),
                       _load.Spec(tuple(r.shape), _format.DTYPES.get(r.dtype, r.dtype)))


def _from_value(name: str, value: Any, key: str) -> _load.Entry:
    if isinstance(value, jax.Array):  # used as it is (no copy) unless placed otherwise
        return _load.Entry(key, name, lambda like: _keep_sharding(value, like), _spec(value))
    if hasattr(value, "shape") and hasattr(value, "dtype"):  # NumPy and other arrays
        return _load.Entry(key, name, lambda like: _to_device(np.asarray(value), like),
                           _spec(value))
    # Python scalars and lists: converted as any assignment converts them (a scalar takes
    # the variable's dtype).
    return _load.Entry(key, name, lambda like: value)


def _load_entries(vc: VarCollection, entries: Sequence[_load.Entry], *, what: str,
                  strict: bool, ignore_unexpected: bool, path: Optional[str],
                  step: Optional[int]) -> RestoreReport:
    return _load.apply(_load.plan(_targets(vc), entries), what=what, strict=strict,
                       allow_unexpected=ignore_unexpected,
                       report=functools.partial(RestoreReport, path=path, step=step),
                       error=CheckpointMismatchError, hint=_RENAME_HINT)


# ----- public functions --------------------------------------------------------------------
def _is_file(obj: Any) -> bool:
    return hasattr(obj, "read") or hasattr(obj, "write")


def _choose_format(path: PathOrFile, fmt: Optional[str]) -> str:
    if fmt is not None:
        if fmt not in _FORMATS:
            raise ValueError(f"format must be one of {_FORMATS}, got {fmt!r}.")
        return fmt
    name = getattr(path, "name", "") if _is_file(path) else os.fspath(path)
    return "npz" if str(name).lower().endswith(".npz") else "msgpack"


def save(path: PathOrFile, vc: Any, *, step: Optional[int] = None,
         format: Optional[str] = None) -> None:
    """Save the variables of ``vc`` to ``path``, atomically.

    Args:
      path: the file to write (replaced atomically if it exists), or an open binary file
        (written directly: no atomicity).
      vc: a ``VarCollection`` (``model.vars()``, ``model.vars() + opt.vars()``) or a module.
        Each variable is stored once, under the first name it has in the collection; a
        ``TrainRef`` is stored as its target.
      step: an integer stored with the checkpoint (``RestoreReport.step``).
      format: ``"msgpack"`` or ``"npz"``; by default ``"npz"`` when ``path`` ends with
        ``.npz`` and ``"msgpack"`` otherwise.

    Raises:
      CheckpointError: a value cannot be saved (unsupported dtype, traced value). Nothing
        is written.
    """
    vc = _as_collection(vc)
    fmt = _choose_format(path, format)
    if step is not None:
        step = operator.index(step)
    records = [_record(var.name, var.storage.value) for var in _variables(vc)]
    writer = _format.write_npz if fmt == "npz" else _format.write_msgpack
    if _is_file(path):
        writer(path, step, records)  # type: ignore[arg-type]
    else:
        _atomic.atomic_write(os.fspath(path), lambda f: writer(f, step, records))


def restore(path: PathOrFile, vc: Any, *, strict: bool = True, ignore_unexpected: bool = False,
            renamer: Optional[RenameRules] = None) -> RestoreReport:
    """Load a checkpoint into the variables of ``vc``, checking everything first.

    The file is read and verified (format marker, version, checksum) before anything else:
    a truncated, damaged or foreign file raises ``CorruptCheckpointError``. Then every
    variable is matched to an entry (by any of its names in ``vc``) and every shape and
    dtype is compared. With ``strict=True`` any missing, unexpected or mismatched entry
    raises ``CheckpointMismatchError`` listing all of them, and no variable is changed.

    Args:
      path: a file written by ``save`` (msgpack or npz: detected from the content), an
        Objax ``.npz`` checkpoint, or an open binary file.
      vc: the collection (or module) to restore into.
      strict: with ``False``, assign every entry that fits and skip the rest; the returned
        report lists what was skipped.
      ignore_unexpected: with ``strict=True``, allow entries that no variable claims (e.g.
        optimizer state when restoring only ``model.vars()``); they stay in the report.
      renamer: maps stored names to collection names before matching (a function, a
        ``{substring: replacement}`` dict or ``(regex, replacement)`` pairs, as for
        ``VarCollection.rename``).

    Returns:
      A ``RestoreReport`` (``step``, ``loaded``, and what was skipped).
    """
    vc = _as_collection(vc)
    if _is_file(path):
        data, source = path.read(), repr(getattr(path, "name", "<file>"))  # type: ignore
    else:
        source = os.fspath(path)
        with open(source, "rb") as f:
            data = f.read()
        source = repr(source)
    step, records = _format.read(data, source)
    rename = as_rename_function(renamer)
    entries = [_from_record(r, rename(r.name)) for r in records]
    name = None if _is_file(path) else os.fspath(path)  # type: ignore[arg-type]
    return _load_entries(vc, entries, what=f"restore({source})", strict=strict,
                         ignore_unexpected=ignore_unexpected, path=name, step=step)


def to_tree(vc: Any) -> dict[str, jax.Array]:
    """``{name: array}`` for the variables of ``vc``: the variables' own arrays, no copies.

    Names are those ``save`` uses (each variable once). The dict is a plain pytree, so
    any pytree checkpointer (Orbax, ``flax.serialization``) can store it;
    ``from_tree`` loads it back.
    """
    return {var.name: var.storage.value for var in _variables(_as_collection(vc))}


def from_tree(vc: Any, tree: Mapping[str, Any], *, strict: bool = True,
              ignore_unexpected: bool = False,
              renamer: Optional[RenameRules] = None) -> RestoreReport:
    """Assign ``{name: array}`` (as ``to_tree`` returns) to the variables of ``vc``.

    Same checks, arguments and report as ``restore``. JAX arrays are assigned as they
    are (no copy); other arrays (NumPy) are put on the default device. A variable sharded
    over several devices keeps its sharding: a value laid out otherwise is put with it.
    Every array must have the variable's exact dtype: a float64 NumPy array does not fit a
    float32 variable (cast it first); a Python scalar takes the variable's dtype, as in any
    assignment.

    Example::

        tree = ckpt.to_tree(model.vars())
        report = ckpt.from_tree(model.vars(), tree)   # report.ok
    """
    if not isinstance(tree, Mapping):
        raise TypeError(f"from_tree expects a dict of name -> array, got {type(tree).__name__}.")
    rename = as_rename_function(renamer)
    entries = [_from_value(name, value, rename(name)) for name, value in tree.items()]
    return _load_entries(_as_collection(vc), entries, what="from_tree", strict=strict,
                         ignore_unexpected=ignore_unexpected, path=None, step=None)


# ----- Objax names -------------------------------------------------------------------------
def save_var_collection(file: PathOrFile, vc: Any) -> None:
    """Objax's ``objax.io.save_var_collection``: ``save`` in the ``.npz`` format."""
    save(file, vc, format="npz")


def load_var_collection(file: PathOrFile, vc: Any,
                        renamer: Optional[RenameRules] = None) -> RestoreReport:
    """Objax's ``objax.io.load_var_collection``: ``restore``, entries the collection
    does not use being allowed (as in Objax); anything missing or mismatched still raises
    and changes nothing."""
    return restore(file, vc, ignore_unexpected=True, renamer=renamer)
