"""GPU figures of issues 12 and 13, printed: training steps/s at batch 64 and torch batch-1 latency.

    python benchmarks/bench_cuda.py [--part inference training data] [--batch 64] [--steps 100]

Needs a CUDA GPU. Parts:

* inference: per frame, the torch backend's runner (`load_detector(backend="torch")`, the shipped
  SPLIT-SPAIR checkpoint; `load_segmenter(backend="torch")`, the shipped MONet export rebuilt in
  torch), fp16 autocast, eager beside replayed CUDA graphs (backends.torch_runner), p50 / p99 of
  `runner.run` on a batch-1 model input; the whole API call on a 640 x 480 frame with the torch
  and ONNX Runtime (CPU) backends; and how far fp16 on the GPU moves the outputs from ONNX
  Runtime's fp32 (detector: count agreement on 200 training-distribution scenes).
* training: model steps/s at `--batch` on batches made beforehand (data cost apart), at a model
  step past every schedule (so that the graph may be recorded): eager fp32 (TF32 matmuls, as the
  trainer), eager bf16 autocast, and the step recorded as a CUDA graph (training.graphed_step, as
  `train.cuda_graph`); CUDA kernels per eager step counted by torch.profiler.
* data: images/s of the trainer's data path (trainer.batches: scenes + the model's batch extras)
  with 0, 4, 8 and 12 worker processes, without a model.
"""
from __future__ import annotations

import argparse
import functools
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from bench_runtime import timed  # benchmarks/, beside this script

from split_perception.models import checkpoint as ckpt
from split_perception.training import graphed_step, trainer

ROOT = Path(__file__).resolve().parents[1]
SHIPPED = ROOT / "split_perception" / "weights" / "split_spair.safetensors"
STEP = 5000  # past the schedules of every shipped config (model.schedules_end)
DEV = torch.device("cuda")


def percentiles(times: list[float]) -> str:
    ms = np.array(times) * 1e3
    return f"p50 {np.percentile(ms, 50):6.3f} ms, p99 {np.percentile(ms, 99):6.3f} ms"


# ------------------------------------------------------------------ inference
def bench_inference(frames: int) -> None:
    from split_perception import load_detector, load_segmenter

    rng = np.random.default_rng(0)
    frame = (rng.random((480, 640, 3)) * 255).astype(np.uint8)
    for name, load in (("detector (SPLIT-SPAIR)", load_detector), ("segmenter (MONet)", load_segmenter)):
        api = load(backend="torch")
        runner = api.runner
        size = runner.metadata["input_size"]
        x = rng.random((1, 3, size, size), dtype=np.float32)
        print(f"{name}: torch on {runner.device}, model input {size} px")
        runner.use_graphs = False
        eager = timed(lambda: runner.run(x), frames)
        print(f"  runner.run, eager fp16:          {percentiles(eager)}")
        runner.use_graphs = True
        graphed = timed(lambda: runner.run(x), frames)
        note = runner.graph_note or f"{len(runner._recordings)} recording(s)"
        print(f"  runner.run, CUDA graph fp16:     {percentiles(graphed)}  ({note}); "
              f"eager / graph p50 {np.median(eager) / np.median(graphed):.1f}x")
        ort = load(backend="onnxruntime")
        print(f"  API call, 640 x 480 frame, torch:       {percentiles(timed(lambda: api(frame), frames))}")
        print(f"  API call, 640 x 480 frame, onnxruntime: {percentiles(timed(lambda: ort(frame), frames))} (this machine's CPU)")
        a, b = runner.run(x), ort.runner.run(x)
        diffs = ", ".join(f"{k} {np.abs(a[k] - b[k]).max():.2g}" for k in a)
        print(f"  largest |torch fp16 - onnxruntime fp32| per output: {diffs}")
        if name.startswith("detector"):
            detector_agreement(api, ort)


def detector_agreement(api, ort, n: int = 200) -> None:
    run = trainer.load_run_config(ROOT / "config/train_split_spair.yaml", (), tempfile.mkdtemp())
    stream = trainer.make_stream(run.data, n)
    x = stream.batch(123)
    frames = (x.permute(0, 2, 3, 1).numpy() * 255).round().astype(np.uint8)
    same = sum(len(api(f)) == len(ort(f)) for f in frames)
    print(f"  object counts equal, torch CUDA fp16 vs onnxruntime fp32: {same} / {n} training-distribution scenes")


# ------------------------------------------------------------------ training
def cuda_kernels(fn) -> int:
    with torch.profiler.profile(activities=[torch.profiler.ProfilerActivity.CPU, torch.profiler.ProfilerActivity.CUDA]) as prof:
        fn()
        torch.cuda.synchronize()
    return sum(1 for e in prof.events() if e.device_type == torch.autograd.DeviceType.CUDA)


def bench_training(config: str, overrides: tuple[str, ...], batch: int, steps: int, label: str) -> None:
    run = trainer.load_run_config(ROOT / config, list(overrides), tempfile.mkdtemp())
    batch = run.train.batch_size if "train.batch_size" in " ".join(overrides) else batch
    _, cls = ckpt.model_registry()[run.model_type]
    extras_fn = functools.partial(cls.batch_extras, run.model) if hasattr(cls, "batch_extras") else None
    made = list(trainer.batches(trainer.make_stream(run.data, batch), 0, 8, 8, extras_fn))
    pool = [(x.to(DEV), {k: v.to(DEV) for k, v in e.items()}) for _, x, e in made]
    model_step = max(STEP, cls.schedules_end(run.model))
    print(f"{label}: {config} {' '.join(overrides)}, batch {batch}, model step {model_step}")
    for mode in ("eager fp32 (TF32)", "eager bf16 autocast", "CUDA graph fp32 (TF32)"):
        torch.manual_seed(0)
        model = cls(run.model).to(DEV).train()
        if config.endswith("train_split_spair.yaml"):
            trainer.load_init_weights(model, run, SHIPPED)
        graph = mode.startswith("CUDA graph")
        adam = trainer.make_adam(model, run, 1, capturable=graph)
        adam.set_lr(run.train.lr)
        bf16 = "bf16" in mode

        def one_step(x, e):
            with torch.autocast("cuda", dtype=torch.bfloat16, enabled=bf16):
                terms = model(x, step=model_step, **e)
            adam.zero_grad()
            terms["loss"].backward()
            norm = adam.clip(run.train.grad_clip)
            adam.update()
            return terms, norm

        step = graphed_step.GraphedStep(one_step) if graph else one_step
        i = 0

        def next_step():
            nonlocal i
            out = step(*pool[i % len(pool)])
            i += 1
            return out

        try:
            for _ in range(5):  # warm-up (and, for the graph, its recording)
                next_step()
            torch.cuda.synchronize()
            kernels = "" if graph else f", {cuda_kernels(next_step)} CUDA kernels per step"
            n = steps if graph else max(steps // 3, 10)
            t0 = time.perf_counter()
            for _ in range(n):
                terms, _ = next_step()
            loss = float(terms["loss"].detach())  # synchronises
            rate = n / (time.perf_counter() - t0)
            print(f"  {mode:26} {rate:7.1f} steps/s ({rate * batch:8.0f} images/s), loss {loss:.4g}{kernels}")
        except RuntimeError as e:
            print(f"  {mode:26} failed: {str(e).splitlines()[0]}")


# ------------------------------------------------------------------ data
def bench_data(batch: int, workers: tuple[int, ...]) -> None:
    run = trainer.load_run_config(ROOT / "config/train_split_spair.yaml", (), tempfile.mkdtemp())
    _, cls = ckpt.model_registry()[run.model_type]
    extras_fn = functools.partial(cls.batch_extras, run.model)
    print(f"data path (trainer.batches, scenes + spectral background fit), batch {batch}:")
    for w in workers:
        n = 12 if w == 0 else 8 * w + 8
        it = trainer.batches(trainer.make_stream(run.data, batch), 0, n + 2, w, extras_fn)
        next(it), next(it)  # workers started, first batches out
        t0 = time.perf_counter()
        for _ in it:
            pass
        rate = n * batch / (time.perf_counter() - t0)
        print(f"  {w:2d} workers: {rate:7.0f} images/s = {rate / batch:5.1f} batches/s")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--part", nargs="+", default=["inference", "training", "data"], choices=["inference", "training", "data"])
    ap.add_argument("--batch", type=int, default=64)
    ap.add_argument("--steps", type=int, default=100, help="timed steps of the recorded graph (eager: a third)")
    ap.add_argument("--frames", type=int, default=300, help="timed frames per inference figure")
    args = ap.parse_args()
    if not torch.cuda.is_available():
        raise SystemExit("bench_cuda.py needs a CUDA GPU (see benchmarks/bench_detector.py for the CPU)")
    torch.backends.cuda.matmul.allow_tf32 = True  # as the trainer
    torch.backends.cudnn.allow_tf32 = True
    print(f"machine: {torch.cuda.get_device_name()} (CUDA {torch.version.cuda}), torch {torch.__version__}")
    if "inference" in args.part:
        bench_inference(args.frames)
    if "training" in args.part:
        rows = [("config/train_split_spair.yaml", (), "SPLIT-SPAIR last stage (train_glimpses 12)"),
                ("config/train_split_spair.yaml", ("model.train_glimpses=0",), "SPLIT-SPAIR last stage, every cell"),
                ("config/train_split_spair_stage1.yaml", (), "SPLIT-SPAIR stage 1 (4x4 grid)"),
                ("config/train_spair.yaml", (), "SPAIR (4x4 grid)"),
                ("config/train_monet_rn18.yaml", ("train.batch_size=32",), "MONet, ResNet18 attention (the slot default)")]
        for config, overrides, label in rows:
            bench_training(config, overrides, args.batch, args.steps, label)
    if "data" in args.part:
        bench_data(args.batch, (0, 4, 8, 12))


if __name__ == "__main__":
    main()
