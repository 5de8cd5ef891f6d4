"""Segments split where touching objects that one slot took together meet: at a neck
(split_at_necks), or along a strong colour edge (split_at_colour_edges); and objects that took
the slot of the surface around them cut out of it (split_enclosed_objects).

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


def nearest_seed(seed_ids: np.ndarray) -> np.ndarray:
    """(H, W) the id of the nearest seed pixel (seed_ids > 0) for every pixel: distance-transform
    labels of the non-seed pixels, mapped back to the seeds' ids."""
    seeds = seed_ids > 0
    _, nearest = cv2.distanceTransformWithLabels((~seeds).astype(np.uint8), cv2.DIST_L2, 3, labelType=cv2.DIST_LABEL_PIXEL)
    ys, xs = np.nonzero(seeds)
    lookup = np.zeros(int(nearest.max()) + 1, np.int64)
    lookup[nearest[ys, xs]] = seed_ids[ys, xs]
    return lookup[nearest]


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
        part = nearest_seed(core_ids)[1:-1, 1:-1]  # every pixel to its nearest core
        inside = crop[1:-1, 1:-1] > 0
        view = out[y : y + h, x : x + w]
        for c in range(2, count):  # core 1 keeps the old id
            view[inside & (part == c)] = len(parent)
            parent.append(int(sid))
    return out, np.asarray(parent, np.int64)


DEFAULT_EDGE_STEP = 25.0  # summed |RGB step| (0-255 per channel) between 4-neighbours that parts two objects
MIN_PART_PIXELS = 8
MIN_PART_FRACTION = 0.1  # of the segment
MAX_EDGE_FRACTION = 0.3  # a segment with more strong-step pixels than this is textured or noisy: left whole


def inner_edges(segments: np.ndarray, image: np.ndarray, step: float) -> tuple[np.ndarray, np.ndarray]:
    """(the image median-filtered over 3 x 3 as float32 (H, W, 3), on_edge (H, W) bool): pixels
    with a 4-neighbour of the same segment more than `step` away in summed |RGB| (0-255)."""
    if image.shape[:2] != segments.shape:
        raise ValueError(f"image {image.shape[:2]} and segments {segments.shape} differ in size")
    pixels = image if image.dtype == np.uint8 else np.clip(np.rint(image * 255.0), 0, 255).astype(np.uint8)
    x = cv2.medianBlur(pixels, 3).astype(np.float32)  # sensor noise makes no steps
    on_edge = np.zeros(segments.shape, bool)
    for dy, dx in ((0, 1), (1, 0)):
        h, w = segments.shape[0] - dy, segments.shape[1] - dx
        strong = (segments[:h, :w] == segments[dy:, dx:]) & (np.abs(x[:h, :w] - x[dy:, dx:]).sum(-1) > step)
        on_edge[:h, :w] |= strong
        on_edge[dy:, dx:] |= strong
    return x, on_edge


def split_at_colour_edges(segments: np.ndarray, image: np.ndarray, step: float = DEFAULT_EDGE_STEP) -> tuple[np.ndarray, np.ndarray]:
    """(segments split along strong colour edges (H, W), parent (S',): the old id each new id came from).

    The attention also gives one slot to touching objects of different colours; a segment's
    connected region then holds two colours with a sharp step between them. Pixels with a
    4-neighbour of the same segment more than `step` away in colour (summed |RGB|, 0-255, on the
    image median-filtered over 3 x 3, so that sensor noise makes no steps) are the segment's
    inner edges; without them the segment falls into parts, and when two or more parts hold at
    least MIN_PART_PIXELS and MIN_PART_FRACTION of it each, every pixel goes to its nearest big
    part. Shading ramps step far less than `step` per pixel; a segment where over
    MAX_EDGE_FRACTION of the pixels are on steps is a texture, not two objects, and stays whole.
    The join of edgeless boundaries (mask_refinement.join_segments_without_edges) is the
    converse rule. Ids of unsplit segments do not change; the extra parts take ids S, S+1, ..."""
    x, on_edge = inner_edges(segments, image, step)
    out = segments.copy()
    n = int(segments.max()) + 1 if segments.size else 0
    parent = list(range(n))
    areas = np.bincount(segments.ravel(), minlength=n)
    edge_pixels = np.bincount(segments[on_edge], minlength=n)
    candidates = (areas >= MIN_AREA_FRACTION * segments.size) & (areas <= MAX_AREA_FRACTION * segments.size)
    for sid in np.flatnonzero(candidates & (edge_pixels > 0) & (edge_pixels <= MAX_EDGE_FRACTION * areas)):
        mask = segments == sid
        count, parts = cv2.connectedComponents((mask & ~on_edge).astype(np.uint8), connectivity=4)
        sizes = np.bincount(parts[mask], minlength=count)
        sizes[0] = 0  # edge pixels (outside the segment is never in parts[mask])
        big = np.flatnonzero(sizes >= max(MIN_PART_PIXELS, MIN_PART_FRACTION * areas[sid]))
        if big.size < 2:
            continue
        part = nearest_seed(np.where(np.isin(parts, big) & mask, parts, 0))
        for b in big[1:]:  # the first big part keeps the old id
            out[mask & (part == b)] = len(parent)
            parent.append(int(sid))
    return out, np.asarray(parent, np.int64)


def split_enclosed_objects(segments: np.ndarray, image: np.ndarray, step: float = DEFAULT_EDGE_STEP) -> tuple[np.ndarray, np.ndarray]:
    """(segments with enclosed objects taken out of surfaces (H, W), parent (S',)), as split_at_colour_edges.

    The attention sometimes gives an object the slot of the wall or floor around it; the
    object is then a hole in that surface's segment, ringed by a strong colour step (on rooms of
    an outside generator, benchmarks/outside_rooms.py, a quarter of the objects). In a surface
    segment (over MAX_AREA_FRACTION of the frame), the parts left between its inner edges
    (inner_edges) that do not reach the frame's border, hold at least MIN_AREA_FRACTION of the
    frame and differ by more than `step` in mean colour from every part that reaches the border
    become segments of their own, with the edge pixels nearest them. The colour test keeps a
    tiled or striped surface whole: its enclosed tiles repeat the colours of tiles at the border."""
    x, on_edge = inner_edges(segments, image, step)
    out = segments.copy()
    n = int(segments.max()) + 1 if segments.size else 0
    parent = list(range(n))
    areas = np.bincount(segments.ravel(), minlength=n)
    for sid in np.flatnonzero(areas > MAX_AREA_FRACTION * segments.size):
        mask = segments == sid
        count, parts = cv2.connectedComponents((mask & ~on_edge).astype(np.uint8), connectivity=4)
        parts[~mask] = 0
        sizes = np.bincount(parts.ravel(), minlength=count)
        on_border = np.zeros(count, bool)
        for edge in (parts[0], parts[-1], parts[:, 0], parts[:, -1]):
            on_border[edge] = True
        on_border[0] = False  # id 0: the edges and the other segments
        colours = np.stack([np.bincount(parts.ravel(), x[..., c].ravel(), count) for c in range(3)], 1) / np.maximum(sizes, 1)[:, None]
        surface = colours[on_border & (sizes >= MIN_PART_PIXELS)]
        enclosed = [p for p in range(1, count) if not on_border[p] and sizes[p] >= MIN_AREA_FRACTION * segments.size
                    and (not len(surface) or np.abs(surface - colours[p]).sum(1).min() > step)]
        if not enclosed:
            continue
        seeds = np.where(mask & ~on_edge, -1, 0)  # the surface's own pixels: seed id -1 -> kept
        for i, p in enumerate(enclosed, 1):
            seeds[parts == p] = i
        nearest = nearest_seed(np.where(seeds == -1, len(enclosed) + 1, seeds))
        for i in range(1, len(enclosed) + 1):
            out[mask & (nearest == i)] = len(parent)
            parent.append(int(sid))
    return out, np.asarray(parent, np.int64)
