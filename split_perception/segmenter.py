"""The public slot-segmentation API: `load_segmenter(path=None, backend="auto")(rgb) -> Segmentation`.

MONet / MONet-RN50* over any backend. Pre-processing is the detectors' (preprocessing.py);
post-processing (mask edges refined by colour at model resolution, see mask_refinement.py;
upsampling to the input size, renormalisation, labels, edges refined again on the input's colours,
see frame_edges.py) is numpy, so every backend gives the
same result and the ONNX Runtime path never imports torch.
"""
from __future__ import annotations

import functools
import logging
from dataclasses import dataclass, field
from pathlib import Path

import cv2
import numpy as np

from .backends import ModelRunner, open_runner
from .frame_edges import frame_segments, refine_frame_masks
from .mask_refinement import DEFAULT_JOIN_BELOW, join_segments_without_edges, refine_masks, swap_to_labels
from .object_slots import slots_for_segments
from .preprocessing import default_model_path, preprocess
from .touching_objects import DEFAULT_CORE_FRACTION, split_at_colour_edges, split_at_necks, split_enclosed_objects

log = logging.getLogger("split_perception")

DEFAULT_SEGMENTER = "monet_rn18"


@dataclass
class Segmentation:
    """Slots of one image: masks (K, H, W) soft, summing to one over K, at input resolution;
    labels (H, W) the most likely slot of each pixel; latents (K, D) one row per slot;
    model_masks (K, h, w) the masks at model resolution that `masks` is upsampled from (the
    model's own, with edges refined by colour unless the segmenter's refine_edges is off; then
    `masks` and `labels` have their edges refined again on the input's colours, frame_edges.py).
    segments / segment_slots: objects, made at model resolution from model_masks' labels: each
    slot's connected regions (connected_segments), with `frame` (the image as the model saw it,
    (h, w, 3)) given, regions that meet without a colour edge joined again, with split_touching,
    blobs with a neck split into their parts and, with `frame`, segments split along strong colour
    edges inside them and objects ringed by one cut out of a surface; then brought to the input's resolution (see segments). model_segments:
    (segments, segment_slots) at model resolution when the segmenter made them already (with
    slot_per_object: segment_slots are then the slots the segments were moved to)."""

    masks: np.ndarray
    labels: np.ndarray
    latents: np.ndarray
    model_masks: np.ndarray
    frame: np.ndarray | None = field(default=None, repr=False)
    split_touching: bool = False
    model_segments: tuple[np.ndarray, np.ndarray] | None = field(default=None, repr=False)

    @property
    def slots(self) -> int:
        return self.masks.shape[0]

    @functools.cached_property
    def _segmented(self) -> tuple[np.ndarray, np.ndarray]:
        # At model resolution: there the refined edges are exact to the pixel and the colour
        # steps across them sharp, while a camera frame's edges are spread over several pixels,
        # which the join mistook for no edge (docs/RESULTS.md, "Camera-sized frames"); and it is
        # 10-100x fewer pixels to label (segments cost x1.25 of a plain call at 640 x 480, x1.9
        # when made on the frame).
        if self.model_segments is not None:
            segments, slots = self.model_segments
        else:
            segments, slots = object_segments(self.model_masks.argmax(0).astype(np.uint8), self.frame, self.split_touching)
        if segments.shape != self.labels.shape:
            if self.frame is None:  # unrefined: the model's grid
                segments = cv2.resize(segments, self.labels.shape[::-1], interpolation=cv2.INTER_NEAREST_EXACT)
            else:  # edges where the refined labels have them
                segments = frame_segments(segments, slots, self.labels)
        return segments, slots

    @property
    def segments(self) -> np.ndarray:
        """(H, W) int32 segment id of each pixel: the connected regions of each slot, where the
        frame shows a colour edge between them (regions of two slots that meet without one, e.g.
        one object the attention cut in two, are one segment), and with split_touching, a blob
        made of two thick parts joined by a neck, or of two colours with a sharp step between them,
        split in two, and an object ringed by such a step cut out of the surface whose slot took it
        (touching_objects.py). Made at model
        resolution and resized with nearest neighbours; with refined edges, each pixel near an
        edge then takes the neighbouring segment of its slot in `labels`, so the segments' edges
        are the labels' (frame_edges.frame_segments); unrefined, they are steps of one model
        pixel."""
        return self._segmented[0]

    @property
    def segment_slots(self) -> np.ndarray:
        """(S,) the slot of each segment id (of its largest part): segment i's latent is
        latents[segment_slots[i]]."""
        return self._segmented[1]


def connected_segments(labels: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Split each slot's region of `labels` into its 4-connected parts.

    One attention pass gives similar-looking objects one slot (measured: 47% of the objects of
    the rich validation rooms share a slot with another), but such objects rarely touch, so
    the parts of a slot are mostly separate objects. On validation rooms (seed 20000, shipped
    default) FG-ARI of the segments vs the slot labels: room 0.532 vs 0.511, room_rich 0.570 vs
    0.495, held-out surfaces 0.601 vs 0.518, held-out shapes 0.591 vs 0.486 (docs/RESULTS.md).
    Computed on first access only: about 0.5 ms per slot at 640 x 480.
    Returns (segments (H, W) int32 ids 0..S-1, segment_slots (S,) int64)."""
    segments = np.zeros(labels.shape, np.int32)
    slots: list[int] = []
    for k in np.unique(labels):
        n, parts = cv2.connectedComponents((labels == k).astype(np.uint8), connectivity=4)
        inside = parts > 0  # part 0 is everything outside slot k
        segments[inside] = parts[inside] - 1 + len(slots)
        slots.extend([int(k)] * (n - 1))
    return segments, np.asarray(slots, np.int64)


def object_segments(labels: np.ndarray, frame: np.ndarray | None = None, split_touching: bool = False,
                    join_below: float = DEFAULT_JOIN_BELOW, core_fraction: float = DEFAULT_CORE_FRACTION) -> tuple[np.ndarray, np.ndarray]:
    """(segments (h, w) int32, segment_slots (S,)) of slot `labels`: each slot's connected regions;
    with `frame` (h, w, 3), regions that meet without a colour edge joined (a joined segment keeps
    the slot of its largest part; mask_refinement.join_segments_without_edges); with
    split_touching, blobs with a neck split into their parts (touching_objects.split_at_necks) and,
    with `frame`, segments split along strong colour edges inside them (split_at_colour_edges) and
    objects ringed by such an edge taken out of the surface around them (split_enclosed_objects)."""
    segments, slots = connected_segments(labels)
    if frame is not None and len(slots):
        group = join_segments_without_edges(segments, frame, join_below)
        sizes = np.bincount(segments.ravel(), minlength=len(slots))
        largest = np.lexsort((-sizes, group))  # by group, largest part first
        first = np.ones(len(largest), bool)
        first[1:] = group[largest][1:] != group[largest][:-1]
        segments, slots = group[segments].astype(np.int32), slots[largest[first]]
    if split_touching and len(slots):
        segments, parent = split_at_necks(segments, core_fraction)
        slots = slots[parent]
        if frame is not None:
            segments, parent = split_at_colour_edges(segments, frame)
            slots = slots[parent]
            segments, parent = split_enclosed_objects(segments, frame)
            slots = slots[parent]
    return segments, slots


def upsample_masks(masks: np.ndarray, hw: tuple[int, int]) -> np.ndarray:
    """(K, h, w) soft masks -> (K, H, W), bilinear, summing to one per pixel.

    Masks are clipped and renormalised at model resolution; bilinear weights sum to one, so
    the upsampled masks still do (within float rounding) and need no full-resolution pass.
    OpenCV resizes channels-last; the result is a (K, H, W) view of that array (15 ms -> 3 ms
    for K = 10 at 640 x 480 on the dev CPU, against normalising at full resolution)."""
    masks = np.clip(masks.astype(np.float32, copy=False), 0.0, None)
    masks = masks / np.maximum(masks.sum(0, keepdims=True), 1e-12)
    h, w = hw
    if masks.shape[1:] == (h, w):
        return masks
    k = masks.shape[0]
    # OpenCV resizes up to 512 channels at once (channels last); chunk beyond that
    chunks = [cv2.resize(np.ascontiguousarray(masks[i : i + 512].transpose(1, 2, 0)), (w, h),
                         interpolation=cv2.INTER_LINEAR).reshape(h, w, -1) for i in range(0, k, 512)]
    up = chunks[0] if len(chunks) == 1 else np.concatenate(chunks, axis=2)
    return up.transpose(2, 0, 1)


def postprocess_slots(outputs: dict, image_hw: tuple[int, int], model_input: np.ndarray | None = None,
                      split_touching: bool = False, image: np.ndarray | None = None,
                      slot_per_object: bool = False) -> Segmentation:
    """Segmentation of one frame from the model's outputs; model_input (1, 3, h, w), the frame as
    the model saw it: when given, mask edges are refined by its colours (refine_masks), then, with
    the input `image` (H, W, 3) given too, again by the image's colours at its own resolution
    (frame_edges.refine_frame_masks), and segments are joined where it shows no colour edge;
    split_touching: segments split at necks; slot_per_object: segments that share a slot moved to
    the model's empty slots (object_slots.py), masks and latents with them, so `labels` separate
    the objects too."""
    model_masks = outputs["masks"][0].astype(np.float32)
    latents = outputs["latents"][0].astype(np.float32)
    frame = None if model_input is None else model_input[0].transpose(1, 2, 0)
    if frame is not None:
        model_masks = refine_masks(frame, model_masks)
    model_segments = None
    if slot_per_object:
        old = model_masks.argmax(0)
        segments, slots = object_segments(old.astype(np.uint8), frame, split_touching)
        slots, source = slots_for_segments(segments, slots, model_masks.shape[0])
        model_masks = swap_to_labels(model_masks, old, slots[segments])
        latents = latents[source]
        model_segments = (segments, slots)
    masks = upsample_masks(model_masks, image_hw)
    if frame is not None and image is not None and masks.shape[1:] != frame.shape[:2]:
        # upsample_masks made `masks`: ours to change in place
        masks, labels = refine_frame_masks(image, frame, model_masks.argmax(0), masks)
    else:
        labels = masks.argmax(0).astype(np.uint8)
    return Segmentation(masks=masks, labels=labels, latents=latents, model_masks=model_masks, frame=frame,
                        split_touching=split_touching, model_segments=model_segments)


class Segmenter:
    """Call it on RGB uint8 frames of any size. refine_edges: move mask edges onto the frame's
    colour edges, and join segments that meet without one (mask_refinement.py; FG-ARI of the
    segments on the room test sets, docs/RESULTS.md); False: the model's masks and plain connected
    regions of its labels. split_touching: split segments where two blobs meet at a neck
    (touching objects of one colour that one slot took) or two colours at a sharp edge, and cut
    objects out of the surface whose slot took them (touching_objects.py). slot_per_object:
    segments that share a slot moved to the slots the model left empty, with their masks and a
    copy of their slot's latent, so the slot labels (and the node's ~/masks) separate objects too
    (object_slots.py); False: the model's own slots."""

    def __init__(self, runner: ModelRunner, refine_edges: bool = True, split_touching: bool = True,
                 slot_per_object: bool = True):
        if runner.model_type != "monet":
            raise ValueError(f"{runner.source}: holds a '{runner.model_type}' model, not a slot segmenter")
        self.runner = runner
        self.refine_edges = bool(refine_edges)
        self.split_touching = bool(split_touching)
        self.slot_per_object = bool(slot_per_object)
        self.input_size = int(runner.metadata["input_size"])

    @property
    def backend(self) -> str:
        return self.runner.backend

    def __call__(self, image: np.ndarray) -> Segmentation:
        x = preprocess(image, self.input_size)
        outputs = self.runner.run(x)
        return postprocess_slots(outputs, image.shape[:2], x if self.refine_edges else None, split_touching=self.split_touching,
                                 image=image, slot_per_object=self.slot_per_object)


def load_segmenter(path: str | Path | None = None, backend: str = "auto", refine_edges: bool = True,
                   split_touching: bool = True, slot_per_object: bool = True) -> Segmenter:
    """Load a segmenter from an .onnx export or a .safetensors checkpoint (None: the shipped default, the
    .safetensors checkpoint for backend='torch', else the ONNX export). refine_edges, split_touching,
    slot_per_object: see Segmenter."""
    runner = open_runner(Path(path) if path else default_model_path(DEFAULT_SEGMENTER, backend), backend)
    log.info("segmenter %s on backend %s", runner.source, runner.backend)
    return Segmenter(runner, refine_edges=refine_edges, split_touching=split_touching, slot_per_object=slot_per_object)
