import numpy as np
import pytest

from split_perception.image_conversion import (
    ENCODINGS,
    ImageConversionError,
    array_to_image,
    image_to_array,
    image_to_rgb,
)

rng = np.random.default_rng(0)


def _random_array(encoding, h=7, w=5):
    enc = ENCODINGS[encoding]
    shape = (h, w) if enc.channels == 1 else (h, w, enc.channels)
    if enc.dtype == np.float32:
        return rng.standard_normal(shape).astype(np.float32)
    return rng.integers(0, np.iinfo(enc.dtype).max + 1, size=shape, dtype=enc.dtype)


@pytest.mark.parametrize("encoding", sorted(ENCODINGS))
def test_round_trip_is_bit_exact(encoding):
    arr = _random_array(encoding)
    back = image_to_array(array_to_image(arr, encoding))
    assert back.dtype == arr.dtype and back.shape == arr.shape
    assert back.tobytes() == arr.tobytes()


@pytest.mark.parametrize("encoding", ["rgb8", "mono16", "32FC1", "bgra8"])
def test_row_padding_is_skipped(encoding):
    arr = _random_array(encoding, h=4, w=3)
    msg = array_to_image(arr, encoding)
    pad = 6 * ENCODINGS[encoding].dtype.itemsize
    rows = np.frombuffer(bytes(msg.data), np.uint8).reshape(4, -1)
    padded = np.concatenate([rows, np.full((4, pad), 0xAB, np.uint8)], axis=1)
    msg.step += pad
    msg.data = padded.tobytes()
    np.testing.assert_array_equal(image_to_array(msg), arr)


def test_padding_not_a_multiple_of_the_item_size():
    arr = _random_array("mono16", h=3, w=2)
    msg = array_to_image(arr, "mono16")
    rows = np.frombuffer(bytes(msg.data), np.uint8).reshape(3, -1)
    msg.step += 1
    msg.data = np.concatenate([rows, np.zeros((3, 1), np.uint8)], axis=1).tobytes()
    np.testing.assert_array_equal(image_to_array(msg), arr)


@pytest.mark.parametrize("encoding", ["mono16", "32FC1"])
def test_big_endian_data(encoding):
    arr = _random_array(encoding)
    msg = array_to_image(arr, encoding)
    msg.is_bigendian = 1
    msg.data = arr.astype(arr.dtype.newbyteorder(">")).tobytes()
    back = image_to_array(msg)
    np.testing.assert_array_equal(back, arr)
    assert back.dtype.isnative


def test_conversion_is_zero_copy_for_tight_native_data():
    arr = _random_array("rgb8")
    msg = array_to_image(arr, "rgb8")
    back = image_to_array(msg)
    assert np.shares_memory(back, np.frombuffer(msg.data, np.uint8))


def test_colour_orders_to_rgb():
    rgb = _random_array("rgb8")
    bgr = rgb[..., ::-1].copy()
    np.testing.assert_array_equal(image_to_rgb(array_to_image(bgr, "bgr8")), rgb)
    bgra = np.concatenate([bgr, np.full(rgb.shape[:2] + (1,), 7, np.uint8)], axis=2)
    np.testing.assert_array_equal(image_to_rgb(array_to_image(bgra, "bgra8")), rgb)
    mono = rgb[..., 0].copy()
    assert image_to_rgb(array_to_image(mono, "mono8")).shape == rgb.shape


def test_unsupported_encoding_is_named():
    msg = array_to_image(_random_array("rgb8"), "rgb8")
    msg.encoding = "yuv422"
    with pytest.raises(ImageConversionError, match="yuv422"):
        image_to_array(msg)


def test_short_buffer_is_reported_with_its_size():
    msg = array_to_image(_random_array("rgb8", h=4, w=4), "rgb8")
    msg.data = bytes(msg.data)[:-5]
    with pytest.raises(ImageConversionError, match="4x4"):
        image_to_array(msg)


def test_step_smaller_than_row_and_empty_image():
    msg = array_to_image(_random_array("rgb8", h=4, w=4), "rgb8")
    msg.step = 5
    with pytest.raises(ImageConversionError, match="step 5"):
        image_to_array(msg)
    msg = array_to_image(_random_array("rgb8", h=4, w=4), "rgb8")
    msg.height = 0
    with pytest.raises(ImageConversionError, match="empty"):
        image_to_array(msg)


def test_array_that_does_not_fit_the_encoding():
    with pytest.raises(ImageConversionError, match="channels"):
        array_to_image(np.zeros((4, 4, 4), np.uint8), "rgb8")
    with pytest.raises(ImageConversionError, match="dtype"):
        array_to_image(np.zeros((4, 4), np.float64), "32FC1")
