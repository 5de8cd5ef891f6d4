"""The detector node in its own process, over real DDS: outputs, headers, bad frames, diagnostics."""
import sys

import numpy as np
import pytest

rclpy = pytest.importorskip("rclpy")
from diagnostic_msgs.msg import DiagnosticArray  # noqa: E402
from sensor_msgs.msg import Image  # noqa: E402
from vision_msgs.msg import Detection2DArray  # noqa: E402

from ros_helpers import client_node, spin_until, stop  # noqa: E402
from split_perception import load_detector  # noqa: E402
from split_perception.image_conversion import array_to_image, image_to_array  # noqa: E402
from split_perception.training import scenes  # noqa: E402


def test_node_publishes_the_topic_contract(tiny_detector_files):
    import os
    import subprocess

    _, onnx_path = tiny_detector_files
    proc = subprocess.Popen(
        [sys.executable, "-m", "split_perception.nodes.detector_node", "--ros-args", "-r", "image:=cam/image",
         "-p", f"model_path:={onnx_path}", "-p", "threshold:=0.3", "-p", "publish_debug_image:=true"],
        env=dict(os.environ), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )
    rclpy.init()
    ns = "/split_spair_detector"
    node, got, pub, ex = client_node("node_test_client", {
        "det": (Detection2DArray, f"{ns}/detections"), "what": (Image, f"{ns}/latents/what"),
        "local": (Image, f"{ns}/latents/local"), "bg": (Image, f"{ns}/latents/background"),
        "debug": (Image, f"{ns}/debug_image"), "diag": (DiagnosticArray, "/diagnostics"),
    })
    try:
        assert spin_until(ex, lambda: pub.get_subscription_count() > 0, 30), stop(proc)
        image = scenes.generate(scenes.MultiObjectConfig(), 0, 2).image
        big = np.ascontiguousarray(np.repeat(np.repeat(image, 3, 0), 4, 1))  # 144 x 192, BGR below
        # 1) a frame the node cannot take: it must say so and stay up
        bad = array_to_image(big[..., 0].copy(), "mono8")
        bad.encoding = "yuv422"
        pub.publish(bad)
        # 2) a good frame, resent until answered (best-effort QoS may drop the first)
        msg = array_to_image(big[..., ::-1].copy(), "bgr8")
        msg.header.frame_id, msg.header.stamp.sec = "cam", 7
        ok = spin_until(ex, lambda: got["det"] or pub.publish(msg), 30)
        assert ok, f"no detections; node stderr: {stop(proc)}"
        assert spin_until(ex, lambda: got["what"] and got["local"] and got["bg"] and got["debug"], 10)
        det = got["det"][0]
        assert det.header.frame_id == "cam" and det.header.stamp.sec == 7
        expected = load_detector(onnx_path, threshold=0.3)(big)
        assert len(det.detections) == len(expected)
        for i, d in enumerate(det.detections):
            x1, y1, x2, y2 = expected.boxes[i]
            assert d.id == str(i)
            assert d.bbox.center.position.x == pytest.approx((x1 + x2) / 2, abs=1e-3)
            assert d.bbox.size_y == pytest.approx(y2 - y1, abs=1e-3)
            assert d.results[0].hypothesis.score == pytest.approx(expected.scores[i], abs=1e-5)
        what = got["what"][0]
        assert what.header.stamp.sec == 7 and what.encoding == "32FC1"
        if len(expected):
            np.testing.assert_allclose(image_to_array(what), expected.what, atol=1e-5)
        np.testing.assert_allclose(image_to_array(got["local"][0]), expected.local[None], atol=1e-5)
        assert (got["debug"][0].height, got["debug"][0].width) == (144, 192)
        # diagnostics report the failed frame and the backend; the node is still alive
        # the first bad frame may have been superseded by the good one (counted as dropped): resend it alone
        def failed_reported():
            pub.publish(bad)
            return any(int(dict((v.key, v.value) for v in a.status[0].values)["frames_failed"]) >= 1
                       for a in got["diag"] if a.status and a.status[0].name.endswith("split_spair_detector"))

        assert spin_until(ex, failed_reported, 15)
        assert proc.poll() is None
    finally:
        err = stop(proc)
        node.destroy_node()
        rclpy.shutdown()
    assert "yuv422" in err  # the bad frame was reported by name
