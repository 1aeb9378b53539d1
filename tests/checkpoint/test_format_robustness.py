"""bridge.checkpoint formats: any variable name round-trips; a damaged bridge npz is never
restored as an unverified (Objax) checkpoint."""

import io
import json
import os
import re
import zipfile

import jax.numpy as jnp
import numpy as np
import pytest

import bridge
import bridge.checkpoint as ckpt

FORMATS = ["msgpack", "npz"]

NAMES = [
    "trailing NUL\x00",
    "\x00",
    "\x00\x00",
    "",
    "inner\x00NUL",
    "a/b/c",
    "/leading/slash",
    "a.b.npy",
    "..",
    " spaces around ",
    "tab\tnew\nline",
    "ünïcødé",
    "日本語",
    "emoji 🎉",
    "names",
    "0",
    "__bridge_checkpoint__",
]


def collection(names, offset=0.0):
    return bridge.VarCollection({name: bridge.StateVar(jnp.full(2, i + offset))
                                 for i, name in enumerate(names)})


def save_to_bytes(vc, fmt, step=None):
    buffer = io.BytesIO()
    ckpt.save(buffer, vc, format=fmt, step=step)
    return buffer.getvalue()


# ----- names ---------------------------------------------------------------------------------
@pytest.mark.parametrize("fmt", FORMATS)
@pytest.mark.parametrize("name", NAMES, ids=[repr(n) for n in NAMES])
def test_any_name_round_trips_exactly(fmt, name):
    data = save_to_bytes(collection([name]), fmt, step=3)
    dst = collection([name], offset=10.0)
    report = ckpt.restore(io.BytesIO(data), dst)
    assert report.step == 3 and report.loaded == (name,) and report.ok
    np.testing.assert_array_equal(dst[name].value, jnp.full(2, 0.0))


@pytest.mark.parametrize("fmt", FORMATS)
def test_names_differing_only_by_trailing_nuls_stay_distinct(fmt):
    names = ["w", "w\x00", "w\x00\x00"]
    data = save_to_bytes(collection(names), fmt)
    dst = collection(names, offset=10.0)
    assert ckpt.restore(io.BytesIO(data), dst).loaded == tuple(names)
    for i, name in enumerate(names):
        np.testing.assert_array_equal(dst[name].value, jnp.full(2, float(i)))


def test_npz_names_member_holds_each_name_as_numpy_keeps_it():
    # Objax-era readers match variables against the 'names' member.
    names = ["(Net).w", "trailing\x00", "inner\x00NUL"]
    with np.load(io.BytesIO(save_to_bytes(collection(names), "npz"))) as npz:
        assert list(npz["names"]) == ["(Net).w", "trailing", "inner\x00NUL"]
        np.testing.assert_array_equal(npz["0"], np.zeros(2, np.float32))


@pytest.mark.parametrize("fmt", FORMATS)
def test_name_with_a_lone_surrogate_is_refused_before_writing(tmp_path, fmt):
    path = str(tmp_path / f"model.{fmt}")
    vc = collection(["fine", "bad\ud800name"])
    with pytest.raises(ckpt.CheckpointError, match=re.escape(repr("bad\ud800name"))):
        ckpt.save(path, vc)
    assert os.listdir(tmp_path) == []
    buffer = io.BytesIO()
    with pytest.raises(ckpt.CheckpointError):
        ckpt.save(buffer, vc, format=fmt)
    assert buffer.getvalue() == b""


def test_npz_from_before_names_were_in_the_meta_member_restores(tmp_path):
    # bridge's earlier npz writer: np.savez, and the JSON without "names".
    data = save_to_bytes(collection(["w", "b"]), "npz", step=4)
    with np.load(io.BytesIO(data)) as npz:
        members = {key: npz[key] for key in npz.files}
    meta = json.loads(members["__bridge_checkpoint__"].tobytes())
    del meta["names"]
    members["__bridge_checkpoint__"] = np.frombuffer(json.dumps(meta).encode(), np.uint8)
    path = str(tmp_path / "old.npz")
    np.savez(path, **members)
    dst = collection(["w", "b"], offset=10.0)
    assert ckpt.restore(path, dst).step == 4
    np.testing.assert_array_equal(dst["b"].value, jnp.full(2, 1.0))


def test_npz_whose_names_member_disagrees_with_the_meta_member_is_refused(tmp_path):
    data = save_to_bytes(collection(["w", "b"]), "npz")
    with np.load(io.BytesIO(data)) as npz:
        members = {key: npz[key] for key in npz.files}
    members["names"] = np.array(["w", "c"])
    path = str(tmp_path / "mixed.npz")
    np.savez(path, **members)
    with pytest.raises(ckpt.CorruptCheckpointError, match="'names' member does not match"):
        ckpt.restore(path, collection(["w", "b"]))


# ----- damaged zip structure -----------------------------------------------------------------
SAVED_STEP = 7
SAVED = {"(Net).w": np.arange(6, dtype=np.float32).reshape(2, 3),
         "(Net).b": np.array([-1, 2], np.int32)}


@pytest.fixture(scope="module")
def bridge_npz():
    src = bridge.VarCollection({k: bridge.StateVar(jnp.asarray(v)) for k, v in SAVED.items()})
    return save_to_bytes(src, "npz", step=SAVED_STEP)


def fresh():
    return bridge.VarCollection({k: bridge.StateVar(jnp.zeros_like(v)) for k, v in SAVED.items()})


def verified_or_refused(data, vc):
    """None if ``data`` is refused as corrupt; else checks it restored exactly what was saved."""
    try:
        report = ckpt.restore(io.BytesIO(data), vc)
    except ckpt.CorruptCheckpointError:
        return None
    values = {k: np.asarray(v.value) for k, v in vc.items()}
    return report.step == SAVED_STEP and all(
        values[k].dtype == v.dtype and values[k].tobytes() == v.tobytes()
        for k, v in SAVED.items())


def central_directory(data):
    """(offset of the central directory, offsets of its entries) in a zip held in ``data``."""
    start = zipfile.ZipFile(io.BytesIO(data)).start_dir
    entries, pos = [], start
    while data[pos:pos + 4] == b"PK\x01\x02":
        entries.append(pos)
        name, extra, comment = (int.from_bytes(data[pos + i:pos + i + 2], "little")
                                for i in (28, 30, 32))
        pos += 46 + name + extra + comment
    return start, entries


def test_directory_hiding_the_checksum_member_is_refused(bridge_npz):
    # Issue 10: one bit gives the entry before the checksum member's a 256-byte comment,
    # which swallows the checksum member's entry; the rest reads as an Objax checkpoint.
    _, entries = central_directory(bridge_npz)
    damaged = bytearray(bridge_npz)
    damaged[entries[-2] + 33] ^= 0x01
    listed = zipfile.ZipFile(io.BytesIO(bytes(damaged))).namelist()
    assert "__bridge_checkpoint__.npy" not in listed and "names.npy" in listed
    with pytest.raises(ckpt.CorruptCheckpointError, match="__bridge_checkpoint__"):
        ckpt.restore(io.BytesIO(bytes(damaged)), fresh())


def test_bridge_npz_without_its_checksum_member_is_refused(bridge_npz):
    # A clean archive, rewritten without the member: the comment still says bridge wrote it.
    source = zipfile.ZipFile(io.BytesIO(bridge_npz))
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as rewritten:
        for info in source.infolist():
            if info.filename != "__bridge_checkpoint__.npy":
                rewritten.writestr(info, source.read(info))
        rewritten.comment = source.comment
    with pytest.raises(ckpt.CorruptCheckpointError, match="__bridge_checkpoint__"):
        ckpt.restore(io.BytesIO(buffer.getvalue()), fresh())


def test_end_record_counting_other_than_the_directory_is_refused(bridge_npz):
    end = bridge_npz.rindex(b"PK\x05\x06")
    damaged = bytearray(bridge_npz)
    damaged[end + 10] ^= 0x02  # the total number of entries
    with pytest.raises(ckpt.CorruptCheckpointError, match="counts"):
        ckpt.restore(io.BytesIO(bytes(damaged)), fresh())


def test_no_flipped_bit_in_the_central_directory_gives_an_unverified_restore(bridge_npz):
    start, _ = central_directory(bridge_npz)
    vc = fresh()
    wrong = []
    for offset in range(start, len(bridge_npz)):  # directory, end record and comment
        for bit in range(8):
            damaged = bytearray(bridge_npz)
            damaged[offset] ^= 1 << bit
            if verified_or_refused(bytes(damaged), vc) is False:
                wrong.append((offset, bit))
    assert wrong == []


def test_no_inverted_byte_anywhere_gives_an_unverified_restore(bridge_npz):
    vc = fresh()
    wrong = []
    for offset in range(len(bridge_npz)):
        damaged = bytearray(bridge_npz)
        damaged[offset] ^= 0xFF
        if verified_or_refused(bytes(damaged), vc) is False:
            wrong.append(offset)
    assert wrong == []


def test_objax_npz_is_still_restored_without_a_step():
    names = ["(Net).w", "(Net).b"]
    buffer = io.BytesIO()
    np.savez(buffer, names=np.array(names), **{str(i): SAVED[n] for i, n in enumerate(names)})
    vc = fresh()
    report = ckpt.restore(io.BytesIO(buffer.getvalue()), vc)
    assert report.step is None and report.ok
    np.testing.assert_array_equal(vc["(Net).w"].value, SAVED["(Net).w"])
