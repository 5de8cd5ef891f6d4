"""Slot-mask edges moved onto colour edges (split_perception/mask_refinement.py)."""
import numpy as np
import pytest

from split_perception.mask_refinement import join_segments_without_edges, refine_masks, refined_labels

RED, BLUE = np.array([220, 30, 30], np.uint8), np.array([30, 40, 200], np.uint8)


def scene_and_masks(true_half: int, mask_half: int, size: int = 40):
    """A red square (side 2 * true_half) on blue, and soft 3-slot masks that put the square's
    slot 1 on a square of side 2 * mask_half (slot 0: background, slot 2: unused)."""
    c = size // 2
    image = np.tile(BLUE, (size, size, 1))
    truth = np.zeros((size, size), np.int64)
    truth[c - true_half : c + true_half, c - true_half : c + true_half] = 1
    image[truth == 1] = RED
    inner = np.zeros((size, size), bool)
    inner[c - mask_half : c + mask_half, c - mask_half : c + mask_half] = True
    masks = np.empty((3, size, size), np.float32)
    masks[1] = np.where(inner, 0.7, 0.25)  # soft, as a model's are
    masks[0] = 0.95 - masks[1]
    masks[2] = 0.05
    return image, masks, truth


def test_a_missed_rim_goes_back_to_its_object():
    image, masks, truth = scene_and_masks(true_half=8, mask_half=7)
    assert (masks.argmax(0) != truth).sum() == 16 * 16 - 14 * 14  # the masks miss the 1-px rim
    np.testing.assert_array_equal(refined_labels(image, masks), truth)


def test_masks_that_follow_the_colour_edges_are_left_alone():
    image, masks, truth = scene_and_masks(true_half=8, mask_half=8)
    out = refine_masks(image, masks)
    np.testing.assert_array_equal(out, masks)


def test_each_round_moves_a_boundary_by_one_pixel_at_most():
    # the masks put the square 5 px inside its true edge: three rounds recover three of them
    image, masks, truth = scene_and_masks(true_half=12, mask_half=7)
    for rounds in (1, 3):
        labels = refined_labels(image, masks, rounds=rounds)
        expected = np.zeros_like(truth)
        c, h = 20, 7 + rounds
        expected[c - h : c + h, c - h : c + h] = 1
        np.testing.assert_array_equal(labels, expected)


def test_refined_masks_stay_soft_distributions_whose_argmax_is_the_refined_labels():
    rng = np.random.default_rng(0)
    image = rng.integers(0, 256, (24, 32, 3), dtype=np.uint8)
    # masks constant over 4 x 4 blocks, so label regions have interiors
    blocks = rng.dirichlet(np.ones(5), size=(6, 8)).transpose(2, 0, 1).astype(np.float32)
    masks = np.ascontiguousarray(blocks.repeat(4, axis=1).repeat(4, axis=2))
    out = refine_masks(image, masks)
    np.testing.assert_allclose(out.sum(0), masks.sum(0), atol=1e-6)
    np.testing.assert_array_equal(np.sort(out, 0), np.sort(masks, 0))  # values only swapped
    np.testing.assert_array_equal(out.argmax(0), refined_labels(image, masks))
    assert (out.argmax(0) != masks.argmax(0)).any()  # noise images do move labels
    # uint8 and float images in [0, 1] are the same input
    np.testing.assert_array_equal(refined_labels(image.astype(np.float32) / 255.0, masks), refined_labels(image, masks))


def test_mismatched_sizes_are_refused():
    with pytest.raises(ValueError, match="differ in size"):
        refined_labels(np.zeros((8, 8, 3), np.uint8), np.ones((2, 8, 9), np.float32) / 2)


def test_segments_meeting_without_a_colour_edge_are_joined():
    from split_perception.segmenter import Segmentation

    image = np.tile(BLUE, (20, 30, 1))
    image[5:15, 3:13] = RED  # a red square ...
    image[5:15, 13:23] = (40, 200, 40)  # ... touching a green one
    labels = np.zeros((20, 30), np.uint8)
    labels[5:15, 3:7] = 1  # the attention cut the red square in two slots (4 and 6 px wide)
    labels[5:15, 7:13] = 2
    labels[5:15, 13:23] = 1  # and gave the green square the red square's first slot
    masks = np.stack([labels == k for k in range(3)]).astype(np.float32)
    out = Segmentation(masks=masks, labels=labels, latents=np.zeros((3, 4), np.float32), model_masks=masks, frame=image)
    # red halves joined (no colour edge between them), green apart (a colour edge), background apart
    assert len(out.segment_slots) == 3
    red, green = out.segments[10, 5], out.segments[10, 18]
    assert (out.segments[5:15, 3:13] == red).all() and (out.segments[5:15, 13:23] == green).all() and red != green
    assert out.segment_slots[red] == 2 and out.segment_slots[green] == 1  # red: the larger part's slot (6 px wide)
    assert out.segment_slots[out.segments[0, 0]] == 0
    unjoined = Segmentation(masks=masks, labels=labels, latents=out.latents, model_masks=masks)
    assert len(unjoined.segment_slots) == 4 and unjoined.segments[10, 5] != unjoined.segments[10, 10]


def test_joining_needs_real_contact():
    image = np.tile(BLUE, (10, 10, 1))
    segments = np.zeros((10, 10), np.int32)
    segments[4:6, 4:6] = 1  # a blue 2 x 2 patch meets its surroundings on 8 pixel pairs: joined
    assert (join_segments_without_edges(segments, image) == 0).all()
    segments[:] = 0
    segments[0, 9] = 1  # a corner pixel meets it on 2 pairs only: stays apart
    assert list(join_segments_without_edges(segments, image)) == [0, 1]
