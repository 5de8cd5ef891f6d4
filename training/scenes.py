"""Procedural scenes with exact ground truth: the embedded default data set.

Two families (DESIGN.md §5):

* multi-object scenes in the spirit of Multi-Bird Easy/Hard: 0-5 coloured sprites (8x8
  digits from scikit-learn, upscaled, and drawn shapes) on one of several background kinds
  (solid, colour/lighting gradients, rotated checkerboards, stripes, natural textures cut from
  scikit-image's bundled sample images, smooth colour noise), with background colours from a
  *train* or an *unseen test* palette. Some background kinds (`HELD_OUT_BACKGROUNDS`) and a set
  of drawn shapes (`HELD_OUT_SPRITES`) are never used in training: they make the held-out-kinds
  test sets;
* room-like scenes for MONet: sky above a wall above a floor, 1-3 occluding objects standing on
  the floor (`RoomConfig()`, unchanged since the first release). Richer rooms paint each region
  with one of several surface kinds (flat, lighting-shaded, floor tiles, wallpaper stripes, tinted
  textures, colour noise), hold up to 6 shaded objects, some sharing a colour and some touching
  (`room_kind_config("room_rich")`). Surface kinds (`ROOM_HELD_OUT_SURFACES`) and the held-out
  shapes likewise make held-out room test sets (`ROOM_TEST_KINDS`).

Every scene is a pure function of (config, seed, index), so a data set is reproducible
without storing it. Sprite masks are rasterised once per config and then only pasted, which
is what makes generation fast (see benchmarks/bench_scenes.py).
"""
from __future__ import annotations

import colorsys
import zlib
from dataclasses import dataclass, field
from functools import lru_cache
from typing import Literal, get_args

import cv2
import numpy as np

Background = Literal[
    "solid", "gradient", "checkerboard", "stripes", "texture", "noise",  # train kinds
    "vignette", "plaid", "texture_test",  # held-out kinds
]
Palette = Literal["train", "test", "train_wide"]
Sprites = Literal["digits", "shapes", "mixed", "varied", "varied_parts", "shapes_test"]

TRAIN_BACKGROUNDS: tuple[str, ...] = ("solid", "gradient", "checkerboard", "stripes", "texture", "noise")
HELD_OUT_BACKGROUNDS: tuple[str, ...] = ("vignette", "plaid", "texture_test")
BACKGROUNDS: tuple[str, ...] = TRAIN_BACKGROUNDS + HELD_OUT_BACKGROUNDS
TRAIN_SPRITES = "mixed"
HELD_OUT_SPRITES = "shapes_test"
# "varied" = "mixed" plus procedural random shapes (random_shape_masks): more shapes than any fixed bank;
# "varied_parts" = "varied" plus shapes made of parts (part_shape_masks): not star-convex, as handles,
# brackets and tools are
SPRITE_KINDS: tuple[str, ...] = get_args(Sprites)

# Room surfaces: the kinds a sky / wall / floor region may be painted with (one drawn per region).
ROOM_TRAIN_SURFACES: tuple[str, ...] = ("flat", "shaded", "tiles", "stripes", "texture", "noise")
ROOM_HELD_OUT_SURFACES: tuple[str, ...] = ("plaid", "vignette", "texture_test")
ROOM_SURFACES: tuple[str, ...] = ROOM_TRAIN_SURFACES + ROOM_HELD_OUT_SURFACES
ROOM_SHAPES: tuple[str, ...] = ("shapes", HELD_OUT_SPRITES)  # train bank, held-out bank
ROOM_TEST_KINDS: tuple[str, ...] = ("room", "room_rich", "heldout_surfaces", "heldout_shapes")

# Natural textures: scikit-image sample images that ship inside its wheel (no download).
# "texture" uses the train ones as grey-level patterns tinted with two tones of one palette hue;
# "texture_test" uses the held-out ones as (blurred, contrast-reduced) colour photographs.
TRAIN_TEXTURES: tuple[str, ...] = (
    "brick", "grass", "gravel", "camera", "moon", "text", "coins", "clock", "page", "immunohistochemistry",
)
HELD_OUT_TEXTURES: tuple[str, ...] = ("coffee", "chelsea", "astronaut", "rocket", "stereo_motorcycle")

# The kinds whose scenes must stay exactly as they were before the other kinds existed.
_LEGACY_BACKGROUNDS = ("solid", "checkerboard")

# Background hues are split into 12 bins: even bins are the train palette, odd bins are
# colours a model never sees in training ("unseen test colours").
_HUE_BINS = 12
@dataclass(frozen=True)
class PaletteSpec:
    """How a palette draws walls: its hue bins (parity), wall saturation and value ranges, and how far
    gradients, lighting ramps and textures may go."""

    parity: int  # 0: even hue bins (train), 1: odd bins (unseen test colours)
    sat: tuple[float, float] = (0.3, 0.8)
    val: tuple[float, float] = (0.3, 0.8)
    two_hue_gradients: bool = False  # half the gradients between two hue bins (draws one more number)
    max_lighting: float = 0.25  # gradients' lighting ramp, up to (1 - m)x-(1 + m)x
    max_texture_contrast: float = 0.22  # textures' standard deviation, as a share of the tone range


# "train_wide" is the train hues at a camera's range of saturation and brightness (grey, dark and pale
# walls), its gradients also run between two hues under stronger lighting ramps and its textures are
# more contrasty: an outside generator's scenes (benchmarks/outside_scenes.py) have such walls, and the
# models trained on "train" over-counted its two-colour gradients.
_PALETTES = {
    "train": PaletteSpec(0),
    "test": PaletteSpec(1),
    "train_wide": PaletteSpec(0, sat=(0.0, 0.85), val=(0.12, 0.95), two_hue_gradients=True,
                              max_lighting=0.45, max_texture_contrast=0.32),
}


def _require_fractions(cfg, *names: str) -> None:
    """Raise naming the first of `cfg`'s fields `names` that is not in [0, 1]."""
    for name in names:
        if not 0.0 <= getattr(cfg, name) <= 1.0:
            raise ValueError(f"{name} must be in [0, 1], got {getattr(cfg, name)}")


@dataclass(frozen=True)
class MultiObjectConfig:
    """Multi-object sprite scenes (SPAIR / SPLIT-SPAIR)."""

    image_size: int = 48
    min_objects: int = 0
    max_objects: int = 5
    sprite_size: int = 14  # pixels, on the image_size canvas
    sprite_size_jitter: int = 2  # sprite side drawn from size +- jitter
    background: Background = "solid"
    palette: Palette = "train"  # _PALETTES: "train", "test" (unseen hues) or "train_wide"
    checker_cells: tuple[float, float] = (6.0, 12.0)  # checkerboard square side range, pixels
    min_visible_fraction: float = 0.6  # occlusion limit: each sprite keeps this much of itself
    sprites: Sprites = "mixed"
    # brightness ramp across each sprite: 0 = flat colour; s = from (1 - s/2)x to (1 + s/2)x
    object_shading: float = 0.0
    # an object is placed against one already placed, sharing an edge (0 draws no random numbers, so
    # scenes stay as they were): the detector's remaining under-counts are touching objects
    touching_prob: float = 0.0
    # share of the objects not placed touching that are placed over one already placed (boxes overlap
    # by at least a third of a side), occluding it as far as min_visible_fraction allows (0 draws
    # nothing, so existing scenes stay as they were): most of the detector's remaining miscounts are
    # overlapping objects taken by one box
    overlap_prob: float = 0.0
    # each sprite turned by a random multiple of 90 degrees (False draws no random numbers, so scenes
    # stay as they were): digits are most of the sprite banks and stand upright (boxes 10 x 14 px on
    # average), so a model trained on them alone learns that objects are tall
    sprite_turns: bool = False
    object_colours: str = "bright"  # OBJECT_COLOUR_KINDS: "bright" (draws as before), "any", "faint", "mixed", "camera"
    # a camera's softness: each frame blurred by a Gaussian of sigma drawn from [0, camera_blur] px (0
    # draws nothing, so scenes stay as they were). Scenes are drawn with hard edges, a camera frame
    # shrunk to the model's input has soft ones. Off in the shipped configs: the detector counts
    # blurred camera-like frames worse, but a stage-6 fine-tune with it did not change that
    # (docs/RESULTS.md, issue 12, session 2026-12-05 (4))
    camera_blur: float = 0.0

    def __post_init__(self):
        _require_fractions(self, "touching_prob", "overlap_prob", "min_visible_fraction")
        if not 0.0 <= self.camera_blur <= 3.0:
            raise ValueError(f"camera_blur must be in [0, 3] px, got {self.camera_blur}")
        if self.object_colours not in OBJECT_COLOUR_KINDS:
            raise ValueError(f"object_colours must be one of {', '.join(OBJECT_COLOUR_KINDS)}, got {self.object_colours!r}")
        if self.palette not in _PALETTES:
            raise ValueError(f"palette must be one of {', '.join(_PALETTES)}, got {self.palette!r}")
        if self.background not in BACKGROUNDS:
            raise ValueError(f"unknown background {self.background!r}; kinds: {BACKGROUNDS}")
        if self.sprites not in SPRITE_KINDS:
            raise ValueError(f"unknown sprites {self.sprites!r}")
        if not 0.0 <= self.object_shading < 2.0:
            raise ValueError(f"object_shading must be in [0, 2), got {self.object_shading}")
        if not 0 <= self.min_objects <= self.max_objects:
            raise ValueError(f"need 0 <= min_objects <= max_objects, got {self.min_objects}, {self.max_objects}")
        if self.sprite_size + self.sprite_size_jitter >= self.image_size:
            raise ValueError(f"sprite_size {self.sprite_size} does not fit a {self.image_size}px image")
        if self.sprite_size - self.sprite_size_jitter < 4:
            raise ValueError("sprites smaller than 4 px are not drawable")


@dataclass(frozen=True)
class RoomConfig:
    """Room-like scenes (MONet): sky, wall and floor regions plus occluding objects.

    The defaults are the original rooms (flat regions, 1-3 objects of the train shapes) and must
    keep generating them pixel for pixel: options at their defaults draw no random numbers."""

    image_size: int = 64
    min_objects: int = 1
    max_objects: int = 3
    object_size: tuple[int, int] = (10, 22)  # side range in pixels
    surfaces: tuple[str, ...] = ("flat",)  # kinds a region may get, one drawn per region (ROOM_SURFACES)
    shapes: str = "shapes"  # object sprite bank: "shapes" (train) or "shapes_test" (held out)
    # brightness ramp across each object: 0 = flat colour; s = from (1 - s/2)x to (1 + s/2)x
    object_shading: float = 0.0
    same_colour_prob: float = 0.0  # an object takes the colour of one already placed
    touching_prob: float = 0.0  # an object is placed against one already placed, sharing an edge
    min_visible_fraction: float = 0.4  # occlusion limit: each object keeps this much of itself
    # OBJECT_COLOUR_KINDS, as MultiObjectConfig's: "bright" (draws as before), "any" (also dark and
    # greyish, nearer the surface's colour), "faint" (nearer still), "mixed" or "camera" (each object
    # one of the two or three)
    object_colours: str = "bright"

    def __post_init__(self):
        if self.object_colours not in OBJECT_COLOUR_KINDS:
            raise ValueError(f"object_colours must be one of {', '.join(OBJECT_COLOUR_KINDS)}, got {self.object_colours!r}")
        if isinstance(self.surfaces, str):
            raise ValueError(f"surfaces must be a tuple of kinds, got the string {self.surfaces!r}")
        object.__setattr__(self, "surfaces", tuple(self.surfaces))  # JSON / YAML give lists
        object.__setattr__(self, "object_size", tuple(self.object_size))
        if not 0 <= self.min_objects <= self.max_objects:
            raise ValueError(f"need 0 <= min_objects <= max_objects, got {self.min_objects}, {self.max_objects}")
        if not self.surfaces:
            raise ValueError(f"surfaces must name at least one kind; kinds: {ROOM_SURFACES}")
        for k in self.surfaces:
            if k not in ROOM_SURFACES:
                raise ValueError(f"unknown room surface {k!r}; kinds: {ROOM_SURFACES}")
        if self.shapes not in ROOM_SHAPES:
            raise ValueError(f"unknown room shapes {self.shapes!r}; choices: {ROOM_SHAPES}")
        lo, hi = self.object_size
        if not 4 <= lo <= hi <= self.image_size:
            raise ValueError(f"object_size must satisfy 4 <= lo <= hi <= image_size, got {self.object_size}")
        if not 0.0 <= self.object_shading < 2.0:
            raise ValueError(f"object_shading must be in [0, 2), got {self.object_shading}")
        _require_fractions(self, "same_colour_prob", "touching_prob", "min_visible_fraction")


def room_kind_config(kind: str, image_size: int = 64, **overrides) -> RoomConfig:
    """The room config of a named kind (ROOM_TEST_KINDS), with `overrides` of any RoomConfig field.

    "room" is the original RoomConfig; "room_rich" is the training distribution of richer rooms
    (every train surface kind, 1-6 objects, shading, shared colours, touching objects);
    "heldout_surfaces" and "heldout_shapes" are room_rich with the held-out surfaces or shapes.
    Object sizes of the rich kinds are (8, 24) px at 64 px and scale with `image_size`."""
    if kind not in ROOM_TEST_KINDS:
        raise ValueError(f"unknown room kind {kind!r}; kinds: {ROOM_TEST_KINDS}")
    if kind == "room":
        return RoomConfig(image_size=image_size, **overrides)
    scale = image_size / 64.0
    rich = dict(
        surfaces=ROOM_TRAIN_SURFACES, shapes="shapes", min_objects=1, max_objects=6,
        object_size=(max(4, round(8 * scale)), max(4, round(24 * scale))),
        same_colour_prob=0.3, touching_prob=0.3, object_shading=0.3,
    )
    if kind == "heldout_surfaces":
        rich["surfaces"] = ROOM_HELD_OUT_SURFACES
    elif kind == "heldout_shapes":
        rich["shapes"] = HELD_OUT_SPRITES
    return RoomConfig(image_size=image_size, **{**rich, **overrides})


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
    spec = _PALETTES[palette]
    b = 2 * rng.integers(0, _HUE_BINS // 2) + spec.parity
    # keep 10% away from the bin edges so uint8 rounding never moves a colour across the split
    return _hsv_colour(rng, (b + 0.1) / _HUE_BINS, (b + 0.9) / _HUE_BINS, sat=spec.sat, val=spec.val)


# Object colours (MultiObjectConfig.object_colours): (saturation range, value range, least RGB L2
# distance from the background's colours and the other objects'). "bright": saturated, light and far
# from everything, as every model before 2026-12-04 (2) was trained. "any": what a camera sees as
# well, dark, greyish and nearer the wall's colour: on scenes of an outside generator
# (benchmarks/outside_scenes.py) the shipped model missed most such objects.
# "faint": as "any", but 40-110 from the nearest of those colours (40 is a sixth of the tone range,
# about the two tones of a floor tile): a grey box on a grey wall. The default of 2026-12-05 found
# 36-75% of the objects this faint on an outside generator's scenes (docs/RESULTS.md, 2026-12-05 (2)).
# "mixed": each object is "bright" or "any" with even odds, so that clearly visible objects keep the
# weight they had while dark and greyish ones are learnt too; "camera": "bright", "any" or "faint"
# with even odds.
OBJECT_COLOURS = {"bright": ((0.6, 1.0), (0.6, 1.0), 110.0, np.inf), "any": ((0.15, 1.0), (0.2, 1.0), 70.0, np.inf),
                  "faint": ((0.1, 1.0), (0.15, 1.0), 40.0, 110.0)}
# "pattern" (objects on two-colour walls only: checkerboards, stripes): 20-70 from one of the
# pattern's colours, at least 70 from the mean colour under the object and from the other objects,
# as a box the colour of one floor tile; elsewhere "any". On an outside generator's stripes the
# default of 2026-12-05 (2) found 0.60-0.63 of such objects (docs/RESULTS.md, 2026-12-05 (3)).
# "camera_patterns": "camera" with "pattern" as a fourth kind.
_COLOUR_MIXTURES = {"mixed": ("bright", "any"), "camera": ("bright", "any", "faint"),
                    "camera_patterns": ("bright", "any", "faint", "pattern")}
OBJECT_COLOUR_KINDS = (*OBJECT_COLOURS, "pattern", *_COLOUR_MIXTURES)


def _one_colour_kind(rng: np.random.Generator, kind: str) -> str:
    """A mixture's kind for one object (one draw); a plain kind as it is (no draw)."""
    if kind in _COLOUR_MIXTURES:
        kinds = _COLOUR_MIXTURES[kind]
        kind = kinds[int(rng.integers(0, len(kinds)))]
    return kind


def _object_colour_ranges(rng: np.random.Generator, kind: str) -> tuple[float, tuple, tuple, float]:
    """(least distance, saturation range, value range, most distance) for one object of colour kind `kind`."""
    kind = _one_colour_kind(rng, kind)
    # "pattern" needs a two-colour wall (multi_object_scene); rooms and the other walls draw "any"
    sat, val, min_distance, max_distance = OBJECT_COLOURS["any" if kind == "pattern" else kind]
    return min_distance, sat, val, max_distance


def _pattern_colour(rng: np.random.Generator, pattern: list[np.ndarray], avoid: list[np.ndarray]) -> np.ndarray | None:
    """A colour 20-70 from one of the two `pattern` colours and at least 70 from every colour in
    `avoid` (the mean under the object, the other objects), or None where 8 tries find none."""
    target = pattern[int(rng.integers(0, 2))]
    others = np.array(avoid, dtype=np.float64).reshape(-1, 3)
    for _ in range(8):
        c = contrasting_colour(rng, [target], 20.0, (0.0, 1.0), (0.1, 1.0), 70.0)
        if _nearest_distance(others, c) >= 70.0:
            return c
    return None


def _nearest_distance(colours: np.ndarray, c: np.ndarray) -> float:
    """RGB L2 distance from `c` to the nearest row of `colours` (N, 3); inf when there are none."""
    return float(np.sqrt(((colours - c) ** 2).sum(1)).min()) if len(colours) else np.inf


def contrasting_colour(rng: np.random.Generator, avoid: list[np.ndarray], min_distance: float = 110.0,
                       sat=(0.6, 1.0), val=(0.6, 1.0), max_distance: float = np.inf) -> np.ndarray:
    """A sprite colour (saturation and value drawn from `sat`, `val`) at least `min_distance` (RGB L2)
    away from every colour in `avoid` and at most `max_distance` from the nearest one; where 32 draws
    find none, the farthest one."""
    best, best_d = None, -1.0
    others = np.array(avoid, dtype=np.float64).reshape(-1, 3)  # one array: the distances in one numpy call
    for _ in range(32):
        c = _hsv_colour(rng, 0.0, 1.0, sat=sat, val=val)
        d = _nearest_distance(others, c)
        if min_distance <= d <= max_distance:
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


def _poly_mask(points: np.ndarray, size: int, supersample: int = 8) -> np.ndarray:
    """Anti-aliased rasterisation of polygon(s) given in unit coordinates ([0, 1]^2, x right, y down)."""
    big = size * supersample
    canvas = np.zeros((big, big), np.uint8)
    polys = points if isinstance(points, list) else [points]
    cv2.fillPoly(canvas, [np.round(np.asarray(p) * (big - 1)).astype(np.int32) for p in polys], 255)
    return cv2.resize(canvas, (size, size), interpolation=cv2.INTER_AREA) >= 128


@lru_cache(maxsize=64)
def _test_shape_masks(size: int) -> tuple[np.ndarray, ...]:
    """Held-out drawn shapes, never in a training bank: star, hexagon, wide and tall ellipses,
    crescent, heart, L-shape."""
    s = size
    out = []
    t = np.linspace(0, 2 * np.pi, 11)[:-1] - np.pi / 2  # 5-point star, point up
    rad = np.where(np.arange(10) % 2 == 0, 0.5, 0.21)
    out.append(_poly_mask(np.stack([0.5 + rad * np.cos(t), 0.5 + rad * np.sin(t)], 1), s))
    # elongated hexagon (a regular one is too close to the disc): flat top and bottom, 0.46 high
    out.append(_poly_mask(np.array([[0, 0.5], [0.13, 0.27], [0.87, 0.27], [1, 0.5], [0.87, 0.73], [0.13, 0.73]]), s))
    c = (s - 1) / 2.0
    yy, xx = np.mgrid[0:s, 0:s].astype(np.float32)
    a, b = s / 2.0, s / 4.5  # elongated ellipse, wide and tall
    out.append(((xx - c) / a) ** 2 + ((yy - c) / b) ** 2 <= 1.0)
    out.append(((xx - c) / b) ** 2 + ((yy - c) / a) ** 2 <= 1.0)
    r = s / 2.0  # crescent: a disc minus a disc shifted right
    out.append((np.hypot(yy - c, xx - c) <= r) & (np.hypot(yy - c, xx - c - 0.45 * s) > 0.42 * s))
    t = np.linspace(0, 2 * np.pi, 120)  # heart
    hx = 16 * np.sin(t) ** 3
    hy = -(13 * np.cos(t) - 5 * np.cos(2 * t) - 2 * np.cos(3 * t) - np.cos(4 * t))
    hx = (hx - hx.min()) / (hx.max() - hx.min())
    hy = (hy - hy.min()) / (hy.max() - hy.min())
    out.append(_poly_mask(np.stack([hx, hy], 1), s))
    w = max(2, int(round(s * 0.36)))  # L-shape
    ell = np.zeros((s, s), bool)
    ell[:, :w] = True
    ell[s - w :, :] = True
    out.append(ell)
    return tuple(out)


RANDOM_SHAPES_PER_SIZE = 900
_RANDOM_SHAPE_SEED = 7_340_033  # fixed: the bank is a constant of the generator, as the digits are


@lru_cache(maxsize=64)
def random_shape_masks(size: int) -> tuple[np.ndarray, ...]:
    """Procedural training shapes, so that "an object" is not learnt as one of a few outlines:
    half star-convex polygons (3-9 corners at jittered angles and random radii, so convex and
    concave ones), half smooth blobs (a circle whose radius carries random 2nd-4th harmonics);
    each stretched to an aspect ratio in [0.55, 1] (long side `size` px) and rotated at random.
    The held-out test shapes (_test_shape_masks) are named outlines drawn by hand, not drawn
    from this family, though some random polygons come close to them."""
    rng = np.random.default_rng([_RANDOM_SHAPE_SEED, size])
    out = []
    for i in range(RANDOM_SHAPES_PER_SIZE):
        if i % 2 == 0:
            n = int(rng.integers(3, 10))
            theta = (np.arange(n) + rng.uniform(-0.3, 0.3, n)) * (2 * np.pi / n)
            radius = rng.uniform(0.45, 1.0, n)
        else:
            theta = np.linspace(0, 2 * np.pi, 48, endpoint=False)
            radius = np.ones_like(theta)
            for k in (2, 3, 4):
                radius += rng.uniform(0, 0.3 / k * 2) * np.cos(k * theta + rng.uniform(0, 2 * np.pi))
        x, y = radius * np.cos(theta), radius * rng.uniform(0.55, 1.0) * np.sin(theta)
        turn = rng.uniform(0, 2 * np.pi)
        x, y = x * np.cos(turn) - y * np.sin(turn), x * np.sin(turn) + y * np.cos(turn)
        pts = np.stack([x, y], 1)
        pts = (pts - pts.min(0)) / max(float(np.ptp(pts, 0).max()), 1e-6)  # long side spans [0, 1]
        pts += (1.0 - pts.max(0)) / 2.0  # centre the short side
        mask = _poly_mask(pts, size)
        if mask.sum() >= size:  # drop slivers too thin to draw at this size
            out.append(mask)
    return tuple(out)


PART_SHAPES_PER_SIZE = 600


@lru_cache(maxsize=64)
def part_shape_masks(size: int) -> tuple[np.ndarray, ...]:
    """Procedural shapes made of parts, which no star-convex outline is (random_shape_masks draws
    only those): a body (an ellipse or a rectangle, random aspect) with one or two limbs (bars of
    random width and length, square or round ends) that start inside it at a random angle. Bent,
    branched and hooked outlines, as objects with handles, arms or legs have. Each is rotated at
    random, scaled so its long side is `size` px, and kept only if it is one connected piece."""
    rng = np.random.default_rng([_RANDOM_SHAPE_SEED + 1, size])
    big = 4 * size
    out = []
    for _ in range(PART_SHAPES_PER_SIZE):
        canvas = np.zeros((3 * big, 3 * big), np.uint8)
        centre = np.array([1.5 * big, 1.5 * big])
        half = big * rng.uniform([0.15, 0.08], [0.35, 0.3])  # body half sides
        angle = rng.uniform(0, 180)
        if rng.random() < 0.5:
            cv2.ellipse(canvas, (int(centre[0]), int(centre[1])), (int(half[0]), int(half[1])), angle, 0, 360, 255, -1)
        else:
            box = cv2.boxPoints(((float(centre[0]), float(centre[1])), (2 * float(half[0]), 2 * float(half[1])), angle))
            cv2.fillPoly(canvas, [np.round(box).astype(np.int32)], 255)
        for _limb in range(int(rng.integers(1, 3))):
            start = centre + rng.uniform(-0.6, 0.6, 2) * half
            theta = rng.uniform(0, 2 * np.pi)
            end = start + big * rng.uniform(0.35, 0.8) * np.array([np.cos(theta), np.sin(theta)])
            width = max(2, int(big * rng.uniform(0.08, 0.2)))
            if rng.random() < 0.5:  # round ends
                cv2.line(canvas, tuple(int(v) for v in np.round(start)), tuple(int(v) for v in np.round(end)), 255, width)
            else:  # square ends: a filled rectangle along the limb
                normal = np.array([-np.sin(theta), np.cos(theta)]) * width / 2
                cv2.fillPoly(canvas, [np.round([start + normal, end + normal, end - normal, start - normal]).astype(np.int32)], 255)
        ys, xs = np.nonzero(canvas > 127)
        crop = canvas[ys.min() : ys.max() + 1, xs.min() : xs.max() + 1]
        scale = size / max(crop.shape)
        hw = (max(1, round(crop.shape[1] * scale)), max(1, round(crop.shape[0] * scale)))
        mask = cv2.resize(crop, hw, interpolation=cv2.INTER_AREA) >= 128
        if mask.sum() >= size and cv2.connectedComponents(mask.astype(np.uint8), connectivity=4)[0] == 2:
            padded = np.zeros((size, size), bool)
            y0, x0 = (size - mask.shape[0]) // 2, (size - mask.shape[1]) // 2
            padded[y0 : y0 + mask.shape[0], x0 : x0 + mask.shape[1]] = mask
            out.append(padded)
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


# room_rich alone uses 17 sizes per bank: room evaluation over train and held-out shapes needs ~34
@lru_cache(maxsize=128)
def sprite_bank(kind: str, size: int) -> tuple[np.ndarray, ...]:
    """All sprite masks of one side length, each cropped to its tight bounding box."""
    masks = []
    if kind in ("digits", "mixed", "varied", "varied_parts"):
        masks += _digit_masks(size)
    if kind in ("shapes", "mixed", "varied", "varied_parts"):
        shapes = _shape_masks(size)
        # keep shapes a fair share of a mixed bank (there are ~1800 digits, 6 shapes)
        masks += list(shapes) * (1 if kind == "shapes" else 60)
    if kind in ("varied", "varied_parts"):
        masks += list(random_shape_masks(size))
    if kind == "varied_parts":
        masks += list(part_shape_masks(size))
    if kind == "shapes_test":
        masks += list(_test_shape_masks(size))
    if not masks:
        raise ValueError(f"unknown sprite kind {kind!r}")
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


def _palette_pair(rng: np.random.Generator, palette: Palette, min_distance: float = 40.0):
    """Two palette colours (any two hue bins of the palette) at least `min_distance` apart where 64 tries allow."""
    c0 = background_colour(rng, palette)
    c1 = background_colour(rng, palette)
    for _ in range(64):
        d = float(np.linalg.norm(c1 - c0))
        if d >= min_distance:
            break
        c1 = background_colour(rng, palette)
    return c0, c1


def _palette_tones(rng: np.random.Generator, palette: Palette, k: int = 2, min_distance: float = 50.0) -> list[np.ndarray]:
    """`k` palette colours of ONE hue bin (differing in saturation and value), the first two at least
    `min_distance` apart where 64 tries allow.

    Blended kinds (gradients, soft stripes, tinted textures, noise) mix only such tones: an RGB blend
    of colours of one hue bin keeps its hue inside that bin, so every pixel stays in the palette
    (a blend of two bins would pass through the other palette's hues in between)."""
    spec = _PALETTES[palette]
    b = 2 * int(rng.integers(0, _HUE_BINS // 2)) + spec.parity
    lo, hi = (b + 0.1) / _HUE_BINS, (b + 0.9) / _HUE_BINS

    def tone():
        return _hsv_colour(rng, lo, hi, sat=spec.sat, val=spec.val)

    c0, c1 = tone(), tone()
    best, best_d = c1, float(np.linalg.norm(c1 - c0))
    for _ in range(64):
        if best_d >= min_distance:
            break
        c1 = tone()
        d = float(np.linalg.norm(c1 - c0))
        if d > best_d:
            best, best_d = c1, d
    return [c0, best] + [tone() for _ in range(k - 2)]


def _ramp(size: int, angle: float) -> np.ndarray:
    """(size, size) float32 linear ramp in [-1, 1] along direction `angle` (its extremes at two corners)."""
    yy, xx = _centred_grid(size)
    ca, sa = np.float32(np.cos(angle)), np.float32(np.sin(angle))
    return (ca * xx + sa * yy) / np.float32((size - 1) / 2.0 * (abs(ca) + abs(sa)))


def _lerp(t: np.ndarray, c0: np.ndarray, c1: np.ndarray) -> np.ndarray:
    """(H, W, 3) float32 colours c0 + t (c1 - c0) for a (H, W) weight map t."""
    c0 = c0.astype(np.float32)
    return c0 + t[..., None] * (c1.astype(np.float32) - c0)


def _stripe_coordinate(size: int, angle: float, period: float, phase: float) -> np.ndarray:
    """Stripe phase u/period + phase across the image; stripes run perpendicular to `angle`."""
    yy, xx = _centred_grid(size)
    return (np.float32(np.cos(angle)) * xx + np.float32(np.sin(angle)) * yy) * np.float32(1.0 / period) + np.float32(phase)


def _stripes(size: int, angle: float, period: float, phase: float, duty: float = 0.5, softness: float = 0.0) -> np.ndarray:
    """(size, size) float32 stripe weights in [0, 1]: hard square wave, or a clipped sine when `softness` > 0."""
    u = _stripe_coordinate(size, angle, period, phase)
    if softness <= 0.0:
        return ((u - np.floor(u)) < duty).astype(np.float32)
    # clipped sine: the larger the softness, the wider the blended edge
    return np.clip(0.5 + np.sin(np.float32(2 * np.pi) * u) / np.float32(2.0 * softness), 0.0, 1.0)


@lru_cache(maxsize=None)
def _texture_source(name: str, colour: bool) -> np.ndarray:
    """A scikit-image sample image (bundled in its wheel), cached: grey float32 in [0, 1] with the
    1-99% levels stretched, or colour float32 RGB in [0, 255]."""
    from skimage import data  # lazy: the import costs ~0.2 s

    img = getattr(data, name)()
    if isinstance(img, tuple):  # stereo_motorcycle -> (left, right, disparity)
        img = img[0]
    img = np.asarray(img)
    if img.ndim == 3:
        img = img[..., :3]
    if colour:
        if img.ndim == 2:
            img = np.repeat(img[..., None], 3, axis=2)
        return np.ascontiguousarray(img, dtype=np.float32)
    if img.ndim == 3:
        img = cv2.cvtColor(np.ascontiguousarray(img, dtype=np.uint8), cv2.COLOR_RGB2GRAY)
    img = img.astype(np.float32)
    lo, hi = np.percentile(img, [1, 99])
    return np.clip((img - lo) / max(float(hi - lo), 1.0), 0.0, 1.0).astype(np.float32)


def _texture_crop(rng: np.random.Generator, names: tuple[str, ...], size: int, colour: bool, scale=(0.75, 3.0)) -> np.ndarray:
    """A random square crop of one of `names`, `scale` source pixels per output pixel (log-uniform),
    resized to `size`, rotated by a multiple of 90 degrees and maybe mirrored."""
    src = _texture_source(names[int(rng.integers(0, len(names)))], colour)
    h, w = src.shape[:2]
    side = int(round(size * np.exp(rng.uniform(np.log(scale[0]), np.log(scale[1])))))
    side = max(8, min(side, h, w))
    y = int(rng.integers(0, h - side + 1))
    x = int(rng.integers(0, w - side + 1))
    interp = cv2.INTER_AREA if side >= size else cv2.INTER_LINEAR
    crop = cv2.resize(src[y : y + side, x : x + side], (size, size), interpolation=interp)
    crop = np.rot90(crop, int(rng.integers(0, 4)))
    if rng.random() < 0.5:
        crop = crop[:, ::-1]
    return np.ascontiguousarray(crop)


def _dominant_colours(img: np.ndarray) -> list[np.ndarray]:
    """Mean colour plus the mean colours of the darker and the lighter half of the pixels."""
    flat = img.reshape(-1, 3)
    lum = flat.sum(1)
    dark = lum <= lum.mean()
    out = [flat.mean(0)]
    if dark.any() and (~dark).any():
        out += [flat[dark].mean(0), flat[~dark].mean(0)]
    return [c.astype(np.float64) for c in out]


def _paint_background(rng: np.random.Generator, cfg: MultiObjectConfig) -> tuple[np.ndarray, list[np.ndarray]]:
    """(H, W, 3) float32 background and the colours sprites must avoid."""
    n = cfg.image_size
    kind = cfg.background
    if kind in _LEGACY_BACKGROUNDS:  # unchanged: the same random draws and pixels as before the other kinds
        c0 = background_colour(rng, cfg.palette)
        if kind == "solid":
            return np.broadcast_to(c0, (n, n, 3)).astype(np.float32), [c0]
        c1 = background_colour(rng, cfg.palette)
        while np.linalg.norm(c1 - c0) < 40.0:  # two visibly different squares
            c1 = background_colour(rng, cfg.palette)
        parity = checkerboard(n, rng.uniform(*cfg.checker_cells), rng.uniform(0, np.pi / 2), tuple(rng.uniform(0, 1, 2)))
        img = np.where(parity[..., None], c1.astype(np.float32), c0.astype(np.float32))
        return img, [c0, c1]
    img, colours = _PAINTERS[kind](rng, n, cfg.palette)
    return img, colours + _dominant_colours(img)


def _paint_gradient(rng, n, palette):
    """Linear colour ramp between two palette tones (one hue bin) at a random angle and extent; with
    p=0.5 times a multiplicative lighting ramp (0.75x-1.25x at most; PaletteSpec.max_lighting) along
    another direction. Palettes with two_hue_gradients: with p=0.5 between two hues instead (its blend
    passes through the hues between them, the other palette's included)."""
    spec = _PALETTES[palette]
    if spec.two_hue_gradients and rng.random() < 0.5:
        c0, c1 = _palette_pair(rng, palette, min_distance=60.0)
    else:
        c0, c1 = _palette_tones(rng, palette, 2, min_distance=60.0)
    t = _ramp(n, rng.uniform(0, 2 * np.pi)) * np.float32(rng.uniform(0.5, 1.0)) + np.float32(rng.uniform(-0.3, 0.3))
    img = _lerp(np.clip(0.5 + 0.5 * t, 0.0, 1.0), c0, c1)
    if rng.random() < 0.5:
        strength = rng.uniform(0.1, spec.max_lighting)
        img *= (1.0 + np.float32(strength) * _ramp(n, rng.uniform(0, 2 * np.pi)))[..., None]
    return img, [c0, c1]


def _paint_stripes(rng, n, palette):
    """Two-colour stripes, period 4-16 px, random angle and phase: with p=0.5 hard-edged in any two
    palette colours, else soft (blended) edges between two tones of one palette hue."""
    period = rng.uniform(4.0, 16.0)
    angle, phase = rng.uniform(0, np.pi), rng.uniform(0, 1)
    if rng.random() < 0.5:
        c0, c1 = _palette_pair(rng, palette, min_distance=40.0)
        t = _stripes(n, angle, period, phase, duty=rng.uniform(0.35, 0.65))
    else:
        c0, c1 = _palette_tones(rng, palette, 2, min_distance=60.0)
        t = _stripes(n, angle, period, phase, softness=rng.uniform(0.3, 1.2))
    return _lerp(t, c0, c1), [c0, c1]


def _paint_texture(rng, n, palette):
    """A natural grey-level texture (train images) tinted between two palette tones (one hue bin).
    Each crop's contrast is set to a standard deviation of 0.12-0.22 of the tone range (gain at most
    4, so flat crops stay fairly flat): visible texture that still leaves the sprites standing out.
    "train_wide": up to 0.32 (PaletteSpec.max_texture_contrast), as a camera's textured surfaces."""
    c0, c1 = _palette_tones(rng, palette, 2, min_distance=80.0)
    t = _texture_crop(rng, TRAIN_TEXTURES, n, colour=False, scale=(0.6, 2.0))
    mean, std = float(t.mean()), float(t.std())
    gain = np.float32(min(rng.uniform(0.12, _PALETTES[palette].max_texture_contrast) / max(std, 1e-6), 4.0))
    t = np.clip(np.float32(0.5) + gain * (t - np.float32(mean)), 0.0, 1.0)
    return _lerp(t, c0, c1), [c0, c1]


def _paint_noise(rng, n, palette):
    """Smooth colour noise: a random 2x2-7x7 field of mixing weights over three tones of one palette
    hue, upsampled bicubically; with p=0.5 times fine per-pixel brightness noise (hue preserving)."""
    cols = np.stack(_palette_tones(rng, palette, 3, min_distance=70.0)).astype(np.float32)
    g = int(rng.integers(2, 8))
    w = cv2.resize(rng.random((g, g, 3)).astype(np.float32) ** 2, (n, n), interpolation=cv2.INTER_CUBIC)
    w = np.maximum(w, 0.0) + np.float32(1e-3)  # bicubic overshoot must not extrapolate past the tones
    img = (w / w.sum(-1, keepdims=True)) @ cols
    if rng.random() < 0.5:
        img *= (1.0 + rng.standard_normal((n, n), dtype=np.float32) * np.float32(rng.uniform(0.02, 0.06)))[..., None]
    return img, list(cols.astype(np.float64))


def _paint_vignette(rng, n, palette):
    """Held out: a solid palette colour under a radial spotlight falloff and a linear shading ramp."""
    c0 = background_colour(rng, palette)
    yy, xx = _centred_grid(n)
    cy, cx = rng.uniform(-0.35, 0.35, 2) * n
    radius = np.float32(rng.uniform(0.5, 1.0) * n)
    r2 = ((yy - np.float32(cy)) ** 2 + (xx - np.float32(cx)) ** 2) / (radius * radius)
    light = 1.2 - np.float32(rng.uniform(0.4, 0.7)) * np.minimum(r2, 1.0)
    light *= 1.0 + np.float32(rng.uniform(0.05, 0.2)) * _ramp(n, rng.uniform(0, 2 * np.pi))
    return c0.astype(np.float32) * light[..., None], [c0]


def _paint_plaid(rng, n, palette):
    """Held out: a base colour under two crossed stripe sets of two other palette colours (opaque, so
    every pixel is one of the three palette colours)."""
    c0, c1 = _palette_pair(rng, palette, min_distance=40.0)
    c2 = background_colour(rng, palette)
    for _ in range(64):
        if min(np.linalg.norm(c2 - c0), np.linalg.norm(c2 - c1)) >= 40.0:
            break
        c2 = background_colour(rng, palette)
    angle = rng.uniform(0, np.pi)
    a = _stripes(n, angle, rng.uniform(6.0, 16.0), rng.uniform(0, 1), duty=rng.uniform(0.25, 0.45))
    angle_b = angle + np.pi / 2 + rng.uniform(-0.2, 0.2)
    b = _stripes(n, angle_b, rng.uniform(6.0, 16.0), rng.uniform(0, 1), duty=rng.uniform(0.25, 0.45))
    img = _lerp(a, c0, c1)
    img[b > 0.5] = c2.astype(np.float32)
    return img, [c0, c1, c2]


def _paint_texture_test(rng, n, palette):
    """Held out: crops of colour photographs not used by "texture", slightly blurred, contrast
    reduced and tinted towards a palette colour so that they read as backgrounds."""
    crop = _texture_crop(rng, HELD_OUT_TEXTURES, n, colour=True, scale=(1.0, 4.0))
    crop = cv2.GaussianBlur(crop, (0, 0), rng.uniform(0.6, 1.2))
    mean = crop.reshape(-1, 3).mean(0)
    img = mean + np.float32(rng.uniform(0.5, 0.8)) * (crop - mean)
    tint = background_colour(rng, palette)
    img += np.float32(rng.uniform(0.2, 0.45)) * (tint.astype(np.float32) - img)
    return img, [tint]


_PAINTERS = {
    "gradient": _paint_gradient,
    "stripes": _paint_stripes,
    "texture": _paint_texture,
    "noise": _paint_noise,
    "vignette": _paint_vignette,
    "plaid": _paint_plaid,
    "texture_test": _paint_texture_test,
}


def _paint_tiles(rng, n, palette):
    """Floor tiles: a checkerboard of two tones of one palette hue, squares 8-25% of the image wide
    at any angle, the tones 25-70 apart (RGB): low-to-moderate contrast, as tiles are, not a board."""
    c0, c1 = _palette_tones(rng, palette, 2, min_distance=60.0)
    c1 = c0 + (c1 - c0) * (rng.uniform(25.0, 70.0) / max(float(np.linalg.norm(c1 - c0)), 1e-6))
    parity = checkerboard(n, rng.uniform(0.08, 0.25) * n, rng.uniform(0, np.pi / 2), tuple(rng.uniform(0, 1, 2)))
    return _lerp(parity.astype(np.float32), c0, c1), [c0, c1]


# Room surfaces reuse the background painters; "shaded" is the one-hue gradient under a lighting ramp.
_ROOM_PAINTERS = {
    "shaded": _paint_gradient,
    "tiles": _paint_tiles,
    "stripes": _paint_stripes,
    "texture": _paint_texture,
    "noise": _paint_noise,
    "plaid": _paint_plaid,
    "vignette": _paint_vignette,
    "texture_test": _paint_texture_test,
}


# Each newer kind draws its scenes from its own stream, so that scene i of two kinds does not share
# its sprite layout (the legacy kinds keep the plain (seed, index) stream and their exact scenes).
_KIND_STREAM = {"gradient": 1, "stripes": 2, "texture": 3, "noise": 4, "vignette": 5, "plaid": 6, "texture_test": 7}


def _multi_object_rng(cfg: MultiObjectConfig, seed: int, index: int) -> np.random.Generator:
    if cfg.background in _LEGACY_BACKGROUNDS:
        return scene_rng(seed, index)
    return np.random.default_rng([int(seed), int(index), _KIND_STREAM[cfg.background]])


def background_image(cfg: MultiObjectConfig, seed: int, index: int) -> np.ndarray:
    """(H, W, 3) uint8 background of scene `index`, i.e. that scene without its sprites."""
    img, _ = _paint_background(_multi_object_rng(cfg, seed, index), cfg)
    return np.clip(img, 0, 255).astype(np.uint8)


# --------------------------------------------------------------------------- generators
def _visible_enough(stack: list[np.ndarray], min_visible_fraction: float) -> bool:
    """True if every mask in paint order keeps enough pixels not covered by the ones above it."""
    cover = np.zeros_like(stack[0])
    for m in reversed(stack):
        if (m & ~cover).sum() < min_visible_fraction * m.sum() - 1e-6:
            return False
        cover |= m
    return True


def _touching_position(rng, placed, sprite: np.ndarray, image_size: int, y_lo: int, y_hi: int):
    """(y, x) that puts `sprite` against a random one of the `placed` masks, on a random side (left,
    right, above, below): the two share an edge and overlap by 0-2 px at most. None when that spot
    leaves the allowed rows [y_lo, y_hi] or the image."""
    full, box = placed[int(rng.integers(0, len(placed)))]
    side = int(rng.integers(0, 4))  # 0 left, 1 right, 2 above, 3 below
    overlap = int(rng.integers(0, 3))
    x1, y1, x2, y2 = (int(v) for v in box)
    target = full[y1:y2, x1:x2]
    ranges = ((y_lo, y_hi), (0, image_size - sprite.shape[1]))  # allowed (y, x) of the sprite
    vertical = side >= 2
    if vertical:  # above / below is left / right with rows and columns swapped
        target, sprite, ranges = target.T, sprite.T, ranges[::-1]
        x1, y1, x2, y2 = y1, x1, y2, x2
    hs, ws = sprite.shape
    (r_lo, r_hi), (c_lo, c_hi) = ranges
    # the sprite's middle row lies within the target's rows, so they share a good stretch of edge
    lo, hi = max(r_lo, y1 - hs // 2), min(r_hi, y2 - (hs + 1) // 2)
    if lo > hi:
        return None
    r = int(rng.integers(lo, hi + 1))
    top, bottom = max(r, y1), min(r + hs, y2)
    t, s = target[top - y1 : bottom - y1], sprite[top - r : bottom - r]
    both = t.any(1) & s.any(1)
    if not both.any():
        return None
    t, s = t[both], s[both]
    t_first, t_last = t.argmax(1), t.shape[1] - 1 - t[:, ::-1].argmax(1)
    s_first, s_last = s.argmax(1), ws - 1 - s[:, ::-1].argmax(1)
    # exact contact in the closest row, every shared row clear of the target, then the overlap
    if side % 2 == 0:
        c = int((x1 + t_first - 1 - s_last).min()) + overlap
    else:
        c = int((x1 + t_last + 1 - s_first).max()) - overlap
    if not c_lo <= c <= c_hi:
        return None
    return (c, r) if vertical else (r, c)


def _overlapping_position(rng, placed, sprite: np.ndarray, image_size: int, y_lo: int, y_hi: int):
    """(y, x) that puts `sprite`'s box over a random one of the `placed` boxes, overlapping it by at
    least a third of the smaller side in each direction (whether the one behind stays visible enough is
    the caller's check). None when no such spot lies within the allowed rows [y_lo, y_hi] and the image."""
    _, box = placed[int(rng.integers(0, len(placed)))]
    x1, y1, x2, y2 = (int(v) for v in box)
    h, w = sprite.shape
    dx, dy = max(1, min(w, x2 - x1) // 3), max(1, min(h, y2 - y1) // 3)
    x_lo, x_hi = max(0, x1 - w + dx), min(image_size - w, x2 - dx)
    y_lo, y_hi = max(y_lo, y1 - h + dy), min(y_hi, y2 - dy)
    if x_lo > x_hi or y_lo > y_hi:
        return None
    return int(rng.integers(y_lo, y_hi + 1)), int(rng.integers(x_lo, x_hi + 1))


def _place_objects(
    rng: np.random.Generator,
    n_objects: int,
    image_size: int,
    draw_mask,
    min_visible_fraction: float,
    y_range: tuple[float, float] = (0.0, 1.0),
    depth_by_bottom: bool = False,
    touching_prob: float = 0.0,
    overlap_prob: float = 0.0,
):
    """Place up to `n_objects` masks so that each keeps enough visible pixels.

    Returns a list of (full_mask_on_canvas, box) in paint order (later ones occlude
    earlier ones). With `depth_by_bottom` the paint order is by the box's bottom edge (objects
    lower in the image are nearer), otherwise it is the order of placement. With probability
    `touching_prob` a mask is put against one already placed instead of anywhere, else with probability
    `overlap_prob` over one already placed (0 draws nothing for either).
    """
    placed: list[tuple[np.ndarray, np.ndarray]] = []
    attempts = 0
    while len(placed) < n_objects and attempts < 50 * max(1, n_objects):
        attempts += 1
        sprite = draw_mask(rng)
        h, w = sprite.shape
        y_lo = int(y_range[0] * (image_size - h))
        y_hi = max(y_lo, int(y_range[1] * (image_size - h)))
        if touching_prob > 0.0 and placed and rng.random() < touching_prob:
            spot = _touching_position(rng, placed, sprite, image_size, y_lo, y_hi)
            if spot is None:
                continue
            y, x = spot
        elif overlap_prob > 0.0 and placed and rng.random() < overlap_prob:
            spot = _overlapping_position(rng, placed, sprite, image_size, y_lo, y_hi)
            if spot is None:
                continue
            y, x = spot
        else:
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


def _paint_shaded(rng, image: np.ndarray, full: np.ndarray, box: np.ndarray, colour: np.ndarray, shading: float) -> None:
    """Paint `colour` on `full` with a linear brightness ramp across the sprite's box, from
    (1 - shading/2)x to (1 + shading/2)x along a random direction."""
    x1, y1, x2, y2 = (int(v) for v in box)
    angle = rng.uniform(0, 2 * np.pi)
    yy, xx = np.mgrid[0 : y2 - y1, 0 : x2 - x1].astype(np.float32)
    ca, sa = np.cos(angle), np.sin(angle)
    u = ca * (xx - (x2 - x1 - 1) / 2.0) + sa * (yy - (y2 - y1 - 1) / 2.0)
    half = max(float(np.abs(u).max()), 1e-6)
    factor = 1.0 + np.float32(shading / 2.0) * u / np.float32(half)
    sub = full[y1:y2, x1:x2]
    region = image[y1:y2, x1:x2]
    region[sub] = colour.astype(np.float32) * factor[sub][:, None]


def multi_object_scene(cfg: MultiObjectConfig, seed: int, index: int) -> Scene:
    """Scene `index` of the multi-object data set with config `cfg` and `seed`."""
    rng = _multi_object_rng(cfg, seed, index)
    background, bg_colours = _paint_background(rng, cfg)
    image = background.copy()
    n_objects = int(rng.integers(cfg.min_objects, cfg.max_objects + 1))
    sizes = range(cfg.sprite_size - cfg.sprite_size_jitter, cfg.sprite_size + cfg.sprite_size_jitter + 1)
    banks = {s: sprite_bank(cfg.sprites, s) for s in sizes}

    def draw(r):
        bank = banks[int(r.integers(sizes.start, sizes.stop))]
        mask = bank[int(r.integers(0, len(bank)))]
        return np.rot90(mask, int(r.integers(0, 4))) if cfg.sprite_turns else mask

    placed = _place_objects(rng, n_objects, cfg.image_size, draw, cfg.min_visible_fraction,
                            touching_prob=cfg.touching_prob, overlap_prob=cfg.overlap_prob)
    used = list(bg_colours)
    # on patterned backgrounds a sprite also avoids the mean background colour under itself
    local = cfg.background not in _LEGACY_BACKGROUNDS
    for full, box in placed:
        avoid = (used + [background[full].mean(0).astype(np.float64)]) if local else used
        kind = _one_colour_kind(rng, cfg.object_colours)
        colour = None
        if kind == "pattern":
            if cfg.background in ("checkerboard", "stripes"):  # bg_colours starts with the two pattern colours
                under = background[full].mean(0).astype(np.float64)
                colour = _pattern_colour(rng, bg_colours[:2], used[len(bg_colours):] + [under])
        if colour is None:
            colour = contrasting_colour(rng, avoid, *_object_colour_ranges(rng, kind))
        used.append(colour)
        if cfg.object_shading > 0.0:
            _paint_shaded(rng, image, full, box, colour, cfg.object_shading)
        else:
            image[full] = colour
    if cfg.camera_blur > 0.0:
        image = cv2.GaussianBlur(image, (0, 0), rng.uniform(0.0, cfg.camera_blur) + 1e-3)
    return _finish(image, placed, {"kind": "multi_object", "background": cfg.background, "palette": cfg.palette})


def _room_rng(cfg: RoomConfig, seed: int, index: int) -> np.random.Generator:
    """Flat rooms of the train shapes keep the plain (seed, index) stream, hence their exact scenes;
    other surface / shape sets draw from a stream of their own, so that scene i of room_rich and
    of a held-out kind do not share the same room and layout."""
    if cfg.surfaces == ("flat",) and cfg.shapes == "shapes":
        return scene_rng(seed, index)
    key = zlib.crc32(f"{'|'.join(cfg.surfaces)}/{cfg.shapes}".encode())  # stable across runs, unlike hash()
    return np.random.default_rng([int(seed), int(index), key])


def _paint_room(rng: np.random.Generator, cfg: RoomConfig, bounds) -> tuple[np.ndarray, list, list[str]]:
    """(H, W, 3) float32 surfaces of the regions `bounds` (row ranges), each region's colours to avoid
    and each region's kind. A flat region draws exactly what the original rooms drew."""
    n = cfg.image_size
    image = np.empty((n, n, 3), np.float32)
    colours, kinds = [], []
    for a, b in bounds:
        kind = cfg.surfaces[int(rng.integers(0, len(cfg.surfaces)))] if len(cfg.surfaces) > 1 else cfg.surfaces[0]
        if kind == "flat":
            c = _hsv_colour(rng, 0, 1, sat=(0.2, 0.9), val=(0.3, 0.95))
            image[a:b] = c
            colours.append([c])
        else:
            # rooms have no train / test palette split: either palette's hues, so any hue
            surface, cols = _ROOM_PAINTERS[kind](rng, n, ("train", "test")[int(rng.integers(0, 2))])
            image[a:b] = surface[a:b]
            # every other pixel is plenty for three mean colours, at a quarter of the cost
            colours.append(list(cols) + (_dominant_colours(surface[a:b:2, ::2]) if b > a else []))
        kinds.append(kind)
    return image, colours, kinds


def _room_layout(rng: np.random.Generator, cfg: RoomConfig):
    """Region bounds (sky, wall, floor row ranges) and _paint_room's surfaces, colours and kinds."""
    n = cfg.image_size
    horizon = int(rng.uniform(0.15, 0.35) * n)  # sky | wall
    floor_line = int(rng.uniform(0.45, 0.65) * n)  # wall | floor
    bounds = ((0, horizon), (horizon, floor_line), (floor_line, n))
    return (bounds, *_paint_room(rng, cfg, bounds))


def room_background(cfg: RoomConfig, seed: int, index: int) -> np.ndarray:
    """(H, W, 3) uint8 sky, wall and floor of room scene `index`, i.e. that scene without its objects."""
    _, surface, _, _ = _room_layout(_room_rng(cfg, seed, index), cfg)
    return np.clip(surface, 0, 255).astype(np.uint8)


def room_scene(cfg: RoomConfig, seed: int, index: int) -> Scene:
    """Scene `index` of the room data set: sky above a wall above a floor, objects on the floor."""
    rng = _room_rng(cfg, seed, index)
    n = cfg.image_size
    bounds, surface, region_colours, kinds = _room_layout(rng, cfg)
    (_, horizon), (_, floor_line) = bounds[0], bounds[1]
    image = surface.copy()

    def draw(r):
        s = int(r.integers(cfg.object_size[0], cfg.object_size[1] + 1))
        bank = sprite_bank(cfg.shapes, s)
        return bank[int(r.integers(0, len(bank)))]

    n_objects = int(rng.integers(cfg.min_objects, cfg.max_objects + 1))
    # Objects stand on the floor; nearer ones (lower in the image) occlude farther ones.
    placed = _place_objects(
        rng, n_objects, n, draw, cfg.min_visible_fraction, y_range=(floor_line / n * 0.8, 1.0),
        depth_by_bottom=True, touching_prob=cfg.touching_prob,
    )
    flat = cfg.surfaces == ("flat",)
    used: list[np.ndarray] = []  # object colours so far
    for full, box in placed:
        if flat:  # as the original rooms: avoid all three region colours
            avoid = [c for cols in region_colours for c in cols]
        else:
            # patterned regions bring several colours each: avoid those of the regions the object
            # overlaps, and the mean surface colour under the object itself
            y1, y2 = int(box[1]), int(box[3])
            avoid = [c for (a, b), cols in zip(bounds, region_colours) if a < y2 and y1 < b for c in cols]
            avoid.append(surface[full].mean(0).astype(np.float64))
        colour = None
        if cfg.same_colour_prob > 0.0 and used and rng.random() < cfg.same_colour_prob:
            twin = used[int(rng.integers(0, len(used)))]
            # the hard case for MONet, but only if the shared colour still stands out from this surface
            if min(float(np.linalg.norm(twin - a)) for a in avoid) >= 90.0:
                colour = twin
        if colour is None:
            colour = _room_object_colour(rng, avoid + used, cfg.object_colours)
        used.append(colour)
        if cfg.object_shading > 0.0:
            _paint_shaded(rng, image, full, box, colour, cfg.object_shading)
        else:
            image[full] = colour
    meta = {"kind": "room", "horizon": horizon, "floor_line": floor_line, "surfaces": tuple(kinds), "shapes": cfg.shapes}
    return _finish(image, placed, meta)


def _room_object_colour(rng: np.random.Generator, avoid: list[np.ndarray], kind: str) -> np.ndarray:
    """A room object's colour: at least 90 (RGB L2) from `avoid` as the rooms always drew it, or
    for the "any" kind of OBJECT_COLOURS its own ranges and least distance (dark and greyish objects,
    as a camera sees them; the shipped segmenter gave half of such objects on an outside generator's
    rooms to the surface around them, docs/RESULTS.md)."""
    if kind == "bright":  # no extra random draw: the rooms of every earlier model, pixel for pixel
        return contrasting_colour(rng, avoid, min_distance=90.0)
    min_distance, sat, val, max_distance = _object_colour_ranges(rng, kind)
    return contrasting_colour(rng, avoid, min(min_distance, 90.0), sat, val, max_distance)


SceneConfig = MultiObjectConfig | RoomConfig


def generate(cfg: SceneConfig, seed: int, index: int) -> Scene:
    if isinstance(cfg, MultiObjectConfig):
        return multi_object_scene(cfg, seed, index)
    if isinstance(cfg, RoomConfig):
        return room_scene(cfg, seed, index)
    raise TypeError(f"unknown scene config {type(cfg).__name__}")


def contact_sheet(
    kinds: tuple[str, ...] = BACKGROUNDS,
    per_row: int = 8,
    image_size: int = 48,
    scale: int = 2,
    seed: int = 0,
    extra_rows: tuple[tuple, ...] | None = None,
) -> np.ndarray:
    """(H, W, 3) uint8 RGB overview: one labelled row of `per_row` scenes per background kind
    (train palette, train sprites), plus `extra_rows` (default: held-out shapes on solid), each
    (name, config) or (name, config, first scene index); every scene is resized to image_size * scale."""
    rows = [
        (f"{k}{' (held out)' if k in HELD_OUT_BACKGROUNDS else ''}", MultiObjectConfig(image_size=image_size, background=k))
        for k in kinds
    ]
    if extra_rows is None:
        held_out_shapes = MultiObjectConfig(image_size=image_size, sprites=HELD_OUT_SPRITES, min_objects=2)
        extra_rows = (("shapes_test (held out)", held_out_shapes),)
    rows += list(extra_rows)
    side, gap, label_w = image_size * scale, 2, 150
    sheet = np.full((len(rows) * (side + gap) + gap, label_w + per_row * (side + gap) + gap, 3), 255, np.uint8)
    for r, (name, cfg, *first) in enumerate(rows):
        y = gap + r * (side + gap)
        cv2.putText(sheet, name, (4, y + side // 2 + 4), cv2.FONT_HERSHEY_SIMPLEX, 0.4, (0, 0, 0), 1, cv2.LINE_AA)
        for i in range(per_row):
            img = generate(cfg, seed, i + (first[0] if first else 0)).image
            x = label_w + gap + i * (side + gap)
            sheet[y : y + side, x : x + side] = cv2.resize(img, (side, side), interpolation=cv2.INTER_NEAREST)
    return sheet


def room_contact_sheet(rich_rows: int = 3, per_row: int = 8, image_size: int = 64, seed: int = 0) -> np.ndarray:
    """(H, W, 3) uint8 RGB overview of the richer rooms: `rich_rows` rows of room_rich (scenes 0,
    1, ... in reading order), then one row of each held-out room kind."""
    rows = tuple(("room_rich", room_kind_config("room_rich", image_size), per_row * r) for r in range(rich_rows))
    rows += tuple((k, room_kind_config(k, image_size)) for k in ROOM_TEST_KINDS[2:])  # named "heldout_..."
    return contact_sheet(kinds=(), per_row=per_row, image_size=image_size, seed=seed, extra_rows=rows)
