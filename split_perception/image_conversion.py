"""numpy <-> sensor_msgs/Image without cv_bridge.

ROS 2's cv_bridge is not on PyPI and the PyPI `cv-bridge` is the ROS 1 package, so the
node converts images itself. Only numpy is needed; the message class is imported lazily so
the algorithm side of the package never imports ROS.

`image_to_array` returns a view of the message buffer when it can (native byte order,
any row padding removed by striding, not by copying).
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class Encoding:
    dtype: np.dtype
    channels: int


ENCODINGS: dict[str, Encoding] = {
    "rgb8": Encoding(np.dtype(np.uint8), 3),
    "bgr8": Encoding(np.dtype(np.uint8), 3),
    "rgba8": Encoding(np.dtype(np.uint8), 4),
    "bgra8": Encoding(np.dtype(np.uint8), 4),
    "mono8": Encoding(np.dtype(np.uint8), 1),
    "8UC1": Encoding(np.dtype(np.uint8), 1),
    "8UC3": Encoding(np.dtype(np.uint8), 3),
    "mono16": Encoding(np.dtype(np.uint16), 1),
    "16UC1": Encoding(np.dtype(np.uint16), 1),
    "32FC1": Encoding(np.dtype(np.float32), 1),
}


class ImageConversionError(ValueError):
    """An image message or array that cannot be converted; the message says why."""


def _encoding(name: str) -> Encoding:
    try:
        return ENCODINGS[name]
    except KeyError:
        raise ImageConversionError(
            f"unsupported image encoding '{name}' (supported: {', '.join(sorted(ENCODINGS))})"
        ) from None


def image_to_array(msg) -> np.ndarray:
    """sensor_msgs/Image -> array of shape (H, W) or (H, W, C) in the message's encoding.

    Raises ImageConversionError for an unknown encoding or a buffer whose size does not
    match height, width and step.
    """
    enc = _encoding(msg.encoding)
    height, width, step = int(msg.height), int(msg.width), int(msg.step)
    row_bytes = width * enc.channels * enc.dtype.itemsize
    if height == 0 or width == 0:
        raise ImageConversionError(f"empty image {width}x{height} ('{msg.encoding}')")
    if step < row_bytes:
        raise ImageConversionError(
            f"step {step} is smaller than width*channels*bytes = {row_bytes} for a {width}x{height} "
            f"'{msg.encoding}' image"
        )
    buf = np.frombuffer(msg.data, dtype=np.uint8)  # rclpy gives array('B'): no copy
    if buf.size < step * (height - 1) + row_bytes:
        raise ImageConversionError(
            f"data holds {buf.size} bytes; a {width}x{height} '{msg.encoding}' image with step {step} "
            f"needs {step * height}"
        )
    itemsize = enc.dtype.itemsize
    dtype = enc.dtype.newbyteorder(">" if msg.is_bigendian else "<") if itemsize > 1 else enc.dtype
    if step % itemsize == 0:
        # Rows `step` bytes apart, only the first width*channels items of each used: a view.
        items = buf[: buf.size - buf.size % itemsize].view(dtype)
        pixels = np.lib.stride_tricks.as_strided(
            items, shape=(height, width * enc.channels), strides=(step, itemsize), writeable=False
        )
    else:  # rows not item-aligned: copy them out once
        rows = np.lib.stride_tricks.as_strided(buf, shape=(height, row_bytes), strides=(step, 1), writeable=False)
        pixels = np.ascontiguousarray(rows).view(dtype)
    if not dtype.isnative:
        pixels = pixels.astype(enc.dtype)  # foreign byte order: one copy to native
    shape = (height, width) if enc.channels == 1 else (height, width, enc.channels)
    return pixels.reshape(shape)


def image_to_rgb(msg) -> np.ndarray:
    """sensor_msgs/Image of any supported colour/mono encoding -> (H, W, 3) uint8 RGB."""
    arr = image_to_array(msg)
    enc = msg.encoding
    if enc in ("rgb8", "8UC3"):
        return arr
    if enc == "bgr8":
        return arr[..., ::-1]
    if enc == "rgba8":
        return arr[..., :3]
    if enc == "bgra8":
        return arr[..., 2::-1]
    if enc in ("mono8", "8UC1"):
        return np.repeat(arr[..., None], 3, axis=2)
    if enc in ("mono16", "16UC1"):
        return np.repeat((arr >> 8).astype(np.uint8)[..., None], 3, axis=2)
    raise ImageConversionError(f"encoding '{enc}' is not a colour image the models can take")


def array_to_image(array: np.ndarray, encoding: str, header=None):
    """(H, W[, C]) array -> sensor_msgs/Image with a tight `step`, little-endian data."""
    from sensor_msgs.msg import Image  # lazy: the algorithm side never needs ROS

    enc = _encoding(encoding)
    array = np.asarray(array)
    expected = (2,) if enc.channels == 1 else (3,)
    if array.ndim not in expected and not (enc.channels == 1 and array.ndim == 3 and array.shape[2] == 1):
        raise ImageConversionError(
            f"array of shape {array.shape} does not fit encoding '{encoding}' ({enc.channels} channel(s))"
        )
    if array.ndim == 3 and array.shape[2] != enc.channels:
        raise ImageConversionError(
            f"array has {array.shape[2]} channels, encoding '{encoding}' needs {enc.channels}"
        )
    if array.dtype != enc.dtype:
        raise ImageConversionError(f"array dtype {array.dtype} does not match encoding '{encoding}' ({enc.dtype})")
    height, width = array.shape[:2]
    msg = Image()
    if header is not None:
        msg.header = header
    msg.height, msg.width, msg.encoding = int(height), int(width), encoding
    msg.is_bigendian = 0
    msg.step = int(width * enc.channels * enc.dtype.itemsize)
    msg.data = np.ascontiguousarray(array, dtype=enc.dtype.newbyteorder("<")).tobytes()
    return msg
