"""Scene generation speed on one core: prints scenes/s and ms/scene for each scene family and for
every background kind at 48 px, and saves a contact sheet of the kinds.

    python benchmarks/bench_scenes.py [--n 2000] [--sheet docs/scene_kinds.png]
"""
import argparse
import os
import platform
import time

os.environ.setdefault("OMP_NUM_THREADS", "1")

import cv2  # noqa: E402

cv2.setNumThreads(1)

from split_perception.training import scenes  # noqa: E402

CASES = {
    **{f"multi_object 48px {k}": scenes.MultiObjectConfig(background=k) for k in scenes.BACKGROUNDS},
    "multi_object 48px shapes_test": scenes.MultiObjectConfig(sprites=scenes.HELD_OUT_SPRITES),
    "multi_object 48px texture shaded": scenes.MultiObjectConfig(background="texture", object_shading=0.4),
    "multi_object 64px solid": scenes.MultiObjectConfig(image_size=64, sprite_size=18),
    "multi_object 64px checkerboard": scenes.MultiObjectConfig(image_size=64, sprite_size=18, background="checkerboard"),
    "multi_object 64px texture": scenes.MultiObjectConfig(image_size=64, sprite_size=18, background="texture"),
    "room 64px": scenes.RoomConfig(),
}


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--n", type=int, default=2000)
    ap.add_argument("--sheet", default="docs/scene_kinds.png", help="contact sheet path ('' to skip)")
    args = ap.parse_args()
    print(f"machine: {platform.processor() or platform.machine()}, {os.cpu_count()} cores, 1 thread used")
    for name, cfg in CASES.items():
        for i in range(20):  # warm the sprite and texture caches
            scenes.generate(cfg, 0, i)
        t0 = time.perf_counter()
        for i in range(args.n):
            scenes.generate(cfg, 1, i)
        dt = time.perf_counter() - t0
        print(f"{name:36s} {args.n / dt:8.0f} scenes/s {1e3 * dt / args.n:7.3f} ms/scene")
    if args.sheet:
        sheet = scenes.contact_sheet()
        os.makedirs(os.path.dirname(args.sheet) or ".", exist_ok=True)
        cv2.imwrite(args.sheet, cv2.cvtColor(sheet, cv2.COLOR_RGB2BGR))
        print(f"contact sheet: {args.sheet} ({sheet.shape[1]}x{sheet.shape[0]})")


if __name__ == "__main__":
    main()
