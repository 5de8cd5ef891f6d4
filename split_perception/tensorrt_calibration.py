"""INT8 calibration for `build-engine --precision int8`: batches of images from a dataset folder.

Images go through the same pre-processing as inference (preprocessing.preprocess), so the
calibrated ranges are those the engine will see. The calibration table is cached beside the
engine, so a rebuild with the same data skips calibration.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import tensorrt as trt

from .preprocessing import preprocess
from .cuda_runtime import cuda_runtime


class FolderCalibrator(trt.IInt8EntropyCalibrator2):
    def __init__(self, folder: Path, chw: tuple[int, int, int], cache_file: Path, batch_size: int = 8, max_images: int = 512):
        super().__init__()
        from split_perception.training.dataset import DatasetFolder

        self.folder, self.cache_file = DatasetFolder(Path(folder)), Path(cache_file)
        self.size, self.batch_size = int(chw[-1]), batch_size
        self.indices = list(range(min(len(self.folder), max_images)))
        if not self.indices:
            raise ValueError(f"{folder}: no calibration images")
        self.cudart = cuda_runtime()
        nbytes = batch_size * int(np.prod(chw)) * 4
        err, self.device_ptr = self.cudart.cudaMalloc(nbytes)
        if int(err):
            raise MemoryError(f"cudaMalloc({nbytes}) failed: {err}")

    def get_batch_size(self) -> int:
        return self.batch_size

    def get_batch(self, names):
        if len(self.indices) < self.batch_size:
            return None
        take, self.indices = self.indices[: self.batch_size], self.indices[self.batch_size :]
        batch = np.ascontiguousarray(np.concatenate([preprocess(self.folder.image(i), self.size) for i in take]))
        self.cudart.cudaMemcpy(self.device_ptr, batch.ctypes.data, batch.nbytes, self.cudart.cudaMemcpyKind.cudaMemcpyHostToDevice)
        return [int(self.device_ptr)]

    def read_calibration_cache(self):
        return self.cache_file.read_bytes() if self.cache_file.is_file() else None

    def write_calibration_cache(self, cache) -> None:
        from .atomic_io import atomic_write_bytes

        atomic_write_bytes(self.cache_file, bytes(cache))
