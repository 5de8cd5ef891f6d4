"""MONet vs MONet-RN50* efficiency against the slot count K (the thesis's fig. 5.12 / table 5.5 in kind).

    python benchmarks/bench_monet_efficiency.py [--slots 7 11 14 18] [--batch 4] [--out docs/]

For each attention network and K, in one run on one machine, it prints:
* attention-module FLOPs per 64x64 image (torch's FlopCounterMode: matmuls and convolutions),
* full training step time (forward + backward + Adam step), median of timed steps,
* parameters (attention / whole model),
* peak memory: CUDA max allocated on a GPU; on the CPU the peak RSS of a child process
  that runs only that configuration (so configurations do not inherit each other's peaks).
Writes a JSON of every figure and a PNG plot (FLOPs and step time against K).
"""
from __future__ import annotations

import argparse
import json
import platform
import subprocess
import sys
import time
from pathlib import Path

from process_memory import peak_rss_mb

ROOT = Path(__file__).resolve().parents[1]


def measure_one(attention: str, slots: int, batch: int, steps: int, device: str) -> dict:
    import torch
    from torch.utils.flop_counter import FlopCounterMode

    from split_perception.models.monet import Monet, MonetConfig

    torch.manual_seed(0)
    dev = torch.device(device)
    model = Monet(MonetConfig(attention=attention, slots=slots)).to(dev)
    x1 = torch.rand(1, 3, 64, 64, device=dev)
    model.eval()
    with torch.no_grad(), FlopCounterMode(display=False) as counter:
        model.attention(x1)
    attention_flops = counter.get_total_flops()
    model.train()
    opt = torch.optim.Adam(model.parameters(), lr=1e-4)
    x = torch.rand(batch, 3, 64, 64, device=dev)
    times = []
    for i in range(steps + 2):  # two warm-up steps
        if dev.type == "cuda":
            torch.cuda.synchronize()
        t0 = time.perf_counter()
        out = model(x)
        opt.zero_grad(set_to_none=True)
        out["loss"].backward()
        opt.step()
        if dev.type == "cuda":
            torch.cuda.synchronize()
        if i >= 2:
            times.append(time.perf_counter() - t0)
    times.sort()
    peak = torch.cuda.max_memory_allocated() / 2**20 if dev.type == "cuda" else peak_rss_mb()
    return {
        "attention": attention, "slots": slots, "batch": batch, "device": device,
        "attention_gflops_per_image": attention_flops / 1e9,
        "step_s": times[len(times) // 2],
        "params_attention_m": sum(p.numel() for p in model.attention.parameters()) / 1e6,
        "params_total_m": sum(p.numel() for p in model.parameters()) / 1e6,
        "peak_mem_mb": peak,
    }


def plot(rows: list[dict], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(10, 4))
    for att in sorted({r["attention"] for r in rows}):
        rs = sorted((r for r in rows if r["attention"] == att), key=lambda r: r["slots"])
        ks = [r["slots"] for r in rs]
        axes[0].plot(ks, [r["attention_gflops_per_image"] for r in rs], "o-", label=att)
        axes[1].plot(ks, [r["step_s"] * 1000 for r in rs], "o-", label=att)
    axes[0].set(xlabel="slots K", ylabel="attention GFLOPs / image (64x64)", title="Attention cost")
    axes[1].set(xlabel="slots K", ylabel=f"training step, ms (batch {rows[0]['batch']}, {rows[0]['device']})", title="Training step time")
    for a in axes:
        a.grid(alpha=0.3)
        a.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=100)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--slots", type=int, nargs="+", default=[7, 11, 14, 18])
    ap.add_argument("--attention", nargs="+", default=["unet", "resnet50", "resnet18"])
    ap.add_argument("--batch", type=int, default=4)
    ap.add_argument("--steps", type=int, default=5)
    ap.add_argument("--device", default="cuda" if _cuda() else "cpu")
    ap.add_argument("--out", type=Path, default=ROOT / "docs")
    ap.add_argument("--one", nargs=2, metavar=("ATTENTION", "K"), help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if args.one:
        print(json.dumps(measure_one(args.one[0], int(args.one[1]), args.batch, args.steps, args.device)))
        return 0
    rows = []
    for att in args.attention:
        for k in args.slots:
            cmd = [sys.executable, __file__, "--one", att, str(k), "--batch", str(args.batch), "--steps", str(args.steps), "--device", args.device]
            res = subprocess.run(cmd, capture_output=True, text=True, check=True)
            rows.append(json.loads(res.stdout.strip().splitlines()[-1]))
            r = rows[-1]
            print(f"{att:9s} K={k:2d}  attention {r['attention_gflops_per_image']:7.3f} GFLOPs  step {r['step_s'] * 1000:8.1f} ms  "
                  f"params {r['params_attention_m']:6.2f} M / {r['params_total_m']:6.2f} M  peak {r['peak_mem_mb']:7.0f} MB", flush=True)
    print(f"machine: {platform.machine()} {platform.processor() or ''}, device {args.device}, batch {args.batch}")
    by = {(r["attention"], r["slots"]): r for r in rows}
    for k in args.slots:
        if ("unet", k) in by and ("resnet50", k) in by:
            u, rn = by[("unet", k)], by[("resnet50", k)]
            speedup = u["step_s"] / rn["step_s"]  # the thesis's "x% faster" is this ratio minus one
            print(f"K={k:2d}: RN50* trains {speedup:.2f}x MONet's speed ({(speedup - 1) * 100:+.0f}%); "
                  f"attention FLOPs ratio RN50*/MONet {rn['attention_gflops_per_image'] / u['attention_gflops_per_image']:.2f}")
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "monet_efficiency.json").write_text(json.dumps(rows, indent=2))
    plot(rows, args.out / "monet_efficiency.png")
    print(f"wrote {args.out / 'monet_efficiency.json'} and {args.out / 'monet_efficiency.png'}")
    return 0


def _cuda() -> bool:
    import torch

    return torch.cuda.is_available()


if __name__ == "__main__":
    sys.exit(main())
