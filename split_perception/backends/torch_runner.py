"""PyTorch backend: runs a model's deterministic inference graph (CUDA fp16 when there is a GPU).

The model comes from a .safetensors checkpoint, or is rebuilt from an ONNX export
(models.onnx_import) and checked against that file before it is used.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from split_perception.models import checkpoint as ckpt
from split_perception.models import onnx_import
from split_perception.models.inference import inference_graph

from . import ModelLoadError


class TorchRunner:
    backend = "torch"

    def __init__(self, path: Path, device: str | None = None):
        self.source = Path(path)
        from_onnx = self.source.suffix.lower() == ".onnx"
        try:
            model, cfg, model_type = onnx_import.model_from_onnx(path) if from_onnx else ckpt.load_checkpoint(path)
            graph = inference_graph(model).eval()
            if from_onnx:
                onnx_import.verify_against_onnx(path, graph, cfg.image_size)
        except (ckpt.CheckpointError, onnx_import.OnnxImportError) as e:
            raise ModelLoadError(str(e)) from None
        self.device = torch.device(device or ("cuda" if torch.cuda.is_available() else "cpu"))
        self.graph = graph.to(self.device)
        self.model_type = model_type
        self.metadata = {"model_type": model_type, "input_size": cfg.image_size, "output_names": self.graph.output_names}

    @torch.inference_mode()
    def run(self, x: np.ndarray) -> dict[str, np.ndarray]:
        # fp16 on a GPU (tensor cores); the CPU stays fp32
        with torch.autocast("cuda", dtype=torch.float16, enabled=self.device.type == "cuda"):
            outs = self.graph(torch.from_numpy(np.ascontiguousarray(x, dtype=np.float32)).to(self.device))
        return {n: o.float().cpu().numpy() for n, o in zip(self.graph.output_names, outs)}
