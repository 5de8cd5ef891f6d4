"""Building the output messages of the nodes from plain results (no node logic here)."""
from __future__ import annotations

import numpy as np
from diagnostic_msgs.msg import DiagnosticArray, DiagnosticStatus, KeyValue
from vision_msgs.msg import Detection2D, Detection2DArray, ObjectHypothesisWithPose

from .detector import Detections
from .image_conversion import array_to_image

OBJECT_CLASS = "object"  # unsupervised: one class; identity lives in the z_what latents


def detections_msg(det: Detections, header) -> Detection2DArray:
    """Boxes as centre/size in input pixels; score = presence; id = row in ~/latents/what."""
    out = Detection2DArray()
    out.header = header
    for i, ((x1, y1, x2, y2), score) in enumerate(zip(det.boxes.tolist(), det.scores.tolist())):
        d = Detection2D()
        d.header = header
        d.id = str(i)
        d.bbox.center.position.x = (x1 + x2) / 2.0
        d.bbox.center.position.y = (y1 + y2) / 2.0
        d.bbox.size_x = x2 - x1
        d.bbox.size_y = y2 - y1
        hyp = ObjectHypothesisWithPose()
        hyp.hypothesis.class_id = OBJECT_CLASS
        hyp.hypothesis.score = float(score)
        d.results.append(hyp)
        out.detections.append(d)
    return out


def matrix_msg(matrix: np.ndarray, header):
    """A latent matrix as a 32FC1 image (rows x cols); a vector becomes one row."""
    m = np.asarray(matrix, np.float32)
    if m.ndim == 1:
        m = m[None, :]
    return array_to_image(np.ascontiguousarray(m), "32FC1", header)


def debug_image(rgb: np.ndarray, det: Detections) -> np.ndarray:
    import cv2

    img = np.ascontiguousarray(rgb).copy()
    thickness = max(1, round(min(img.shape[:2]) / 200))
    for (x1, y1, x2, y2), s in zip(det.boxes.astype(int).tolist(), det.scores.tolist()):
        cv2.rectangle(img, (x1, y1), (max(x1, x2 - 1), max(y1, y2 - 1)), (255, 64, 64), thickness)
        cv2.putText(img, f"{s:.2f}", (x1, max(8, y1 - 2)), cv2.FONT_HERSHEY_PLAIN, 0.6 * thickness, (255, 255, 0), 1)
    return img


def diagnostics_msg(name: str, hardware_id: str, stats: dict, stamp, ok: bool, message: str) -> DiagnosticArray:
    arr = DiagnosticArray()
    arr.header.stamp = stamp
    st = DiagnosticStatus()
    st.level = DiagnosticStatus.OK if ok else DiagnosticStatus.WARN
    st.name, st.hardware_id, st.message = name, hardware_id, message
    st.values = [KeyValue(key=str(k), value=str(v)) for k, v in stats.items()]
    arr.status.append(st)
    return arr
