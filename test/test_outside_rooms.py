"""benchmarks/outside_rooms.py: its rooms and their ground truth are what its docstring says."""
import sys
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "benchmarks"))

import outside_rooms  # noqa: E402


def test_plain_room_labels_cover_the_objects_and_leave_wall_and_floor_as_background():
    rng = np.random.default_rng([3, 0])
    for _ in range(5):
        img, labels = outside_rooms.scene("plain", 128, rng)
        assert img.shape == (128, 128, 3) and img.dtype == np.uint8 and labels.shape == (128, 128)
        ids = np.unique(labels)
        assert ids[0] == 0 and 2 <= len(ids) - 1 <= 5  # 2-5 objects; one may hide another entirely
        background = img[labels == 0].reshape(-1, 3)
        colours, counts = np.unique(background, axis=0, return_counts=True)
        # a flat wall and a flat floor; the rest are the antialiased rims of the objects
        assert np.sort(counts)[-2:].sum() >= 0.95 * len(background)
        room_colours = colours[np.argsort(counts)[-2:]]
        for i in ids[1:]:  # an object's pixels are mostly not the room's two colours
            inside = img[labels == i].reshape(-1, 3)
            assert (inside[:, None, :] == room_colours[None]).all(-1).any(-1).mean() <= 0.5


def test_rooms_differ_from_each_other_and_repeat_with_the_seed():
    for kind in outside_rooms.KINDS:
        first = outside_rooms.scene(kind, 64, np.random.default_rng([7, 1]))[0]
        rng = np.random.default_rng([7, 1])
        again, second = (outside_rooms.scene(kind, 64, rng)[0] for _ in range(2))
        np.testing.assert_array_equal(first, again)  # same seed, same first room
        assert not np.array_equal(again, second)  # one stream draws different rooms


def test_patterns_lie_on_their_surface_and_plain_rooms_have_none():
    """Rows away from objects: flat in a plain room; striped in the top third with wallpaper (the
    horizon is at least a third down), tiled in the bottom quarter with tiles (it is at most
    three quarters down)."""
    rng = np.random.default_rng(11)
    for kind, part in (("plain", slice(0, 128)), ("wallpaper", slice(0, 42)), ("tiles", slice(96, 128))):
        for _ in range(3):
            img, labels = outside_rooms.scene(kind, 128, rng)
            grey = img.astype(int).sum(-1)[part]
            empty = (labels == 0).all(1)  # rows no object reaches, nor its antialiased rim (2 px)
            clear = np.array([empty[max(r - 2, 0):r + 3].all() for r in range(128)])[part]
            patterned = [len(np.unique(row)) > 1 for row in grey[clear]]
            assert patterned, kind
            assert (not any(patterned)) if kind == "plain" else np.mean(patterned) > 0.8, kind
