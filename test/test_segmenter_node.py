"""The MONet slot node in its own process, over real DDS: masks, soft masks, latents, headers."""
import os
import subprocess
import sys

import numpy as np
import pytest

rclpy = pytest.importorskip("rclpy")
from diagnostic_msgs.msg import DiagnosticArray  # noqa: E402
from sensor_msgs.msg import Image  # noqa: E402

from ros_helpers import client_node, spin_until, stop  # noqa: E402
from split_perception import load_segmenter  # noqa: E402
from split_perception.image_conversion import array_to_image, image_to_array  # noqa: E402
from split_perception.training import scenes  # noqa: E402


def test_slot_node_publishes_the_topic_contract(tiny_segmenter_files):
    _, onnx_path = tiny_segmenter_files
    proc = subprocess.Popen(
        [sys.executable, "-m", "split_perception.nodes.segmenter_node", "--ros-args", "-r", "image:=cam/image", "-p", f"model_path:={onnx_path}"],
        env=dict(os.environ), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )
    rclpy.init()
    ns = "/monet_segmenter"
    node, got, pub, ex = client_node("slot_test_client", {
        "masks": (Image, f"{ns}/masks"), "probs": (Image, f"{ns}/slot_probs"),
        "latents": (Image, f"{ns}/slot_latents"), "diag": (DiagnosticArray, "/diagnostics"),
    })
    try:
        assert spin_until(ex, lambda: pub.get_subscription_count() > 0, 30), stop(proc)
        image = scenes.generate(scenes.RoomConfig(), 0, 1).image  # 64 x 64
        frame = np.ascontiguousarray(np.repeat(image, 2, 1))  # 64 x 128: not the model's size
        msg = array_to_image(frame, "rgb8")
        msg.header.frame_id, msg.header.stamp.sec = "cam", 9
        assert spin_until(ex, lambda: got["masks"] or pub.publish(msg), 30), f"no masks; node stderr: {stop(proc)}"
        assert spin_until(ex, lambda: got["probs"] and got["latents"], 10)
        expected = load_segmenter(onnx_path)(frame)
        masks = got["masks"][0]
        assert masks.header.frame_id == "cam" and masks.header.stamp.sec == 9 and masks.encoding == "mono8"
        np.testing.assert_array_equal(image_to_array(masks), expected.labels)
        probs = image_to_array(got["probs"][0])
        assert probs.shape == (4 * 32, 32)
        np.testing.assert_allclose(probs.reshape(4, 32, 32).sum(0), 1.0, atol=1e-5)
        np.testing.assert_allclose(image_to_array(got["latents"][0]), expected.latents, atol=1e-5)
        assert spin_until(ex, lambda: any(a.status and a.status[0].name.endswith("monet_segmenter") for a in got["diag"]), 5)
        assert proc.poll() is None
    finally:
        stop(proc)
        node.destroy_node()
        rclpy.shutdown()
