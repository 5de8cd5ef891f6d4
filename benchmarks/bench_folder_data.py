"""Training data speed, folder frames vs procedural scenes: prints images/s of the trainer's own
streams (trainer.make_stream(...).batch(step), in one thread: what a data worker or the training
thread pays per batch), including the model's batch extras (SPLIT-SPAIR's spectral background fit).

    python benchmarks/bench_folder_data.py [--steps 60] [--batch 16] [--image-size 48]

Folders are written to a temp dir first: 48 px PNGs (as `dataset generate` writes them) and
640x480 JPEGs and PNGs (as a robot camera's frames are recorded / imported, decoded and resized
to the model's input on the fly).
"""
import argparse
import os
import platform
import tempfile
import time
from pathlib import Path

os.environ.setdefault("OMP_NUM_THREADS", "1")

import cv2  # noqa: E402
import torch  # noqa: E402

cv2.setNumThreads(1)
torch.set_num_threads(1)

from split_perception.frames.dataset_folder import DatasetWriter  # noqa: E402
from split_perception.models.spair import SpairConfig, SplitSpair  # noqa: E402
from split_perception.training import scenes, trainer  # noqa: E402


def write_folder(root: Path, n: int, size: tuple[int, int], image_format: str) -> Path:
    cfg = scenes.MultiObjectConfig(background="texture")
    with DatasetWriter(root, image_format=image_format) as w:
        for i in range(n):
            img = scenes.generate(cfg, 7, i).image
            if img.shape[1::-1] != size:
                img = cv2.resize(img, size, interpolation=cv2.INTER_LINEAR)
            w.add(img)
    return root


def rate(data: trainer.DataConfig, batch: int, steps: int, extras, warm: int = 2) -> float:
    stream = trainer.make_stream(data, batch)
    for s in range(10_000, 10_000 + warm):  # warm caches (sprites, textures; decoded frames if on)
        extras(stream.batch(s))
    t0 = time.perf_counter()
    for s in range(steps):
        extras(stream.batch(s))
    return steps * batch / (time.perf_counter() - t0)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--steps", type=int, default=60)
    ap.add_argument("--batch", type=int, default=16)
    ap.add_argument("--image-size", type=int, default=48)
    ap.add_argument("--frames", type=int, default=400, help="frames per folder")
    args = ap.parse_args()
    cfg = SpairConfig(image_size=args.image_size, background="spectral")

    def extras(x):
        return SplitSpair.batch_extras(cfg, x)

    print(f"machine: {platform.processor() or platform.machine()}, {os.cpu_count()} cores, 1 thread; "
          f"batch {args.batch}, {args.image_size} px, with the spectral background fit")
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        folders = {
            "folder 48px png": write_folder(tmp / "png48", args.frames, (48, 48), "png"),
            "folder 640x480 jpg": write_folder(tmp / "jpg640", args.frames, (640, 480), "jpg"),
            "folder 640x480 png": write_folder(tmp / "png640", args.frames, (640, 480), "png"),
        }
        base = dict(image_size=args.image_size, holdout_every=10)
        # warm: enough steps for the cache to hold every frame (cold: cache off, every draw decoded)
        warm = 4 * args.frames // args.batch
        cases = {"procedural multi_object (train backgrounds)": (trainer.DataConfig(**{**base, "holdout_every": 0}), 2)}
        for name, p in folders.items():
            cases[f"{name}, cold (cache_mb=0)"] = (trainer.DataConfig(kind="folder", folder=str(p), cache_mb=0, **base), 2)
            cases[f"{name}, cached (default)"] = (trainer.DataConfig(kind="folder", folder=str(p), **base), warm)
        jpg = str(folders["folder 640x480 jpg"])
        cases["640x480 jpg + 50% procedural, cold"] = (trainer.DataConfig(
            kind="folder", folder=jpg, procedural_fraction=0.5, cache_mb=0, **base), 2)
        cases["640x480 jpg + 50% procedural, cached"] = (trainer.DataConfig(
            kind="folder", folder=jpg, procedural_fraction=0.5, **base), warm)
        cases["two folders (48px png + 640x480 jpg), cold"] = (trainer.DataConfig(
            kind="folder", folder=(str(folders["folder 48px png"]), jpg), cache_mb=0, **base), 2)
        for name, (data, warm_steps) in cases.items():
            r = rate(data, args.batch, args.steps, extras, warm_steps)
            print(f"{name:48s} {r:8.0f} images/s {1e3 / r:7.2f} ms/image")


if __name__ == "__main__":
    main()
