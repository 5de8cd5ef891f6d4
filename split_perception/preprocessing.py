"""Shared by every model API: frame validation, resize + scaling, and the shipped models.

Numpy and OpenCV only, so the ONNX Runtime and TensorRT paths never import torch.
"""
from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np

WEIGHTS_DIR = Path(__file__).parent / "weights"
MAX_INPUT_PIXELS = 8192 * 8192


class InputImageError(ValueError):
    """An input frame the models cannot take; the message says why."""


def check_rgb(image: np.ndarray) -> np.ndarray:
    """Validate an H x W x 3 uint8 RGB frame."""
    if not isinstance(image, np.ndarray):
        raise InputImageError(f"expected a numpy array, got {type(image).__name__}")
    if image.ndim != 3 or image.shape[2] != 3:
        raise InputImageError(f"expected an H x W x 3 RGB image, got shape {image.shape}")
    if image.dtype != np.uint8:
        raise InputImageError(f"expected uint8 pixels, got {image.dtype}")
    h, w = image.shape[:2]
    if h == 0 or w == 0:
        raise InputImageError(f"empty image ({w}x{h})")
    if h * w > MAX_INPUT_PIXELS:
        raise InputImageError(f"image {w}x{h} is larger than the {MAX_INPUT_PIXELS} pixel limit")
    return image


def preprocess(image: np.ndarray, size: int) -> np.ndarray:
    """(H, W, 3) uint8 RGB -> (1, 3, size, size) float32 in [0, 1]."""
    check_rgb(image)
    if image.shape[:2] != (size, size):
        # INTER_AREA when shrinking averages like a camera would; bilinear when enlarging
        interp = cv2.INTER_AREA if image.shape[0] > size or image.shape[1] > size else cv2.INTER_LINEAR
        image = cv2.resize(image, (size, size), interpolation=interp)
    return np.ascontiguousarray(image.transpose(2, 0, 1)[None], dtype=np.float32) / np.float32(255.0)


def default_model_path(name: str, backend: str = "auto") -> Path:
    """The shipped model file that fits `backend`: for torch the .safetensors checkpoint when
    present (a model that shipped as ONNX only is rebuilt from the export); for every other
    backend the ONNX export when present (no torch needed), else the checkpoint."""
    for suffix in (".safetensors", ".onnx") if backend == "torch" else (".onnx", ".safetensors"):
        p = WEIGHTS_DIR / f"{name}{suffix}"
        if p.is_file():
            return p
    raise FileNotFoundError(f"no shipped '{name}' model in {WEIGHTS_DIR}")
