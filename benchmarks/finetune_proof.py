"""Proof that the retraining loop helps (issue 15 item 5): fine-tune the shipped detector on a world it
does badly on and measure count accuracy there and on its old world, before and after.

    python benchmarks/finetune_proof.py [--out runs/finetune_proof] [--steps 2000] [--n 300] [--threads 1]
        [--procedural-fraction 0.125] [--lr-decay-steps 1000] [--json docs/finetune_proof.json]

The new world: objects seen from farther away. The shipped SPLIT-SPAIR was trained on objects 12-16 px
wide in 48 px scenes (training/scenes.py, sprite_size 14 +- 2); here they are 6-10 px (sprite_size 8 +- 2),
on every training background kind. Everything else (digits and drawn shapes, 0-5 per scene, train
palette) is as in training. The shipped model misses many of them (count accuracy 0.39; 0.76 on its own world).

Steps, each with the command it runs (printed):
1. the new world's dataset folders, one per background kind, with `split-perception dataset generate
   --sprite-size 8` (ground truth is written but training never reads it: fine-tuning is unsupervised);
2. count accuracy of the shipped detector, `load_detector()`, on the new world's test scenes (seed 10000,
   never trained on; `--n` per background kind) and on the old world: every `split-perception eval` test
   set (the same configs and seed, `--n` each);
3. `split-perception train config/train_split_spair.yaml --init split_perception/weights/split_spair.safetensors`
   on those folders, 2 of every batch of 16 procedural scenes of the old world (data.procedural_fraction
   0.125), `--steps` steps with `--threads` CPU threads, the learning rate decaying over the last 1000
   (timed: wall and CPU time);
4. `split-perception export` of the fine-tuned checkpoint, then the same measurements through
   `load_detector(that .onnx)`: the file `split-perception deploy` would place.

Count accuracy = share of scenes where the number of detections (presence > 0.5, NMS 0.5, as
load_detector() returns them) equals the true number of objects. Prints a table and writes JSON
(`--json`, default OUT/finetune_proof.json).
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import shlex
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
SHIPPED = "split_perception/weights/split_spair.safetensors"
CONFIG = "config/train_split_spair.yaml"
TEST_SEED = 10_000  # training/evaluate.py's test seed; training streams use seeds < 10000
NEW_SPRITE_SIZE = 8  # +- 2 (the default jitter): 6-10 px objects, against 12-16 px in training
TARGET_GAIN, TARGET_MAX_LOSS = 0.20, 0.05


def cli() -> list[str]:
    exe = Path(sys.executable).with_name("split-perception")
    return [str(exe)] if exe.is_file() else [sys.executable, "-m", "split_perception.cli"]


def child_cpu_seconds() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def run(cmd: list[str], log: Path | None = None) -> tuple[float, float]:
    """Run a command (printed); returns its (wall, CPU) seconds. Its output goes to `log` if given."""
    print("$ " + shlex.join(cmd), flush=True)
    t0, cpu0 = time.perf_counter(), child_cpu_seconds()
    if log:
        with open(log, "w") as f:
            subprocess.run(cmd, check=True, cwd=ROOT, stdout=f, stderr=subprocess.STDOUT)
    else:
        subprocess.run(cmd, check=True, cwd=ROOT, stdout=subprocess.DEVNULL)
    return time.perf_counter() - t0, child_cpu_seconds() - cpu0


def new_world_configs():
    from split_perception.training import scenes

    return {f"far_{bg}": scenes.MultiObjectConfig(background=bg, sprite_size=NEW_SPRITE_SIZE)
            for bg in scenes.TRAIN_BACKGROUNDS}


def old_world_configs():
    from split_perception.training.evaluate import detector_test_sets

    return detector_test_sets(48)


def count_accuracy(detector, configs: dict, n: int) -> dict:
    """{set name: share of n test scenes (seed TEST_SEED) with as many detections as objects}."""
    from split_perception.training import scenes

    out = {}
    for name, cfg in configs.items():
        hits = 0
        for i in range(n):
            s = scenes.generate(cfg, TEST_SEED, i)
            hits += len(detector(s.image)) == s.count
        out[name] = hits / n
    return out


def measure(detector, n: int) -> dict:
    new, old = count_accuracy(detector, new_world_configs(), n), count_accuracy(detector, old_world_configs(), n)
    return {"new": new, "old": old, "new_mean": float(np.mean(list(new.values()))),
            "old_mean": float(np.mean(list(old.values())))}


def main() -> int:
    ap = argparse.ArgumentParser(description=" ".join(__doc__.split("\n\n")[0].split()))
    ap.add_argument("--out", default="runs/finetune_proof", help="work folder: data/, run/, model.onnx")
    ap.add_argument("--steps", type=int, default=2000, help="fine-tuning steps (batch 16)")
    ap.add_argument("--n", type=int, default=300, help="test scenes per set")
    ap.add_argument("--count", type=int, default=500, help="new-world scenes per background kind in the dataset")
    ap.add_argument("--threads", type=int, default=1, help="training CPU threads (train.threads)")
    ap.add_argument("--procedural-fraction", type=float, default=0.125,
                    help="data.procedural_fraction: share of every batch made of old-world procedural scenes")
    ap.add_argument("--lr", type=float, default=None, help="learning rate (default: the config's)")
    ap.add_argument("--lr-decay-steps", type=int, default=1000,
                    help="train.lr_decay_steps: the last N steps lower the learning rate linearly to 0.1x (0: constant)")
    ap.add_argument("--json", default=None, help="results file (default OUT/finetune_proof.json)")
    args = ap.parse_args()
    os.chdir(ROOT)
    out = Path(args.out)
    (out / "data").mkdir(parents=True, exist_ok=True)

    from split_perception import load_detector
    from split_perception.training import scenes

    # 1. the new world's dataset folders
    folders = []
    for bg in scenes.TRAIN_BACKGROUNDS:
        folder = out / "data" / f"far_{bg}"
        folders.append(str(folder))
        meta = folder / "dataset.json"
        if meta.is_file() and json.loads(meta.read_text()).get("count") == args.count:
            continue
        run(cli() + ["dataset", "generate", str(folder), "--count", str(args.count), "--background", bg,
                     "--sprite-size", str(NEW_SPRITE_SIZE)])

    # 2. before
    t0 = time.perf_counter()
    before = measure(load_detector(), args.n)
    print(f"measured the shipped detector in {time.perf_counter() - t0:.0f} s", flush=True)

    # 3. fine-tune
    run_dir = out / "run"
    train_cmd = cli() + [
        "train", CONFIG, "--init", SHIPPED, "--out", str(run_dir), "--fresh",
        "--set", "data.kind=folder", "--set", f"data.folder=[{', '.join(folders)}]",
        "--set", f"data.procedural_fraction={args.procedural_fraction}",
        "--set", f"train.steps={args.steps}", "--set", f"train.threads={args.threads}",
    ] + (["--set", f"train.lr={args.lr}"] if args.lr else []) + (
        ["--set", f"train.lr_decay_steps={args.lr_decay_steps}"] if args.lr_decay_steps else [])
    train_s, train_cpu = run(train_cmd, log=out / "train.log")
    print(f"fine-tuned {args.steps} steps in {train_s / 60:.1f} min ({train_cpu / 60:.1f} min of CPU time)", flush=True)

    # 4. after, through the exported ONNX file (what deploy places)
    onnx = out / "model.onnx"
    run(cli() + ["export", str(run_dir / "checkpoint.safetensors"), "-o", str(onnx)])
    after = measure(load_detector(onnx), args.n)

    rows = [(name, before["new"][name], after["new"][name]) for name in before["new"]]
    rows.append(("**new world, mean**", before["new_mean"], after["new_mean"]))
    rows += [(name, before["old"][name], after["old"][name]) for name in before["old"]]
    rows.append(("**old world, mean**", before["old_mean"], after["old_mean"]))
    print(f"\ncount accuracy, {args.n} test scenes per set (seed {TEST_SEED})")
    print("| set | shipped | fine-tuned | change |\n| --- | --- | --- | --- |")
    for name, b, a in rows:
        print(f"| {name} | {b:.3f} | {a:.3f} | {100 * (a - b):+.1f} |")
    gain = after["new_mean"] - before["new_mean"]
    loss = before["old_mean"] - after["old_mean"]
    worst = max(before["old"], key=lambda k: before["old"][k] - after["old"][k])
    worst_loss = before["old"][worst] - after["old"][worst]
    verdict = {
        "new_world_gain_points": round(100 * gain, 1),
        "old_world_loss_points": round(100 * loss, 1),
        "worst_old_set": worst, "worst_old_set_loss_points": round(100 * worst_loss, 1),
        "gain_met": gain >= TARGET_GAIN, "loss_met": loss <= TARGET_MAX_LOSS,
    }
    print(f"\nnew world {100 * gain:+.1f} points (target >= +20), old world {-100 * loss:+.1f} points on average "
          f"(target >= -5; worst set {worst} {-100 * worst_loss:+.1f}); fine-tuning {train_s / 60:.1f} min "
          f"({train_cpu / 60:.1f} min CPU), "
          f"{args.steps} steps, {args.threads} thread(s)")
    report = {
        "command": shlex.join([sys.executable, *sys.argv]),
        "train_command": shlex.join(train_cmd), "train_seconds": round(train_s, 1),
        "train_cpu_seconds": round(train_cpu, 1), "steps": args.steps,
        "threads": args.threads, "procedural_fraction": args.procedural_fraction, "lr_decay_steps": args.lr_decay_steps,
        "n_per_set": args.n, "test_seed": TEST_SEED,
        "new_world": f"sprite_size {NEW_SPRITE_SIZE} +- 2 px on every training background kind (train palette), "
                     f"{args.count} scenes per kind in the dataset",
        "machine": " ".join(filter(None, [platform.machine(), platform.processor(), f"{os.cpu_count()} cores"])),
        "before": before, "after": after, "verdict": verdict,
    }
    path = Path(args.json) if args.json else out / "finetune_proof.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(report, indent=2) + "\n")
    print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
