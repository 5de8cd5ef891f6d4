"""Deployment runtime benchmark: both models, every backend available here, one run.

    python benchmarks/bench_runtime.py [--n 300] [--threads 0] [--out docs/runtime_bench.json]

Per model (SPLIT-SPAIR 48x48; MONet-RN50* and the ResNet18 default, 64x64, K = 7) and per
backend (tensorrt when installed with a GPU, onnxruntime, torch eager) it prints:
* latency p50 / p99 at batch 1 through the public API (pre-processing, graph, post-processing)
  and for the graph alone,
* throughput at batch 8 (graph, frames/s; ONNX exported with a dynamic batch axis),
* the peak RSS of the process, which runs only that backend (so the onnxruntime and
  tensorrt figures are of processes that never import torch; the child checks that).
The shipped SPLIT-SPAIR weights are used; both MONet models are randomly initialised at the
issue's 64 x 64 with K = 7 (RN50* weights are not shipped, and the ResNet18 default ships as ONNX
only, without the checkpoint a dynamic-batch export needs; speed does not depend on the values).
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
from process_memory import peak_rss_mb  # benchmarks/, beside this script

ROOT = Path(__file__).resolve().parents[1]


def timed(fn, n: int, warmup: int = 10) -> list[float]:
    """Seconds of each of n calls of fn, after `warmup` untimed ones (also used by bench_cuda.py)."""
    for _ in range(warmup):
        fn()
    out = []
    for _ in range(n):
        t0 = time.perf_counter()
        fn()
        out.append(time.perf_counter() - t0)
    return out


MODELS = {
    "split_spair": {"api": "detector", "weights": "split_spair.safetensors", "size": 48},
    "monet_rn18": {"api": "segmenter", "weights": None, "size": 64, "attention": "resnet18"},
    "monet_rn50": {"api": "segmenter", "weights": None, "size": 64, "attention": "resnet50"},
}


def child(model: str, backend: str, static: str, dynamic: str, frames_file: str, n: int, threads: int) -> dict:
    """Runs in its own process: loads one backend, measures, reports peak RSS."""
    if backend == "torch":
        import torch

        if threads:
            torch.set_num_threads(threads)
    from split_perception import load_detector, load_segmenter
    from split_perception.backends import open_runner

    frames = np.load(frames_file)
    load = load_detector if MODELS[model]["api"] == "detector" else load_segmenter
    api = load(static, backend=backend)
    size = MODELS[model]["size"]
    x1 = np.random.default_rng(0).random((1, 3, size, size), dtype=np.float32)
    x8 = np.random.default_rng(1).random((8, 3, size, size), dtype=np.float32)

    def timed_ms(fn, reps):
        return np.array(timed(fn, reps, warmup=min(20, reps))) * 1000

    i = iter(range(10**9))
    api_ms = timed_ms(lambda: api(frames[next(i) % len(frames)]), n)
    graph_ms = timed_ms(lambda: api.runner.run(x1), n)
    batch_runner = open_runner(Path(dynamic), backend) if backend != "torch" else api.runner
    b8_ms = timed_ms(lambda: batch_runner.run(x8), max(n // 8, 10))
    return {
        "model": model, "backend": api.backend, "provider": getattr(api.runner, "provider", ""),
        "api_p50_ms": float(np.percentile(api_ms, 50)), "api_p99_ms": float(np.percentile(api_ms, 99)),
        "graph_p50_ms": float(np.percentile(graph_ms, 50)), "graph_p99_ms": float(np.percentile(graph_ms, 99)),
        "batch8_fps": 8000.0 / float(np.median(b8_ms)),
        "peak_rss_mb": peak_rss_mb(),
        "torch_imported": "torch" in sys.modules,
    }


def prepare(model: str, d: Path) -> tuple[Path, Path, Path]:
    """(checkpoint, static ONNX, dynamic-batch ONNX) for one model."""
    import torch

    from split_perception.export import export_onnx
    from split_perception.models import checkpoint as ckpt

    spec = MODELS[model]
    weights = ROOT / "split_perception" / "weights" / (spec["weights"] or "")
    if not spec["weights"] or not weights.is_file():
        from split_perception.models.monet import MODEL_TYPE, Monet, MonetConfig

        torch.manual_seed(0)
        cfg = MonetConfig(attention=spec["attention"], slots=7, image_size=spec["size"])
        weights = d / f"{model}.safetensors"
        ckpt.save_checkpoint(weights, Monet(cfg), MODEL_TYPE, cfg, {"step": 0})
    return weights, export_onnx(weights, d / f"{model}.onnx"), export_onnx(weights, d / f"{model}_b8.onnx", dynamic_batch=True)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--n", type=int, default=300, help="timed calls per measurement")
    ap.add_argument("--threads", type=int, default=0, help="torch threads (0: default)")
    ap.add_argument("--models", nargs="+", default=list(MODELS))
    ap.add_argument("--out", type=Path, default=None, help="also write the figures as JSON here")
    ap.add_argument("--child", nargs=6, help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if args.child:
        model, backend, static, dynamic, frames, n = args.child
        print(json.dumps(child(model, backend, static, dynamic, frames, int(n), args.threads)))
        return 0

    from split_perception.backends import tensorrt_unavailable
    from split_perception.training import scenes

    backends = (["tensorrt"] if tensorrt_unavailable() is None else []) + ["onnxruntime", "torch"]
    print(f"machine: {platform.machine()}, {os.cpu_count()} cores; backends: {', '.join(backends)}"
          f" (tensorrt: {tensorrt_unavailable() or 'available'})")
    rows = []
    with tempfile.TemporaryDirectory() as d:
        d = Path(d)
        for model in args.models:
            weights, static, dynamic = prepare(model, d)
            size = MODELS[model]["size"]
            cfg = scenes.MultiObjectConfig(image_size=size) if MODELS[model]["api"] == "detector" else scenes.RoomConfig(image_size=size)
            frames = d / f"{model}_frames.npy"
            np.save(frames, np.stack([scenes.generate(cfg, 1, i).image for i in range(50)]))
            for backend in backends:
                src = weights if backend == "torch" else static
                cmd = [sys.executable, __file__, "--threads", str(args.threads), "--child", model, backend, str(src), str(dynamic), str(frames), str(args.n)]
                res = subprocess.run(cmd, capture_output=True, text=True)
                if res.returncode:
                    print(f"{model} {backend}: failed\n{res.stderr[-2000:]}")
                    continue
                r = json.loads(res.stdout.strip().splitlines()[-1])
                rows.append(r)
                print(f"{model:11s} {r['backend']:11s} api p50 {r['api_p50_ms']:7.2f} ms p99 {r['api_p99_ms']:7.2f} ms | "
                      f"graph p50 {r['graph_p50_ms']:7.2f} ms ({1000 / r['graph_p50_ms']:6.0f} fps) | batch 8 {r['batch8_fps']:6.0f} fps | "
                      f"peak RSS {r['peak_rss_mb']:5.0f} MB, torch imported: {r['torch_imported']}", flush=True)
    by = {(r["model"], r["backend"]): r for r in rows}
    for model in args.models:
        if (model, "onnxruntime") in by and (model, "torch") in by:
            o, t = by[(model, "onnxruntime")], by[(model, "torch")]
            print(f"{model}: onnxruntime / torch speed-up, graph p50 {t['graph_p50_ms'] / o['graph_p50_ms']:.2f}x, "
                  f"batch 8 {o['batch8_fps'] / t['batch8_fps']:.2f}x")
    if args.out:
        args.out.write_text(json.dumps(rows, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
