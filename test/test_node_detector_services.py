"""The detector node over real DDS: parameter descriptors and checks, ~/enable, hot-swap by
model_path and ~/reload, a corrupt or wrong model on swap (the old one keeps serving).

One node serves the whole module; each test first puts it in the state it needs."""
import os
import shutil
from types import SimpleNamespace

import numpy as np
import pytest

rclpy = pytest.importorskip("rclpy")
from rcl_interfaces.msg import ParameterType  # noqa: E402
from sensor_msgs.msg import Image  # noqa: E402
from std_srvs.srv import SetBool, Trigger  # noqa: E402
from vision_msgs.msg import Detection2DArray  # noqa: E402

from ros_helpers import RemoteNode, answers, export_tiny_model, frame_msg, level  # noqa: E402
from split_perception import load_detector  # noqa: E402
from split_perception.detector import DEFAULT_DUPLICATE_COLOUR, DEFAULT_DUPLICATE_OVERLAP  # noqa: E402
from split_perception.image_conversion import image_to_array  # noqa: E402
from split_perception.nodes.model_holder import file_id  # noqa: E402
from split_perception.training import scenes  # noqa: E402

NS = "/split_spair_detector"
IMAGE = np.ascontiguousarray(np.repeat(np.repeat(scenes.generate(scenes.MultiObjectConfig(), 0, 3).image, 2, 0), 2, 1))


@pytest.fixture(scope="module")
def models(tiny_detector_files, tiny_segmenter_files, tmp_path_factory):
    d = tmp_path_factory.mktemp("detector_node_models")
    corrupt = d / "corrupt.onnx"
    corrupt.write_bytes(b"\x08\x07 this is not an ONNX protobuf " * 50)
    return SimpleNamespace(a=tiny_detector_files[1], b=export_tiny_model("detector", d, seed=1), corrupt=corrupt,
                           slots=tiny_segmenter_files[1], dir=d)


@pytest.fixture(scope="module")
def det(models, tmp_path_factory):
    with RemoteNode("split_perception.nodes.detector_node", "split_spair_detector",
                      ["-r", "image:=cam/image", "-p", f"model_path:={models.a}", "-p", "publish_debug_image:=true"],
                      tmp_path_factory.mktemp("detector_node_log") / "node.log",
                      {"det": (Detection2DArray, f"{NS}/detections"), "what": (Image, f"{NS}/latents/what")}) as node:
        yield node


_stamps = iter(range(1000, 10**6))


def answer(node, image=IMAGE, timeout=30.0):
    """Send `image` with a fresh stamp until the node answers it; returns (detections, what or None)."""
    stamp = next(_stamps)
    msg = frame_msg(image, stamp)
    got = node.send_until(msg, lambda: answers(node.received["det"], stamp) and answers(node.received["what"], stamp), timeout)
    assert got, f"frame {stamp} not answered; log:\n{node.log()}"
    what = answers(node.received["what"], stamp)[0]
    return answers(node.received["det"], stamp)[0], image_to_array(what) if what.height else None


def use_model(node, path, timeout=30.0):
    """Set model_path and wait until /diagnostics shows that file's model serving without error."""
    result = node.set_parameters({"model_path": str(path)})[0]
    assert result.successful, result.reason
    status = node.status(lambda s: s[2]["model_id"] == file_id(path) and not s[2]["model_error"], timeout, since=len(node.statuses))
    assert status, f"{path} never served; log:\n{node.log()}"
    return status


def assert_serves(node, path, threshold=0.5):
    det, what = answer(node)
    expected = load_detector(path, threshold=threshold)(IMAGE)
    assert len(det.detections) == len(expected)
    if len(expected):
        np.testing.assert_allclose(what, expected.what, atol=1e-5)


def test_parameters_are_described_with_ranges(det):
    d = {name: desc for name, desc in zip(
        ["threshold", "nms_iou", "backend", "model_path", "image_qos.depth", "image_qos.reliability", "publish_debug_image",
         "duplicate_overlap", "duplicate_colour"],
        det.describe_parameters("threshold", "nms_iou", "backend", "model_path", "image_qos.depth",
                                "image_qos.reliability", "publish_debug_image", "duplicate_overlap", "duplicate_colour"))}
    assert all(desc.description for desc in d.values())
    r = d["threshold"].floating_point_range[0]
    assert (r.from_value, r.to_value) == (0.0, 1.0) and d["threshold"].type == ParameterType.PARAMETER_DOUBLE
    assert (d["nms_iou"].floating_point_range[0].from_value, d["nms_iou"].floating_point_range[0].to_value) == (-1.0, 1.0)
    depth = d["image_qos.depth"]
    assert depth.read_only and (depth.integer_range[0].from_value, depth.integer_range[0].to_value) == (1, 100)
    assert d["image_qos.reliability"].read_only and "best_effort" in d["image_qos.reliability"].additional_constraints
    assert "onnxruntime" in d["backend"].additional_constraints and not d["backend"].read_only
    assert not d["model_path"].read_only and not d["threshold"].read_only


def test_invalid_values_are_refused_with_a_reason(det, models, tmp_path):
    use_model(det, models.a)
    det.set_parameters({"threshold": 0.5})
    text_file = tmp_path / "model.txt"
    text_file.write_text("not a model")
    cases = [
        ({"threshold": 3.0}, ["threshold", "3.0", "1.0"]),
        ({"threshold": float("nan")}, ["threshold", "nan"]),
        ({"threshold": -0.1}, ["threshold", "-0.1"]),
        ({"nms_iou": 1.5}, ["nms_iou", "1.5"]),
        ({"duplicate_overlap": 1.5}, ["duplicate_overlap", "1.5"]),
        ({"duplicate_colour": -0.5}, ["duplicate_colour", "-0.5"]),
        ({"threshold": "high"}, ["type"]),
        ({"backend": "cuda"}, ["backend must be one of", "onnxruntime", "'cuda'"]),
        ({"model_path": "/no/such/dir/model.onnx"}, ["no such file", "/no/such/dir/model.onnx"]),
        ({"model_path": str(text_file)}, ["must end in", ".onnx"]),
        ({"image_qos.depth": 5}, ["read-only", "image_qos.depth"]),
        ({"publish_debug_image": 3}, ["type"]),
    ]
    for values, words in cases:
        result = det.set_parameters(values)[0]
        assert not result.successful, values
        for word in words:
            assert word in result.reason, (values, result.reason)
    assert det.get_parameters("threshold", "model_path", "backend", "image_qos.depth") == [0.5, str(models.a), "auto", 1]
    assert_serves(det, models.a)  # nothing changed, nothing broke


def test_threshold_and_nms_change_at_run_time(det, models):
    use_model(det, models.a)
    try:
        assert det.set_parameters({"threshold": 1})[0].successful  # an integer is taken as 1.0
        assert det.get_parameters("threshold") == [1.0]
        assert len(answer(det)[0].detections) == 0  # no presence probability exceeds 1
        assert all(r.successful for r in det.set_parameters({"threshold": 0.0, "nms_iou": 0.5}))
        assert det.get_parameters("nms_iou") == [0.5]
        expected = load_detector(models.a, threshold=0.0, nms_iou=0.5)(IMAGE)
        assert len(answer(det)[0].detections) == len(expected) > 0
        # every overlapping glimpse of any colour counts as a redraw: fewer boxes than with the defaults
        assert all(r.successful for r in det.set_parameters({"duplicate_overlap": 0.0, "duplicate_colour": 2.0}))
        fewest = load_detector(models.a, threshold=0.0, nms_iou=0.5, duplicate_overlap=0.0, duplicate_colour=2.0)(IMAGE)
        assert len(answer(det)[0].detections) == len(fewest) < len(expected)
    finally:
        assert all(r.successful for r in det.set_parameters(
            {"threshold": 0.5, "nms_iou": -1.0, "duplicate_overlap": DEFAULT_DUPLICATE_OVERLAP, "duplicate_colour": DEFAULT_DUPLICATE_COLOUR}))


def test_disabled_node_drops_frames_without_inference(det, models):
    use_model(det, models.a)
    response = det.call(SetBool, "~/enable", SetBool.Request(data=False))
    try:
        assert response.success and "disabled" in response.message
        ignored_before = int(det.latest()[2]["frames_ignored"])
        stamp = next(_stamps)
        msg = frame_msg(IMAGE, stamp)

        def ignored(s):
            return int(s[2]["frames_ignored"]) > ignored_before + 2

        assert det.wait(lambda: det.camera.publish(msg) or det.status(ignored, 0.0), 30), \
            f"frames were not counted as ignored; log:\n{det.log()}"
        lvl, message, values = det.status(ignored, 0.0)
        assert values["enabled"] == "False" and "disabled" in message and lvl == level("OK")
        assert not answers(det.received["det"], stamp)  # received, never run
    finally:
        response = det.call(SetBool, "~/enable", SetBool.Request(data=True))
    assert response.success and file_id(models.a) in response.message
    assert_serves(det, models.a)
    assert det.status(lambda s: s[2]["enabled"] == "True", since=len(det.statuses))


def test_model_path_hot_swaps_and_reload_picks_up_a_replaced_file(det, models):
    use_model(det, models.a)
    id_a, id_b = file_id(models.a), file_id(models.b)
    assert id_a != id_b
    # 1) a new model_path: accepted at once, loaded in the background, then visible on /diagnostics
    status = use_model(det, models.b)
    assert status[2]["model_file"] == str(models.b) and status[0] == level("OK")
    assert_serves(det, models.b)
    # 2) the deploy path: replace the file in place (atomic rename), then ~/reload
    live = models.dir / "live.onnx"
    shutil.copyfile(models.a, live)
    use_model(det, live)
    tmp = models.dir / "live.onnx.tmp"
    shutil.copyfile(models.b, tmp)
    os.replace(tmp, live)
    response = det.call(Trigger, "~/reload", Trigger.Request())
    assert response.success and f"loaded model {id_b}" in response.message and f"replaced {id_a}" in response.message
    assert det.status(lambda s: s[2]["model_id"] == id_b, since=len(det.statuses))
    assert_serves(det, models.b)
    # 3) ~/reload of an unchanged file says so
    response = det.call(Trigger, "~/reload", Trigger.Request())
    assert response.success and "same file as before" in response.message


def test_a_bad_model_on_swap_keeps_the_old_one_serving(det, models):
    use_model(det, models.a)
    id_a = file_id(models.a)
    for path, reason in ((models.corrupt, "not a loadable ONNX model"), (models.slots, "not a detector")):
        assert det.set_parameters({"model_path": str(path)})[0].successful  # the file exists: its load decides
        status = det.status(lambda s: path.name in s[2]["model_error"], since=len(det.statuses))
        assert status, f"no load error for {path} on /diagnostics; log:\n{det.log()}"
        lvl, message, values = status
        assert lvl == level("WARN") and reason in values["model_error"]
        assert f"still serving model {id_a}" in message and values["model_id"] == id_a
        assert_serves(det, models.a)  # frames keep flowing on the old model
        response = det.call(Trigger, "~/reload", Trigger.Request())  # reloads the (bad) current model_path
        assert not response.success and reason in response.message and f"still serving model {id_a}" in response.message
    assert reason in det.log()  # logged too
    status = use_model(det, models.a)  # a good model clears the error
    assert status[0] == level("OK") and status[1] == "ok"
