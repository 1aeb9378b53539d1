"""bridge.util.image: layouts and level conversions against NumPy, PNG against Pillow."""

import io
import sys

import jax.numpy as jnp
import numpy as np
import pytest

from bridge.util import image

PIL = pytest.importorskip("PIL.Image", reason="PNG helpers need Pillow (the image extra)")


def test_nchw_moves_the_last_axis_before_height_and_width():
    x = np.arange(2 * 3 * 4 * 5).reshape(2, 3, 4, 5)
    np.testing.assert_array_equal(image.nchw(x), np.moveaxis(x, -1, -3))
    y = np.arange(2 * 3 * 4 * 5 * 6).reshape(2, 3, 4, 5, 6)
    np.testing.assert_array_equal(image.nchw(y), np.moveaxis(y, -1, -3))


def test_nhwc_moves_channels_last_and_inverts_nchw():
    x = np.arange(2 * 3 * 4 * 5).reshape(2, 3, 4, 5)
    np.testing.assert_array_equal(image.nhwc(x), np.moveaxis(x, -3, -1))
    np.testing.assert_array_equal(image.nchw(image.nhwc(x)), x)


def test_layout_functions_keep_jax_arrays_jax():
    x = jnp.zeros((1, 2, 3, 4))
    assert isinstance(image.nhwc(x), type(x))
    assert image.nhwc(x).shape == (1, 3, 4, 2)


def test_unit_float_levels_are_bin_centres():
    levels = np.arange(256)
    expected = (levels + 0.5) / 128 - 1
    np.testing.assert_array_equal(image.normalize_to_unit_float(levels), expected)
    assert image.normalize_to_unit_float(np.arange(3, dtype=np.uint8)).dtype == np.float64


def test_uint8_round_trips_and_saturates():
    levels = np.arange(256)
    np.testing.assert_array_equal(
        image.normalize_to_uint8(image.normalize_to_unit_float(levels)), levels)
    # Objax 1.8 gives [0, 0, 64, 128, 128, 192, 255, 255, 255, 0] (ties to even).
    x = np.array([-1.0, -1 + 1 / 256, -0.5, 0.0, 1 / 256, 0.5, 1 - 1 / 256, 1.0, 2.0, -2.0])
    expected = [0, 0, 64, 128, 128, 192, 255, 255, 255, 0]
    assert image.normalize_to_uint8(x).tolist() == expected
    assert image.normalize_to_uint8(jnp.asarray(x)).tolist() == expected
    assert image.normalize_to_uint8(x).dtype == np.uint8


def test_image_grid_places_image_ij_at_block_ij():
    grid = np.random.default_rng(0).integers(0, 256, (2, 3, 1, 4, 5))
    out = image.image_grid(grid)
    assert out.shape == (1, 8, 15)
    for i in range(2):
        for j in range(3):
            np.testing.assert_array_equal(out[:, 4 * i:4 * i + 4, 5 * j:5 * j + 5], grid[i, j])


def decode(png: bytes) -> np.ndarray:
    return np.asarray(PIL.open(io.BytesIO(png)))


def test_to_png_writes_the_uint8_levels_of_a_float_chw_image():
    x = np.random.default_rng(1).uniform(-1, 1, (3, 6, 5))
    pixels = decode(image.to_png(x))
    assert pixels.shape == (6, 5, 3)
    np.testing.assert_array_equal(pixels, np.round(x * 128 + 127.5).clip(0, 255)
                                  .transpose(1, 2, 0))


def test_to_png_accepts_uint8_channels_first():
    x = np.random.default_rng(2).integers(0, 256, (4, 3, 2), dtype=np.uint8)
    np.testing.assert_array_equal(decode(image.to_png(x)), x.transpose(1, 2, 0))


def test_to_png_writes_one_channel_as_grey_rgb():
    x = np.arange(6, dtype=np.uint8).reshape(1, 2, 3)
    pixels = decode(image.to_png(x))
    assert pixels.shape == (2, 3, 3)
    np.testing.assert_array_equal(pixels, np.repeat(x[0][..., None], 3, axis=-1))


def test_to_png_rejects_integer_non_uint8_and_wrong_channel_counts():
    with pytest.raises(ValueError, match="int32"):
        image.to_png(np.zeros((3, 2, 2), np.int32))
    with pytest.raises(ValueError, match=r"\(2, 2, 2\)"):
        image.to_png(np.zeros((2, 2, 2), np.float32))


def test_from_file_reads_rgb_floats_channels_first(tmp_path):
    levels = np.random.default_rng(3).integers(0, 256, (7, 4, 3), dtype=np.uint8)
    path = tmp_path / "x.png"
    PIL.fromarray(levels).save(path)
    x = image.from_file(path)
    assert x.shape == (3, 7, 4) and x.dtype == np.float64
    np.testing.assert_array_equal(x, (levels.transpose(2, 0, 1) + 0.5) / 128 - 1)
    with open(path, "rb") as f:
        np.testing.assert_array_equal(image.from_file(f), x)


def test_png_helpers_name_the_missing_extra_without_pillow(monkeypatch):
    monkeypatch.setitem(sys.modules, "PIL", None)
    with pytest.raises(ImportError, match=r"jax-bridge\[image\]"):
        image.to_png(np.zeros((3, 2, 2)))
