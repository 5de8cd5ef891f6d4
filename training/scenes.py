"""Procedural scenes with exact ground truth: the embedded default data set.

Two families (DESIGN.md §5):

* multi-object scenes in the spirit of Multi-Bird Easy/Hard: 0-5 coloured sprites (8x8
  digits from scikit-learn, upscaled, and drawn shapes) on a solid background or on a
  rotated two-colour checkerboard, with background colours from a *train* or an *unseen
  test* palette;
* room-like scenes for MONet: sky / wall / floor regions of random colours with 1-3
  occluding objects.

Every scene is a pure function of (config, seed, index), so a data set is reproducible
without storing it. Sprite masks are rasterised once per config and then only pasted, which
is what makes generation fast (see benchmarks/bench_scenes.py).
"""
from __future__ import annotations

import colorsys
from dataclasses import dataclass, field
from functools import lru_cache
from typing import Literal

import cv2
import numpy as np

Background = Literal["solid", "checkerboard"]
Palette = Literal["train", "test"]

# Background hues are split into 12 bins: even bins are the train palette, odd bins are
# colours a model never sees in training ("unseen test colours").
_HUE_BINS = 12


@dataclass(frozen=True)
class MultiObjectConfig:
    """Multi-object sprite scenes (SPAIR / SPLIT-SPAIR)."""

    image_size: int = 48
    min_objects: int = 0
    max_objects: int = 5
    sprite_size: int = 14  # pixels, on the image_size canvas
    sprite_size_jitter: int = 2  # sprite side drawn from size +- jitter
    background: Background = "solid"
    palette: Palette = "train"
    checker_cells: tuple[float, float] = (6.0, 12.0)  # checkerboard square side range, pixels
    min_visible_fraction: float = 0.6  # occlusion limit: each sprite keeps this much of itself
    sprites: Literal["digits", "shapes", "mixed"] = "mixed"

    def __post_init__(self):
        if not 0 <= self.min_objects <= self.max_objects:
            raise ValueError(f"need 0 <= min_objects <= max_objects, got {self.min_objects}, {self.max_objects}")
        if self.sprite_size + self.sprite_size_jitter >= self.image_size:
            raise ValueError(f"sprite_size {self.sprite_size} does not fit a {self.image_size}px image")
        if self.sprite_size - self.sprite_size_jitter < 4:
            raise ValueError("sprites smaller than 4 px are not drawable")


@dataclass(frozen=True)
class RoomConfig:
    """Room-like scenes (MONet): sky, wall and floor regions plus occluding objects."""

    image_size: int = 64
    min_objects: int = 1
    max_objects: int = 3
    object_size: tuple[int, int] = (10, 22)

    def __post_init__(self):
        if not 0 <= self.min_objects <= self.max_objects:
            raise ValueError(f"need 0 <= min_objects <= max_objects, got {self.min_objects}, {self.max_objects}")


@dataclass
class Scene:
    """One image and its exact ground truth.

    image:  (H, W, 3) uint8 RGB
    boxes:  (N, 4) float32, x1 y1 x2 y2 in pixels; x2/y2 are exclusive edges, so a box is the
            tight bound of its object's full (amodal) extent
    masks:  (N, H, W) bool, visible pixels of each object (occlusion applied)
    labels: (H, W) uint8 segmentation: 0 background, i + 1 for object i
    """

    image: np.ndarray
    boxes: np.ndarray
    masks: np.ndarray
    labels: np.ndarray
    meta: dict = field(default_factory=dict)

    @property
    def count(self) -> int:
        return int(len(self.boxes))


def scene_rng(seed: int, index: int) -> np.random.Generator:
    """Independent, reproducible stream per (seed, index): scene i never depends on scene i-1."""
    return np.random.default_rng([int(seed), int(index)])


# --------------------------------------------------------------------------- colours
def _hsv_colour(rng: np.random.Generator, hue_lo: float, hue_hi: float, sat=(0.5, 1.0), val=(0.5, 1.0)) -> np.ndarray:
    h = rng.uniform(hue_lo, hue_hi)
    s = rng.uniform(*sat)
    v = rng.uniform(*val)
    return np.array(colorsys.hsv_to_rgb(h, s, v)) * 255.0


def background_colour(rng: np.random.Generator, palette: Palette) -> np.ndarray:
    """A background colour from the train (even hue bins) or unseen test (odd bins) palette."""
    parity = 0 if palette == "train" else 1
    b = 2 * rng.integers(0, _HUE_BINS // 2) + parity
    # keep 10% away from the bin edges so uint8 rounding never moves a colour across the split
    return _hsv_colour(rng, (b + 0.1) / _HUE_BINS, (b + 0.9) / _HUE_BINS, sat=(0.3, 0.8), val=(0.3, 0.8))


def contrasting_colour(rng: np.random.Generator, avoid: list[np.ndarray], min_distance: float = 110.0) -> np.ndarray:
    """A saturated sprite colour at least `min_distance` (RGB L2) away from every colour in `avoid`."""
    best, best_d = None, -1.0
    for _ in range(32):
        c = _hsv_colour(rng, 0.0, 1.0, sat=(0.6, 1.0), val=(0.6, 1.0))
        d = min((float(np.linalg.norm(c - a)) for a in avoid), default=np.inf)
        if d >= min_distance:
            return c
        if d > best_d:
            best, best_d = c, d
    return best


# --------------------------------------------------------------------------- sprites
@lru_cache(maxsize=64)
def _shape_masks(size: int) -> tuple[np.ndarray, ...]:
    """Drawn shapes at `size`x`size`: disc, square, triangle, cross, ring, diamond."""
    s = size
    out = []
    c = (s - 1) / 2.0
    yy, xx = np.mgrid[0:s, 0:s]
    r = np.hypot(yy - c, xx - c)
    out.append(r <= s / 2.0)
    sq = np.zeros((s, s), bool)
    m = max(1, s // 8)
    sq[m : s - m, m : s - m] = True
    out.append(sq)
    tri = np.zeros((s, s), np.uint8)
    cv2.fillConvexPoly(tri, np.array([[s // 2, 0], [0, s - 1], [s - 1, s - 1]], np.int32), 1)
    out.append(tri.astype(bool))
    cross = np.zeros((s, s), bool)
    w = max(2, s // 3)
    lo = (s - w) // 2
    cross[lo : lo + w, :] = True
    cross[:, lo : lo + w] = True
    out.append(cross)
    out.append((r <= s / 2.0) & (r >= s / 4.0))
    out.append(np.abs(yy - c) + np.abs(xx - c) <= s / 2.0)
    return tuple(out)


def _digit_masks(size: int) -> list[np.ndarray]:
    from sklearn.datasets import load_digits  # ships inside scikit-learn's wheel: no network

    digits = load_digits().images  # (1797, 8, 8) in 0..16
    out = []
    for d in digits:
        up = cv2.resize(d.astype(np.float32), (size, size), interpolation=cv2.INTER_LINEAR)
        m = up > 6.0
        if m.sum() >= size:  # drop near-empty glyphs
            out.append(m)
    return out


@lru_cache(maxsize=32)
def sprite_bank(kind: str, size: int) -> tuple[np.ndarray, ...]:
    """All sprite masks of one side length, each cropped to its tight bounding box."""
    masks = []
    if kind in ("digits", "mixed"):
        masks += _digit_masks(size)
    if kind in ("shapes", "mixed"):
        shapes = _shape_masks(size)
        # keep shapes a fair share of a mixed bank (there are ~1800 digits, 6 shapes)
        masks += list(shapes) * (1 if kind == "shapes" else 60)
    cropped = []
    for m in masks:
        ys, xs = np.nonzero(m)
        cropped.append(np.ascontiguousarray(m[ys.min() : ys.max() + 1, xs.min() : xs.max() + 1]))
    return tuple(cropped)


# --------------------------------------------------------------------------- backgrounds
@lru_cache(maxsize=8)
def _centred_grid(size: int) -> tuple[np.ndarray, np.ndarray]:
    c = (size - 1) / 2.0
    yy, xx = np.mgrid[0:size, 0:size].astype(np.float32)
    return yy - c, xx - c


def checkerboard(size: int, cell: float, angle: float, phase: tuple[float, float]) -> np.ndarray:
    """(size, size) bool parity map of a checkerboard with square side `cell`, rotated by `angle`."""
    yy, xx = _centred_grid(size)
    ca, sa = np.cos(angle), np.sin(angle)
    u = (ca * xx - sa * yy) / cell + phase[0]
    v = (sa * xx + ca * yy) / cell + phase[1]
    return ((np.floor(u) + np.floor(v)) % 2).astype(bool)


def _paint_background(rng: np.random.Generator, cfg: MultiObjectConfig) -> tuple[np.ndarray, list[np.ndarray]]:
    n = cfg.image_size
    c0 = background_colour(rng, cfg.palette)
    if cfg.background == "solid":
        return np.broadcast_to(c0, (n, n, 3)).astype(np.float32), [c0]
    c1 = background_colour(rng, cfg.palette)
    while np.linalg.norm(c1 - c0) < 40.0:  # two visibly different squares
        c1 = background_colour(rng, cfg.palette)
    parity = checkerboard(n, rng.uniform(*cfg.checker_cells), rng.uniform(0, np.pi / 2), tuple(rng.uniform(0, 1, 2)))
    img = np.where(parity[..., None], c1.astype(np.float32), c0.astype(np.float32))
    return img, [c0, c1]


# --------------------------------------------------------------------------- generators
def _visible_enough(stack: list[np.ndarray], min_visible_fraction: float) -> bool:
    """True if every mask in paint order keeps enough pixels not covered by the ones above it."""
    cover = np.zeros_like(stack[0])
    for m in reversed(stack):
        if (m & ~cover).sum() < min_visible_fraction * m.sum() - 1e-6:
            return False
        cover |= m
    return True


def _place_objects(
    rng: np.random.Generator,
    n_objects: int,
    image_size: int,
    draw_mask,
    min_visible_fraction: float,
    y_range: tuple[float, float] = (0.0, 1.0),
    depth_by_bottom: bool = False,
):
    """Place up to `n_objects` masks so that each keeps enough visible pixels.

    Returns a list of (full_mask_on_canvas, box) in paint order (later ones occlude
    earlier ones). With `depth_by_bottom` the paint order is by the box's bottom edge (objects
    lower in the image are nearer), otherwise it is the order of placement.
    """
    placed: list[tuple[np.ndarray, np.ndarray]] = []
    attempts = 0
    while len(placed) < n_objects and attempts < 50 * max(1, n_objects):
        attempts += 1
        sprite = draw_mask(rng)
        h, w = sprite.shape
        y_lo = int(y_range[0] * (image_size - h))
        y_hi = max(y_lo, int(y_range[1] * (image_size - h)))
        y = int(rng.integers(y_lo, y_hi + 1))
        x = int(rng.integers(0, image_size - w + 1))
        full = np.zeros((image_size, image_size), bool)
        full[y : y + h, x : x + w] = sprite
        candidate = placed + [(full, np.array([x, y, x + w, y + h], np.float32))]
        if depth_by_bottom:
            candidate.sort(key=lambda p: float(p[1][3]))
        if _visible_enough([m for m, _ in candidate], min_visible_fraction):
            placed = candidate
    return placed


def _finish(image: np.ndarray, placed, meta: dict) -> Scene:
    n = image.shape[0]
    labels = np.zeros((n, n), np.uint8)
    for i, (full, _) in enumerate(placed):
        labels[full] = i + 1  # paint order: later objects overwrite earlier ones
    masks = np.stack([labels == i + 1 for i in range(len(placed))]) if placed else np.zeros((0, n, n), bool)
    boxes = np.stack([b for _, b in placed]) if placed else np.zeros((0, 4), np.float32)
    return Scene(np.clip(image, 0, 255).astype(np.uint8), boxes, masks, labels, meta)


def multi_object_scene(cfg: MultiObjectConfig, seed: int, index: int) -> Scene:
    """Scene `index` of the multi-object data set with config `cfg` and `seed`."""
    rng = scene_rng(seed, index)
    image, bg_colours = _paint_background(rng, cfg)
    image = image.copy()
    n_objects = int(rng.integers(cfg.min_objects, cfg.max_objects + 1))
    sizes = range(cfg.sprite_size - cfg.sprite_size_jitter, cfg.sprite_size + cfg.sprite_size_jitter + 1)
    banks = {s: sprite_bank(cfg.sprites, s) for s in sizes}

    def draw(r):
        bank = banks[int(r.integers(sizes.start, sizes.stop))]
        return bank[int(r.integers(0, len(bank)))]

    placed = _place_objects(rng, n_objects, cfg.image_size, draw, cfg.min_visible_fraction)
    used = list(bg_colours)
    for full, _ in placed:
        colour = contrasting_colour(rng, used)
        used.append(colour)
        image[full] = colour
    return _finish(image, placed, {"kind": "multi_object", "background": cfg.background, "palette": cfg.palette})


def room_scene(cfg: RoomConfig, seed: int, index: int) -> Scene:
    """Scene `index` of the room data set: sky above a wall above a floor, objects on the floor."""
    rng = scene_rng(seed, index)
    n = cfg.image_size
    horizon = int(rng.uniform(0.15, 0.35) * n)  # sky | wall
    floor_line = int(rng.uniform(0.45, 0.65) * n)  # wall | floor
    sky, wall, floor = (_hsv_colour(rng, 0, 1, sat=(0.2, 0.9), val=(0.3, 0.95)) for _ in range(3))
    image = np.empty((n, n, 3), np.float32)
    image[:horizon] = sky
    image[horizon:floor_line] = wall
    image[floor_line:] = floor

    def draw(r):
        s = int(r.integers(cfg.object_size[0], cfg.object_size[1] + 1))
        bank = sprite_bank("shapes", s)
        return bank[int(r.integers(0, len(bank)))]

    n_objects = int(rng.integers(cfg.min_objects, cfg.max_objects + 1))
    # Objects stand on the floor; nearer ones (lower in the image) occlude farther ones.
    placed = _place_objects(rng, n_objects, n, draw, 0.4, y_range=(floor_line / n * 0.8, 1.0), depth_by_bottom=True)
    used = [sky, wall, floor]
    for full, _ in placed:
        colour = contrasting_colour(rng, used, min_distance=90.0)
        used.append(colour)
        image[full] = colour
    return _finish(image, placed, {"kind": "room", "horizon": horizon, "floor_line": floor_line})


SceneConfig = MultiObjectConfig | RoomConfig


def generate(cfg: SceneConfig, seed: int, index: int) -> Scene:
    if isinstance(cfg, MultiObjectConfig):
        return multi_object_scene(cfg, seed, index)
    if isinstance(cfg, RoomConfig):
        return room_scene(cfg, seed, index)
    raise TypeError(f"unknown scene config {type(cfg).__name__}")
