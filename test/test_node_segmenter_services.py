"""The MONet slot node over real DDS: parameter descriptors, ~/enable, hot-swap by model_path and
~/reload, a corrupt model on swap, frames that change size, a bad frame. One node per module."""
from types import SimpleNamespace

import numpy as np
import pytest

rclpy = pytest.importorskip("rclpy")
from sensor_msgs.msg import Image  # noqa: E402
from std_srvs.srv import SetBool, Trigger  # noqa: E402

from ros_helpers import RemoteNode, answers, export_tiny_model, frame_msg, level  # noqa: E402
from split_perception import load_segmenter  # noqa: E402
from split_perception.image_conversion import image_to_array  # noqa: E402
from split_perception.nodes.model_holder import file_id  # noqa: E402
from split_perception.training import scenes  # noqa: E402

NS = "/monet_segmenter"
ROOM = scenes.generate(scenes.RoomConfig(), 0, 2).image  # 64 x 64


@pytest.fixture(scope="module")
def models(tiny_segmenter_files, tmp_path_factory):
    d = tmp_path_factory.mktemp("segmenter_node_models")
    corrupt = d / "corrupt.onnx"
    corrupt.write_bytes(bytes(range(256)) * 8)
    return SimpleNamespace(a=tiny_segmenter_files[1], b=export_tiny_model("segmenter", d, seed=1), corrupt=corrupt)


@pytest.fixture(scope="module")
def seg(models, tmp_path_factory):
    with RemoteNode("split_perception.nodes.segmenter_node", "monet_segmenter",
                      ["-r", "image:=cam/image", "-p", f"model_path:={models.a}"],
                      tmp_path_factory.mktemp("segmenter_node_log") / "node.log",
                      {"masks": (Image, f"{NS}/masks"), "latents": (Image, f"{NS}/slot_latents"),
                       "segments": (Image, f"{NS}/segments"), "segment_slots": (Image, f"{NS}/segment_slots")}) as node:
        yield node


_stamps = iter(range(1000, 10**6))


def answer(node, image=ROOM):
    stamp = next(_stamps)
    ok = node.send_until(frame_msg(image, stamp), lambda: answers(node.received["masks"], stamp) and answers(node.received["latents"], stamp))
    assert ok, f"frame not answered; log:\n{node.log()}"
    return image_to_array(answers(node.received["masks"], stamp)[0]), image_to_array(answers(node.received["latents"], stamp)[0])


def use_model(node, path):
    assert node.set_parameters({"model_path": str(path)})[0].successful
    status = node.status(lambda s: s[2]["model_id"] == file_id(path) and not s[2]["model_error"], 30, since=len(node.statuses))
    assert status, f"{path} never served; log:\n{node.log()}"


def assert_serves(node, path, image=ROOM):
    masks, latents = answer(node, image)
    expected = load_segmenter(path)(image)
    np.testing.assert_array_equal(masks, expected.labels)
    np.testing.assert_allclose(latents, expected.latents, atol=1e-5)


def test_parameters_are_described_and_checked(seg):
    backend, depth = seg.describe_parameters("backend", "output_qos.depth")
    assert backend.description and "torch" in backend.additional_constraints
    assert depth.read_only and depth.integer_range[0].to_value == 100
    result = seg.set_parameters({"backend": "gpu"})[0]
    assert not result.successful and "backend must be one of" in result.reason and "'gpu'" in result.reason
    result = seg.set_parameters({"output_qos.reliability": "reliable"})[0]
    assert not result.successful and "read-only" in result.reason


def test_edge_refinement_switches_at_run_time(seg, models):
    use_model(seg, models.a)
    refine, split = seg.describe_parameters("refine_edges", "split_touching")
    assert "colour edges" in refine.description and "neck" in split.description
    on = load_segmenter(models.a)(ROOM).labels
    off = load_segmenter(models.a, refine_edges=False)(ROOM).labels
    assert (on != off).any()  # else this test could not tell the settings apart
    assert_switches(seg, "refine_edges", on, off)


def test_slot_per_object_switches_at_run_time(seg, models):
    use_model(seg, models.a)
    (described,) = seg.describe_parameters("slot_per_object")
    assert "empty" in described.description
    on = load_segmenter(models.a)(ROOM).labels
    off = load_segmenter(models.a, slot_per_object=False)(ROOM).labels
    assert len(np.unique(on)) > len(np.unique(off))  # else this test could not tell the settings apart
    assert_switches(seg, "slot_per_object", on, off)


def assert_switches(node, name, on, off):
    """Boolean parameter `name` set false at run time: the node answers with labels `off`, then,
    set true again, with `on`."""
    assert node.set_parameters({name: False})[0].successful
    try:
        np.testing.assert_array_equal(answer(node)[0], off)
    finally:
        assert node.set_parameters({name: True})[0].successful
    np.testing.assert_array_equal(answer(node)[0], on)


def test_segments_are_published_on_request(seg, models):
    use_model(seg, models.a)
    api = load_segmenter(models.a)
    # a room on which the (untrained) test model gives more than one region
    image = next(im for im in (scenes.generate(scenes.RoomConfig(), 0, i).image for i in range(50)) if api(im).segments.max() > 0)
    expected = api(image)
    assert seg.set_parameters({"publish_segments": True})[0].successful
    try:
        stamp = next(_stamps)
        ok = seg.send_until(frame_msg(image, stamp), lambda: answers(seg.received["segments"], stamp)
                            and answers(seg.received["segment_slots"], stamp))
        assert ok, f"segments not published; log:\n{seg.log()}"
        segments = image_to_array(answers(seg.received["segments"], stamp)[0])
        slots = image_to_array(answers(seg.received["segment_slots"], stamp)[0])
        np.testing.assert_array_equal(segments, expected.segments)
        np.testing.assert_array_equal(slots[0], expected.segment_slots)
    finally:
        assert seg.set_parameters({"publish_segments": False})[0].successful


def test_enable_disable(seg, models):
    use_model(seg, models.a)
    assert seg.call(SetBool, "~/enable", SetBool.Request(data=False)).success
    try:
        ignored_before = int(seg.latest()[2]["frames_ignored"])
        stamp = next(_stamps)
        msg = frame_msg(ROOM, stamp)
        assert seg.wait(lambda: seg.camera.publish(msg) or seg.status(
            lambda s: int(s[2]["frames_ignored"]) > ignored_before + 2 and "disabled" in s[1], 0.0, since=0), 30)
        assert not answers(seg.received["masks"], stamp)
    finally:
        assert seg.call(SetBool, "~/enable", SetBool.Request(data=True)).success
    assert_serves(seg, models.a)


def test_hot_swap_and_a_corrupt_model_on_swap(seg, models):
    use_model(seg, models.a)
    use_model(seg, models.b)
    assert_serves(seg, models.b)
    response = seg.call(Trigger, "~/reload", Trigger.Request())
    assert response.success and file_id(models.b) in response.message
    assert seg.set_parameters({"model_path": str(models.corrupt)})[0].successful
    status = seg.status(lambda s: "corrupt.onnx" in s[2]["model_error"], since=len(seg.statuses))
    assert status and status[0] == level("WARN") and status[2]["model_id"] == file_id(models.b)
    assert_serves(seg, models.b)  # the old model keeps serving
    response = seg.call(Trigger, "~/reload", Trigger.Request())
    assert not response.success and "not a loadable ONNX model" in response.message
    use_model(seg, models.a)


def test_backend_switches_to_torch_on_the_same_onnx_file(seg, models):
    """`ros2 param set ... backend torch`: the MONet export is rebuilt as a torch model, checked
    against the file and swapped in; the answers stay those of the file."""
    use_model(seg, models.a)
    assert seg.set_parameters({"backend": "torch"})[0].successful
    try:
        status = seg.status(lambda s: s[2]["backend"] == "torch" and not s[2]["model_error"], 60, since=len(seg.statuses))
        assert status, f"never served on torch; log:\n{seg.log()}"
        masks, latents = answer(seg)
        expected = load_segmenter(models.a)(ROOM)
        np.testing.assert_array_equal(masks, expected.labels)
        np.testing.assert_allclose(latents, expected.latents, atol=1e-4)
    finally:
        assert seg.set_parameters({"backend": "auto"})[0].successful
    assert seg.status(lambda s: s[2]["backend"] == "onnxruntime", 60, since=len(seg.statuses))


def test_size_changing_and_bad_frames(seg, models):
    use_model(seg, models.a)
    for image in (ROOM, np.repeat(ROOM, 3, 1), ROOM[:5, :40], ROOM[:1, :1], np.tile(ROOM, (6, 8, 1))):
        image = np.ascontiguousarray(image)
        masks, _ = answer(seg, image)
        assert masks.shape == image.shape[:2]
    failed_before = int(seg.latest()[2]["frames_failed"])
    nan = np.full((8, 8), np.nan, np.float32)
    bad = frame_msg(nan, next(_stamps), "32FC1")
    assert seg.wait(lambda: seg.camera.publish(bad) or seg.status(
        lambda s: int(s[2]["frames_failed"]) > failed_before and "32FC1" in s[2]["last_frame_error"], 0.0, since=0), 30)
    assert_serves(seg, models.a)
