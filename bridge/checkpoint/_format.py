"""The two on-disk formats (msgpack and npz) and their integrity checks.

Both formats hold an ordered list of ``Record`` s (name, dtype, shape, raw data) and an
optional step. Nothing here knows about variables; nothing here ever unpickles.

msgpack (``.msgpack``; the whole file is one msgpack map)::

    {"format": "bridge.checkpoint", "version": 1,
     "sha256": <32 bytes: SHA-256 of the payload bytes>,
     "payload": <bytes: a msgpack map>
         {"step": int | nil,
          "variables": {name: {"dtype": "float32", "shape": [2, 3],
                               "data": <bytes, little-endian, C order>,
                               ["key_impl": "threefry2x32"]}, ...}}}

npz (``.npz``; readable by ``numpy.load(..., allow_pickle=False)`` and laid out as Objax's
``save_var_collection`` did, so Objax-era tools read it)::

    names                  1-d unicode array of the entry names
    "0", "1", ...          one array per entry (bfloat16/float8 stored as same-width uints)
    __bridge_checkpoint__  uint8 array: UTF-8 JSON {"format", "version", "step", "names",
                           "dtypes", "key_impls", "sha256": hex digest of the content, see
                           ``_content_digest``}
    (archive comment)      ``_NPZ_COMMENT``

The exact names are those of the JSON: NumPy's unicode arrays drop trailing NUL characters,
so the ``names`` member holds each name without them (what Objax-era tools see). Files
written before the JSON had ``"names"`` are read through the ``names`` member.

A ``.npz`` with Objax's layout (``names`` + indices) and no trace of bridge is read as an
Objax checkpoint (no checksum beyond the zip's CRC-32). A trace of bridge is the member name
``__bridge_checkpoint__.npy`` (in a local header and in the central directory) or the
archive comment, anywhere in the bytes: a bridge file holds three (two before the comment
was added), so damage to one of them still leaves the file recognised, and a recognised file
is verified in full or refused. (An Objax file whose array bytes happen to spell one of them
is refused, never misread.)

Names are any ``str`` that UTF-8 can encode (NUL, ``/``, ``.``, spaces, non-ASCII and the
empty name included); a lone surrogate is refused at save time.
"""

from __future__ import annotations

import hashlib
import io
import json
import math
import sys
import zipfile
from typing import IO, Any, NamedTuple, Optional, Sequence

import jax.numpy as jnp
import msgpack
import numpy as np

from bridge.checkpoint._errors import CheckpointError, CorruptCheckpointError

__all__ = ["FORMAT", "VERSION", "Record", "DTYPES", "check_names", "read", "write_msgpack",
           "write_npz"]

FORMAT = "bridge.checkpoint"
VERSION = 1
_NPZ_META = "__bridge_checkpoint__"
_NPZ_COMMENT = b"bridge.checkpoint npz: verify with bridge.checkpoint.restore"
# Byte strings that only a bridge npz holds outside its array data (see the module doc).
_NPZ_TRACES = (_NPZ_COMMENT, _NPZ_META.encode() + b".npy")
_EOCD_SIZE = 22  # the end-of-central-directory record, without its comment
_ZIP_MAGIC = (b"PK\x03\x04", b"PK\x05\x06")
_MAX_BIN = 2**32 - 1  # msgpack's bin32 limit

# dtypes stored by name. Resolved through a fixed table: a name read from a file never
# reaches np.dtype() (so no object or structured dtype can be produced from the file).
_NATIVE_NAMES = ["bool", "int8", "int16", "int32", "int64", "uint8", "uint16", "uint32",
                 "uint64", "float16", "float32", "float64", "complex64", "complex128"]
_EXTENDED_NAMES = ["bfloat16", "float8_e4m3fn", "float8_e5m2", "float8_e4m3fnuz",
                   "float8_e5m2fnuz", "float8_e4m3b11fnuz"]


def _dtype_table() -> dict[str, np.dtype]:
    table = {name: np.dtype(name) for name in _NATIVE_NAMES}
    for name in _EXTENDED_NAMES:  # ml_dtypes types, through jax.numpy
        try:
            table[name] = jnp.dtype(name)
        except TypeError:  # pragma: no cover - depends on the ml_dtypes version
            pass
    return table


DTYPES: dict[str, np.dtype] = _dtype_table()
# npz (numpy's own header) cannot describe the extended types: they go as same-width uints.
_NPZ_STORAGE = {name: np.dtype(f"uint{8 * DTYPES[name].itemsize}")
                for name in _EXTENDED_NAMES if name in DTYPES}


class Record(NamedTuple):
    """One stored array.

    ``data`` has dtype ``DTYPES[dtype]`` and shape ``shape``. For a JAX PRNG key array,
    ``data`` is its key data (``jax.random.key_data``, uint32) and ``key_impl`` names the
    implementation (``"threefry2x32"``, ``"rbg"``, ...).
    """

    name: str
    dtype: str
    shape: tuple[int, ...]
    data: np.ndarray
    key_impl: Optional[str] = None


# ----- helpers -----------------------------------------------------------------------------
def _little_endian(arr: np.ndarray) -> np.ndarray:
    """``arr`` with little-endian bytes in memory (a no-op on little-endian hosts)."""
    if sys.byteorder == "big" and arr.dtype.itemsize > 1:  # pragma: no cover
        return arr.byteswap()
    return arr


def _raw(arr: np.ndarray) -> memoryview:
    """The bytes of ``arr`` (C order, little-endian) without copying when possible."""
    flat = _little_endian(np.ascontiguousarray(arr)).reshape(-1)
    return memoryview(flat.view(np.uint8))


def _from_raw(data: bytes, dtype: np.dtype, shape: tuple[int, ...]) -> np.ndarray:
    arr = np.frombuffer(data, dtype=dtype).reshape(shape)
    return _little_endian(arr)


def _content_digest(step: Optional[int], records: Sequence[Record]) -> str:
    """SHA-256 over the step and every record's name, dtype, key impl, shape and bytes."""
    h = hashlib.sha256()
    h.update(f"{FORMAT}/{VERSION}\0step={step}\0".encode())
    for r in records:
        head = f"{r.name}\0{r.dtype}\0{r.key_impl or ''}\0{list(r.shape)}\0"
        h.update(head.encode())
        raw = _raw(r.data)
        h.update(len(raw).to_bytes(8, "little"))
        h.update(raw)
    return h.hexdigest()


def _check_shape(shape: Any) -> tuple[int, ...]:
    if not isinstance(shape, (list, tuple)) or not all(
            isinstance(d, int) and not isinstance(d, bool) and d >= 0 for d in shape):
        raise ValueError(f"invalid shape {shape!r}")
    return tuple(shape)


def _check_dtype(name: Any) -> np.dtype:
    if not isinstance(name, str) or name not in DTYPES:
        raise ValueError(f"unsupported dtype {name!r}")
    return DTYPES[name]


def _check_step(step: Any) -> Optional[int]:
    if step is not None and (not isinstance(step, int) or isinstance(step, bool)):
        raise ValueError(f"invalid step {step!r}")
    return step


def check_names(records: Sequence[Record]) -> None:
    """Refuse names that no format could store exactly (the writers call this first).

    Any ``str`` that UTF-8 can encode is stored exactly, in both formats.

    Raises:
      CheckpointError: a name is not a ``str``, holds a lone surrogate, or is repeated.
    """
    seen: set[str] = set()
    for r in records:
        if not isinstance(r.name, str):
            raise CheckpointError(f"Cannot save {r.name!r}: a variable name must be a str, "
                                  f"got {type(r.name).__name__}.")
        try:
            r.name.encode("utf-8")
        except UnicodeEncodeError:
            raise CheckpointError(f"Cannot save {r.name!r}: the name holds a lone surrogate "
                                  "character, which UTF-8 (and so msgpack and the checksum) "
                                  "cannot encode; rename the variable.") from None
        if r.name in seen:
            raise CheckpointError(f"Cannot save {r.name!r}: two entries have this name.")
        seen.add(r.name)


# ----- msgpack -----------------------------------------------------------------------------
def write_msgpack(f: IO[bytes], step: Optional[int], records: Sequence[Record]) -> None:
    """Write ``records`` to the binary file ``f`` in the msgpack format.

    Raises:
      CheckpointError: a name or an array cannot be stored (nothing is written then).
    """
    check_names(records)
    packer = msgpack.Packer(autoreset=False)
    packer.pack_map_header(2)
    packer.pack("step")
    packer.pack(step)
    packer.pack("variables")
    packer.pack_map_header(len(records))
    for r in records:
        raw = _raw(r.data)
        if len(raw) > _MAX_BIN:
            raise CheckpointError(f"{r.name!r} is {len(raw)} bytes, more than the msgpack "
                                  "format holds (4 GiB per array); save to a .npz path.")
        fields: dict[str, Any] = {"dtype": r.dtype, "shape": list(r.shape), "data": raw}
        if r.key_impl is not None:
            fields["key_impl"] = r.key_impl
        packer.pack(r.name)
        packer.pack(fields)
    payload = packer.getbuffer()
    if len(payload) > _MAX_BIN:
        raise CheckpointError(f"The checkpoint is {len(payload)} bytes, more than the msgpack "
                              "format holds (4 GiB); save to a .npz path.")
    head = msgpack.Packer()
    header = (head.pack_map_header(4)
              + head.pack("format") + head.pack(FORMAT)
              + head.pack("version") + head.pack(VERSION)
              + head.pack("sha256") + head.pack(hashlib.sha256(payload).digest())
              + head.pack("payload") + b"\xc6" + len(payload).to_bytes(4, "big"))
    f.write(header)
    f.write(payload)


def _check_version(version: Any) -> None:
    if not isinstance(version, int) or isinstance(version, bool) or version < 1:
        raise ValueError(f"invalid format version {version!r}")
    if version > VERSION:
        raise ValueError(f"format version {version} is newer than this bridge reads "
                         f"(version {VERSION}); upgrade bridge")


def _read_msgpack(data: bytes) -> tuple[Optional[int], list[Record]]:
    try:
        outer = msgpack.unpackb(data, raw=False)
    except Exception as e:
        raise ValueError(f"not a valid msgpack document ({e}); the file is truncated, "
                         "damaged or not a bridge checkpoint") from None
    if not isinstance(outer, dict) or outer.get("format") != FORMAT:
        raise ValueError(f"not a bridge checkpoint (no {FORMAT!r} format marker)")
    version = outer.get("version")
    _check_version(version)
    payload, digest = outer.get("payload"), outer.get("sha256")
    if set(outer) != {"format", "version", "sha256", "payload"} or not isinstance(
            payload, bytes) or not isinstance(digest, bytes):
        raise ValueError("malformed checkpoint header")
    if hashlib.sha256(payload).digest() != digest:
        raise ValueError("checksum mismatch: the file is corrupted")
    try:
        body = msgpack.unpackb(payload, raw=False)
    except Exception as e:  # pragma: no cover - the checksum matched, so only a bad writer
        raise ValueError(f"invalid payload ({e})") from None
    if not isinstance(body, dict) or set(body) != {"step", "variables"} or not isinstance(
            body["variables"], dict):
        raise ValueError("malformed payload")
    step = _check_step(body["step"])
    records = []
    for name, fields in body["variables"].items():
        try:
            if not isinstance(fields, dict) or not {"dtype", "shape", "data"} <= set(
                    fields) or not set(fields) <= {"dtype", "shape", "data", "key_impl"}:
                raise ValueError("malformed entry")
            dtype = _check_dtype(fields["dtype"])
            shape = _check_shape(fields["shape"])
            raw, key_impl = fields["data"], fields.get("key_impl")
            if not isinstance(raw, bytes) or len(raw) != math.prod(shape) * dtype.itemsize:
                raise ValueError("data size does not match dtype and shape")
            if key_impl is not None and not isinstance(key_impl, str):
                raise ValueError("invalid key_impl")
        except ValueError as e:
            raise ValueError(f"entry {name!r}: {e}") from None
        records.append(Record(name, fields["dtype"], shape, _from_raw(raw, dtype, shape),
                              key_impl))
    return step, records


# ----- npz ---------------------------------------------------------------------------------
def write_npz(f: IO[bytes], step: Optional[int], records: Sequence[Record]) -> None:
    """Write ``records`` to the binary file ``f`` as an (uncompressed) ``.npz``.

    Raises:
      CheckpointError: a name cannot be stored (nothing is written then).
    """
    check_names(records)
    names = [r.name for r in records]
    members: list[tuple[str, np.ndarray]] = [("names", np.array(names, dtype=str))]
    for i, r in enumerate(records):
        storage = _NPZ_STORAGE.get(r.dtype)
        members.append((str(i), r.data.view(storage) if storage is not None else r.data))
    meta = {"format": FORMAT, "version": VERSION, "step": step, "names": names,
            "dtypes": [r.dtype for r in records],
            "key_impls": [r.key_impl for r in records],
            "sha256": _content_digest(step, records)}
    members.append((_NPZ_META, np.frombuffer(json.dumps(meta).encode(), dtype=np.uint8)))
    # What np.savez does, plus the archive comment (np.savez cannot set one).
    with zipfile.ZipFile(f, "w", compression=zipfile.ZIP_STORED, allowZip64=True) as zf:
        for key, arr in members:
            # zip64 headers up front: the member's size is not known before it is written.
            with zf.open(key + ".npy", "w", force_zip64=True) as member:
                np.lib.format.write_array(member, np.asarray(arr), allow_pickle=False)
        zf.comment = _NPZ_COMMENT


def _holds_objects(npz: Any, key: str) -> bool:
    """Whether npz member ``key`` is an object array (stored pickled), from its header."""
    try:
        with npz.zip.open(key + ".npy") as f:
            version = np.lib.format.read_magic(f)
            read_header = (np.lib.format.read_array_header_1_0 if version == (1, 0)
                           else np.lib.format.read_array_header_2_0)
            return read_header(f)[2].hasobject
    except Exception:  # an unreadable header: reported when the member is read
        return False


def _npz_member(npz: Any, key: str) -> np.ndarray:
    if _holds_objects(npz, key):
        raise ValueError(f"member {key!r} is a pickled object array; bridge never "
                         "unpickles, so the file is refused")
    try:
        return npz[key]
    except Exception as e:  # zipfile/zlib/numpy errors alike: the member is unreadable
        raise ValueError(f"member {key!r} is unreadable ({type(e).__name__}: {e})") from None


def _read_npz(data: bytes) -> tuple[Optional[int], list[Record]]:
    # Decided from the raw bytes, not from the parsed directory: a damaged directory can
    # hide the checksum member, and the file must not then pass for an Objax one.
    # Searched from the end, where a bridge file holds all of them (its meta member is last).
    by_bridge = any(data.rfind(trace) >= 0 for trace in _NPZ_TRACES)
    try:
        npz = np.load(io.BytesIO(data), allow_pickle=False)
    except Exception as e:
        raise ValueError(f"not a readable .npz archive ({e})") from None
    with npz:
        files = set(npz.files)
        if len(files) != len(npz.files):
            raise ValueError("the archive lists a member twice")
        if by_bridge and _NPZ_META not in files:
            raise ValueError(f"the file was written by bridge but its {_NPZ_META} member "
                             "(format marker and checksum) is not in the archive's "
                             "directory: the file is damaged")
        if by_bridge:
            _check_zip_end(data, len(npz.files))
        if "names" not in files:
            raise ValueError("not a bridge or Objax checkpoint (no 'names' member)")
        listed = _npz_member(npz, "names")
        if listed.ndim != 1 or (listed.dtype.kind != "U" and listed.size):
            raise ValueError("the 'names' member is not a list of strings")
        names = [str(n) for n in listed]
        expected = {"names"} | {str(i) for i in range(len(names))}
        meta = None
        if _NPZ_META in files:
            meta = _npz_meta(_npz_member(npz, _NPZ_META), names)
            names = meta["names"]
            expected.add(_NPZ_META)
        if files != expected:
            raise ValueError("members do not match the names list (missing: "
                             f"{sorted(expected - files)}, extra: {sorted(files - expected)})")
        if len(set(names)) != len(names):
            raise ValueError("duplicate names")
        records = []
        for i, name in enumerate(names):
            arr = _npz_member(npz, str(i))
            if meta is None:  # an Objax file: the array's own dtype
                dtype_name, key_impl = arr.dtype.name, None
                if arr.dtype.byteorder not in "=|" and arr.dtype.itemsize > 1:
                    arr = arr.astype(arr.dtype.newbyteorder("="))
            else:
                dtype_name, key_impl = meta["dtypes"][i], meta["key_impls"][i]
            try:
                dtype = _check_dtype(dtype_name)
                storage = _NPZ_STORAGE.get(dtype_name, dtype)
                if arr.dtype != storage:
                    raise ValueError(f"stored as {arr.dtype}, expected {storage}")
            except ValueError as e:
                raise ValueError(f"entry {name!r}: {e}") from None
            records.append(Record(name, dtype_name, arr.shape, arr.view(dtype), key_impl))
    step = None
    if meta is not None:
        step = meta["step"]
        if _content_digest(step, records) != meta["sha256"]:
            raise ValueError("checksum mismatch: the file is corrupted")
    return step, records


def _check_zip_end(data: bytes, entries: int) -> None:
    """Checks of the end-of-central-directory record that ``zipfile`` skips.

    ``zipfile`` takes a comment cut short as it is, and counts entries by walking the
    directory rather than by the record's count; for a file bridge wrote, either means
    that bytes were lost or changed.
    """
    end = data.rfind(b"PK\x05\x06", max(0, len(data) - _EOCD_SIZE - 0xFFFF))
    if end < 0:  # pragma: no cover - zipfile found it already
        raise ValueError("the archive has no end-of-central-directory record")
    count = int.from_bytes(data[end + 10:end + 12], "little")
    comment = int.from_bytes(data[end + 20:end + 22], "little")
    if end + _EOCD_SIZE + comment != len(data):
        raise ValueError("the archive's end record does not end the file: the file is "
                         "truncated or damaged")
    if count != 0xFFFF and count != entries:  # 0xFFFF: the count is in the zip64 record
        raise ValueError(f"the archive's end record counts {count} members, its directory "
                         f"lists {entries}: the file is damaged")


def _npz_meta(raw: np.ndarray, listed: list[str]) -> dict[str, Any]:
    """The checked JSON of the meta member; ``"names"`` filled from ``listed`` if absent."""
    if raw.dtype != np.uint8 or raw.ndim != 1:
        raise ValueError(f"malformed {_NPZ_META} member")
    try:
        meta = json.loads(raw.tobytes().decode())
    except (UnicodeDecodeError, json.JSONDecodeError):
        raise ValueError(f"malformed {_NPZ_META} member") from None
    if not isinstance(meta, dict) or meta.get("format") != FORMAT:
        raise ValueError(f"not a bridge checkpoint (no {FORMAT!r} format marker)")
    version = meta.get("version")
    _check_version(version)
    count = len(listed)
    names = meta.setdefault("names", listed)  # absent from files of earlier bridge versions
    dtypes, impls = meta.get("dtypes"), meta.get("key_impls")
    if not (isinstance(dtypes, list) and isinstance(impls, list) and len(dtypes) == count
            and len(impls) == count and isinstance(meta.get("sha256"), str)
            and all(i is None or isinstance(i, str) for i in impls)
            and isinstance(names, list) and all(isinstance(n, str) for n in names)):
        raise ValueError(f"malformed {_NPZ_META} member")
    # The names member holds what NumPy keeps of each name: all but its trailing NULs.
    if [n.rstrip("\0") for n in names] != listed:
        raise ValueError(f"the 'names' member does not match the names in {_NPZ_META}")
    _check_step(meta.get("step"))
    return meta


# ----- dispatch ----------------------------------------------------------------------------
def read(data: bytes, source: str) -> tuple[Optional[int], list[Record]]:
    """Parse and verify a checkpoint held in ``data``; ``source`` names it in errors.

    Raises:
      CorruptCheckpointError: empty, truncated, damaged, unknown or refused content.
    """
    if not data:
        raise CorruptCheckpointError(f"Cannot restore {source}: the file is empty.")
    reader = _read_npz if data[:4] in _ZIP_MAGIC else _read_msgpack
    try:
        return reader(data)
    except ValueError as e:
        raise CorruptCheckpointError(f"Cannot restore {source}: {e}.") from None
    except Exception as e:  # any other parser failure on untrusted bytes
        raise CorruptCheckpointError(
            f"Cannot restore {source}: unreadable ({type(e).__name__}: {e}).") from None
