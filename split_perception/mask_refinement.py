"""Slot masks whose edges follow the image's colour edges (numpy + OpenCV, any backend).

MONet's attention masks are right inside objects and wrong on their rim: on validation rooms
(seed 20000, shipped default) 95% of an object's interior pixels but only 74% of its 1-px rim
take the object's slot; the rest go to the surface behind it, whose slot is the rim pixel's
second choice in 89% of cases. With objects of 8-24 px at 64 px the rim is 43% of all object
pixels, so the rim, not the slot assignment, was most of the FG-ARI lost (0.54 on all pixels,
0.86 on interior pixels only, legacy rooms).

The fix reads the colour of each pixel near a label boundary and gives it to the slot whose
nearby region interior has the closest mean colour: a local colour model per slot, fitted on
the pixels the masks are sure of (interiors of the label regions), applied only on the band
between regions. Each round moves a boundary by at most one pixel, so the masks still decide
where objects are; the image only sharpens where their edges lie.
"""
from __future__ import annotations

import cv2
import numpy as np

DEFAULT_WINDOW = 11  # px at model resolution: the neighbourhood a slot's local colour is averaged over
DEFAULT_ROUNDS = 3  # boundaries move by at most this many pixels
_CROSS = np.ones((3, 3), np.uint8)
COLOUR_TIE = 1e-4  # squared colour distance (channels in [0, 1]) below which two slots tie


def refined_labels(image: np.ndarray, masks: np.ndarray, window: int = DEFAULT_WINDOW, rounds: int = DEFAULT_ROUNDS) -> np.ndarray:
    """(h, w) slot labels: the masks' argmax with boundary pixels relabelled by local colour.

    image (h, w, 3) float in [0, 1] or uint8, the frame at the masks' resolution; masks (K, h, w).
    A pixel is on the band when no label region's interior (the region eroded by a 3 x 3
    square) holds it; a band pixel takes the slot whose interior pixels within `window` x
    `window` have the mean colour nearest its own, if clearly nearer than its own slot's (slots
    without interior pixels there cannot take it)."""
    return _refine(image, masks.argmax(0), masks.shape[0], window, rounds)


def _refine(image: np.ndarray, labels: np.ndarray, k: int, window: int, rounds: int) -> np.ndarray:
    """refined_labels from the masks' argmax `labels` (changed in place) and their slot count k."""
    if image.shape[:2] != labels.shape:
        raise ValueError(f"image {image.shape[:2]} and masks {labels.shape} differ in size")
    x = unit_float(image)
    for _ in range(rounds):
        band = label_boundaries(labels)
        if not band.any():
            break
        # only band pixels are compared
        sums = interior_colour_sums(x, labels, k, window, band)[band]  # (n, K, 4)
        count, total = sums[..., 0], sums[..., 1:]
        by, bx = np.nonzero(band)
        dist = ((x[band][:, None, :] - total / np.maximum(count, 1e-6)[..., None]) ** 2).sum(-1)
        dist[count < 0.5] = np.inf  # no interior pixel of that slot nearby
        nearest = dist.argmin(-1)
        current = labels[by, bx]
        # a pixel changes slot only for a clearly closer colour: ties (within float rounding of
        # the window means) keep the masks' choice
        with np.errstate(invalid="ignore"):  # inf - inf: no slot reaches the pixel, it stays
            gain = np.take_along_axis(dist, current[:, None], 1)[:, 0] - np.take_along_axis(dist, nearest[:, None], 1)[:, 0]
        move = gain > COLOUR_TIE
        if not move.any():
            break
        labels[by[move], bx[move]] = nearest[move]
    return labels


def unit_float(image: np.ndarray) -> np.ndarray:
    """(h, w, 3) colours as float32 in [0, 1]; the model input is that already: no copy then."""
    return image.astype(np.float32) / np.float32(255.0) if image.dtype == np.uint8 else image.astype(np.float32, copy=False)


def label_boundaries(labels: np.ndarray) -> np.ndarray:
    """(h, w) bool: pixels whose 3 x 3 neighbourhood holds more than one label (the image border
    is not an edge: BORDER_REPLICATE)."""
    lab = labels.astype(np.uint16)
    return cv2.erode(lab, _CROSS, borderType=cv2.BORDER_REPLICATE) != cv2.dilate(lab, _CROSS, borderType=cv2.BORDER_REPLICATE)


def interior_colour_sums(x: np.ndarray, labels: np.ndarray, k: int, window: int, band: np.ndarray) -> np.ndarray:
    """(h, w, K, 4): for every pixel and slot, the count (channel 0) and summed colour (1-3) of
    that slot's interior pixels (not on `band`) within window x window. One plane per slot,
    summed by one box filter (channels last)."""
    h, w = labels.shape
    iy, ix = np.nonzero(~band)
    planes = np.zeros((h, w, k, 4), np.float32)
    planes[iy, ix, labels[iy, ix]] = np.concatenate([np.ones((iy.size, 1), np.float32), x[iy, ix]], axis=1)
    return _window_sums(planes.reshape(h, w, 4 * k), window).reshape(h, w, k, 4)


def _window_sums(planes: np.ndarray, window: int) -> np.ndarray:
    """(h, w, C) -> (h, w, C): each plane summed over window x window (zeros outside the image)."""
    box = dict(ksize=(window, window), normalize=False, borderType=cv2.BORDER_CONSTANT)
    if planes.shape[-1] <= 512:  # OpenCV filters at most 512 channels in one call
        return cv2.boxFilter(planes, -1, **box).reshape(planes.shape)
    return np.concatenate([_window_sums(planes[..., i : i + 512], window) for i in range(0, planes.shape[-1], 512)], axis=-1)


def refine_masks(image: np.ndarray, masks: np.ndarray, window: int = DEFAULT_WINDOW, rounds: int = DEFAULT_ROUNDS) -> np.ndarray:
    """(K, h, w) masks whose argmax is `refined_labels`: where a pixel changes slot, its mask values
    of the old and the new slot are swapped, so the masks stay soft and still sum to one."""
    old = masks.argmax(0)
    return swap_to_labels(masks, old, _refine(image, old.copy(), masks.shape[0], window, rounds))


def swap_to_labels(masks: np.ndarray, old: np.ndarray, labels: np.ndarray) -> np.ndarray:
    """(K, h, w) masks whose argmax `old` becomes `labels`: where a pixel changes slot, its values of
    the old and the new slot are swapped, so the masks stay soft and still sum to one (a copy
    only when a pixel changes)."""
    moved = np.nonzero(labels != old)
    if not moved[0].size:
        return masks
    out = masks.copy()
    swap_entries(out, (labels[moved], *moved), (old[moved], *moved))
    return out


def swap_entries(array: np.ndarray, first: tuple, second: tuple) -> None:
    """Swap array[first] and array[second] in place (index tuples of equal length): how a pixel's
    mask values of its old and its new slot trade places."""
    a, b = array[first], array[second]  # copies: read both before writing either
    array[first], array[second] = b, a


DEFAULT_JOIN_BELOW = 0.06  # mean summed |RGB difference| (channels in [0, 1]) across a boundary


def join_segments_without_edges(segments: np.ndarray, image: np.ndarray, below: float = DEFAULT_JOIN_BELOW,
                                min_contact: int = 3) -> np.ndarray:
    """(S,) new id of each segment id of `segments` (H, W): neighbouring segments are joined where no
    colour edge of `image` (H, W, 3) separates them.

    Two segments touching along at least `min_contact` 4-neighbour pixel pairs are joined (and
    what they are joined to, transitively) when the mean over those pairs of the summed absolute
    RGB difference is below `below`: one uniformly coloured object whose pixels two slots split
    (the attention may draw a slot boundary through an object) becomes one segment again, while
    objects against a surface or against each other in another colour stay apart. Same-coloured
    touching objects are joined too; on the validation rooms joining gained FG-ARI on every kind
    (docs/RESULTS.md). New ids are 0..S'-1, in the order of each group's smallest old id."""
    scale = np.float32(1 / 255.0 if image.dtype == np.uint8 else 1.0)
    a, b, diff = [], [], []
    for dy, dx in ((0, 1), (1, 0)):  # right and lower neighbours: only pixel pairs across a boundary
        h, w = segments.shape[0] - dy, segments.shape[1] - dx
        ys, xs = np.nonzero(segments[:h, :w] != segments[dy:, dx:])
        a.append(segments[ys, xs])
        b.append(segments[ys + dy, xs + dx])
        step = image[ys, xs].astype(np.float32) - image[ys + dy, xs + dx].astype(np.float32)
        diff.append(np.abs(step).sum(-1) * scale)
    a, b, diff = np.concatenate(a), np.concatenate(b), np.concatenate(diff)
    n = int(segments.max()) + 1
    pair = np.minimum(a, b).astype(np.int64) * n + np.maximum(a, b)
    pairs, which = np.unique(pair, return_inverse=True)
    contact = np.bincount(which, minlength=pairs.size)
    mean = np.bincount(which, diff, minlength=pairs.size) / np.maximum(contact, 1)
    parent = np.arange(n)

    def root(i: int) -> int:
        while parent[i] != i:
            parent[i] = parent[parent[i]]
            i = parent[i]
        return i

    for p in pairs[(mean < below) & (contact >= min_contact)]:
        ra, rb = root(int(p // n)), root(int(p % n))
        if ra != rb:
            parent[max(ra, rb)] = min(ra, rb)
    roots = np.array([root(i) for i in range(n)])
    return np.unique(roots, return_inverse=True)[1]
