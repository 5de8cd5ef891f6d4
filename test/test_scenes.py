"""The generator's ground truth must match its pixels exactly."""
import numpy as np
import pytest

from split_perception.training import scenes

CONFIGS = [
    scenes.MultiObjectConfig(),
    scenes.MultiObjectConfig(background="checkerboard"),
    scenes.MultiObjectConfig(background="checkerboard", palette="test", sprites="digits"),
    scenes.MultiObjectConfig(image_size=64, sprite_size=20, sprites="shapes"),
    scenes.RoomConfig(),
]


@pytest.mark.parametrize("cfg", CONFIGS, ids=lambda c: f"{type(c).__name__}-{getattr(c, 'background', '')}")
def test_ground_truth_matches_pixels(cfg):
    for i in range(40):
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
