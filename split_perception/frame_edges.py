"""Slot labels and segments at the frame's resolution, with edges on the frame's colour edges.

The model sees a camera frame shrunk to 64 x 64 px, so one model pixel covers 7.5 x 7.5 px of a
640 x 480 frame: upsampled masks put every object edge on that coarse grid, blurred across it.
On validation rich rooms rendered at 256 px (seed 20000, objects of 32-96 px, scenes with >= 2
objects) the upsampled segments scored FG-ARI 0.83 against 0.88 on 64 px renders, the same as
the true labels themselves taken down to 64 px and back up (docs/RESULTS.md).

The fix keeps the model's decision of which slots meet where and lets the frame decide only where
between them the edge runs: for each model pixel on a label boundary (after the model-resolution
refinement of mask_refinement.py), its own slot a and its most frequent neighbouring slot b get
their local interior mean colours (the same window sums); a frame pixel inside that model pixel
whose label is a or b takes whichever mean colour is nearer. Two nearest-colour choices are
split by a plane in RGB, so the whole test is a per-model-pixel plane resized to the frame with
nearest neighbours and one dot product per frame pixel: no per-pixel search.
"""
from __future__ import annotations

import cv2
import numpy as np

from .mask_refinement import COLOUR_TIE, DEFAULT_WINDOW, interior_colour_sums, label_boundaries, swap_entries, unit_float


def _nearest(H: int, W: int) -> dict:
    """cv2.resize arguments to (W, H) by nearest neighbours; INTER_NEAREST_EXACT maps pixel centres
    as the bilinear upsampling of the masks does (and as model_pixel_of)."""
    return dict(dsize=(W, H), interpolation=cv2.INTER_NEAREST_EXACT)


def model_pixel_of(at: np.ndarray, frame_hw: tuple[int, int], model_hw: tuple[int, int]) -> tuple[np.ndarray, np.ndarray]:
    """(rows, cols) of the model pixel that each flat frame-pixel index `at` lies in (pixel centres)."""
    (H, W), (h, w) = frame_hw, model_hw
    rows = np.minimum((((at // W) + 0.5) * (h / H)).astype(np.int64), h - 1)
    cols = np.minimum((((at % W) + 0.5) * (w / W)).astype(np.int64), w - 1)
    return rows, cols


def edge_colour_planes(image: np.ndarray, labels: np.ndarray, k: int, band: np.ndarray, window: int = DEFAULT_WINDOW):
    """At model resolution, for each pixel on the label boundary `band` (label_boundaries(labels)): (valid (h, w) uint8, slots (h, w, 2)
    uint8: its own slot a and its most frequent other neighbouring slot b, planes (h, w, 4) float32:
    normal n and offset d with colour c (channels in [0, 1]) nearer b's local mean than a's iff
    c . n > d). valid is 0 off the boundary, and where a or b has no interior pixel within
    `window` or their means are equal (then the frame cannot say where the edge runs)."""
    h, w = labels.shape
    x = unit_float(image)
    rows, cols = np.arange(h)[:, None], np.arange(w)[None, :]
    onehot = np.zeros((h, w, k), np.float32)
    onehot[rows, cols, labels] = 1.0
    near = cv2.boxFilter(onehot, -1, (3, 3), normalize=False, borderType=cv2.BORDER_CONSTANT).reshape(h, w, k)
    near[rows, cols, labels] = -1.0  # the pixel's own slot is not its rival
    by, bx = np.nonzero(band)
    a, b = labels[by, bx], near[by, bx].argmax(-1)
    sums = interior_colour_sums(x, labels, k, window, band)[by, bx]  # (n, K, 4)
    sa, sb = sums[np.arange(by.size), a], sums[np.arange(by.size), b]
    ma = sa[:, 1:] / np.maximum(sa[:, :1], 1e-6)
    mb = sb[:, 1:] / np.maximum(sb[:, :1], 1e-6)
    # |c - mb|^2 < |c - ma|^2  <=>  c . (mb - ma) > (|mb|^2 - |ma|^2) / 2
    normal = mb - ma
    ok = (sa[:, 0] > 0.5) & (sb[:, 0] > 0.5) & ((normal**2).sum(-1) > COLOUR_TIE)
    by, bx = by[ok], bx[ok]
    valid = np.zeros((h, w), np.uint8)
    valid[by, bx] = 1
    slots = np.zeros((h, w, 2), np.uint8)
    slots[by, bx, 0], slots[by, bx, 1] = a[ok], b[ok]
    planes = np.zeros((h, w, 4), np.float32)
    planes[by, bx, :3] = normal[ok]
    planes[by, bx, 3] = ((mb[ok] ** 2).sum(-1) - (ma[ok] ** 2).sum(-1)) / 2
    return valid, slots, planes


def refine_frame_masks(frame: np.ndarray, model_frame: np.ndarray, model_labels: np.ndarray, masks: np.ndarray,
                       window: int = DEFAULT_WINDOW) -> tuple[np.ndarray, np.ndarray]:
    """(masks, labels (H, W) uint8, their argmax): the upsampled `masks` (K, H, W) with each pixel near a
    model-resolution label boundary given to the nearer in colour of the two slots that meet there
    (its mask values of the two swapped, in place, so the masks stay soft and sum to one).

    frame (H, W, 3) uint8, the input; model_frame (h, w, 3), the frame as the model saw it;
    model_labels (h, w), the slot labels at model resolution, whose bilinear upsampling `masks` is.
    A pixel whose label is neither of the two slots (a third slot's corner) keeps it. Away from
    model-resolution boundaries the upsampled masks' argmax is the model pixel's label (a blend of
    masks that all peak at one slot peaks there too), so only boundary pixels are read: about a
    fifth of a 640 x 480 frame of the rich rooms, 4x cheaper than the full argmax."""
    h, w = model_labels.shape
    k, H, W = masks.shape
    if frame.shape[:2] != (H, W) or model_frame.shape[:2] != (h, w):
        raise ValueError(f"frame {frame.shape[:2]} / masks {(H, W)} or model frame {model_frame.shape[:2]} / model labels {(h, w)} differ in size")
    model_labels = model_labels.astype(np.uint8)
    band = label_boundaries(model_labels)
    valid, slots, planes = edge_colour_planes(model_frame, model_labels, k, band, window)
    labels = cv2.resize(model_labels, **_nearest(H, W))
    # flat indices and np.take: 3-5x faster than 2-d fancy indexing here
    at = np.flatnonzero(cv2.resize(band.astype(np.uint8), **_nearest(H, W)))
    rows, cols = model_pixel_of(at, (H, W), (h, w))
    model_pixel = rows * w + cols
    masks_flat = masks.transpose(1, 2, 0).reshape(H * W, k)  # upsample_masks' own layout: a view
    old = np.take(masks_flat, at, axis=0).argmax(-1).astype(np.uint8)
    a, b = np.take(slots.reshape(-1, 2), model_pixel, axis=0).T
    plane = np.take(planes.reshape(-1, 4), model_pixel, axis=0)
    colour = np.take(frame.reshape(-1, 3), at, axis=0).astype(np.float32) * np.float32(1 / 255.0)
    nearer_b = (colour * plane[:, :3]).sum(-1) > plane[:, 3]
    mine = valid.reshape(-1)[model_pixel].astype(bool) & ((old == a) | (old == b))
    new = np.where(mine, np.where(nearer_b, b, a), old)
    labels.reshape(-1)[at] = new
    moved = np.flatnonzero(new != old)
    if moved.size:
        swap_entries(masks_flat, (at[moved], new[moved]), (at[moved], old[moved]))
    return masks, labels


def frame_segments(model_segments: np.ndarray, segment_slots: np.ndarray, labels: np.ndarray) -> np.ndarray:
    """(H, W) int32 segment ids at the resolution of the frame's slot `labels`: model-resolution
    segments resized with nearest neighbours, then each pixel whose slot disagrees with its
    segment's takes the segment of a neighbouring model pixel (of the 8) that has its slot, so
    the segments follow the labels' edges; with none, it keeps its segment."""
    H, W = labels.shape
    segments = cv2.resize(model_segments, **_nearest(H, W))
    slot_of = cv2.resize(segment_slots[model_segments].astype(np.uint8), **_nearest(H, W))
    at = np.flatnonzero(slot_of != labels)
    my, mx = model_pixel_of(at, (H, W), model_segments.shape)
    want = labels.reshape(-1)[at]
    found = np.zeros(at.size, bool)
    padded = np.pad(model_segments, 1, mode="edge")
    flat = segments.reshape(-1)
    for dy, dx in ((0, -1), (0, 1), (-1, 0), (1, 0), (-1, -1), (-1, 1), (1, -1), (1, 1)):  # edge neighbours first
        candidate = padded[my + 1 + dy, mx + 1 + dx]
        take = ~found & (segment_slots[candidate] == want)
        flat[at[take]] = candidate[take]
        found |= take
    return segments
