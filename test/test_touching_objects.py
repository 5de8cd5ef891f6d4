"""Segments split at necks (split_perception/touching_objects.py)."""
import cv2
import numpy as np

import pytest

from split_perception.touching_objects import split_at_colour_edges, split_at_necks, split_enclosed_objects


def canvas(size: int = 64) -> np.ndarray:
    return np.zeros((size, size), np.int32)


def test_two_touching_discs_in_one_segment_come_apart():
    segments = canvas()
    cv2.circle(segments, (22, 32), 8, 1, -1)
    cv2.circle(segments, (38, 32), 8, 1, -1)  # centres 16 px apart: the discs meet at a neck
    out, parent = split_at_necks(segments)
    assert list(parent) == [0, 1, 1]  # segment 2 is the new part, split from segment 1
    left, right = out[32, 18], out[32, 42]
    assert {left, right} == {1, 2}
    for centre, part in (((22, 32), left), ((38, 32), right)):
        disc = np.zeros_like(segments, np.uint8)
        cv2.circle(disc, centre, 6, 1, -1)  # each disc's inner part lies in one piece
        assert (out[disc > 0] == part).all()
    assert (out[segments == 0] == 0).all()


def test_compact_objects_stay_whole():
    for draw in (
        lambda m: cv2.circle(m, (32, 32), 9, 1, -1),  # disc
        lambda m: cv2.rectangle(m, (20, 24), (44, 38), 1, -1),  # long rectangle
        lambda m: cv2.circle(m, (32, 32), 10, 1, 4),  # ring
        lambda m: (cv2.rectangle(m, (29, 18), (35, 46), 1, -1), cv2.rectangle(m, (18, 29), (46, 35), 1, -1)),  # cross
    ):
        segments = canvas()
        draw(segments)
        out, parent = split_at_necks(segments)
        np.testing.assert_array_equal(out, segments)
        assert list(parent) == [0, 1]


def test_surfaces_and_specks_are_left_alone():
    segments = canvas()
    segments[:, 32:] = 1  # half the image: a surface, even with a neck in it
    segments[10:20, 32:36] = 0
    segments[30:50, 32:36] = 0
    cv2.circle(segments, (10, 10), 1, 2, -1)  # a 5-px speck
    out, parent = split_at_necks(segments)
    np.testing.assert_array_equal(out, segments)
    assert list(parent) == [0, 1, 2]


def test_segmentation_gives_split_parts_the_slot_they_came_from():
    from split_perception.segmenter import Segmentation

    labels = np.zeros((64, 64), np.uint8)
    cv2.circle(labels, (22, 32), 8, 3, -1)
    cv2.circle(labels, (38, 32), 8, 3, -1)
    masks = np.stack([labels == k for k in range(4)]).astype(np.float32)
    out = Segmentation(masks=masks, labels=labels, latents=np.zeros((4, 2), np.float32), model_masks=masks, split_touching=True)
    assert len(out.segment_slots) == 3 and out.segment_slots[out.segments[32, 18]] == out.segment_slots[out.segments[32, 42]] == 3
    assert out.segments[32, 18] != out.segments[32, 42]
    whole = Segmentation(masks=masks, labels=labels, latents=out.latents, model_masks=masks)
    assert len(whole.segment_slots) == 2


# ---------------------------------------------------------------- split along strong colour edges
def two_colour_block(left=(200, 40, 40), right=(40, 40, 200)):
    """One segment (id 1) on a grey surface (id 0): a 24 x 16 block, left half one colour, right the other."""
    segments, image = canvas(), np.full((64, 64, 3), 128, np.uint8)
    segments[24:40, 20:44] = 1
    image[24:40, 20:32], image[24:40, 32:44] = left, right
    return segments, image


def test_touching_objects_of_two_colours_in_one_segment_come_apart():
    segments, image = two_colour_block()
    out, parent = split_at_colour_edges(segments, image)
    assert list(parent) == [0, 1, 1]
    assert (out[24:40, 20:32] == 1).all() and (out[24:40, 32:44] == 2).all()
    assert (out[segments == 0] == 0).all()
    # the model input (float in [0, 1]) gives the same answer
    np.testing.assert_array_equal(split_at_colour_edges(segments, image.astype(np.float32) / 255.0)[0], out)


def test_shading_noise_and_texture_keep_a_segment_whole():
    segments, _ = two_colour_block()
    ramp = np.linspace(0.8, 1.2, 24)[None, :, None] * np.array([180.0, 60, 60])  # a lit object: brightness ramp
    noisy = np.full((64, 64, 3), 128.0)
    noisy[24:40, 20:44] = ramp
    rng = np.random.default_rng(0)
    for image in (
        noisy,  # shading alone
        noisy + rng.normal(0, 8, noisy.shape),  # and sensor noise
        np.where((np.indices((64, 64)).sum(0) % 2)[..., None] > 0, 230.0, 20.0) * np.ones(3),  # a fine texture
    ):
        out, parent = split_at_colour_edges(segments, np.clip(image, 0, 255).astype(np.uint8))
        np.testing.assert_array_equal(out, segments)
        assert list(parent) == [0, 1]


def test_colour_split_needs_two_big_parts_and_matching_sizes():
    segments, image = two_colour_block()
    image[24:27, 20:44] = (40, 200, 40)  # a 3-px stripe: a part of 36 px, under a tenth of the 384
    image[24:40, 32:44] = (200, 40, 40)  # the rest one colour
    out, _ = split_at_colour_edges(segments, image)
    np.testing.assert_array_equal(out, segments)
    with pytest.raises(ValueError, match="differ in size"):
        split_at_colour_edges(segments, image[:32])


# ---------------------------------------------------------------- objects cut out of a surface's segment
def wall_with_disc(wall=(150, 150, 150), disc=(40, 120, 40), centre=(32, 32)):
    """The whole 64 x 64 frame one segment (a wall the attention gave the disc too), a disc of
    radius 7 drawn on it."""
    image = np.full((64, 64, 3), wall, np.uint8)
    cv2.circle(image, centre, 7, disc, -1)
    return canvas(), image


def test_an_object_inside_a_surfaces_segment_gets_its_own():
    segments, image = wall_with_disc()
    out, parent = split_enclosed_objects(segments, image)
    assert list(parent) == [0, 0]
    disc = (image != 150).any(-1)
    # the disc with its rim (the edge pixels go to the nearer side; the median filter rounds corners)
    assert (out[disc] == 1).mean() > 0.95 and (out[~disc] == 0).mean() > 0.99
    # touching the frame's border it is part of the surface's outline, not enclosed
    segments, image = wall_with_disc(centre=(4, 32))
    np.testing.assert_array_equal(split_enclosed_objects(segments, image)[0], segments)


def test_a_tiled_or_shaded_surface_and_small_objects_stay_whole():
    segments = canvas()
    tiles = ((np.indices((64, 64)) // 8).sum(0) % 2).astype(bool)  # 8-px tiles: every inner tile enclosed
    for image in (
        np.where(tiles[..., None], 200, 120).astype(np.uint8) * np.ones(3, np.uint8),  # two tones
        (np.linspace(60, 220, 64)[None, :, None] * np.ones((64, 1, 3))).astype(np.uint8),  # a light ramp
    ):
        out, parent = split_enclosed_objects(segments, image)
        np.testing.assert_array_equal(out, segments)
        assert list(parent) == [0]
    image = np.full((64, 64, 3), 150, np.uint8)
    cv2.circle(image, (32, 32), 2, (0, 0, 0), -1)  # 13 px: under MIN_AREA_FRACTION, a speck
    assert list(split_enclosed_objects(segments, image)[1]) == [0]
    # a segment that is not a surface (a quarter of the frame or less) is split_at_colour_edges' case
    small = canvas()
    small[16:48, 16:48] = 1
    segments, image = wall_with_disc()
    assert list(split_enclosed_objects(small, image)[1]) == [0, 1]
