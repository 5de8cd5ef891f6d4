"""PyTorch backend: runs a model's deterministic inference graph (CUDA fp16 when there is a GPU).

The model comes from a .safetensors checkpoint, or is rebuilt from an ONNX export
(models.onnx_import) and checked against that file before it is used.

On a GPU each input shape's forward is recorded once as a CUDA graph and replayed: at batch 1
these small models are hundreds of kernel launches whose host-side cost is most of a frame's
time. A recording that fails, or whose output differs from the eager forward's, turns recording
off for the runner (`graph_note` says why) and the eager forward serves.
"""
from __future__ import annotations

import threading
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
        self.use_graphs = self.device.type == "cuda"
        self.graph_note = "" if self.use_graphs else "CUDA graphs need a CUDA device"
        self._recordings: dict[tuple[int, ...], _Recording] = {}

    def _forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        # fp16 on a GPU (tensor cores); the CPU stays fp32
        with torch.autocast("cuda", dtype=torch.float16, enabled=self.device.type == "cuda"):
            return [o.float() for o in self.graph(x)]

    @torch.inference_mode()
    def run(self, x: np.ndarray) -> dict[str, np.ndarray]:
        x = np.ascontiguousarray(x, dtype=np.float32)
        recording = self._recording(x) if self.use_graphs else None
        if recording is not None:
            outs = recording(x)
        else:
            outs = [o.cpu().numpy() for o in self._forward(torch.from_numpy(x).to(self.device))]
        return dict(zip(self.graph.output_names, outs))

    def _recording(self, x: np.ndarray) -> _Recording | None:
        recording = self._recordings.get(x.shape)
        if recording is None and len(self._recordings) < MAX_RECORDINGS:
            try:
                recording = _Recording(self._forward, x, self.device)
            except (RuntimeError, ValueError) as e:
                self.use_graphs, self.graph_note = False, f"CUDA graph recording failed: {e}"
                return None
            self._recordings[x.shape] = recording
        return recording


MAX_RECORDINGS = 4  # input shapes recorded per runner; frames of other shapes run eagerly
# one recording at a time in a process (two nodes' runners may share one); each records in its own
# thread's capture mode, so the other threads' CUDA work (another runner's replays) may go on
_RECORDING_LOCK = threading.Lock()


class _Recording:
    """One input shape's forward recorded as a CUDA graph, with pinned host buffers on both sides
    so that a frame is one copy in, one replay, one copy out per output and one synchronisation."""

    def __init__(self, forward, example: np.ndarray, device: torch.device):
        self.host_in = torch.empty(example.shape, dtype=torch.float32, pin_memory=True)
        self.host_in.numpy()[...] = example
        self.device_in = self.host_in.to(device)
        side = torch.cuda.Stream(device)
        side.wait_stream(torch.cuda.current_stream(device))
        with torch.cuda.stream(side):  # warm-up outside the recording: cuDNN's choices, workspaces
            for _ in range(3):
                eager = forward(self.device_in)
        torch.cuda.current_stream(device).wait_stream(side)
        self.graph = torch.cuda.CUDAGraph()
        with _RECORDING_LOCK, torch.cuda.graph(self.graph, capture_error_mode="thread_local"):
            self.device_out = forward(self.device_in)
        self.host_out = [torch.empty(o.shape, dtype=o.dtype, pin_memory=True) for o in self.device_out]
        replayed = self(example)
        for i, (a, b) in enumerate(zip(replayed, eager)):
            if not np.allclose(a, b.cpu().numpy(), rtol=1e-3, atol=1e-3, equal_nan=True):
                raise ValueError(f"output {i} of the replayed graph differs from the eager forward's")

    def __call__(self, x: np.ndarray) -> list[np.ndarray]:
        self.host_in.numpy()[...] = x
        self.device_in.copy_(self.host_in, non_blocking=True)
        self.graph.replay()
        for host, dev in zip(self.host_out, self.device_out):
            host.copy_(dev, non_blocking=True)
        torch.cuda.current_stream(self.device_in.device).synchronize()
        return [host.numpy().copy() for host in self.host_out]
