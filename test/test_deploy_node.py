"""`split-perception deploy --node` against a running detector node over real DDS: a good checkpoint
is placed at the node's model_path and the node hot-swaps to it (new model id on /diagnostics,
detections keep coming); a broken or incompatible checkpoint places nothing and the node keeps
serving its model."""
import shutil

import numpy as np
import pytest

rclpy = pytest.importorskip("rclpy")
from vision_msgs.msg import Detection2DArray  # noqa: E402

from ros_helpers import RemoteNode, answers, frame_msg  # noqa: E402
from split_perception import cli, load_detector  # noqa: E402
from split_perception.nodes.model_holder import file_id  # noqa: E402
from split_perception.training import scenes  # noqa: E402
from test_deploy import tiny_checkpoint  # noqa: E402

NS = "/split_spair_detector"
IMAGE = np.ascontiguousarray(scenes.generate(scenes.MultiObjectConfig(), 0, 3).image)
_stamps = iter(range(5000, 10**6))


@pytest.fixture(scope="module")
def live(tiny_detector_files, tmp_path_factory):
    path = tmp_path_factory.mktemp("deploy_node_models") / "live.onnx"
    shutil.copyfile(tiny_detector_files[1], path)
    return path


@pytest.fixture(scope="module")
def det(live, tmp_path_factory):
    with RemoteNode("split_perception.nodes.detector_node", "split_spair_detector",
                    ["-r", "image:=cam/image", "-p", f"model_path:={live}", "-p", "threshold:=0.0"],
                    tmp_path_factory.mktemp("deploy_node_log") / "node.log",
                    {"det": (Detection2DArray, f"{NS}/detections")}) as node:
        yield node


def serves(node, path):
    """The node's /diagnostics names `path`'s model, and a frame sent now is answered by that model."""
    status = node.status(lambda s: s[2]["model_id"] == file_id(path) and not s[2]["model_error"], 30,
                         since=len(node.statuses))
    assert status, f"node does not serve {path}; log:\n{node.log()}"
    stamp = next(_stamps)
    got = node.send_until(frame_msg(IMAGE, stamp), lambda: answers(node.received["det"], stamp), 30)
    assert got, f"frame {stamp} not answered; log:\n{node.log()}"
    det = answers(node.received["det"], stamp)[0]
    expected = load_detector(path, threshold=0.0)(IMAGE)
    assert len(det.detections) == len(expected) > 0
    np.testing.assert_allclose(sorted(d.results[0].hypothesis.score for d in det.detections),
                               sorted(expected.scores), atol=1e-4)
    return status


def deploy(*args) -> int:
    return cli.main(["deploy", *map(str, args)])


def test_a_good_checkpoint_is_placed_and_the_node_hot_swaps_to_it(det, live, tmp_path, capsys):
    serves(det, live)
    old_id = file_id(live)
    new = tiny_checkpoint(tmp_path / "finetuned.safetensors", seed=11)
    assert deploy(new, "--node", NS) == 0, capsys.readouterr()
    out = capsys.readouterr().out
    new_id = file_id(live)
    assert new_id != old_id
    assert f"placed {live} (model id {new_id})" in out and f"loaded model {new_id}" in out and f"replaced {old_id}" in out
    status = serves(det, live)
    assert status[2]["model_file"] == str(live)
    assert [p.name for p in live.parent.iterdir()] == ["live.onnx"]  # no temp file left beside it


def test_a_broken_or_incompatible_checkpoint_places_nothing_and_the_node_keeps_serving(
        det, live, tmp_path, capsys, tiny_segmenter_files):
    serves(det, live)
    before, model = live.read_bytes(), file_id(live)
    corrupt = tmp_path / "corrupt.safetensors"
    corrupt.write_bytes(b"\x00" * 64)
    elsewhere = tmp_path / "new" / "model.onnx"  # no file there: only the node says what it runs
    cases = [(corrupt, [], "corrupt.safetensors"),
             (tiny_segmenter_files[0], [], "the node runs a 'split_spair' model"),
             (tiny_segmenter_files[0], ["--out", elsewhere], "the node runs a 'split_spair' model"),
             (tiny_checkpoint(tmp_path / "nan.safetensors", seed=2, poison=True), [], "not finite")]
    for checkpoint, extra, reason in cases:
        assert deploy(checkpoint, "--node", NS, *extra) == 2
        out = capsys.readouterr().out
        assert reason in out and "nothing placed" in out and f"{NS} keeps its current model" in out, out
        assert live.read_bytes() == before and not elsewhere.exists()
        assert det.get_parameters("model_path") == [str(live)]
        assert serves(det, live)[2]["model_id"] == model


def test_deploy_to_another_path_points_the_node_at_it(det, live, tmp_path, capsys):
    target = tmp_path / "deployed" / "v2.onnx"
    try:
        assert deploy(tiny_checkpoint(tmp_path / "v2.safetensors", seed=12), "--node", NS, "--out", target) == 0
        out = capsys.readouterr().out
        assert det.get_parameters("model_path") == [str(target)]
        assert f"loaded model {file_id(target)}" in out and "parameter file" in out
        serves(det, target)
    finally:
        det.set_parameters({"model_path": str(live)})
