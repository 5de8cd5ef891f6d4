"""Bad input keeps the detector node up (issue 14, item 5), over real DDS: empty, huge-claiming,
truncated, unsupported and non-colour (NaN 32FC1) frames are counted, reported on /diagnostics
with their reason, and skipped; frames that change size from one to the next are all answered
in their own pixels. One node serves the whole module."""
import numpy as np
import pytest

rclpy = pytest.importorskip("rclpy")
from sensor_msgs.msg import Image  # noqa: E402
from vision_msgs.msg import Detection2DArray  # noqa: E402

from ros_helpers import RemoteNode, answers, frame_msg  # noqa: E402
from split_perception import load_detector  # noqa: E402
from split_perception.training import scenes  # noqa: E402

NS = "/split_spair_detector"
SCENE = scenes.generate(scenes.MultiObjectConfig(), 0, 5).image  # 48 x 48 rgb


@pytest.fixture(scope="module")
def det(tiny_detector_files, tmp_path_factory):
    with RemoteNode("split_perception.nodes.detector_node", "split_spair_detector",
                      ["-r", "image:=cam/image", "-p", f"model_path:={tiny_detector_files[1]}", "-p", "publish_debug_image:=true",
                       "-p", "threshold:=0.2"],
                      tmp_path_factory.mktemp("bad_frames_log") / "node.log",
                      {"det": (Detection2DArray, f"{NS}/detections"), "debug": (Image, f"{NS}/debug_image")}) as node:
        yield node


_stamps = iter(range(1000, 10**6))


def raw_frame(stamp, encoding, height, width, data: bytes, step=None):
    msg = Image()
    msg.header.frame_id, msg.header.stamp.sec = "cam", stamp
    msg.encoding, msg.height, msg.width, msg.data = encoding, height, width, data
    msg.step = step if step is not None else width * 3
    return msg


def nan_depth_frame(stamp):
    depth = np.full((24, 32), 1.5, np.float32)
    depth[5:9, 3:20] = np.nan
    return frame_msg(depth, stamp, "32FC1")


BAD_FRAMES = {  # name: (make(stamp) -> Image, words the reason must contain)
    "zero_size": (lambda s: raw_frame(s, "rgb8", 0, 0, b""), ["empty image 0x0"]),
    "zero_width": (lambda s: raw_frame(s, "rgb8", 10, 0, b""), ["empty image 0x10"]),
    "huge_claim": (lambda s: raw_frame(s, "rgb8", 100_000, 100_000, bytes(300)), ["100000x100000", "pixel limit"]),
    "truncated": (lambda s: raw_frame(s, "rgb8", 64, 64, bytes(100)), ["data holds 100 bytes"]),
    "step_too_small": (lambda s: raw_frame(s, "rgb8", 4, 4, bytes(48), step=5), ["step 5"]),
    "unsupported_encoding": (lambda s: raw_frame(s, "bayer_rggb8", 8, 8, bytes(64), step=8), ["unsupported image encoding 'bayer_rggb8'"]),
    "nan_32fc1": (nan_depth_frame, ["32FC1", "not a colour image"]),
}


def good_frame_answered(det, image, timeout=30.0):
    stamp = next(_stamps)
    ok = det.send_until(frame_msg(image, stamp), lambda: answers(det.received["det"], stamp) and answers(det.received["debug"], stamp), timeout)
    assert ok, f"frame {image.shape} not answered; log:\n{det.log()}"
    return answers(det.received["det"], stamp)[0], answers(det.received["debug"], stamp)[0]


@pytest.mark.parametrize("name", list(BAD_FRAMES))
def test_bad_frame_is_reported_and_skipped(det, name):
    make, words = BAD_FRAMES[name]
    failed_before = int(det.latest()[2]["frames_failed"])
    stamp = next(_stamps)
    bad = make(stamp)

    def reported(s):
        return int(s[2]["frames_failed"]) > failed_before and all(w in s[2]["last_frame_error"] for w in words)

    # resend: best effort may lose it, and a newer frame may replace it before the worker runs
    status = None

    def seen():
        nonlocal status
        det.camera.publish(bad)
        status = det.status(reported, timeout=0.0, since=0)
        return status is not None

    assert det.wait(seen, 30), f"{name} not reported; statuses: {[s.values for s in det.statuses[-2:]]}; log:\n{det.log()}"
    assert "frame(s) failed" in status[1]
    assert not answers(det.received["det"], stamp)  # nothing published for it
    assert det.proc.poll() is None
    good_frame_answered(det, SCENE)  # still serving


def test_frames_that_change_size_are_each_answered_in_their_own_pixels(det, tiny_detector_files):
    detector = load_detector(tiny_detector_files[1], threshold=0.2)
    tall = np.ascontiguousarray(np.repeat(SCENE, 10, 0)[:, :30])  # 480 x 30
    for image in (SCENE, np.repeat(np.repeat(SCENE, 3, 0), 4, 1), tall, SCENE[:1, :1], SCENE[:2, :3],
                  np.ascontiguousarray(np.tile(SCENE, (15, 20, 1))[:720, :960])):
        image = np.ascontiguousarray(image)
        det_msg, debug = good_frame_answered(det, image)
        assert (debug.height, debug.width) == image.shape[:2]
        expected = detector(image)
        assert len(det_msg.detections) == len(expected)
        for d, (x1, y1, x2, y2) in zip(det_msg.detections, expected.boxes):
            assert d.bbox.center.position.x == pytest.approx((x1 + x2) / 2, abs=1e-3)
            assert d.bbox.size_y == pytest.approx(y2 - y1, abs=1e-3)
            assert 0 <= d.bbox.center.position.x <= image.shape[1] and 0 <= d.bbox.center.position.y <= image.shape[0]
