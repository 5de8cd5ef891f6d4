"""Segments split where two compact blobs meet at a neck: touching objects one slot took together.

Colour cannot part two touching objects of one colour, and MONet's one-pass attention gives
such objects one slot: on the validation rich rooms 17% of objects shared their segment with
another, 90% of those pairs touched and 65-75% had the same colour (docs/RESULTS.md). Their
union is a blob with two thick parts joined by a thin neck. The distance transform of the
segment (each pixel's distance to the segment's edge) peaks once per thick part; the pixels
above `core_fraction` of the segment's peak form one core per object, and every pixel of the
segment goes to its nearest core. A compact single object (disc, square, star, ring, cross)
has one connected core and stays whole; an object that is itself two blobs joined by a neck
(a dumbbell) is split, the price of this rule (1-2% of single objects on validation rooms).
"""
from __future__ import annotations

import cv2
import numpy as np

DEFAULT_CORE_FRACTION = 0.5
MIN_AREA_FRACTION = 20 / 4096  # smaller segments (specks, thin slivers) are left alone
MAX_AREA_FRACTION = 0.25  # larger segments are surfaces (sky, wall, floor), not objects


def split_at_necks(segments: np.ndarray, core_fraction: float = DEFAULT_CORE_FRACTION) -> tuple[np.ndarray, np.ndarray]:
    """(segments with necked blobs split (H, W), parent (S',): the old id each new id came from).
    Ids of unsplit segments do not change; the extra parts take ids S, S+1, ..."""
    out = segments.copy()
    n = int(segments.max()) + 1 if segments.size else 0
    parent = list(range(n))
    areas = np.bincount(segments.ravel(), minlength=n)
    total = segments.size
    for sid in np.flatnonzero((areas >= MIN_AREA_FRACTION * total) & (areas <= MAX_AREA_FRACTION * total)):
        mask = (segments == sid).astype(np.uint8)
        x, y, w, h = cv2.boundingRect(mask)
        crop = np.pad(mask[y : y + h, x : x + w], 1)  # the border around it counts as outside
        depth = cv2.distanceTransform(crop, cv2.DIST_L2, 3)
        cores = (depth > core_fraction * depth.max()).astype(np.uint8)
        count, core_ids = cv2.connectedComponents(cores, connectivity=8)
        if count <= 2:  # background plus one core: one object
            continue
        # every pixel to its nearest core: distance-transform labels of the non-core pixels
        _, nearest = cv2.distanceTransformWithLabels(1 - cores, cv2.DIST_L2, 3, labelType=cv2.DIST_LABEL_PIXEL)
        ys, xs = np.nonzero(cores)
        lookup = np.zeros(int(nearest.max()) + 1, np.int64)
        lookup[nearest[ys, xs]] = core_ids[ys, xs]
        part = lookup[nearest][1:-1, 1:-1]
        inside = crop[1:-1, 1:-1] > 0
        view = out[y : y + h, x : x + w]
        for c in range(2, count):  # core 1 keeps the old id
            view[inside & (part == c)] = len(parent)
            parent.append(int(sid))
    return out, np.asarray(parent, np.int64)
