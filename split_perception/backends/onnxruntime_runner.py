"""ONNX Runtime backend: torch-free; picks the TensorRT, CUDA or CPU execution provider."""
from __future__ import annotations

import json
import logging
from pathlib import Path

import numpy as np

from . import ModelLoadError

log = logging.getLogger("split_perception")

PREFERRED_PROVIDERS = ("TensorrtExecutionProvider", "CUDAExecutionProvider", "CPUExecutionProvider")
REQUIRED_METADATA = ("model_type", "input_size", "output_names")


class OnnxRuntimeRunner:
    backend = "onnxruntime"

    def __init__(self, path: Path, threads: int = 0):
        import onnxruntime as ort

        self.source = Path(path)
        opts = ort.SessionOptions()
        if threads:
            opts.intra_op_num_threads = threads
        available = ort.get_available_providers()
        providers = [p for p in PREFERRED_PROVIDERS if p in available]
        try:
            self.session = ort.InferenceSession(str(path), sess_options=opts, providers=providers)
        except Exception as e:  # ORT raises its own exception types for every kind of bad file
            first_line = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
            raise ModelLoadError(f"{path}: not a loadable ONNX model ({first_line})") from None
        meta = self.session.get_modelmeta().custom_metadata_map
        missing = [k for k in REQUIRED_METADATA if k not in meta]
        if missing:
            raise ModelLoadError(f"{path}: ONNX file lacks split_perception metadata ({', '.join(missing)}); re-export it")
        self.metadata = {k: json.loads(v) if k in ("output_names", "input_size", "latent_sizes") else v for k, v in meta.items()}
        self.model_type = self.metadata["model_type"]
        self.input_name = self.session.get_inputs()[0].name
        self.output_names = [o.name for o in self.session.get_outputs()]
        self.provider = self.session.get_providers()[0]
        log.info("onnxruntime: %s with %s (available: %s)", path.name, self.provider, ", ".join(available))

    def run(self, x: np.ndarray) -> dict[str, np.ndarray]:
        outs = self.session.run(None, {self.input_name: np.ascontiguousarray(x, dtype=np.float32)})
        return dict(zip(self.output_names, outs))
