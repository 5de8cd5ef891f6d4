"""Detector speed, measured side by side in one run; prints its figures.

    python benchmarks/bench_detector.py [--model split_perception/weights/split_spair.safetensors]

* training steps/s (batch 32, CPU) for SPLIT-SPAIR and plain SPAIR
* inference latency p50/p99 at batch 1 (default input size) for ONNX Runtime and torch eager,
  on the same frames, with the ratio
* peak RSS of a process that runs the ONNX Runtime detector without importing torch
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]

TORCH_FREE_PROBE = r"""
import json, resource, sys, time
import numpy as np
from split_perception import load_detector
from split_perception.training import scenes
det = load_detector(sys.argv[1], threshold=0.5)
frames = [scenes.generate(scenes.MultiObjectConfig(), 1, i).image for i in range(50)]
for f in frames: det(f)
t = []
for i in range(int(sys.argv[2])):
    t0 = time.perf_counter(); det(frames[i % 50]); t.append(time.perf_counter() - t0)
print(json.dumps({"torch_imported": "torch" in sys.modules, "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
                  "p50_ms": 1000 * float(np.percentile(t, 50)), "p99_ms": 1000 * float(np.percentile(t, 99))}))
"""


def train_steps_per_s(split: bool, steps: int = 10) -> float:
    import torch

    from split_perception.models.spair import SpairConfig, SplitSpair
    from split_perception.training.trainer import DataConfig, SceneStream

    model = SplitSpair(SpairConfig(split=split))
    opt = torch.optim.Adam(model.parameters(), 1e-4)
    stream = SceneStream(DataConfig(), 32)
    for step in range(steps + 2):
        if step == 2:
            t0 = time.perf_counter()
        out = model(stream.batch(step), step=step)
        opt.zero_grad()
        out["loss"].backward()
        opt.step()
    return steps / (time.perf_counter() - t0)


def latency(det, frames, n) -> np.ndarray:
    for f in frames[:10]:
        det(f)
    t = []
    for i in range(n):
        t0 = time.perf_counter()
        det(frames[i % len(frames)])
        t.append(time.perf_counter() - t0)
    return np.array(t) * 1000


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--model", default=str(ROOT / "split_perception/weights/split_spair.safetensors"))
    ap.add_argument("--n", type=int, default=500)
    args = ap.parse_args()
    import torch

    from split_perception import load_detector
    from split_perception.export import export_onnx
    from split_perception.training import scenes

    print(f"machine: {platform.machine()}, {os.cpu_count()} cores, torch threads {torch.get_num_threads()}, no GPU" if not torch.cuda.is_available() else f"GPU: {torch.cuda.get_device_name()}")
    for split in (True, False):
        print(f"train steps/s, batch 32, {'SPLIT-SPAIR' if split else 'SPAIR      '}: {train_steps_per_s(split):.2f}")
    with tempfile.TemporaryDirectory() as d:
        onnx_path = export_onnx(Path(args.model), Path(d) / "model.onnx")
        frames = [scenes.generate(scenes.MultiObjectConfig(), 1, i).image for i in range(50)]
        ort = latency(load_detector(onnx_path), frames, args.n)
        pt = latency(load_detector(args.model, backend="torch"), frames, args.n)
        print(f"batch 1, 48x48: onnxruntime p50 {np.percentile(ort, 50):.2f} ms p99 {np.percentile(ort, 99):.2f} ms "
              f"({1000 / np.mean(ort):.0f} frames/s incl. pre/post-processing)")
        print(f"batch 1, 48x48: torch eager p50 {np.percentile(pt, 50):.2f} ms p99 {np.percentile(pt, 99):.2f} ms "
              f"({1000 / np.mean(pt):.0f} frames/s)")
        print(f"onnxruntime / torch speed-up (p50): {np.percentile(pt, 50) / np.percentile(ort, 50):.2f}x")
        probe = subprocess.run([sys.executable, "-c", TORCH_FREE_PROBE, str(onnx_path), str(args.n)],
                               capture_output=True, text=True, check=True)
        r = json.loads(probe.stdout.strip().splitlines()[-1])
        print(f"torch-free runtime process: torch imported = {r['torch_imported']}, peak RSS {r['peak_rss_mb']:.0f} MB, "
              f"p50 {r['p50_ms']:.2f} ms")


if __name__ == "__main__":
    main()
