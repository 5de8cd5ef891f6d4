"""Start-up failures, over real DDS. A missing or corrupt model is not fatal: the node comes up
inactive, says why on /diagnostics (ERROR) and recovers when model_path names a good model. A
parameter value it cannot take ends the process with one clear line and exit status 2."""
import subprocess
import sys

import pytest

rclpy = pytest.importorskip("rclpy")
from std_srvs.srv import SetBool, Trigger  # noqa: E402
from vision_msgs.msg import Detection2DArray  # noqa: E402

from ros_helpers import RemoteNode, answers, frame_msg, level  # noqa: E402
from split_perception.nodes.model_holder import file_id  # noqa: E402
from split_perception.training import scenes  # noqa: E402

IMAGE = scenes.generate(scenes.MultiObjectConfig(), 0, 4).image


def test_node_without_a_model_stays_up_reports_and_recovers(tiny_detector_files, tmp_path):
    missing = tmp_path / "not_deployed_yet.onnx"
    corrupt = tmp_path / "half_written.onnx"
    corrupt.write_bytes(b"\x00" * 1000)
    node = RemoteNode("split_perception.nodes.detector_node", "split_spair_detector",
                      ["-r", "image:=cam/image", "-p", f"model_path:={missing}"], tmp_path / "node.log",
                      {"det": (Detection2DArray, "/split_spair_detector/detections")})
    try:
        node.wait_until_up()
        lvl, message, values = node.status()
        assert lvl == level("ERROR") and "no model" in message and str(missing) in message and "model_path" in message
        assert values["model_id"] == "none" and "not found" in values["model_error"]
        assert "not_deployed_yet.onnx" in node.log()
        # frames are received and dropped without inference; the services answer
        stamp = 1
        msg = frame_msg(IMAGE, stamp)
        assert node.wait(lambda: node.camera.publish(msg) or node.status(lambda s: int(s[2]["frames_ignored"]) > 0, 0.0), 30)
        assert not answers(node.received["det"], stamp)
        response = node.call(Trigger, "~/reload", Trigger.Request())
        assert not response.success and "not found" in response.message and "no model is loaded" in response.message
        assert "no model is loaded" in node.call(SetBool, "~/enable", SetBool.Request(data=True)).message
        # a corrupt file: accepted (it exists), fails to load, still no model, and says why
        assert node.set_parameters({"model_path": str(corrupt)})[0].successful
        status = node.status(lambda s: "half_written.onnx" in s[2]["model_error"], since=len(node.statuses))
        assert status and status[0] == level("ERROR") and "not a loadable ONNX model" in status[2]["model_error"]
        # a good model: the node recovers without a restart
        good = tiny_detector_files[1]
        assert node.set_parameters({"model_path": str(good)})[0].successful
        status = node.status(lambda s: s[2]["model_id"] == file_id(good), since=len(node.statuses))
        assert status and status[0] == level("OK") and status[1] == "ok" and status[2]["model_error"] == ""
        stamp = 2
        msg = frame_msg(IMAGE, stamp)
        assert node.send_until(msg, lambda: answers(node.received["det"], stamp)), node.log()
        assert node.proc.poll() is None
    finally:
        node.close()


@pytest.mark.parametrize("args, words", [
    (["-p", "threshold:=3.0"], ["bad parameter", "threshold", "3.0"]),
    (["-p", "image_qos.reliability:=sometimes"], ["bad parameter", "image_qos.reliability must be one of", "'sometimes'"]),
    (["-p", "output_qos.depth:=0"], ["bad parameter", "output_qos.depth"]),
])
def test_a_bad_parameter_at_start_is_a_clean_exit_with_a_reason(tiny_detector_files, args, words):
    proc = subprocess.run([sys.executable, "-m", "split_perception.nodes.detector_node", "--ros-args",
                           "-p", f"model_path:={tiny_detector_files[1]}", *args],
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 2, proc.stderr
    assert "Traceback" not in proc.stderr
    for word in words:
        assert word in proc.stderr, proc.stderr
