"""``save``/``restore`` of a ``VarCollection``, and ``to_tree``/``from_tree``."""

from __future__ import annotations

import operator
import os
from typing import IO, Any, Callable, Mapping, NamedTuple, Optional, Sequence, Union

import jax
import jax.numpy as jnp
import numpy as np

from bridge.checkpoint import _atomic, _format
from bridge.checkpoint._errors import CheckpointError, CheckpointMismatchError, RestoreReport
from bridge.state import BaseVar, VarCollection
from bridge.state._renamer import RenameRules, as_rename_function
from bridge.state._variables import mismatch

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
        storage = v._storage()
        names.setdefault(id(storage), []).append(name)
        if v is storage:
            own.setdefault(id(storage), name)
    out = []
    for v in vc:
        storage = v._storage()
        all_names = names[id(storage)]
        name = own.get(id(storage), all_names[0])
        out.append(_Var(storage, name, (name, *(n for n in all_names if n != name))))
    return out


def _is_key(value: Any) -> bool:
    return jax.dtypes.issubdtype(getattr(value, "dtype", None), jax.dtypes.prng_key)


def _spec(value: Any) -> tuple[str, tuple[int, ...]]:
    """``(dtype, shape)`` as stored: a key array is described by its key data."""
    if _is_key(value):
        impl = str(jax.random.key_impl(value))
        return f"key<{impl}>", tuple(jax.random.key_data(value).shape)
    dtype = getattr(value, "dtype", None)
    dtype = np.dtype(dtype) if dtype is not None else np.asarray(value).dtype
    return dtype.name, tuple(np.shape(value))


def _describe(spec: tuple[str, tuple[int, ...]]) -> str:
    dtype, shape = spec
    return f"{dtype} {shape}" if not dtype.startswith("key<") else f"{dtype} (data {shape})"


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


# ----- matching entries to variables -------------------------------------------------------
class _Incoming(NamedTuple):
    key: str  # the name after renaming: what is matched against the collection
    stored: str  # the name in the file / tree (used in reports)
    spec: tuple[str, tuple[int, ...]]
    make: Callable[[Any], jax.Array]  # current value -> new value


def _from_record(r: _format.Record, key: str) -> _Incoming:
    if r.key_impl is not None:
        def make(like: Any) -> jax.Array:
            return jax.random.wrap_key_data(jnp.asarray(r.data), impl=r.key_impl)
        return _Incoming(key, r.name, (f"key<{r.key_impl}>", r.shape), make)
    return _Incoming(key, r.name, (r.dtype, r.shape), lambda like: _to_device(r.data, like))


def _from_value(name: str, value: Any, key: str) -> _Incoming:
    if isinstance(value, jax.Array):  # used as it is: no copy
        return _Incoming(key, name, _spec(value), lambda like: value)
    return _Incoming(key, name, _spec(value), lambda like: _to_device(np.asarray(value), like))


def _apply(vc: VarCollection, incoming: Sequence[_Incoming], *, strict: bool,
           ignore_unexpected: bool, path: Optional[str], step: Optional[int]) -> RestoreReport:
    """Match, check everything, then assign (all of it when ``strict``, else what fits)."""
    mismatched: list[tuple[str, str]] = []
    by_key: dict[str, _Incoming] = {}
    for entry in incoming:
        if entry.key in by_key:
            mismatched.append((entry.stored, f"renamed to {entry.key!r}, the same name as "
                               f"{by_key[entry.key].stored!r}"))
        else:
            by_key[entry.key] = entry
    used = {entry.stored for entry in incoming if by_key.get(entry.key) is not entry}
    plan: list[tuple[BaseVar, jax.Array]] = []
    loaded: list[str] = []
    missing: list[str] = []
    for var in _variables(vc):
        found = [by_key[n] for n in var.names if n in by_key]
        if not found:
            missing.append(var.name)
            continue
        entry = found[0]
        used.update(e.stored for e in found)
        for other in found[1:]:
            mismatched.append((other.stored, f"is the same variable as {entry.stored!r} in "
                               "the collection (its names are tied); only one can be loaded"))
        current = var.storage._value
        want = _spec(current)
        if entry.spec != want:
            mismatched.append((entry.stored, f"expected {_describe(want)}, "
                               f"got {_describe(entry.spec)}"))
            continue
        try:
            new = entry.make(current)
            problem = mismatch(current, new)  # e.g. float64 read with 64-bit mode off
        except Exception as e:  # conversion failed: report it with the rest
            problem = f"cannot be converted ({type(e).__name__}: {e})"
        if problem:
            mismatched.append((entry.stored, problem))
            continue
        plan.append((var.storage, new))
        loaded.append(entry.stored)
    unexpected = [entry.stored for entry in incoming if entry.stored not in used]
    report = RestoreReport(path, step, tuple(loaded), tuple(missing), tuple(unexpected),
                           tuple(mismatched))
    if strict and (missing or mismatched or (unexpected and not ignore_unexpected)):
        raise CheckpointMismatchError(report)
    for storage, new in plan:
        storage.assign(new)
    return report


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
      path: a file written by :func:`save` (msgpack or npz: detected from the content), an
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
      A :class:`RestoreReport` (``step``, ``loaded``, and what was skipped).
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
    incoming = [_from_record(r, rename(r.name)) for r in records]
    name = None if _is_file(path) else os.fspath(path)  # type: ignore[arg-type]
    return _apply(vc, incoming, strict=strict, ignore_unexpected=ignore_unexpected,
                  path=name, step=step)


def to_tree(vc: Any) -> dict[str, jax.Array]:
    """``{name: array}`` for the variables of ``vc``: the variables' own arrays, no copies.

    Names are those :func:`save` uses (each variable once). The dict is a plain pytree, so
    any pytree checkpointer (Orbax, ``flax.serialization``) can store it;
    :func:`from_tree` loads it back.
    """
    return {var.name: var.storage.value for var in _variables(_as_collection(vc))}


def from_tree(vc: Any, tree: Mapping[str, Any], *, strict: bool = True,
              ignore_unexpected: bool = False,
              renamer: Optional[RenameRules] = None) -> RestoreReport:
    """Assign ``{name: array}`` (as :func:`to_tree` returns) to the variables of ``vc``.

    Same checks and arguments as :func:`restore`. JAX arrays are assigned as they are (no
    copy); other arrays (NumPy) are put on the default device.
    """
    if not isinstance(tree, Mapping):
        raise TypeError(f"from_tree expects a dict of name -> array, got {type(tree).__name__}.")
    rename = as_rename_function(renamer)
    incoming = [_from_value(name, value, rename(name)) for name, value in tree.items()]
    return _apply(_as_collection(vc), incoming, strict=strict,
                  ignore_unexpected=ignore_unexpected, path=None, step=None)


# ----- Objax names -------------------------------------------------------------------------
def save_var_collection(file: PathOrFile, vc: Any) -> None:
    """Objax's ``objax.io.save_var_collection``: :func:`save` in the ``.npz`` format."""
    save(file, vc, format="npz")


def load_var_collection(file: PathOrFile, vc: Any,
                        renamer: Optional[RenameRules] = None) -> RestoreReport:
    """Objax's ``objax.io.load_var_collection``: :func:`restore`, entries the collection
    does not use being allowed (as in Objax); anything missing or mismatched still raises
    and changes nothing."""
    return restore(file, vc, ignore_unexpected=True, renamer=renamer)
