"""Scene generation speed on one core: prints scenes/s for each scene family.

    python benchmarks/bench_scenes.py [--n 2000]
"""
import argparse
import os
import platform
import time

os.environ.setdefault("OMP_NUM_THREADS", "1")

from split_perception.training import scenes  # noqa: E402

CASES = {
    "multi_object 48px solid": scenes.MultiObjectConfig(),
    "multi_object 48px checkerboard": scenes.MultiObjectConfig(background="checkerboard"),
    "multi_object 64px solid": scenes.MultiObjectConfig(image_size=64, sprite_size=18),
    "multi_object 64px checkerboard": scenes.MultiObjectConfig(image_size=64, sprite_size=18, background="checkerboard"),
    "room 64px": scenes.RoomConfig(),
}


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--n", type=int, default=2000)
    args = ap.parse_args()
    print(f"machine: {platform.processor() or platform.machine()}, {os.cpu_count()} cores, 1 thread used")
    for name, cfg in CASES.items():
        scenes.generate(cfg, 0, 0)  # warm the sprite caches
        t0 = time.perf_counter()
        for i in range(args.n):
            scenes.generate(cfg, 1, i)
        dt = time.perf_counter() - t0
        print(f"{name:34s} {args.n / dt:8.0f} scenes/s")


if __name__ == "__main__":
    main()
