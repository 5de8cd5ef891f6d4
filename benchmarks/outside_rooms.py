"""Slot segmentation on rooms drawn by a generator the project never trained or tuned on.

    python benchmarks/outside_rooms.py [--model PATH ...] [-n 100] [--seed 7] [--size 256] [--figure PATH]

The segmenter's own test rooms (held-out kinds included) come from training/scenes.py, the
generator it learnt from. These come from OpenCV and share no code with it (the object shapes
are benchmarks/outside_scenes.py's): a wall above a floor, the horizon anywhere from a third to
three quarters down the frame, each surface its own random colour, in four kinds: `plain` (flat
colours), `lit` (a radial light falloff on the wall, the floor darker towards the back, sensor
noise), `wallpaper` (low-contrast stripes on the wall at any angle) and `tiles` (a floor of
tiles in perspective, two tones). 2-5 objects (circles, ellipses, rotated rectangles, triangles,
stars, 5-8-sided polygons, lightly shaded) of 8-20 model pixels (of 64) at any place; later ones
may overlap earlier ones (what they hide is not theirs in the ground truth), and one object in
three repeats an earlier object's colour. Each `--model` (default: the shipped segmenter) runs
through `load_segmenter()` on the square frame; printed per kind: FG-ARI and MSC of `labels`
(one label per slot) and of `segments` (each slot's connected regions), scored at the frame's
resolution. Not for tuning: nothing here is used to choose a setting.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

import cv2
import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks.outside_scenes import SHAPES, draw_object, random_colour, scene_sets  # noqa: E402
from split_perception import load_segmenter  # noqa: E402
from training import metrics  # noqa: E402

KINDS = ("plain", "lit", "wallpaper", "tiles")
MODEL_PX = 64


def room(kind: str, size: int, rng: np.random.Generator) -> np.ndarray:
    """(size, size, 3) float32 wall above floor, without objects."""
    wall, floor = random_colour(rng), random_colour(rng)
    while np.abs(wall - floor).sum() < 60:  # a visible horizon
        floor = random_colour(rng)
    horizon = int(rng.uniform(0.33, 0.75) * size)
    yy, xx = np.mgrid[0:size, 0:size].astype(np.float32) / size
    img = np.where((yy * size < horizon)[..., None], wall, floor).astype(np.float32)
    if kind == "lit":
        cx, cy = rng.uniform(0, 1), rng.uniform(0, horizon / size)
        light = 1.0 - 0.5 * np.clip(np.hypot(xx - cx, yy - cy) / 0.9, 0, 1) ** 1.5
        depth = np.clip((yy * size - horizon) / max(size - horizon, 1), 0, 1)  # 0 at the horizon, 1 in front
        shade = np.where(yy * size < horizon, light, 0.7 + 0.3 * depth)
        img = img * shade[..., None] + rng.normal(0, 4, img.shape)
    elif kind == "wallpaper":
        angle = rng.uniform(0, np.pi)
        period = rng.uniform(3, 8) * size / MODEL_PX
        along = (np.cos(angle) * xx + np.sin(angle) * yy) * size / period
        tone = np.where(np.floor(along) % 2 == 0, 1.0, rng.uniform(0.8, 0.9))
        img = np.where((yy * size < horizon)[..., None], img * tone[..., None], img)
    elif kind == "tiles":
        # tiles of equal size on the ground plane: across the floor u = x / depth, away from the camera v = 1 / depth
        depth = np.clip((yy * size - horizon) / max(size - horizon, 1), 1e-3, 1)
        tile = rng.uniform(0.15, 0.3)
        u, v = np.floor((xx - 0.5) / depth / tile), np.floor(1 / depth / tile)
        tone = np.where((u + v) % 2 == 0, 1.0, rng.uniform(0.75, 0.88))
        img = np.where((yy * size >= horizon)[..., None], img * tone[..., None], img)
    return img


def scene(kind: str, size: int, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """(frame uint8 RGB, labels int32: 0 wall and floor, i the visible pixels of object i)."""
    img = room(kind, size, rng)
    labels = np.zeros((size, size), np.int32)
    colours: list[np.ndarray] = []
    for i in range(1, int(rng.integers(2, 6)) + 1):
        radius = rng.uniform(4, 10) * size / MODEL_PX  # 8-20 model px across
        x, y = rng.uniform(radius, size - radius, 2)
        around = img[int(y), int(x)]
        if colours and rng.random() < 1 / 3:
            colour = colours[int(rng.integers(len(colours)))]  # objects of one colour, as a robot sees them
        else:
            colour = random_colour(rng)
        while np.abs(colour - around).sum() < 90:  # visible against what is behind it
            colour = random_colour(rng)
        colours.append(colour)
        labels[draw_object(img, SHAPES[int(rng.integers(len(SHAPES)))], (x, y), radius, colour, rng)] = i
    return np.clip(img, 0, 255).astype(np.uint8), labels


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--model", nargs="+", default=[None], help="segmenter files (default: the shipped one)")
    ap.add_argument("-n", type=int, default=100, help="rooms per kind")
    ap.add_argument("--seed", type=int, default=7)
    ap.add_argument("--size", type=int, default=256, help="frame side in pixels (square; the API shrinks it)")
    ap.add_argument("--figure", type=Path, default=None, help="save the first rooms of each kind with their slot labels")
    args = ap.parse_args()
    sets = scene_sets(scene, KINDS, args.n, args.seed, args.size)
    print(f"{args.n} rooms per kind, seed {args.seed}, {args.size} px frames, 2-5 objects (may overlap)")
    for path in args.model:
        segmenter = load_segmenter(path) if path else load_segmenter()
        print(f"\nmodel {path or 'shipped'} ({segmenter.backend}, {segmenter.input_size} px)")
        print(f"{'kind':10} {'labels FG-ARI':>14} {'MSC':>6} {'segments FG-ARI':>16} {'MSC':>6}")
        means = []
        for kind, items in sets.items():
            scores = []
            for img, truth in items:
                out = segmenter(img)
                scores.append([f(truth, getattr(out, name)) for name in ("labels", "segments")
                               for f in (metrics.foreground_ari, metrics.mean_segmentation_covering)])
            means.append(np.nanmean(np.array(scores), 0))
            print(f"{kind:10} {means[-1][0]:14.3f} {means[-1][1]:6.3f} {means[-1][2]:16.3f} {means[-1][3]:6.3f}")
        m = np.mean(means, 0)
        print(f"{'mean':10} {m[0]:14.3f} {m[1]:6.3f} {m[2]:16.3f} {m[3]:6.3f}")
        if args.figure and path == args.model[0]:
            save_figure(sets, segmenter, args.figure)


def save_figure(sets, segmenter, out: Path, per_kind: int = 4, side: int = 128) -> None:
    """Rows: for each kind, the first rooms and below them their slot labels in flat colours."""
    palette = (np.random.default_rng(0).random((64, 3)) * 255).astype(np.uint8)
    rows = []
    for items in sets.values():
        frames = [img for img, _ in items[:per_kind]]
        labels = [palette[segmenter(img).labels % len(palette)] for img in frames]
        for row in (frames, labels):
            rows.append(np.concatenate([cv2.resize(a, (side, side), interpolation=cv2.INTER_NEAREST) for a in row], 1))
    cv2.imwrite(str(out), cv2.cvtColor(np.concatenate(rows, 0), cv2.COLOR_RGB2BGR))
    print(f"figure: {out}")


if __name__ == "__main__":
    main()
