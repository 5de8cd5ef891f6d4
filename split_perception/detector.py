"""The public detection API: `load_detector(path=None, backend="auto")(rgb) -> Detections`.

Pre-processing (resize, scale to [0, 1]) and post-processing (boxes to input pixels,
presence threshold, optional NMS) are numpy and shared by every backend, so backends differ
only in how they run the graph. Neither the ONNX Runtime path nor this module imports torch.
"""
from __future__ import annotations

import logging
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from .backends import ModelRunner, open_runner
from .preprocessing import InputImageError, default_model_path, preprocess  # noqa: F401 (re-exported)

log = logging.getLogger("split_perception")

DEFAULT_DETECTOR = "split_spair"


@dataclass
class Detections:
    """Objects found in one image. Row i of every per-object array is detection i.

    boxes (N, 4) x1 y1 x2 y2 in input-image pixels; scores (N,) presence probability;
    what (N, A) global identity latents; depth (N,); local (L,) the image's z_l (empty
    without SPLIT); background (Zbg,).
    """

    boxes: np.ndarray
    scores: np.ndarray
    what: np.ndarray
    depth: np.ndarray
    local: np.ndarray
    background: np.ndarray
    cells: np.ndarray = field(default_factory=lambda: np.zeros(0, np.int64))  # grid cell of each detection

    def __len__(self) -> int:
        return len(self.scores)


def nms(boxes: np.ndarray, scores: np.ndarray, iou_threshold: float) -> np.ndarray:
    """Greedy non-maximum suppression; returns kept indices, best score first."""
    from .box_ops import box_iou

    order = np.argsort(-scores, kind="stable")
    keep = []
    while order.size:
        i = order[0]
        keep.append(i)
        if order.size == 1:
            break
        iou = box_iou(boxes[i : i + 1], boxes[order[1:]])[0]
        order = order[1:][iou <= iou_threshold]
    return np.asarray(keep, np.int64)


def drop_redrawn(cells: np.ndarray, overlap: np.ndarray, colour: np.ndarray, max_overlap: float, max_colour_distance: float) -> np.ndarray:
    """Boolean mask over `cells` (best first): True where the cell's glimpse does not redraw a better
    kept glimpse's object.

    A cell redraws another when their footprints overlap by more than `max_overlap` (graph output
    `overlap`, see models.spair.footprint_overlap_and_colour) and the input's mean colours under
    them (`colour`, RGB in [0, 1]) are closer than `max_colour_distance`. NMS does not catch these
    duplicates: two glimpses drawing the two halves of a near object have boxes of IoU 0.2-0.4."""
    keep = np.zeros(len(cells), bool)
    for i, c in enumerate(cells):
        kept = cells[keep]
        redraws = (overlap[c, kept] > max_overlap) & (np.linalg.norm(colour[kept] - colour[c], axis=1) < max_colour_distance)
        keep[i] = not redraws.any()
    return keep


def postprocess(
    outputs: dict, image_hw: tuple[int, int], model_size: int, threshold: float, nms_iou: float | None,
    duplicate_overlap: float | None = None, duplicate_colour: float = 0.0,
) -> Detections:
    """Graph outputs for one image -> Detections in input pixels, best score first.

    duplicate_overlap: None keeps every box NMS keeps; else drop_redrawn(max_overlap=duplicate_overlap,
    max_colour_distance=duplicate_colour) runs after NMS (on graphs that output overlap and colour;
    exports older than that step skip it)."""
    h, w = image_hw
    boxes_c = outputs["boxes"][0]  # (G, 4) centre x, centre y, width, height in model pixels
    scores = outputs["scores"][0]
    keep = np.flatnonzero(scores > threshold)
    sx, sy = w / model_size, h / model_size
    cx, cy, bw, bh = (boxes_c[keep, k] for k in range(4))
    boxes = np.stack([(cx - bw / 2) * sx, (cy - bh / 2) * sy, (cx + bw / 2) * sx, (cy + bh / 2) * sy], axis=1)
    boxes = np.clip(boxes, 0, [w, h, w, h]).astype(np.float32)
    order = np.argsort(-scores[keep], kind="stable")
    if nms_iou is not None and len(keep):
        order = nms(boxes, scores[keep], nms_iou)
    if duplicate_overlap is not None and "overlap" in outputs and len(order):
        order = order[drop_redrawn(keep[order], outputs["overlap"][0], outputs["colour"][0], duplicate_overlap, duplicate_colour)]
    keep, boxes = keep[order], boxes[order]
    local = outputs.get("local")
    return Detections(
        boxes=boxes.reshape(-1, 4),
        scores=scores[keep].astype(np.float32),
        what=outputs["what"][0][keep].astype(np.float32),
        depth=outputs["depth"][0][keep].astype(np.float32),
        local=(local[0] if local is not None else np.zeros(0)).astype(np.float32),
        background=outputs["background"][0].astype(np.float32),
        cells=keep.astype(np.int64),
    )


# A kept box whose glimpse draws over a better box's glimpse (footprint overlap > 0.1) in the same
# colour (mean RGB distance < 0.15) is that object drawn twice, and is dropped. Chosen on the
# validation scenes (seed 20000, 200 per kind, the shipped model; docs/RESULTS.md): count accuracy
# with objects of 12-16 px 0.827 -> 0.843, 17-21 px 0.397 -> 0.759, 8-12 px unchanged.
DEFAULT_DUPLICATE_OVERLAP = 0.1
DEFAULT_DUPLICATE_COLOUR = 0.15

# Non-maximum suppression on by default: SPAIR's neighbour conditioning leaves some duplicate
# boxes on one object; NMS at IoU 0.5 raised count accuracy by 5 points on average over the
# validation scenes (seed 20000, every test kind, 6k-step default; docs/RESULTS.md). None: off.
DEFAULT_NMS_IOU = 0.5


class Detector:
    """SPLIT-SPAIR (or SPAIR) detector over any backend. Call it on RGB uint8 frames."""

    def __init__(
        self, runner: ModelRunner, threshold: float = 0.5, nms_iou: float | None = DEFAULT_NMS_IOU,
        duplicate_overlap: float | None = DEFAULT_DUPLICATE_OVERLAP, duplicate_colour: float = DEFAULT_DUPLICATE_COLOUR,
    ):
        if runner.model_type != "split_spair":
            raise ValueError(f"{runner.source}: holds a '{runner.model_type}' model, not a detector")
        if not 0.0 <= threshold <= 1.0:
            raise ValueError(f"threshold must be in [0, 1], got {threshold}")
        if duplicate_overlap is not None and not 0.0 <= duplicate_overlap <= 1.0:
            raise ValueError(f"duplicate_overlap must be in [0, 1] or None, got {duplicate_overlap}")
        if duplicate_colour < 0.0:
            raise ValueError(f"duplicate_colour must be >= 0, got {duplicate_colour}")
        self.runner, self.threshold, self.nms_iou = runner, float(threshold), nms_iou
        self.duplicate_overlap, self.duplicate_colour = duplicate_overlap, float(duplicate_colour)
        self.input_size = int(runner.metadata["input_size"])

    @property
    def backend(self) -> str:
        return self.runner.backend

    def __call__(self, image: np.ndarray) -> Detections:
        x = preprocess(image, self.input_size)
        outputs = self.runner.run(x)
        return postprocess(outputs, image.shape[:2], self.input_size, self.threshold, self.nms_iou,
                           self.duplicate_overlap, self.duplicate_colour)


def load_detector(
    path: str | Path | None = None, backend: str = "auto", threshold: float = 0.5, nms_iou: float | None = DEFAULT_NMS_IOU,
    duplicate_overlap: float | None = DEFAULT_DUPLICATE_OVERLAP, duplicate_colour: float = DEFAULT_DUPLICATE_COLOUR,
) -> Detector:
    """Load a detector from an .onnx export or a .safetensors checkpoint (None: the shipped default, the
    .safetensors checkpoint for backend='torch', else the ONNX export). duplicate_overlap=None turns
    off dropping boxes that redraw a better box's object (drop_redrawn)."""
    runner = open_runner(Path(path) if path else default_model_path(DEFAULT_DETECTOR, backend), backend)
    log.info("detector %s on backend %s", runner.source, runner.backend)
    return Detector(runner, threshold=threshold, nms_iou=nms_iou, duplicate_overlap=duplicate_overlap, duplicate_colour=duplicate_colour)
