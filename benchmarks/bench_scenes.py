"""Scene generation speed on one core: prints scenes/s and ms/scene for each scene family, for
every background kind at 48 px and every room kind at 64 px, and saves contact sheets of the
background kinds and of the richer room kinds.

    python benchmarks/bench_scenes.py [--n 2000] [--sheet docs/scene_kinds.png] [--room-sheet docs/room_kinds.png]
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
    **{f"room 64px {k}": scenes.room_kind_config(k) for k in scenes.ROOM_TEST_KINDS},
}


def save_sheet(path, sheet):
    os.makedirs(os.path.dirname(path) or ".", exist_ok=True)
    cv2.imwrite(path, cv2.cvtColor(sheet, cv2.COLOR_RGB2BGR))
    print(f"contact sheet: {path} ({sheet.shape[1]}x{sheet.shape[0]})")


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--n", type=int, default=2000)
    ap.add_argument("--sheet", default="docs/scene_kinds.png", help="contact sheet path ('' to skip)")
    ap.add_argument("--room-sheet", default="docs/room_kinds.png", help="room contact sheet path ('' to skip)")
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
        save_sheet(args.sheet, scenes.contact_sheet())
    if args.room_sheet:  # 24 room_rich scenes, 8 of each held-out room kind
        save_sheet(args.room_sheet, scenes.room_contact_sheet())


if __name__ == "__main__":
    main()
