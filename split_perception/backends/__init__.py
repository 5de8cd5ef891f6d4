"""Inference backends behind one interface: `open_runner(path, backend) -> ModelRunner`.

A runner takes a (B, 3, S, S) float32 batch and returns the graph's named outputs as numpy
arrays. Backends:
* `tensorrt`: an .engine file, or an .onnx file built into a cached engine for this GPU;
* `onnxruntime`: an .onnx file (TensorRT EP, then CUDA EP, then CPU EP);
* `torch`: a .safetensors checkpoint, or a MONet ONNX export rebuilt as a torch model (CUDA when available).
`auto` on an .onnx file tries TensorRT (fastest, when installed with a GPU) and falls back to
ONNX Runtime, logging what it picked and why. Only the torch backend imports torch.
"""
from __future__ import annotations

import logging
from pathlib import Path
from typing import Protocol

import numpy as np

log = logging.getLogger("split_perception")

BACKENDS = ("auto", "tensorrt", "onnxruntime", "torch")


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
    if suffix == ".engine":
        if backend not in ("auto", "tensorrt"):
            raise ModelLoadError(f"{path}: a TensorRT engine runs only on the tensorrt backend")
        return _tensorrt_runner(path)
    if suffix == ".onnx":
        if backend == "torch":
            from .torch_runner import TorchRunner

            return TorchRunner(path)  # rebuilt from the export, checked against it
        if backend in ("auto", "tensorrt"):
            reason = tensorrt_unavailable()
            if reason is None:
                try:
                    from split_perception.tensorrt_engine import cached_engine

                    return _tensorrt_runner(cached_engine(path))
                except Exception as e:  # a failed build must not take the node down when ORT can run it
                    reason = f"engine build failed ({e})"
            if backend == "tensorrt":
                raise ModelLoadError(f"{path}: tensorrt backend unavailable: {reason}")
            log.info("backend auto: %s; using onnxruntime", reason)
        from .onnxruntime_runner import OnnxRuntimeRunner

        return OnnxRuntimeRunner(path)
    if suffix == ".safetensors":
        if backend in ("onnxruntime", "tensorrt"):
            raise ModelLoadError(f"{path}: export it first (split-perception export {path} -o model.onnx)")
        from .torch_runner import TorchRunner

        return TorchRunner(path)
    raise ModelLoadError(f"{path}: unknown model file type '{suffix}' (expected .onnx, .engine or .safetensors)")


def tensorrt_unavailable() -> str | None:
    """Why the TensorRT backend cannot run here, or None when it can."""
    import importlib.util

    if importlib.util.find_spec("tensorrt") is None:
        return "tensorrt is not installed"
    if importlib.util.find_spec("cuda") is None:
        return "cuda-python is not installed (the TensorRT runner needs it for device memory)"
    from split_perception.tensorrt_engine import EngineError, gpu_identity

    try:
        gpu_identity()
    except EngineError as e:
        return str(e)
    return None


def _tensorrt_runner(path: Path) -> ModelRunner:
    reason = tensorrt_unavailable()
    if reason is not None:
        raise ModelLoadError(f"{path}: cannot run a TensorRT engine here: {reason}")
    from .tensorrt_runner import TensorRTRunner

    return TensorRTRunner(path)
