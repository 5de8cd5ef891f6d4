"""Count accuracy on scenes drawn by a generator the project never trained or tuned on.

    python benchmarks/outside_scenes.py [--model PATH ...] [-n 150] [--seed 7] [--size 384] [--figure PATH]

The project's own test sets come from training/scenes.py, the generator its models learnt from
(held-out kinds included). This one shares no code with it: OpenCV draws 1-5 separate objects
(circles, ellipses, rotated rectangles, triangles, stars, regular polygons with 5-8 sides, with a
light shading ramp) in random colours at least a little away from the background's, on
camera-like backgrounds of its own: a flat wall, a linear colour gradient at any angle, a lit wall
(a flat colour under a radial light falloff, with sensor noise), a rotated checkerboard and rotated
stripes (period 3-8 model pixels, any angle, two random colours). Objects are 10-18 model pixels
across (the API shrinks the square frame to the model's 48 px), never touching, so the count is
never ambiguous. Each `--model` (default: the shipped detector) runs through `load_detector()`;
printed per background: count accuracy, over- and under-count rates, mean |count error|; then
the share of objects with a box on their centre by brightness (HSV value) and size.
Not for tuning: nothing here is used to choose a setting.
"""
from __future__ import annotations

import argparse
import colorsys
import sys
from pathlib import Path

import cv2
import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from split_perception.detector import load_detector  # noqa: E402

BACKGROUNDS = ("wall", "gradient", "lit_wall", "checkerboard", "stripes")
SHAPES = ("circle", "ellipse", "rectangle", "triangle", "star", "polygon")
MODEL_PX = 48


def random_colour(rng: np.random.Generator) -> np.ndarray:
    h, s, v = rng.random(), rng.uniform(0.25, 1.0), rng.uniform(0.25, 1.0)
    return np.array(colorsys.hsv_to_rgb(h, s, v)) * 255


def background(kind: str, size: int, rng: np.random.Generator) -> np.ndarray:
    a, b = random_colour(rng), random_colour(rng)
    yy, xx = np.mgrid[0:size, 0:size].astype(np.float32) / size
    angle = rng.uniform(0, np.pi)
    along = np.cos(angle) * xx + np.sin(angle) * yy
    if kind == "wall":
        img = np.broadcast_to(a, (size, size, 3)).astype(np.float32)
    elif kind == "gradient":
        t = (along - along.min()) / (np.ptp(along) + 1e-6)
        img = a * (1 - t[..., None]) + b * t[..., None]
    elif kind == "lit_wall":
        cx, cy = rng.uniform(0, 1, 2)
        light = 1.0 - 0.55 * np.clip(np.hypot(xx - cx, yy - cy) / 0.9, 0, 1) ** 1.5
        img = a * light[..., None] + rng.normal(0, 4, (size, size, 3))
    else:
        period = rng.uniform(3, 8) * size / MODEL_PX
        across = -np.sin(angle) * xx + np.cos(angle) * yy
        u, v = np.floor(along * size / period), np.floor(across * size / period)
        on = (u % 2 == 0) if kind == "stripes" else ((u + v) % 2 == 0)
        img = np.where(on[..., None], a, b)
    return img


def draw_object(img: np.ndarray, shape: str, centre, radius: float, colour, rng: np.random.Generator) -> np.ndarray:
    """Draws one filled shape with a light shading ramp across it (objects are lit too); returns
    the shape's pixels (bool, where it covers at least half a pixel)."""
    size = img.shape[0]
    mask = np.zeros((size, size), np.uint8)
    c = tuple(int(round(v)) for v in centre)
    r = int(round(radius))
    turn = rng.uniform(0, 360)
    if shape == "circle":
        cv2.circle(mask, c, r, 255, -1, cv2.LINE_AA)
    elif shape == "ellipse":
        cv2.ellipse(mask, c, (r, int(r * rng.uniform(0.5, 0.8))), turn, 0, 360, 255, -1, cv2.LINE_AA)
    elif shape == "rectangle":
        box = cv2.boxPoints(((c[0], c[1]), (2 * r * 0.9, 2 * r * rng.uniform(0.55, 0.9)), turn))
        cv2.fillPoly(mask, [np.round(box).astype(np.int32)], 255, cv2.LINE_AA)
    else:
        corners = {"triangle": 3, "star": 10}.get(shape, int(rng.integers(5, 9)))
        t = np.deg2rad(turn) + np.arange(corners) * 2 * np.pi / corners
        rr = np.where(np.arange(corners) % 2 == 1, 0.45 * r, r) if shape == "star" else np.full(corners, r)
        pts = np.stack([c[0] + rr * np.cos(t), c[1] + rr * np.sin(t)], 1)
        cv2.fillPoly(mask, [np.round(pts).astype(np.int32)], 255, cv2.LINE_AA)
    alpha = mask.astype(np.float32)[..., None] / 255
    yy, xx = np.mgrid[0:size, 0:size].astype(np.float32)
    ramp = 1 + 0.15 * ((xx - c[0]) * np.cos(turn) + (yy - c[1]) * np.sin(turn)) / max(r, 1)
    img[:] = img * (1 - alpha) + (colour * ramp[..., None]) * alpha
    return mask >= 128


def scene(kind: str, size: int, rng: np.random.Generator) -> tuple[np.ndarray, list[tuple]]:
    """A frame and its objects: (centre x, centre y, radius, RGB colour) each."""
    img = background(kind, size, rng)
    bg_mean = img.reshape(-1, 3).mean(0)
    n = int(rng.integers(1, 6))
    placed: list[tuple[float, float, float]] = []
    for _ in range(200):
        if len(placed) == n:
            break
        radius = rng.uniform(5, 9) * size / MODEL_PX  # 10-18 model px across
        x, y = rng.uniform(radius + 2, size - radius - 2, 2)
        # never touching: a gap of at least 2 model px between any two objects' circles
        if all(np.hypot(x - px, y - py) > radius + pr + 2 * size / MODEL_PX for px, py, pr in placed):
            placed.append((x, y, radius))
    objects = []
    for x, y, radius in placed:
        colour = random_colour(rng)
        while np.abs(colour - bg_mean).sum() < 90:  # visible against the wall
            colour = random_colour(rng)
        draw_object(img, SHAPES[int(rng.integers(len(SHAPES)))], (x, y), radius, colour, rng)
        objects.append((x, y, radius, colour))
    return np.clip(img, 0, 255).astype(np.uint8), objects


def scene_sets(draw, kinds, n: int, seed: int, size: int) -> dict:
    """{kind: [draw(kind, size, rng) for n scenes]}, each kind drawn from its own stream of `seed`
    (kind i of `kinds` from default_rng([seed, i])), so adding scenes to one kind changes no other."""
    sets = {}
    for i, kind in enumerate(kinds):
        rng = np.random.default_rng([seed, i])
        sets[kind] = [draw(kind, size, rng) for _ in range(n)]
    return sets


def found(boxes: np.ndarray, x: float, y: float) -> bool:
    """Whether some box holds the object's centre."""
    return bool(len(boxes)) and bool(((boxes[:, 0] <= x) & (x <= boxes[:, 2]) & (boxes[:, 1] <= y) & (y <= boxes[:, 3])).any())


def recall_by_object(detections: list[np.ndarray], items) -> str:
    """Share of objects with a box on their centre, by the object's HSV value (brightness) and size."""
    rows = []
    for (img, objects), boxes in zip(items, detections):
        for x, y, radius, colour in objects:
            rows.append((max(colour) / 255, 2 * radius * MODEL_PX / img.shape[0], found(boxes, x, y)))
    v, side, hit = (np.array(c) for c in zip(*rows))
    parts = [f"value {lo:.2f}-{hi:.2f}: {hit[(v >= lo) & (v < hi)].mean():.2f}" for lo, hi in ((0.25, 0.5), (0.5, 0.75), (0.75, 1.01))]
    parts += [f"side {lo}-{hi} px: {hit[(side >= lo) & (side < hi)].mean():.2f}" for lo, hi in ((10, 13), (13, 16), (16, 18.1))]
    return "objects found, by " + ", ".join(parts)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--model", nargs="+", default=[None], help="detector files (default: the shipped one)")
    ap.add_argument("-n", type=int, default=150, help="scenes per background")
    ap.add_argument("--seed", type=int, default=7)
    ap.add_argument("--size", type=int, default=384, help="frame side in pixels (square; the API shrinks it)")
    ap.add_argument("--figure", type=Path, default=None, help="save a contact sheet of the first scenes")
    args = ap.parse_args()
    sets = scene_sets(scene, BACKGROUNDS, args.n, args.seed, args.size)
    if args.figure:
        rows = [np.concatenate([cv2.resize(s[0], (128, 128), interpolation=cv2.INTER_AREA) for s in sets[k][:8]], 1) for k in BACKGROUNDS]
        cv2.imwrite(str(args.figure), cv2.cvtColor(np.concatenate(rows, 0), cv2.COLOR_RGB2BGR))
    print(f"{args.n} scenes per background, seed {args.seed}, {args.size} px frames, 1-5 separate objects")
    for path in args.model:
        detector = load_detector(path) if path else load_detector()
        print(f"\nmodel {path or 'shipped'} ({detector.backend})")
        print(f"{'background':14} {'acc':>6} {'over':>6} {'under':>6} {'|err|':>6}")
        accs, detections, everything = [], [], []
        for kind, items in sets.items():
            boxes = [detector(img).boxes for img, _ in items]
            err = np.array([len(b) - len(objects) for b, (_, objects) in zip(boxes, items)])
            accs.append((err == 0).mean())
            detections += boxes
            everything += items
            print(f"{kind:14} {accs[-1]:6.3f} {(err > 0).mean():6.3f} {(err < 0).mean():6.3f} {np.abs(err).mean():6.3f}")
        print(f"{'mean':14} {np.mean(accs):6.3f}")
        print(recall_by_object(detections, everything))


if __name__ == "__main__":
    main()
