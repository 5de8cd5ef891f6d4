"""SPLIT-SPAIR / SPAIR training speed, measured side by side in one run; prints its figures.

    python benchmarks/bench_detector.py [--batch 16] [--steps 20]

Training steps/s on the procedural scenes (this machine's CPU or GPU). Inference latency,
throughput and memory of every backend: benchmarks/bench_runtime.py.
"""
from __future__ import annotations

import argparse
import os
import platform
import time


def train_steps_per_s(split: bool, batch: int, steps: int, device: str) -> float:
    import torch

    from split_perception.models.spair import SpairConfig, SplitSpair
    from split_perception.training.trainer import DataConfig, SceneStream

    # past the background warm-up, so the full model (cells, glimpses, local path) is timed
    cfg = SpairConfig(split=split, bg_warmup_steps=0)
    model = SplitSpair(cfg).to(device)
    opt = torch.optim.Adam(model.parameters(), 1e-4)
    stream = SceneStream(DataConfig(), batch)
    batches = [stream.batch(i).to(device) for i in range(steps + 2)]
    for step, x in enumerate(batches):
        if step == 2:
            if device == "cuda":
                torch.cuda.synchronize()
            t0 = time.perf_counter()
        out = model(x, step=step)
        opt.zero_grad()
        out["loss"].backward()
        opt.step()
    if device == "cuda":
        torch.cuda.synchronize()
    return steps / (time.perf_counter() - t0)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--batch", type=int, default=16)
    ap.add_argument("--steps", type=int, default=20)
    args = ap.parse_args()
    import torch

    device = "cuda" if torch.cuda.is_available() else "cpu"
    where = torch.cuda.get_device_name() if device == "cuda" else f"{platform.machine()} CPU, {os.cpu_count()} cores, {torch.get_num_threads()} torch threads"
    print(f"machine: {where}")
    for split in (True, False):
        rate = train_steps_per_s(split, args.batch, args.steps, device)
        print(f"train steps/s, batch {args.batch}, {'SPLIT-SPAIR' if split else 'SPAIR      '}: {rate:.2f} ({rate * args.batch:.0f} images/s)")


if __name__ == "__main__":
    main()
