"""TensorRT backend: runs a cached engine through the TensorRT runtime; torch-free.

Device memory and copies go through cuda-python. The engine's sidecar (written by
build-engine) is checked first, so an engine from another TensorRT version or GPU is refused
with a message instead of crashing inside the runtime.
"""
from __future__ import annotations

import json
import logging
from pathlib import Path

import numpy as np

from . import ModelLoadError

log = logging.getLogger("split_perception")


class TensorRTRunner:
    backend = "tensorrt"

    def __init__(self, engine_path: Path):
        import tensorrt as trt

        from split_perception.cuda_runtime import cuda_runtime
        from split_perception.tensorrt_engine import EngineError, check_engine_matches

        self.source = Path(engine_path)
        try:
            info = check_engine_matches(self.source)
        except EngineError as e:
            raise ModelLoadError(str(e)) from None
        meta = info.get("metadata", {})
        self.metadata = {k: json.loads(v) if k in ("output_names", "input_size", "latent_sizes") else v for k, v in meta.items()}
        self.model_type = self.metadata.get("model_type", "unknown")
        self.cudart = cuda_runtime()
        self.runtime = trt.Runtime(trt.Logger(trt.Logger.WARNING))
        self.engine = self.runtime.deserialize_cuda_engine(self.source.read_bytes())
        if self.engine is None:
            raise ModelLoadError(f"{self.source}: TensorRT could not deserialise this engine (corrupt or from another build)")
        self.context = self.engine.create_execution_context()
        names = [self.engine.get_tensor_name(i) for i in range(self.engine.num_io_tensors)]
        self.input_name = next(n for n in names if self.engine.get_tensor_mode(n) == trt.TensorIOMode.INPUT)
        self.output_names = [n for n in names if n != self.input_name]
        err, self.stream = self.cudart.cudaStreamCreate()
        self._buffers: dict[str, tuple[int, int]] = {}  # name -> (device pointer, bytes)

    def _device_buffer(self, name: str, nbytes: int) -> int:
        ptr, size = self._buffers.get(name, (0, 0))
        if size < nbytes:
            if ptr:
                self.cudart.cudaFree(ptr)
            err, ptr = self.cudart.cudaMalloc(nbytes)
            if int(err):
                raise MemoryError(f"cudaMalloc({nbytes}) failed: {err}")
            self._buffers[name] = (ptr, nbytes)
        return ptr

    def run(self, x: np.ndarray) -> dict[str, np.ndarray]:
        cu = self.cudart
        x = np.ascontiguousarray(x, dtype=np.float32)
        self.context.set_input_shape(self.input_name, x.shape)
        src = self._device_buffer(self.input_name, x.nbytes)
        cu.cudaMemcpyAsync(src, x.ctypes.data, x.nbytes, cu.cudaMemcpyKind.cudaMemcpyHostToDevice, self.stream)
        self.context.set_tensor_address(self.input_name, src)
        outs = {}
        for name in self.output_names:
            shape = tuple(self.context.get_tensor_shape(name))
            outs[name] = np.empty(shape, np.float32)
            self.context.set_tensor_address(name, self._device_buffer(name, outs[name].nbytes))
        if not self.context.execute_async_v3(self.stream):
            raise RuntimeError(f"{self.source}: TensorRT execution failed")
        for name, arr in outs.items():
            cu.cudaMemcpyAsync(arr.ctypes.data, self._buffers[name][0], arr.nbytes, cu.cudaMemcpyKind.cudaMemcpyDeviceToHost, self.stream)
        cu.cudaStreamSynchronize(self.stream)
        return outs

    def __del__(self):
        for ptr, _ in getattr(self, "_buffers", {}).values():
            self.cudart.cudaFree(ptr)
