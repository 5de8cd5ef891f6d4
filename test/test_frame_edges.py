"""Slot edges at the frame's resolution (split_perception/frame_edges.py)."""
import cv2
import numpy as np
import pytest

from split_perception.frame_edges import frame_segments, refine_frame_masks
from split_perception.segmenter import connected_segments, upsample_masks

RED, BLUE = (200, 30, 30), (30, 30, 200)


def two_colour_frame(edge_x: int, size: int = 128, right=BLUE) -> np.ndarray:
    frame = np.zeros((size, size, 3), np.uint8)
    frame[:, :edge_x], frame[:, edge_x:] = RED, right
    return frame


def model_view(frame: np.ndarray, labels: np.ndarray, k: int = 3):
    """The frame as a 32 px model sees it and soft masks peaking at `labels`, upsampled to the frame."""
    model_frame = cv2.resize(frame, labels.shape[::-1], interpolation=cv2.INTER_AREA)
    masks = np.full((k,) + labels.shape, 0.1, np.float32)
    np.put_along_axis(masks, labels[None].astype(np.int64), 0.8, axis=0)
    return model_frame, upsample_masks(masks, frame.shape[:2])


@pytest.mark.parametrize("edge_x", [37, 38, 39, 40, 41])
def test_an_edge_inside_a_model_pixel_lands_on_the_frames_colour_edge(edge_x):
    frame = two_colour_frame(edge_x)  # 4 frame px per model px: 37-39 fall inside model column 9
    model_labels = np.zeros((32, 32), np.uint8)
    model_labels[:, 10:] = 1  # the model puts the edge at frame x = 40
    model_frame, masks = model_view(frame, model_labels)
    plain = masks.argmax(0)
    refined, labels = refine_frame_masks(frame, model_frame, model_labels, masks.copy())
    truth = np.zeros((128, 128), np.uint8)
    truth[:, edge_x:] = 1
    np.testing.assert_array_equal(labels, truth)
    np.testing.assert_array_equal(refined.argmax(0), labels)  # masks follow, values swapped
    np.testing.assert_allclose(refined.sum(0), 1.0, atol=1e-5)
    np.testing.assert_array_equal(np.sort(refined, 0), np.sort(masks, 0))  # no value invented
    assert (plain != truth).any() or edge_x == 40


def test_without_a_colour_edge_the_masks_decide():
    frame = two_colour_frame(37, right=RED)  # one colour: nothing to move the edge to
    model_labels = np.zeros((32, 32), np.uint8)
    model_labels[:, 10:] = 1
    model_frame, masks = model_view(frame, model_labels)
    refined, labels = refine_frame_masks(frame, model_frame, model_labels, masks.copy())
    np.testing.assert_array_equal(labels, masks.argmax(0))
    np.testing.assert_array_equal(refined, masks)


def test_an_edge_is_moved_by_at_most_one_model_pixel():
    frame = two_colour_frame(20)  # the colour edge is 20 frame px (5 model px) from the masks' edge
    model_labels = np.zeros((32, 32), np.uint8)
    model_labels[:, 10:] = 1
    model_frame, masks = model_view(frame, model_labels)
    _, labels = refine_frame_masks(frame, model_frame, model_labels, masks.copy())
    changed = np.flatnonzero((labels != masks.argmax(0)).any(0))
    assert changed.size and changed.min() >= 36 and changed.max() < 44  # model columns 9 and 10 only


def test_sizes_must_match():
    model_labels = np.zeros((32, 32), np.uint8)
    model_frame, masks = model_view(two_colour_frame(37), model_labels)
    with pytest.raises(ValueError, match="differ in size"):
        refine_frame_masks(np.zeros((64, 64, 3), np.uint8), model_frame, model_labels, masks)


def test_segments_follow_the_refined_labels():
    # two separate red squares of slot 1 on blue slot 0: two segments of one slot
    model_labels = np.zeros((32, 32), np.uint8)
    model_labels[4:12, 4:12] = 1
    model_labels[20:28, 18:26] = 1
    model_segments, slots = connected_segments(model_labels)
    labels = cv2.resize(model_labels, (128, 128), interpolation=cv2.INTER_NEAREST_EXACT)
    labels[14:50, 15] = 1  # the refined edge moved out by one pixel on the first square
    labels[78:114, 71] = 0  # and in by one on the second
    segments = frame_segments(model_segments, slots, labels)
    np.testing.assert_array_equal(slots[segments], labels)
    assert len(np.unique(segments[labels == 1])) == 2  # still two objects
    assert segments[30, 15] == segments[30, 30] and segments[90, 90] != segments[30, 30]
