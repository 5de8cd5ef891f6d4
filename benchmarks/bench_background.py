"""How well does the spectral background model draw each background kind, and keep objects out?

    python benchmarks/bench_background.py [--n 64] [--keep 4,8,16,32,48] [--keep 24,24,24 --factor 3 --floor 0.06]

For every background kind (training and held-out), on procedural scenes with 1-5 objects whose
true background is known (scenes.background_image), prints the MSE of
split_perception.models.blocks.spectral_background to the true background on background pixels
and under the objects, the residual left on the objects (what the glimpses must explain), and
the time per image. Each --keep gives one fit schedule; they are measured side by side.
"""
from __future__ import annotations

import argparse
import os
import platform
import time

import numpy as np
import torch

from split_perception.models.blocks import spectral_background
from split_perception.training import scenes


def scenes_with_truth(kind: str, n: int, seed: int = 3):
    cfg = scenes.MultiObjectConfig(background=kind, min_objects=1)
    to = lambda a: torch.from_numpy(np.ascontiguousarray(a)).permute(2, 0, 1).float() / 255  # noqa: E731
    sc = [scenes.generate(cfg, seed, i) for i in range(n)]
    x = torch.stack([to(s.image) for s in sc])
    truth = torch.stack([to(scenes.background_image(cfg, seed, i)) for i in range(n)])
    return x, truth, torch.stack([torch.from_numpy(s.labels > 0) for s in sc])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, default=64, help="scenes per kind")
    ap.add_argument("--keep", action="append", help="comma-separated bins per fit (repeatable)")
    ap.add_argument("--factor", type=float, action="append", help="outlier factor per --keep (default 2)")
    ap.add_argument("--floor", type=float, action="append", help="outlier floor per --keep (default 0.04)")
    args = ap.parse_args()
    schedules = [tuple(int(k) for k in s.split(",")) for s in (args.keep or ["4,8,16,32,48"])]
    factors = args.factor or [2.0] * len(schedules)
    floors = args.floor or [0.04] * len(schedules)
    print(f"machine: {platform.machine()} CPU, {os.cpu_count()} cores, {torch.get_num_threads()} torch threads; {args.n} scenes per kind")
    for keep, factor, floor in zip(schedules, factors, floors):
        print(f"\nschedule keep={keep} factor={factor} floor={floor}")
        print(f"{'kind':14s} {'MSE bg px':>10s} {'MSE under obj':>14s} {'obj residual':>13s} {'ms/image':>9s}")
        rows = []
        for kind in scenes.TRAIN_BACKGROUNDS + scenes.HELD_OUT_BACKGROUNDS:
            x, truth, objects = scenes_with_truth(kind, args.n)
            t0 = time.perf_counter()
            est = spectral_background(x, keep, factor, floor)
            ms = (time.perf_counter() - t0) * 1000 / args.n
            err = ((est - truth) ** 2).mean(1)
            res = ((est - x) ** 2).mean(1)
            row = (float(err[~objects].mean()), float(err[objects].mean()), float(res[objects].mean()), ms)
            rows.append(row)
            name = kind + ("*" if kind in scenes.HELD_OUT_BACKGROUNDS else "")
            print(f"{name:14s} {row[0]:10.4f} {row[1]:14.4f} {row[2]:13.4f} {row[3]:9.2f}")
        m = np.mean(rows, 0)
        print(f"{'mean':14s} {m[0]:10.4f} {m[1]:14.4f} {m[2]:13.4f} {m[3]:9.2f}   (* held-out kind)")


if __name__ == "__main__":
    main()
