"""bridge.jaxboard: summaries written by tensorboardX, read back from the event file.

The event file is read with its documented framing (TFRecord: length, masked CRC-32C of
the length, data, masked CRC-32C of the data), checked here with a CRC-32C written for the
test, and each record parsed as a TensorBoard ``Event``.
"""

import io
import struct
import sys

import numpy as np
import pytest

from bridge import jaxboard


def crc32c(data: bytes) -> int:
    """CRC-32C (Castagnoli), bit by bit: the checksum TFRecord files use."""
    crc = 0xFFFFFFFF
    for byte in data:
        crc ^= byte
        for _ in range(8):
            crc = (crc >> 1) ^ (0x82F63B78 if crc & 1 else 0)
    return crc ^ 0xFFFFFFFF


def masked(crc: int) -> int:
    return ((((crc >> 15) | (crc << 17)) & 0xFFFFFFFF) + 0xA282EAD8) & 0xFFFFFFFF


def read_events(logdir):
    from tensorboardX.proto import event_pb2

    (path,) = list(logdir.iterdir())
    assert path.name.startswith("events.out.tfevents.")
    data, events, offset = path.read_bytes(), [], 0
    while offset < len(data):
        header = data[offset:offset + 8]
        (length,) = struct.unpack("<Q", header)
        (length_crc,) = struct.unpack("<I", data[offset + 8:offset + 12])
        record = data[offset + 12:offset + 12 + length]
        (record_crc,) = struct.unpack("<I", data[offset + 12 + length:offset + 16 + length])
        assert masked(crc32c(header)) == length_crc
        assert masked(crc32c(record)) == record_crc
        events.append(event_pb2.Event.FromString(record))
        offset += 16 + length
    return events


def test_reducers_pick_first_last_or_mean():
    values = [1.0, 2.0, 6.0]
    assert jaxboard.Reducer.FIRST(values) == 1.0
    assert jaxboard.Reducer.LAST(values) == 6.0
    assert jaxboard.Reducer.MEAN(values) == 3.0


def test_scalar_collects_values_under_one_tag_with_the_first_reducer():
    summary = jaxboard.Summary()
    summary.scalar("loss", 1.0, reduce=jaxboard.Reducer.LAST)
    summary.scalar("loss", 3.0)
    assert summary["loss"].values == [1.0, 3.0]
    assert summary["loss"]() == 3.0


def test_scalar_on_a_text_tag_is_refused_by_name():
    summary = jaxboard.Summary()
    summary.text("notes", "hello")
    with pytest.raises(ValueError, match="'notes'.*Text"):
        summary.scalar("notes", 1.0)


def test_writer_names_the_missing_extra_without_tensorboardx(monkeypatch, tmp_path):
    monkeypatch.setitem(sys.modules, "tensorboardX", None)
    with pytest.raises(ImportError, match=r"jax-bridge\[jaxboard\]"):
        jaxboard.SummaryWriter(tmp_path)


@pytest.fixture
def tensorboardx():
    return pytest.importorskip("tensorboardX",
                               reason="writing event files needs the jaxboard extra")


def test_event_file_starts_with_the_file_version(tensorboardx, tmp_path):
    with jaxboard.SummaryWriter(tmp_path):
        pass
    assert read_events(tmp_path)[0].file_version == "brain.Event:2"


def test_scalars_are_written_reduced_at_their_step(tensorboardx, tmp_path):
    with jaxboard.SummaryWriter(tmp_path) as writer:
        for step, values in enumerate([[1.0, 2.0, 6.0], [4.0]]):
            summary = jaxboard.Summary()
            for v in values:
                summary.scalar("loss/train", v)
            summary.scalar("lr", 0.1 / (step + 1), reduce=jaxboard.Reducer.LAST)
            writer.write(summary, step=10 * step)
    events = [e for e in read_events(tmp_path) if e.HasField("summary")]
    assert [e.step for e in events] == [0, 10]
    written = [{v.tag: v.simple_value for v in e.summary.value} for e in events]
    assert written == [{"loss/train": 3.0, "lr": pytest.approx(0.1)},
                       {"loss/train": 4.0, "lr": pytest.approx(0.05)}]


def test_image_is_written_as_png_with_its_size(tensorboardx, tmp_path):
    pil = pytest.importorskip("PIL.Image", reason="images need Pillow")
    x = np.random.default_rng(0).uniform(-1, 1, (3, 5, 7))
    with jaxboard.SummaryWriter(tmp_path) as writer:
        summary = jaxboard.Summary()
        summary.image("samples", x)
        writer.write(summary, step=1)
    (value,) = read_events(tmp_path)[-1].summary.value
    assert value.tag == "samples"
    assert (value.image.height, value.image.width, value.image.colorspace) == (5, 7, 3)
    pixels = np.asarray(pil.open(io.BytesIO(value.image.encoded_image_string)))
    np.testing.assert_array_equal(pixels, np.round(x * 128 + 127.5).clip(0, 255)
                                  .transpose(1, 2, 0))


def test_text_is_written_for_the_text_plugin(tensorboardx, tmp_path):
    with jaxboard.SummaryWriter(tmp_path) as writer:
        summary = jaxboard.Summary()
        summary.text("notes", "épreuve **1**")
        writer.write(summary, step=2)
    (value,) = read_events(tmp_path)[-1].summary.value
    assert value.tag == "notes"
    assert value.metadata.plugin_data.plugin_name == "text"
    assert [s.decode("utf-8") for s in value.tensor.string_val] == ["épreuve **1**"]


def test_writer_creates_missing_directories(tensorboardx, tmp_path):
    logdir = tmp_path / "a" / "b"
    jaxboard.SummaryWriter(logdir).close()
    assert len(list(logdir.iterdir())) == 1
