"""`split-perception deploy` without a running node: export -> check -> atomic place, and nothing
placed when the checkpoint is broken, of the wrong kind, or its export does not match it.
(With a real node: test_deploy_node.py.)"""
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch

from split_perception import deploy, load_detector
from split_perception.models import checkpoint as ckpt
from split_perception.nodes.model_holder import file_id


def tiny_checkpoint(path: Path, seed: int, poison: bool = False) -> Path:
    from split_perception.models.spair import MODEL_TYPE, SpairConfig, SplitSpair

    torch.manual_seed(seed)
    cfg = SpairConfig(z_what=8, z_local=4, z_bg=4, hidden=32)
    model = SplitSpair(cfg)
    if poison:
        with torch.no_grad():
            next(model.parameters()).fill_(float("nan"))
    ckpt.save_checkpoint(path, model, MODEL_TYPE, cfg, {"step": 0})
    return path


def folder_listing(d: Path) -> dict:
    return {p.name: p.read_bytes() for p in d.iterdir()}


def test_a_good_checkpoint_is_exported_checked_and_placed(tmp_path, tiny_detector_files):
    target = tmp_path / "models" / "detector.onnx"
    done = deploy.deploy(tiny_detector_files[0], target)
    assert target.is_file() and done.model_id == file_id(target) and done.model_type == "split_spair"
    assert set(done.check.max_abs_diff) == {"boxes", "scores", "what", "depth", "local", "background", "overlap", "colour"}
    assert max(done.check.max_abs_diff.values()) < deploy.ATOL
    assert [p.name for p in target.parent.iterdir()] == ["detector.onnx"]  # no temp file left
    frame = deploy.check_frame(48)
    got = load_detector(target, backend="onnxruntime")(frame)
    want = load_detector(tiny_detector_files[0], backend="torch")(frame)
    np.testing.assert_allclose(got.scores, want.scores, atol=1e-4)


def test_nothing_is_placed_when_the_checkpoint_or_its_export_is_bad(tmp_path, tiny_detector_files, tiny_segmenter_files,
                                                                    monkeypatch):
    live = tmp_path / "live" / "detector.onnx"
    live.parent.mkdir()
    shutil.copyfile(tiny_detector_files[1], live)
    before = folder_listing(live.parent)
    corrupt = tmp_path / "corrupt.safetensors"
    corrupt.write_bytes(tiny_detector_files[0].read_bytes()[:3000])
    poisoned = tiny_checkpoint(tmp_path / "nan.safetensors", 1, poison=True)
    cases = [
        (corrupt, None, ["corrupt.safetensors"]),
        (tmp_path / "none.safetensors", None, ["not found"]),
        (poisoned, None, ["not finite"]),
        (tiny_segmenter_files[0], None, ["holds a 'monet' model", "not replacing it"]),  # the file there is a detector
        (tiny_segmenter_files[0], "split_spair", ["holds a 'monet' model", "the node runs a 'split_spair' model"]),
    ]
    for checkpoint, expected, words in cases:
        with pytest.raises(deploy.DeployError) as e:
            deploy.deploy(checkpoint, live, expected_model_type=expected)
        for word in words:
            assert word in str(e.value), (word, str(e.value))
        assert folder_listing(live.parent) == before, checkpoint

    # an export that does not compute what the checkpoint computes (here: another model's graph)
    other = tiny_checkpoint(tmp_path / "other.safetensors", 7)
    from split_perception import export as export_module

    original = export_module.export_onnx
    monkeypatch.setattr(export_module, "export_onnx", lambda checkpoint, out, **k: original(other, out, **k))
    with pytest.raises(deploy.DeployError, match="differs from the checkpoint's by up to"):
        deploy.deploy(tiny_checkpoint(tmp_path / "mine.safetensors", 8), live)
    assert folder_listing(live.parent) == before
    with pytest.raises(deploy.DeployError, match="must be an .onnx file"):
        deploy.deploy(tiny_detector_files[0], tmp_path / "model.engine")


class FakeNode:
    def __init__(self, info, answer=(True, "")):
        self.info_value, self.answer, self.reloaded, self.closed = info, answer, [], False

    def info(self):
        return self.info_value

    def reload(self, path):
        self.reloaded.append(path)
        ok, message = self.answer
        return ok, message or f"loaded model {file_id(Path(path))} ({path})"

    def close(self):
        self.closed = True


def test_the_command_places_then_asks_the_node_and_says_what_happened(tmp_path, tiny_detector_files, tiny_segmenter_files,
                                                                       monkeypatch):
    lines = []
    target = tmp_path / "live.onnx"
    # no rclpy: placed at --out, and it says no node was contacted
    assert deploy.run_deploy(tiny_detector_files[0], node="/det", out=target, connect=None, say=lines.append) == 0
    assert target.is_file() and any("no node was contacted" in line for line in lines)
    lines.clear()
    assert deploy.run_deploy(tiny_detector_files[0], node="/det", connect=None, say=lines.append) == 2
    assert "--out" in lines[-1]

    # a node on a file: replaced in place, then reloaded; its answer is reported
    node = FakeNode(deploy.NodeInfo("/det", str(target), "auto", "split_spair"))
    other = tiny_checkpoint(tmp_path / "b.safetensors", 3)
    lines.clear()
    assert deploy.run_deploy(other, node="det", connect=lambda name: node, say=lines.append) == 0
    assert node.reloaded == [str(target)] and node.closed and f"loaded model {file_id(target)}" in lines[-1]
    # the node refuses the new file: exit 3, the reason passed on
    node = FakeNode(deploy.NodeInfo("/det", str(target), "auto", "split_spair"), (False, "model load failed: disk on fire"))
    assert deploy.run_deploy(other, node="/det", connect=lambda name: node, say=lines.append) == 3
    assert "disk on fire" in lines[-1]
    # a detector node on the torch backend cannot run its ONNX export: refused before anything is placed
    before = target.read_bytes()
    node = FakeNode(deploy.NodeInfo("/det", str(target), "torch", "split_spair"))
    assert deploy.run_deploy(tiny_detector_files[0], node="/det", connect=lambda name: node, say=lines.append) == 2
    assert "torch backend" in lines[-1] and target.read_bytes() == before and not node.reloaded
    # a slot node on the torch backend can: it rebuilds a MONet export as a torch model
    seg_target = tmp_path / "seg.onnx"
    node = FakeNode(deploy.NodeInfo("/seg", str(seg_target), "torch", "monet"))
    assert deploy.run_deploy(tiny_segmenter_files[0], node="/seg", connect=lambda name: node, say=lines.append) == 0
    assert node.reloaded == [str(seg_target)] and seg_target.is_file()
    # a node on the shipped default: the file goes to the per-user models folder, never into the package
    node = FakeNode(deploy.NodeInfo("/ns/det", "", "auto", "split_spair"))
    lines.clear()
    monkeypatch.setenv("XDG_DATA_HOME", str(tmp_path / "xdg"))
    assert deploy.run_deploy(other, node="/ns/det", connect=lambda name: node, say=lines.append) == 0
    placed = tmp_path / "xdg" / "split_perception" / "models" / "ns__det.onnx"
    assert node.reloaded == [str(placed)] and placed.is_file()
    assert any("parameter file" in line for line in lines)
