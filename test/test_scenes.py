"""The generator's ground truth must match its pixels exactly."""
import typing

import numpy as np
import pytest

from split_perception.training import scenes

CONFIGS = [
    scenes.MultiObjectConfig(),
    scenes.MultiObjectConfig(background="checkerboard"),
    scenes.MultiObjectConfig(background="checkerboard", palette="test", sprites="digits"),
    scenes.MultiObjectConfig(image_size=64, sprite_size=20, sprites="shapes"),
    scenes.RoomConfig(),
    # every newer background kind, train and held out, each with another palette / sprite set
    *[
        scenes.MultiObjectConfig(
            background=k, palette=("train", "test")[i % 2], sprites=("mixed", "shapes_test", "digits")[i % 3]
        )
        for i, k in enumerate(k for k in scenes.BACKGROUNDS if k not in ("solid", "checkerboard"))
    ],
    scenes.MultiObjectConfig(image_size=64, sprite_size=18, background="texture_test"),
]


def _cfg_id(c):
    return f"{type(c).__name__}-{getattr(c, 'background', '')}-{getattr(c, 'image_size', '')}"


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


def test_room_objects_sit_low_and_nearer_ones_are_on_top():
    cfg = scenes.RoomConfig()
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
