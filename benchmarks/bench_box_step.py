"""What the detector's box step costs: ONNX Runtime graph latency with and without object boxes.

    python benchmarks/bench_box_step.py [--checkpoint split_perception/weights/split_spair.safetensors] [--onnx OTHER.onnx ...]

Exports the checkpoint twice, as shipped (boxes shrunk to the decoded object:
SplitSpair.object_boxes) and with the glimpse windows as boxes, and times each graph (batch 1, ONNX
Runtime CPU EP, default threads, p50 of 500 runs after 50 warm-up, best of two rounds), side by
side with any other ONNX files given (e.g. a previous release: `git show REV:split_perception/weights/split_spair.onnx`).
"""
from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import numpy as np


def p50_ms(path: Path, x: np.ndarray) -> float:
    import onnxruntime as ort

    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    feed = {session.get_inputs()[0].name: x}
    for _ in range(50):
        session.run(None, feed)
    times = []
    for _ in range(500):
        t0 = time.perf_counter()
        session.run(None, feed)
        times.append(time.perf_counter() - t0)
    return float(np.median(times)) * 1000


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--checkpoint", type=Path, default=Path("split_perception/weights/split_spair.safetensors"))
    ap.add_argument("--onnx", type=Path, nargs="*", default=[])
    args = ap.parse_args()
    from split_perception.export import export_onnx
    from split_perception.models.spair import SplitSpair

    with tempfile.TemporaryDirectory() as d:
        graphs = {"shipped graph (object boxes)": export_onnx(args.checkpoint, Path(d) / "object_boxes.onnx")}
        shrink = SplitSpair.object_boxes
        SplitSpair.object_boxes = lambda self, boxes, z_what, z_local, alpha=None: boxes  # windows as boxes
        try:
            graphs["same model, window boxes"] = export_onnx(args.checkpoint, Path(d) / "windows.onnx")
        finally:
            SplitSpair.object_boxes = shrink
        graphs.update({str(p): p for p in args.onnx})
        x = np.random.default_rng(0).random((1, 3, 48, 48), dtype=np.float32)
        best = {name: min(p50_ms(path, x) for _ in range(2)) for name, path in graphs.items()}
    for name, ms in best.items():
        print(f"{name:40s} graph p50 {ms:.2f} ms ({1000 / ms:.0f} frames/s)")


if __name__ == "__main__":
    main()
