"""Inference backends behind one interface: `open_runner(path, backend) -> ModelRunner`.

A runner takes a (B, 3, S, S) float32 batch and returns the graph's named outputs as numpy
arrays. Backends: `onnxruntime` (.onnx; TensorRT EP, then CUDA EP, then CPU EP) and `torch`
(.safetensors checkpoint; CUDA when available). Only the torch backend imports torch.
"""
from __future__ import annotations

import logging
from pathlib import Path
from typing import Protocol

import numpy as np

log = logging.getLogger("split_perception")

BACKENDS = ("auto", "onnxruntime", "torch")


class ModelLoadError(ValueError):
    """A model file that cannot be run; the message names the file and the problem."""


class ModelRunner(Protocol):
    backend: str
    source: Path
    model_type: str
    metadata: dict

    def run(self, x: np.ndarray) -> dict[str, np.ndarray]: ...


def open_runner(path: Path, backend: str = "auto") -> ModelRunner:
    path = Path(path)
    if backend not in BACKENDS:
        raise ValueError(f"unknown backend '{backend}' (choose from {', '.join(BACKENDS)})")
    if not path.is_file():
        raise ModelLoadError(f"model file not found: {path}")
    suffix = path.suffix.lower()
    if suffix == ".onnx":
        if backend == "torch":
            raise ModelLoadError(f"{path}: the torch backend runs .safetensors checkpoints, not ONNX files")
        from .onnxruntime_runner import OnnxRuntimeRunner

        return OnnxRuntimeRunner(path)
    if suffix == ".safetensors":
        if backend == "onnxruntime":
            raise ModelLoadError(f"{path}: export it first (split-perception export {path} -o model.onnx)")
        from .torch_runner import TorchRunner

        return TorchRunner(path)
    raise ModelLoadError(f"{path}: unknown model file type '{suffix}' (expected .onnx or .safetensors)")
