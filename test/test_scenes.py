"""The generator's ground truth must match its pixels exactly."""
import dataclasses
import typing

import cv2
import numpy as np
import pytest

from split_perception.box_ops import box_iou
from split_perception.training import scenes

CONFIGS = [
    scenes.MultiObjectConfig(),
    scenes.MultiObjectConfig(background="checkerboard"),
    scenes.MultiObjectConfig(background="checkerboard", palette="test", sprites="digits"),
    scenes.MultiObjectConfig(image_size=64, sprite_size=20, sprites="shapes"),
    scenes.MultiObjectConfig(background="stripes", sprites="varied", sprite_size_jitter=4),
    scenes.RoomConfig(),
    # every newer background kind, train and held out, each with another palette / sprite set
    *[
        scenes.MultiObjectConfig(
            background=k, palette=("train", "test")[i % 2], sprites=("mixed", "shapes_test", "digits")[i % 3]
        )
        for i, k in enumerate(k for k in scenes.BACKGROUNDS if k not in ("solid", "checkerboard"))
    ],
    scenes.MultiObjectConfig(image_size=64, sprite_size=18, background="texture_test"),
    # richer rooms, unshaded so that each object is one colour
    *[scenes.room_kind_config(k, object_shading=0.0) for k in scenes.ROOM_TEST_KINDS[1:]],
    scenes.room_kind_config("room_rich", image_size=32, object_shading=0.0, touching_prob=1.0, same_colour_prob=1.0),
]


def _cfg_id(c):
    kind = getattr(c, "background", None) or "-".join(dict.fromkeys(c.surfaces)) + f"-{c.shapes}"
    return f"{type(c).__name__}-{kind}-{c.image_size}"


@pytest.mark.parametrize("cfg", CONFIGS, ids=_cfg_id)
def test_ground_truth_matches_pixels(cfg):
    for i in range(40 if isinstance(cfg, scenes.RoomConfig) or cfg.background in ("solid", "checkerboard") else 25):
        s = scenes.generate(cfg, seed=3, index=i)
        n = cfg.image_size
        assert s.image.shape == (n, n, 3) and s.image.dtype == np.uint8
        assert cfg.min_objects <= s.count <= cfg.max_objects
        assert s.masks.shape == (s.count, n, n) and s.boxes.shape == (s.count, 4)
        # labels and masks describe the same pixels
        np.testing.assert_array_equal(s.labels > 0, s.masks.any(0) if s.count else np.zeros((n, n), bool))
        assert (s.masks.sum(0) <= 1).all(), "visible masks must not overlap"
        for k in range(s.count):
            ys, xs = np.nonzero(s.masks[k])
            assert len(ys) > 0, "every counted object is visible"
            x1, y1, x2, y2 = s.boxes[k]
            # the box bounds the visible mask ...
            assert x1 <= xs.min() and xs.max() < x2 and y1 <= ys.min() and ys.max() < y2
            # ... and the visible pixels are one colour, the object's own
            colours = np.unique(s.image[s.masks[k]], axis=0)
            assert len(colours) == 1
        # the topmost object is never occluded, so its box is tight on its mask
        if s.count:
            top = s.count - 1
            ys, xs = np.nonzero(s.masks[top])
            np.testing.assert_array_equal(s.boxes[top], [xs.min(), ys.min(), xs.max() + 1, ys.max() + 1])
        # off the objects the image is exactly the scene's background
        if isinstance(cfg, scenes.MultiObjectConfig):
            bg = scenes.background_image(cfg, 3, i)
        else:
            bg = scenes.room_background(cfg, 3, i)
        np.testing.assert_array_equal(s.image[s.labels == 0], bg[s.labels == 0])


def test_occlusion_leaves_each_object_enough_of_itself():
    cfg = scenes.MultiObjectConfig(min_objects=5, max_objects=5, min_visible_fraction=0.6)
    for i in range(30):
        s = scenes.generate(cfg, 1, i)
        for k in range(s.count):
            x1, y1, x2, y2 = s.boxes[k].astype(int)
            # a sprite fills at least a quarter of its box; visible part >= 0.6 of it
            assert s.masks[k].sum() >= 0.6 * 0.25 * (x2 - x1) * (y2 - y1)


def test_scenes_are_reproducible_and_independent_of_order():
    cfg = scenes.MultiObjectConfig(background="checkerboard")
    a = scenes.generate(cfg, 7, 12)
    _ = [scenes.generate(cfg, 7, i) for i in range(5)]
    b = scenes.generate(cfg, 7, 12)
    np.testing.assert_array_equal(a.image, b.image)
    np.testing.assert_array_equal(a.boxes, b.boxes)
    c = scenes.generate(cfg, 8, 12)
    assert not np.array_equal(a.image, c.image)


def test_train_and_test_palettes_do_not_share_background_hues():
    import colorsys

    def hue_bins(palette):
        bins = set()
        cfg = scenes.MultiObjectConfig(palette=palette, max_objects=0)
        for i in range(200):
            r, g, b = scenes.generate(cfg, 0, i).image[0, 0] / 255.0
            bins.add(int(colorsys.rgb_to_hsv(r, g, b)[0] * 12) % 12)
        return bins

    train, test = hue_bins("train"), hue_bins("test")
    assert train and test
    assert not train & test
    assert {b % 2 for b in train} == {0} and {b % 2 for b in test} == {1}


def test_checkerboard_has_two_colours_and_object_count_spans_range():
    cfg = scenes.MultiObjectConfig(background="checkerboard", max_objects=0)
    s = scenes.generate(cfg, 0, 0)
    assert len(np.unique(s.image.reshape(-1, 3), axis=0)) == 2
    counts = {scenes.generate(scenes.MultiObjectConfig(), 0, i).count for i in range(100)}
    assert counts == {0, 1, 2, 3, 4, 5}


@pytest.mark.parametrize("kind", scenes.ROOM_TEST_KINDS)
def test_room_objects_sit_low_and_nearer_ones_are_on_top(kind):
    cfg = scenes.room_kind_config(kind)
    for i in range(30):
        s = scenes.generate(cfg, 0, i)
        bottoms = s.boxes[:, 3]
        assert (np.diff(bottoms) >= 0).all(), "paint order is back (higher) to front (lower)"


def test_bad_configs_are_rejected():
    with pytest.raises(ValueError, match="min_objects"):
        scenes.MultiObjectConfig(min_objects=3, max_objects=1)
    with pytest.raises(ValueError, match="does not fit"):
        scenes.MultiObjectConfig(image_size=16, sprite_size=20)


def test_train_and_held_out_kinds_are_disjoint_and_complete():
    from typing import get_args

    train, held = set(scenes.TRAIN_BACKGROUNDS), set(scenes.HELD_OUT_BACKGROUNDS)
    assert not train & held
    assert train | held == set(get_args(scenes.Background)) == set(scenes.BACKGROUNDS)
    assert {"solid", "checkerboard", "gradient", "stripes", "texture", "noise"} == train
    assert {"vignette", "plaid", "texture_test"} == held
    assert scenes.TRAIN_SPRITES == "mixed" and scenes.HELD_OUT_SPRITES == "shapes_test"
    # the natural textures of the held-out kind are images the train kind never cuts from
    assert not set(scenes.TRAIN_TEXTURES) & set(scenes.HELD_OUT_TEXTURES)
    with pytest.raises(ValueError, match="unknown background"):
        scenes.MultiObjectConfig(background="marble")


@pytest.mark.parametrize("name", scenes.TRAIN_TEXTURES + scenes.HELD_OUT_TEXTURES)
def test_texture_images_ship_with_scikit_image(name):
    """Every sample image used is bundled in scikit-image's wheel (no download on demand)."""
    grey = scenes._texture_source(name, False)
    colour = scenes._texture_source(name, True)
    assert grey.ndim == 2 and min(grey.shape) >= 96 and 0.0 <= grey.min() and grey.max() <= 1.0
    assert colour.shape == grey.shape + (3,)


@pytest.mark.parametrize("kind", scenes.BACKGROUNDS)
def test_every_kind_is_deterministic_varied_and_patterned(kind):
    cfg = scenes.MultiObjectConfig(background=kind)
    a = scenes.generate(cfg, 5, 9)
    _ = [scenes.generate(cfg, 5, i) for i in range(3)]
    b = scenes.generate(cfg, 5, 9)
    np.testing.assert_array_equal(a.image, b.image)
    np.testing.assert_array_equal(a.boxes, b.boxes)
    np.testing.assert_array_equal(a.labels, b.labels)
    backgrounds = [scenes.background_image(cfg, 5, i) for i in range(12)]
    assert len({bg.tobytes() for bg in backgrounds}) == 12, "each scene draws its own background"
    n_colours = [len(np.unique(bg.reshape(-1, 3), axis=0)) for bg in backgrounds]
    if kind == "solid":
        assert max(n_colours) == 1
    elif kind in ("checkerboard", "stripes", "plaid"):
        assert min(n_colours) >= 2  # hard-edged patterns: two or three colours (soft stripes: more)
    else:
        assert min(n_colours) > 20, "ramps, textures and noise vary smoothly across the image"


def test_kinds_do_not_share_sprite_layouts():
    """Scene i of two kinds must not repeat the same sprites at the same places."""
    layouts = {}
    for kind in scenes.BACKGROUNDS:
        cfg = scenes.MultiObjectConfig(background=kind, min_objects=3)
        layouts[kind] = [scenes.generate(cfg, 0, i).boxes.tobytes() for i in range(10)]
    for a in scenes.BACKGROUNDS:
        for b in scenes.BACKGROUNDS:
            if a < b:
                same = sum(x == y for x, y in zip(layouts[a], layouts[b]))
                assert same <= 1, (a, b)


@pytest.mark.parametrize("kind", scenes.BACKGROUNDS)
@pytest.mark.parametrize("palette", ["train", "test"])
def test_objects_contrast_with_the_background_under_them(kind, palette):
    """Mean RGB distance between an object's pixels and the background pixels under them."""
    cfg = scenes.MultiObjectConfig(background=kind, min_objects=2, palette=palette)
    dists = []
    for i in range(30):
        s = scenes.generate(cfg, 11, i)
        bg = scenes.background_image(cfg, 11, i).astype(np.float32)
        img = s.image.astype(np.float32)
        for m in s.masks:
            dists.append(float(np.linalg.norm(img[m] - bg[m], axis=1).mean()))
    assert len(dists) >= 50
    assert min(dists) > 80.0, f"{kind}: weakest object contrast {min(dists):.0f}"
    assert np.median(dists) > 130.0


def _centred(mask, side):
    out = np.zeros((side, side), bool)
    h, w = mask.shape
    out[(side - h) // 2 : (side - h) // 2 + h, (side - w) // 2 : (side - w) // 2 + w] = mask
    return out


def test_held_out_shapes_differ_from_train_shapes():
    for size in range(8, 25, 2):
        train = [_centred(m, size) for m in scenes.sprite_bank("shapes", size)]
        held = [_centred(m, size) for m in scenes.sprite_bank("shapes_test", size)]
        assert len(held) == 7
        for h in held:
            for t in train:
                iou = (h & t).sum() / (h | t).sum()
                assert iou < 0.8, f"size {size}: a held-out shape overlaps a train shape at IoU {iou:.2f}"
    # and no held-out mask is in the training bank
    size = 14
    train_bank = {(m.shape, m.tobytes()) for m in scenes.sprite_bank(scenes.TRAIN_SPRITES, size)}
    assert not any((m.shape, m.tobytes()) in train_bank for m in scenes.sprite_bank(scenes.HELD_OUT_SPRITES, size))


def test_varied_bank_is_mixed_plus_random_shapes_of_many_outlines():
    size = 14
    mixed, varied = scenes.sprite_bank("mixed", size), scenes.sprite_bank("varied", size)
    randoms = scenes.random_shape_masks(size)
    assert len(varied) == len(mixed) + len(randoms)
    assert all(a.shape == b.shape and (a == b).all() for a, b in zip(varied, mixed))
    assert len(randoms) >= 0.95 * scenes.RANDOM_SHAPES_PER_SIZE
    scenes.random_shape_masks.cache_clear()
    assert all((a == b).all() for a, b in zip(randoms, scenes.random_shape_masks(size)))  # a constant bank
    cropped = [_centred(m, size) for m in varied[len(mixed):]]
    aspect = np.array([min(m.shape) / max(m.shape) for m in varied[len(mixed):]])
    assert aspect.min() < 0.6 and (aspect > 0.9).mean() > 0.2, "round and elongated outlines both"
    solidity = []
    for m in cropped:
        contours, _ = cv2.findContours(m.astype(np.uint8), cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_NONE)
        hull = np.zeros(m.shape, np.uint8)
        cv2.fillConvexPoly(hull, cv2.convexHull(np.concatenate(contours)), 1)  # hull in pixels, as m
        solidity.append(m.sum() / hull.sum())
    solidity = np.array(solidity)
    assert (solidity < 0.9).mean() > 0.1 and (solidity > 0.95).mean() > 0.1, "convex and concave outlines both"
    distinct = {(m.shape, m.tobytes()) for m in cropped}
    assert len(distinct) > 0.9 * len(cropped)


def test_part_shapes_are_connected_concave_and_a_constant_bank():
    size = 14
    parts = scenes.part_shape_masks(size)
    varied, with_parts = scenes.sprite_bank("varied", size), scenes.sprite_bank("varied_parts", size)
    assert len(with_parts) == len(varied) + len(parts) and len(parts) >= 0.9 * scenes.PART_SHAPES_PER_SIZE
    scenes.part_shape_masks.cache_clear()
    assert all((a == b).all() for a, b in zip(parts, scenes.part_shape_masks(size)))
    solidity = []
    for m in parts:
        assert cv2.connectedComponents(m.astype(np.uint8), connectivity=4)[0] == 2  # one piece
        assert max(np.ptp(np.nonzero(m)[0]), np.ptp(np.nonzero(m)[1])) + 1 >= size - 2  # long side about size
        contours, _ = cv2.findContours(m.astype(np.uint8), cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_NONE)
        hull = np.zeros(m.shape, np.uint8)
        cv2.fillConvexPoly(hull, cv2.convexHull(np.concatenate(contours)), 1)
        solidity.append(m.sum() / hull.sum())
    assert np.median(solidity) < 0.85, "bodies with limbs: mostly far from convex"


@pytest.mark.parametrize("kind", ["varied", "varied_parts"])
def test_random_shapes_stay_away_from_the_most_distinct_held_out_shapes(kind):
    """The random family comes near the held-out hexagon and ellipses (IoU up to ~0.9, stated in
    docs/RESULTS.md) but never near the star, crescent or L-shape, which stay a clean test; nor do
    the shapes made of parts (measured max IoU 0.52-0.74)."""
    for size in (12, 14, 16, 20):
        held = [_centred(m, size) for m in scenes.sprite_bank("shapes_test", size)]
        star, crescent, ell = held[0], held[4], held[6]
        bank = scenes.sprite_bank(kind, size)[len(scenes.sprite_bank("mixed", size)):]
        randoms = np.stack([_centred(m, size) for m in bank])
        for name, h in (("star", star), ("crescent", crescent), ("L", ell)):
            iou = (randoms & h).sum((1, 2)) / (randoms | h).sum((1, 2))
            assert iou.max() < 0.8, f"size {size}: a random shape matches the held-out {name} at IoU {iou.max():.2f}"


def test_object_shading_ramps_brightness_and_zero_is_flat():
    flat = scenes.MultiObjectConfig(background="gradient", min_objects=2)
    shaded = scenes.MultiObjectConfig(background="gradient", min_objects=2, object_shading=0.5)
    ratios = []
    for i in range(15):
        a, b = scenes.generate(flat, 2, i), scenes.generate(shaded, 2, i)
        np.testing.assert_array_equal(a.boxes, b.boxes)  # shading changes pixels only
        np.testing.assert_array_equal(a.labels, b.labels)
        for k in range(b.count):
            if b.masks[k].sum() < 20:
                continue
            assert len(np.unique(a.image[a.masks[k]], axis=0)) == 1
            lum = b.image[b.masks[k]].astype(np.float32).sum(1)
            ratios.append(lum.max() / max(lum.min(), 1.0))
    assert ratios and np.median(ratios) > 1.2
    with pytest.raises(ValueError, match="object_shading"):
        scenes.MultiObjectConfig(object_shading=-0.1)


def test_contact_sheet_has_a_row_per_kind():
    sheet = scenes.contact_sheet(kinds=("solid", "plaid"), per_row=3, extra_rows=())
    assert sheet.dtype == np.uint8 and sheet.shape[0] == 2 * (96 + 2) + 2


@pytest.mark.parametrize("kind", [k for k in scenes.BACKGROUNDS if k != "texture_test"])
def test_every_background_pixel_keeps_the_palette_split(kind):
    """Blends mix only tones of one hue bin, so no train-palette background shows a test hue and vice
    versa (texture_test is exempt: its colours are the photographs' own, the palette only tints)."""
    import colorsys

    for palette, parity in (("train", 0), ("test", 1)):
        cfg = scenes.MultiObjectConfig(background=kind, palette=palette, max_objects=0)
        px = np.concatenate([scenes.background_image(cfg, 0, i).reshape(-1, 3)[::23] for i in range(25)]).astype(float)
        px = px[px.max(1) - px.min(1) >= 16] / 255.0  # hue is undefined on greys
        bins = np.array([int(colorsys.rgb_to_hsv(*p)[0] * 12) % 12 for p in px])
        assert len(bins) > 500 and (bins % 2 == parity).all(), (palette, np.unique(bins))


def test_solid_and_checkerboard_scenes_are_unchanged():
    """Pinned digests of scenes generated before the other kinds existed."""
    import hashlib

    pinned = {
        (): "3b4c93e40cc1bdca",
        (("background", "checkerboard"),): "8e5f4f634659640c",
        (("background", "checkerboard"), ("palette", "test"), ("sprites", "digits")): "26196ca20ffd4523",
    }
    for kw, digest in pinned.items():
        h = hashlib.sha256()
        for i in range(20):
            s = scenes.generate(scenes.MultiObjectConfig(**dict(kw)), 4, i)
            h.update(s.image.tobytes())
            h.update(s.boxes.tobytes())
        assert h.hexdigest()[:16] == digest, kw


def test_cli_offers_every_background_kind_and_sprite_set():
    from split_perception.cli import build_parser

    actions = {a.dest: a for a in build_parser()._subparsers._group_actions[0].choices["dataset"]
               ._subparsers._group_actions[0].choices["generate"]._actions}
    assert set(actions["background"].choices) == set(scenes.BACKGROUNDS)
    assert set(actions["sprites"].choices) == set(typing.get_args(scenes.Sprites))


# --------------------------------------------------------------------------- rooms
def _room_digest(cfg, seed, indices):
    import hashlib

    h = hashlib.sha256()
    for i in indices:
        s = scenes.generate(cfg, seed, i)
        h.update(s.image.tobytes())
        h.update(s.boxes.tobytes())
        h.update(s.labels.tobytes())
    return h.hexdigest()[:16]


def test_default_rooms_are_unchanged():
    """Pinned digest of RoomConfig() scenes 0-4 made before the richer rooms existed (shipped MONet
    models and other tests depend on them); the "room" kind is that config."""
    assert _room_digest(scenes.RoomConfig(), 0, range(5)) == "5461e408e50acac9"
    assert scenes.room_kind_config("room") == scenes.RoomConfig()
    assert scenes.room_kind_config("room", 32) == scenes.RoomConfig(image_size=32)


def test_room_kind_presets():
    rich = scenes.room_kind_config("room_rich")
    assert rich.surfaces == scenes.ROOM_TRAIN_SURFACES and rich.shapes == "shapes"
    assert (rich.min_objects, rich.max_objects, rich.object_size) == (1, 6, (8, 24))
    assert (rich.same_colour_prob, rich.touching_prob, rich.object_shading) == (0.3, 0.3, 0.3)
    held_s, held_o = scenes.room_kind_config("heldout_surfaces"), scenes.room_kind_config("heldout_shapes")
    assert held_s == scenes.RoomConfig(**{**vars(rich), "surfaces": scenes.ROOM_HELD_OUT_SURFACES})
    assert held_o == scenes.RoomConfig(**{**vars(rich), "shapes": "shapes_test"})
    assert scenes.room_kind_config("room_rich", max_objects=2).max_objects == 2
    assert scenes.room_kind_config("room_rich", 128).object_size == (16, 48)
    assert scenes.ROOM_TEST_KINDS == ("room", "room_rich", "heldout_surfaces", "heldout_shapes")
    assert not set(scenes.ROOM_TRAIN_SURFACES) & set(scenes.ROOM_HELD_OUT_SURFACES)
    assert set(scenes.ROOM_TRAIN_SURFACES) == {"flat", "shaded", "tiles", "stripes", "texture", "noise"}
    assert set(scenes.ROOM_HELD_OUT_SURFACES) == {"plaid", "vignette", "texture_test"}
    # a YAML / JSON list is a tuple again, so the config stays hashable and comparable
    assert scenes.RoomConfig(surfaces=["flat", "tiles"], object_size=[8, 12]) == scenes.RoomConfig(
        surfaces=("flat", "tiles"), object_size=(8, 12))


def test_bad_room_configs_name_the_choices():
    with pytest.raises(ValueError, match="unknown room surface 'marble'.*'flat'.*'texture_test'"):
        scenes.RoomConfig(surfaces=("flat", "marble"))
    with pytest.raises(ValueError, match="tuple"):
        scenes.RoomConfig(surfaces="tiles")
    with pytest.raises(ValueError, match="at least one"):
        scenes.RoomConfig(surfaces=())
    with pytest.raises(ValueError, match="unknown room shapes 'digits'.*'shapes'.*'shapes_test'"):
        scenes.RoomConfig(shapes="digits")
    with pytest.raises(ValueError, match="unknown room kind 'attic'.*'room_rich'.*'heldout_shapes'"):
        scenes.room_kind_config("attic")
    for bad in ({"same_colour_prob": 1.5}, {"touching_prob": -0.1}, {"object_shading": 2.0},
                {"object_size": (3, 10)}, {"object_size": (10, 70)}, {"min_visible_fraction": 1.2}):
        with pytest.raises(ValueError, match=next(iter(bad))):
            scenes.RoomConfig(**bad)


def _region_pixels(s, img, region):
    """Off-object pixels of one region (0 sky, 1 wall, 2 floor) of a room scene."""
    n = img.shape[0]
    edges = (0, s.meta["horizon"], s.meta["floor_line"], n)
    rows = np.zeros((n, n), bool)
    rows[edges[region] : edges[region + 1]] = True
    return img[rows & (s.labels == 0)]


@pytest.mark.parametrize("kind", scenes.ROOM_SURFACES)
def test_every_room_surface_renders_and_is_deterministic(kind):
    cfg = scenes.RoomConfig(surfaces=(kind,), max_objects=6)
    a = scenes.generate(cfg, 5, 9)
    _ = [scenes.generate(cfg, 5, i) for i in range(3)]
    b = scenes.generate(cfg, 5, 9)
    for f in ("image", "boxes", "masks", "labels"):
        np.testing.assert_array_equal(getattr(a, f), getattr(b, f))
    assert a.meta["surfaces"] == (kind,) * 3
    assert not np.array_equal(a.image, scenes.generate(cfg, 6, 9).image)
    backgrounds = [scenes.room_background(cfg, 5, i) for i in range(10)]
    assert len({bg.tobytes() for bg in backgrounds}) == 10
    n_colours = []
    for i, bg in enumerate(backgrounds):
        s = scenes.generate(cfg, 5, i)
        for region in range(3):
            px = _region_pixels(s, bg, region)
            if len(px) >= 50:
                n_colours.append(len(np.unique(px, axis=0)))
    assert len(n_colours) >= 20
    if kind == "flat":
        assert max(n_colours) == 1
    else:  # patterned: two or three colours (tiles, hard stripes, plaid) or many (ramps, photos, noise)
        assert np.mean(np.array(n_colours) >= 2) >= 0.9, n_colours


def test_regions_draw_their_surface_kinds_independently():
    cfg = scenes.room_kind_config("room_rich")
    drawn = [scenes.generate(cfg, 0, i).meta["surfaces"] for i in range(150)]
    for region in range(3):
        assert {d[region] for d in drawn} == set(scenes.ROOM_TRAIN_SURFACES)
    assert sum(len(set(d)) > 1 for d in drawn) > 100, "sky, wall and floor usually differ in kind"


def _covering_sprites(s, k, bank="shapes", sizes=range(8, 25)):
    """Object k's visible mask cropped to its box, and the whole bank sprites of that box size that
    cover it: one of them is the object's full (unoccluded) sprite."""
    x1, y1, x2, y2 = s.boxes[k].astype(int)
    vis = s.masks[k][y1:y2, x1:x2]
    return vis, [m for size in sizes for m in scenes.sprite_bank(bank, size) if m.shape == vis.shape and not (vis & ~m).any()]


def _which_bank(s, k):
    """Banks ("shapes" / "shapes_test") holding the unoccluded object k's mask, cropped to its box."""
    found = set()
    for bank in scenes.ROOM_SHAPES:
        vis, fits = _covering_sprites(s, k, bank, range(4, 65))
        if any(np.array_equal(m, vis) for m in fits):
            found.add(bank)
    return found


def test_held_out_surfaces_and_shapes_never_appear_in_rich_rooms():
    rich = scenes.room_kind_config("room_rich")
    held = {"room_rich": ("shapes", scenes.ROOM_TRAIN_SURFACES), "heldout_surfaces": ("shapes", scenes.ROOM_HELD_OUT_SURFACES),
            "heldout_shapes": ("shapes_test", scenes.ROOM_TRAIN_SURFACES)}
    for kind, (bank, surfaces) in held.items():
        cfg = scenes.room_kind_config(kind)
        seen = set()
        for i in range(80):
            s = scenes.generate(cfg, 1, i)
            assert set(s.meta["surfaces"]) <= set(surfaces) and s.meta["shapes"] == bank
            seen |= set(s.meta["surfaces"])
            if i < 30:  # the topmost object is unoccluded: its mask is a whole sprite of the bank
                assert _which_bank(s, s.count - 1) == {bank}, (kind, i)
        assert seen == set(surfaces)
    # and the held-out kinds are new scenes, not room_rich's layouts repainted
    for kind in ("heldout_surfaces", "heldout_shapes"):
        other = scenes.room_kind_config(kind)
        assert sum(scenes.generate(rich, 0, i).meta["horizon"] == scenes.generate(other, 0, i).meta["horizon"]
                   for i in range(20)) < 10


def test_rich_rooms_keep_min_visible_fraction_and_object_counts():
    cfg = scenes.room_kind_config("room_rich", object_shading=0.0, min_objects=6, min_visible_fraction=0.5)
    counts = []
    for i in range(30):
        s = scenes.generate(cfg, 4, i)
        counts.append(s.count)
        for k in range(s.count):
            # some whole sprite of this box size covers the visible part and is at most 2x its size
            vis, fits = _covering_sprites(s, k)
            assert fits and any(vis.sum() >= 0.5 * m.sum() - 1e-6 for m in fits), (i, k)
    assert max(counts) == 6 and np.mean(counts) > 4.5, "up to 6 objects fit a 64 px room"


def _touching_fraction(cfg, n=40):
    """Fraction of objects (in scenes of 2+) whose visible mask is 4-adjacent to another's."""
    import cv2

    cross = np.array([[0, 1, 0], [1, 1, 1], [0, 1, 0]], np.uint8)
    hits = total = 0
    for i in range(n):
        s = scenes.generate(cfg, 2, i)
        for k in range(s.count if s.count >= 2 else 0):
            grown = cv2.dilate(s.masks[k].astype(np.uint8), cross).astype(bool)
            hits += bool((grown & np.delete(s.masks, k, 0).any(0)).any())
            total += 1
    return hits / max(total, 1), total


def test_touching_prob_puts_objects_against_each_other():
    # no occlusion allowed, so contact comes only from placement, not from one object covering another
    base = dict(object_shading=0.0, min_objects=3, min_visible_fraction=1.0)
    touching, n = _touching_fraction(scenes.room_kind_config("room_rich", touching_prob=1.0, **base))
    apart, _ = _touching_fraction(scenes.room_kind_config("room_rich", touching_prob=0.0, **base))
    assert n >= 80 and touching == 1.0 and apart < 0.4, (touching, apart)
    # with occlusion allowed, a touching object overlaps the other by 2 px at most along their edge:
    # the back one of a pair loses few pixels (its whole sprite is the bank mask that covers its
    # visible part with the fewest extra pixels)
    cfg = scenes.room_kind_config("room_rich", touching_prob=1.0, object_shading=0.0, min_objects=2, max_objects=2)
    pairs = 0
    for i in range(30):
        s = scenes.generate(cfg, 3, i)
        if s.count < 2:
            continue
        pairs += 1
        vis, fits = _covering_sprites(s, 0)
        hidden = min(int((m & ~vis).sum()) for m in fits)
        assert hidden <= 2 * max(vis.shape), (i, hidden)
    assert pairs >= 25



def test_multi_object_touching_prob_puts_sprites_against_each_other_and_zero_changes_nothing():
    base = dict(min_objects=3, max_objects=3, min_visible_fraction=1.0, sprites="varied")  # no occlusion
    touching, n = _touching_fraction(scenes.MultiObjectConfig(touching_prob=1.0, **base))
    apart, _ = _touching_fraction(scenes.MultiObjectConfig(**base))
    assert n >= 100 and touching > 0.95 and apart < 0.6, (touching, apart)
    plain, zero = scenes.MultiObjectConfig(), scenes.MultiObjectConfig(touching_prob=0.0)
    np.testing.assert_array_equal(scenes.generate(plain, 0, 7).image, scenes.generate(zero, 0, 7).image)
    with pytest.raises(ValueError, match="touching_prob"):
        scenes.MultiObjectConfig(touching_prob=1.5)


def test_overlap_prob_puts_sprites_over_each_other_and_zero_changes_nothing():
    def overlapping_share(cfg):
        hits = total = 0
        for i in range(60):
            s = scenes.generate(cfg, 4, i)
            if s.count < 2:
                continue
            iou = box_iou(s.boxes, s.boxes)
            np.fill_diagonal(iou, 0)
            hits, total = hits + int((iou > 0.15).any(1).sum()), total + s.count
            assert s.masks.reshape(s.count, -1).any(1).all(), i  # the occlusion limit still holds: none hidden
        return hits / total

    base = dict(min_objects=3, max_objects=4, sprites="varied")
    over, plain = overlapping_share(scenes.MultiObjectConfig(overlap_prob=1.0, **base)), overlapping_share(scenes.MultiObjectConfig(**base))
    assert over > 0.65 and plain < 0.4 and over > plain + 0.3, (over, plain)
    zero = scenes.MultiObjectConfig(overlap_prob=0.0, touching_prob=0.5)
    np.testing.assert_array_equal(scenes.generate(scenes.MultiObjectConfig(touching_prob=0.5), 0, 7).image,
                                  scenes.generate(zero, 0, 7).image)
    with pytest.raises(ValueError, match="overlap_prob"):
        scenes.MultiObjectConfig(overlap_prob=-0.1)


def test_sprite_turns_make_objects_as_wide_as_tall_and_off_changes_nothing():
    """The sprite banks are mostly upright digits, so objects are taller than wide unless turned."""
    def mean_width_and_height(cfg):
        sides = np.concatenate([np.diff(np.asarray(scenes.generate(cfg, 3, i).boxes).reshape(-1, 2, 2), axis=1)[:, 0]
                                for i in range(150)])
        return sides.mean(0)  # (width, height)

    base = dict(min_objects=2, max_objects=4, sprites="varied")
    upright_w, upright_h = mean_width_and_height(scenes.MultiObjectConfig(**base))
    turned_w, turned_h = mean_width_and_height(scenes.MultiObjectConfig(sprite_turns=True, **base))
    assert upright_h > 1.2 * upright_w, (upright_w, upright_h)
    assert abs(turned_w - turned_h) < 0.06 * turned_h, (turned_w, turned_h)
    plain, off = scenes.MultiObjectConfig(), scenes.MultiObjectConfig(sprite_turns=False)
    np.testing.assert_array_equal(scenes.generate(plain, 0, 7).image, scenes.generate(off, 0, 7).image)


def test_object_colours_any_adds_dark_and_greyish_objects_and_bright_is_unchanged():
    """"any" draws what a camera also sees (dark, greyish, nearer the wall's colour); "bright" (the
    default) draws exactly the colours every earlier model was trained on."""
    import colorsys

    def object_hsv(cfg):
        hsv = []
        for i in range(60):
            s = scenes.generate(cfg, 5, i)
            hsv += [colorsys.rgb_to_hsv(*(s.image[m][0] / 255.0)) for m in s.masks]
        return np.array(hsv)

    bright = object_hsv(scenes.MultiObjectConfig(min_objects=2))
    anyc = object_hsv(scenes.MultiObjectConfig(min_objects=2, object_colours="any"))
    assert bright[:, 1].min() >= 0.59 and bright[:, 2].min() >= 0.59  # saturation, value >= 0.6 (uint8 rounding)
    assert (anyc[:, 2] < 0.5).mean() > 0.2 and (anyc[:, 1] < 0.5).mean() > 0.2
    mixed = object_hsv(scenes.MultiObjectConfig(min_objects=2, object_colours="mixed"))
    assert 0.05 < (mixed[:, 2] < 0.5).mean() < (anyc[:, 2] < 0.5).mean() - 0.05  # about half as many dark ones
    default, explicit = scenes.MultiObjectConfig(background="texture"), scenes.MultiObjectConfig(background="texture", object_colours="bright")
    np.testing.assert_array_equal(scenes.generate(default, 0, 3).image, scenes.generate(explicit, 0, 3).image)
    with pytest.raises(ValueError, match="object_colours"):
        scenes.MultiObjectConfig(object_colours="pastel")


def test_object_colours_camera_adds_faint_objects_near_the_wall_colour():
    """"faint" objects are 40-110 (RGB L2) from the nearest colour they avoid: on a solid wall,
    objects that stand out a little; "camera" mixes bright, any and faint ones, and "mixed" draws
    the same scenes as before "camera" existed (its two-way choice takes the same random numbers)."""
    def wall_distances(colours):
        cfg = scenes.MultiObjectConfig(min_objects=2, object_colours=colours, palette="train_wide")
        d = []
        for i in range(60):
            s = scenes.generate(cfg, 5, i)
            wall = s.image[~np.any(s.masks, 0)].astype(float).mean(0)
            d += [float(np.linalg.norm(s.image[m][0].astype(float) - wall)) for m in s.masks]
        return np.array(d)

    faint, camera, mixed = wall_distances("faint"), wall_distances("camera"), wall_distances("mixed")
    assert np.median(faint) < 110 and faint.min() >= 38  # uint8 rounding
    assert (faint <= 112).mean() > 0.5 and (faint < 68).mean() > 0.2 and (mixed < 68).mean() < 0.05
    assert (mixed < 110).mean() + 0.05 < (camera < 110).mean() < (faint < 110).mean()
    grey = np.array([128.0, 128.0, 128.0])
    for seed in range(20):
        c = scenes.contrasting_colour(np.random.default_rng(seed), [grey], 40.0, (0.1, 1.0), (0.15, 1.0), 110.0)
        assert 40.0 <= np.linalg.norm(c - grey) <= 110.0


def test_object_colours_pattern_puts_objects_near_one_colour_of_a_two_colour_wall():
    """"pattern": on checkerboards and stripes, objects 20-70 from one of the two pattern colours (and
    at least 70 from the mean under them); other walls take "any" objects. The other kinds draw the
    scenes they drew before (their random numbers are taken in the same order)."""
    def nearest_pattern_colour(background, colours):
        cfg = scenes.MultiObjectConfig(background=background, min_objects=2, max_objects=4, object_colours=colours,
                                       object_shading=0.0, palette="train")
        d = []
        for i in range(40):
            s = scenes.generate(cfg, 5, i)
            wall = s.image[~np.any(s.masks, 0)].reshape(-1, 3)
            tones, counts = np.unique(wall, axis=0, return_counts=True)
            two = tones[np.argsort(-counts)[:2]].astype(float)  # hard-edged walls: the two pattern colours
            d += [float(np.linalg.norm(two - s.image[m][0].astype(float), axis=1).min()) for m in s.masks]
        return np.array(d)

    pattern, camera = nearest_pattern_colour("checkerboard", "pattern"), nearest_pattern_colour("checkerboard", "camera")
    # measured 0.68 vs 0.10: where the two pattern colours are too near each other, "any" stands in
    assert (pattern <= 72).mean() > 0.55 and (camera <= 72).mean() < 0.25, ((pattern <= 72).mean(), (camera <= 72).mean())
    solid = scenes.MultiObjectConfig(min_objects=2, object_colours="pattern", palette="train")
    for i in range(20):  # a one-colour wall: "any" objects, at least 70 from it
        s = scenes.generate(solid, 5, i)
        wall = s.image[~np.any(s.masks, 0)].astype(float).mean(0)
        assert all(np.linalg.norm(s.image[m][0].astype(float) - wall) >= 68 for m in s.masks)
    for colours in ("pattern", "camera_patterns"):  # rooms take the kinds too ("pattern" draws "any" there)
        assert scenes.generate(scenes.room_kind_config("room_rich", 64, object_colours=colours), 5, 0).count >= 1


def test_room_object_colours_any_adds_dark_and_greyish_objects_and_bright_is_unchanged():
    """Rooms take the same object colour kinds: "bright" (the default) draws the rooms every earlier
    segmenter was trained on, "any" and "mixed" add dark and greyish objects."""
    import colorsys

    def object_hsv(colours):
        cfg = scenes.RoomConfig(min_objects=2, max_objects=3, object_colours=colours)  # flat objects
        hsv = []
        for i in range(60):
            s = scenes.generate(cfg, 5, i)
            hsv += [colorsys.rgb_to_hsv(*(s.image[m][0] / 255.0)) for m in s.masks if m.any()]
        return np.array(hsv)

    bright, anyc, mixed = object_hsv("bright"), object_hsv("any"), object_hsv("mixed")
    assert bright[:, 1].min() >= 0.59 and bright[:, 2].min() >= 0.59
    assert (anyc[:, 2] < 0.5).mean() > 0.2 and (anyc[:, 1] < 0.5).mean() > 0.2
    assert 0.05 < (mixed[:, 2] < 0.5).mean() < (anyc[:, 2] < 0.5).mean() - 0.05
    rich = scenes.room_kind_config("room_rich", 64)
    explicit = scenes.room_kind_config("room_rich", 64, object_colours="bright")
    np.testing.assert_array_equal(scenes.generate(rich, 0, 3).image, scenes.generate(explicit, 0, 3).image)
    with pytest.raises(ValueError, match="object_colours"):
        scenes.RoomConfig(object_colours="pastel")


def test_wide_palette_adds_grey_dark_pale_walls_and_two_hue_gradients():
    """"train_wide" walls span a camera's saturation and brightness (the train palette keeps them in
    0.3-0.8) and half its gradients run between two hue bins; the even-bin hues stay its own."""
    import colorsys

    def wall_hsv(palette):
        cfg = scenes.MultiObjectConfig(palette=palette, max_objects=0)
        return np.array([colorsys.rgb_to_hsv(*(scenes.generate(cfg, 0, i).image[0, 0] / 255.0)) for i in range(300)])

    narrow, wide = wall_hsv("train"), wall_hsv("train_wide")
    assert narrow[:, 1].min() > 0.28 and narrow[:, 2].min() > 0.28 and narrow[:, 2].max() < 0.82
    assert (wide[:, 1] < 0.15).mean() > 0.1 and (wide[:, 2] < 0.25).mean() > 0.05 and (wide[:, 2] > 0.85).mean() > 0.05
    coloured = wide[wide[:, 1] > 0.3]  # greys have no hue to keep
    assert {int(h * 12) % 2 for h in coloured[:, 0]} == {0}

    def corner_bins(palette):
        cfg = scenes.MultiObjectConfig(palette=palette, background="gradient", max_objects=0)
        two_hue = 0
        for i in range(200):
            img = scenes.background_image(cfg, 0, i).astype(np.float64) / 255.0
            hsv = [colorsys.rgb_to_hsv(*img[y, x]) for y, x in ((0, 0), (0, -1), (-1, 0), (-1, -1))]
            hues = {int(h * 12) % 12 for h, sat, val in hsv if sat > 0.3 and val > 0.3}
            two_hue += len(hues) > 1 and max(hues) - min(hues) > 1
        return two_hue

    assert corner_bins("train") == 0 and corner_bins("train_wide") > 5  # ~12 of 200 (many are grey or dark)

    def texture_contrast(palette):  # std of each texture's blend weight between its two tones
        spreads = []
        for i in range(80):
            img, colours = scenes._paint_texture(np.random.default_rng(i), 48, palette)
            c0, c1 = colours[:2]
            d = (c1 - c0).astype(np.float32)
            spreads.append(float((((img - c0.astype(np.float32)) @ d) / (d @ d)).std()))
        return np.array(spreads)

    narrow_contrast, wide_contrast = texture_contrast("train"), texture_contrast("train_wide")
    assert narrow_contrast.max() < 0.23 and wide_contrast.max() > 0.26
    with pytest.raises(ValueError, match="palette"):
        scenes.MultiObjectConfig(palette="pastel")


def test_same_colour_prob_makes_objects_share_colours_that_still_stand_out():
    def shared(p):
        cfg = scenes.room_kind_config("room_rich", same_colour_prob=p, object_shading=0.0, min_objects=3)
        n_shared, dists = 0, []
        for i in range(40):
            s = scenes.generate(cfg, 2, i)
            colours = [tuple(s.image[m][0]) for m in s.masks]
            n_shared += len(set(colours)) < len(colours)
            bg = scenes.room_background(cfg, 2, i).astype(np.float32)
            dists += [float(np.linalg.norm(s.image[m].astype(np.float32) - bg[m], axis=1).mean()) for m in s.masks]
        return n_shared, dists

    always, dists = shared(1.0)
    never, _ = shared(0.0)
    assert always >= 35 and never == 0, (always, never)
    assert min(dists) > 75.0 and np.median(dists) > 130.0, "a shared colour must still contrast with its surface"


@pytest.mark.parametrize("kind", scenes.ROOM_TEST_KINDS)
def test_room_objects_contrast_with_the_surface_under_them(kind):
    cfg = scenes.room_kind_config(kind)
    dists = []
    for i in range(30):
        s = scenes.generate(cfg, 11, i)
        bg = scenes.room_background(cfg, 11, i).astype(np.float32)
        img = s.image.astype(np.float32)
        dists += [float(np.linalg.norm(img[m] - bg[m], axis=1).mean()) for m in s.masks]
    assert len(dists) >= 50
    assert min(dists) > 75.0 and np.median(dists) > 130.0, f"{kind}: weakest {min(dists):.0f}"


def test_room_object_shading_changes_pixels_only():
    flat = scenes.room_kind_config("room_rich", object_shading=0.0, same_colour_prob=0.0)
    shaded = scenes.room_kind_config("room_rich", object_shading=0.5, same_colour_prob=0.0)
    ratios = []
    for i in range(15):
        a, b = scenes.generate(flat, 2, i), scenes.generate(shaded, 2, i)
        np.testing.assert_array_equal(a.boxes, b.boxes)
        np.testing.assert_array_equal(a.labels, b.labels)
        np.testing.assert_array_equal(scenes.room_background(flat, 2, i), scenes.room_background(shaded, 2, i))
        for k in range(b.count):
            if b.masks[k].sum() >= 20:
                lum = b.image[b.masks[k]].astype(np.float32).sum(1)
                ratios.append(lum.max() / max(lum.min(), 1.0))
    assert ratios and np.median(ratios) > 1.2


def test_room_contact_sheet_rows():
    sheet = scenes.room_contact_sheet(rich_rows=2, per_row=3)
    side = 128 + 2
    assert sheet.shape == (4 * side + 2, 150 + 3 * side + 2, 3)
    rows = [sheet[2 + r * side : r * side + side, 152:] for r in range(4)]
    assert len({r.tobytes() for r in rows}) == 4, "the rich rows show different scenes"


def test_camera_blur_softens_edges_and_leaves_labels_and_other_scenes_as_they_were():
    """camera_blur: each frame blurred by a Gaussian of sigma in [0, camera_blur] px. Boxes, masks and
    counts are the unblurred scene's; the frame has soft edges (smaller steps between neighbouring
    pixels); 0 draws exactly the scenes drawn before (pinned digest above)."""
    base = scenes.MultiObjectConfig(background="checkerboard", min_objects=2, object_colours="camera", palette="train_wide")
    soft = dataclasses.replace(base, camera_blur=1.0)
    steps_sharp, steps_soft, changed = [], [], 0
    for i in range(12):
        a, b = scenes.generate(base, 3, i), scenes.generate(soft, 3, i)
        np.testing.assert_array_equal(a.boxes, b.boxes)
        np.testing.assert_array_equal(a.masks, b.masks)
        assert a.count == b.count
        changed += not np.array_equal(a.image, b.image)  # sigma under ~0.3 px leaves a frame as it was
        for s, out in ((a, steps_sharp), (b, steps_soft)):
            out.append(np.abs(np.diff(s.image.astype(int), axis=1)).max(2).max())
    assert changed >= 5  # measured 7 of 12
    assert np.median(steps_soft) < 0.8 * np.median(steps_sharp), (steps_soft, steps_sharp)
    with pytest.raises(ValueError, match="camera_blur"):
        scenes.MultiObjectConfig(camera_blur=-1.0)
