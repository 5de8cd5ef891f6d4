"""One slot per object (object_slots.py): segments sharing a slot move to the model's empty slots."""
import numpy as np

from split_perception.object_slots import slots_for_segments
from split_perception.segmenter import postprocess_slots


def _scene():
    """16 x 16: a surface (slot 0) cut into two border-touching halves by a wall of slot 1, and three
    interior squares that all share slot 2 (segments 3, 4, 5), one a 1-pixel speck."""
    seg = np.zeros((16, 16), np.int32)
    seg[:, 8:] = 1
    seg[:, 7] = 2  # slot 1: a column, touches the border
    seg[2:6, 2:6] = 3
    seg[10:13, 2:5] = 4
    seg[2:6, 10:14] = 5
    seg[14, 12] = 6  # speck
    slots = np.array([0, 0, 1, 2, 2, 2, 2])
    return seg, slots


def test_extra_segments_take_empty_slots_interior_first_and_specks_stay():
    seg, slots = _scene()
    new, source = slots_for_segments(seg, slots, k=5)  # empty slots: 3, 4
    assert new[0] == 0 and new[2] == 1  # each slot's largest segment keeps it
    assert new[3] == 2  # the first of slot 2's two 16 px squares keeps it
    # interior squares 5 (16 px) and 4 (9 px) before the border half of the surface (segment 1)
    assert sorted(new[[4, 5]].tolist()) == [3, 4]
    assert new[1] == 0 and new[6] == 2  # no slot left for the surface half; the speck never moves
    assert source.tolist() == [0, 1, 2, 2, 2]


def test_no_empty_slot_keeps_the_models_slots():
    seg, slots = _scene()
    new, source = slots_for_segments(seg, slots, k=3)
    assert new.tolist() == slots.tolist() and source.tolist() == [0, 1, 2]


def test_postprocess_moves_masks_and_latents_with_the_segment():
    # two separate blobs of slot 1 on a slot-0 background, slot 2 empty
    k, h, w = 3, 12, 12
    masks = np.full((k, h, w), 0.05, np.float32)
    masks[0] = 0.9
    for rows, cols in ((slice(2, 5), slice(2, 5)), (slice(7, 10), slice(6, 10))):
        masks[:, rows, cols] = 0.05
        masks[1, rows, cols] = 0.9
    latents = np.arange(k * 2, dtype=np.float32).reshape(1, k, 2)
    outputs = {"masks": masks[None], "latents": latents}
    plain = postprocess_slots(outputs, (h, w))
    assert len(np.unique(plain.labels)) == 2
    out = postprocess_slots(outputs, (h, w), slot_per_object=True)
    assert set(np.unique(out.labels)) == {0, 1, 2}
    assert (out.labels[7:10, 6:10] == 1).all() and (out.labels[2:5, 2:5] == 2).all()  # the larger blob keeps slot 1
    np.testing.assert_allclose(out.masks.sum(0), 1.0, atol=1e-6)
    assert out.latents[2].tolist() == latents[0, 1].tolist()  # the moved blob's slot carries slot 1's latent
    assert out.latents[1].tolist() == latents[0, 1].tolist() and out.latents[0].tolist() == latents[0, 0].tolist()
    segments, segment_slots = out.model_segments
    assert sorted(segment_slots.tolist()) == [0, 1, 2] and (out.segments == segments).all()
