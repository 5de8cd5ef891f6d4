"""TensorRT: the static compatibility check (runs everywhere), the engine cache key, and real
engine builds where `tensorrt` and a GPU exist (skipped otherwise)."""
import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper

from split_perception.backends import ModelLoadError, open_runner, tensorrt_unavailable
from split_perception.cli import main
from split_perception.tensorrt_compat import check_tensorrt_compat
from split_perception.tensorrt_engine import EngineKey

TARGETS = ["8.6", "10"]


@pytest.mark.parametrize("target", TARGETS)
def test_exported_models_pass_the_static_check(tiny_detector_files, tiny_segmenter_files, target):
    for path in (tiny_detector_files[1], tiny_segmenter_files[1]):
        report = check_tensorrt_compat(path, target)
        assert report.ok, report.summary()
        assert report.op_counts.get("Conv", 0) > 0


def test_shipped_models_pass_the_static_check():
    from split_perception.preprocessing import WEIGHTS_DIR

    shipped = sorted(WEIGHTS_DIR.glob("*.onnx"))
    assert shipped
    for path in shipped:
        assert main(["trt-check", str(path)]) == 0


def _graph(tmp_path, nodes, inputs, outputs, initializers=(), opset=17, name="g.onnx"):
    model = helper.make_model(helper.make_graph(nodes, "g", inputs, outputs, list(initializers)),
                              opset_imports=[helper.make_opsetid("", opset)])
    path = tmp_path / name
    onnx.save(model, str(path))
    return path


def test_unsupported_ops_types_and_shapes_are_reported(tmp_path):
    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 4])
    y = helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 4])
    # Det is in no TensorRT table; Mod arrived with 10.x
    det = _graph(tmp_path, [helper.make_node("Det", ["x"], ["y"])], [x], [y], name="det.onnx")
    assert any("Det" in e for e in check_tensorrt_compat(det, "10").errors)
    mod = _graph(tmp_path, [helper.make_node("Mod", ["x", "x"], ["y"], fmod=1)], [x], [y], name="mod.onnx")
    assert not check_tensorrt_compat(mod, "8.6").ok and check_tensorrt_compat(mod, "10").ok
    # string tensors
    s_in = helper.make_tensor_value_info("s", TensorProto.STRING, [1])
    s_out = helper.make_tensor_value_info("t", TensorProto.STRING, [1])
    strings = _graph(tmp_path, [helper.make_node("Identity", ["s"], ["t"])], [s_in], [s_out], name="str.onnx")
    assert any("STRING" in e or "type 8" in e for e in check_tensorrt_compat(strings, "10").errors)
    # symbolic non-batch axes; dynamic batch is only a note
    dyn = helper.make_tensor_value_info("x", TensorProto.FLOAT, ["b", "n"])
    dyn_out = helper.make_tensor_value_info("y", TensorProto.FLOAT, ["b", "n"])
    dynamic = _graph(tmp_path, [helper.make_node("Relu", ["x"], ["y"])], [dyn], [dyn_out], name="dyn.onnx")
    assert any("symbolic axes [0, 1]" in e for e in check_tensorrt_compat(dynamic, "10").errors)
    # convolution weights computed at run time
    img = helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 1, 8, 8])
    w = helper.make_tensor_value_info("w", TensorProto.FLOAT, [1, 1, 3, 3])
    out = helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 1, 6, 6])
    conv = _graph(tmp_path, [helper.make_node("Conv", ["x", "w"], ["y"])], [img, w], [out], name="conv.onnx")
    assert any("weights must be a build-time constant" in e for e in check_tensorrt_compat(conv, "8.6").errors)
    # opset beyond 8.6's parser
    new = _graph(tmp_path, [helper.make_node("Relu", ["x"], ["y"])], [x], [y], opset=20, name="new.onnx")
    assert any("opset 20" in e for e in check_tensorrt_compat(new, "8.6").errors)
    assert main(["trt-check", str(det)]) == 1


def test_engine_cache_key_changes_with_tensorrt_version_and_gpu():
    base = EngineKey("ab" * 32, "10.3.0", "NVIDIA Orin (nvgpu)", "8.7", "fp16")
    names = {
        base.filename("m"),
        EngineKey("ab" * 32, "8.6.2", "NVIDIA Orin (nvgpu)", "8.7", "fp16").filename("m"),
        EngineKey("ab" * 32, "10.3.0", "NVIDIA GeForce RTX 4090", "8.9", "fp16").filename("m"),
        EngineKey("ab" * 32, "10.3.0", "NVIDIA Orin (nvgpu)", "8.7", "fp32").filename("m"),
        EngineKey("cd" * 32, "10.3.0", "NVIDIA Orin (nvgpu)", "8.7", "fp16").filename("m"),
    }
    assert len(names) == 5
    assert base.filename("m") == "m.abababababab.trt10.3.0.nvidia-orin-nvgpu.sm87.fp16.engine"


@pytest.mark.skipif(tensorrt_unavailable() is None, reason="TensorRT is available here")
def test_tensorrt_backend_says_why_it_is_unavailable(tmp_path, tiny_detector_files):
    with pytest.raises(ModelLoadError, match="tensorrt backend unavailable"):
        open_runner(tiny_detector_files[1], backend="tensorrt")
    fake = tmp_path / "model.engine"
    fake.write_bytes(b"not an engine")
    with pytest.raises(ModelLoadError, match="model.engine"):
        open_runner(fake)
    assert open_runner(tiny_detector_files[1], backend="auto").backend == "onnxruntime"
    assert main(["build-engine", str(tiny_detector_files[1])]) == 2


@pytest.mark.skipif(tensorrt_unavailable() is not None, reason=f"TensorRT unavailable: {tensorrt_unavailable()}")
def test_engine_matches_onnxruntime(tmp_path, tiny_detector_files, tiny_segmenter_files):
    from split_perception.tensorrt_engine import cached_engine

    for path in (tiny_detector_files[1], tiny_segmenter_files[1]):
        engine = cached_engine(path, precision="fp32", cache_dir=tmp_path)
        assert cached_engine(path, precision="fp32", cache_dir=tmp_path) == engine  # cache hit
        trt_run, ort_run = open_runner(engine), open_runner(path, backend="onnxruntime")
        x = np.random.default_rng(0).random((1, 3, trt_run.metadata["input_size"], trt_run.metadata["input_size"]), dtype=np.float32)
        a, b = trt_run.run(x), ort_run.run(x)
        for k in b:
            np.testing.assert_allclose(a[k], b[k], atol=1e-3, err_msg=k)


def test_engine_from_another_tensorrt_or_gpu_is_refused(tmp_path, monkeypatch):
    """The sidecar check that runs before any deserialisation (TensorRT and GPU stood in for)."""
    import json
    import sys
    import types

    from split_perception import tensorrt_engine as te

    monkeypatch.setitem(sys.modules, "tensorrt", types.SimpleNamespace(__version__="10.3.0"))
    monkeypatch.setattr(te, "gpu_identity", lambda device=0: ("NVIDIA Orin (nvgpu)", "8.7"))
    engine = tmp_path / "m.engine"
    engine.write_bytes(b"\0" * 16)
    with pytest.raises(te.EngineError, match="no m.json beside it"):
        te.check_engine_matches(engine)
    side = {"tensorrt_version": "8.6.2", "gpu_name": "NVIDIA Orin (nvgpu)", "compute_capability": "8.7"}
    engine.with_suffix(".json").write_text(json.dumps(side))
    with pytest.raises(te.EngineError, match="built with TensorRT 8.6.2, this is 10.3.0: rebuild"):
        te.check_engine_matches(engine)
    side.update(tensorrt_version="10.3.0", gpu_name="NVIDIA GeForce RTX 4090", compute_capability="8.9")
    engine.with_suffix(".json").write_text(json.dumps(side))
    with pytest.raises(te.EngineError, match="built for NVIDIA GeForce RTX 4090"):
        te.check_engine_matches(engine)
    side.update(gpu_name="NVIDIA Orin (nvgpu)", compute_capability="8.7")
    engine.with_suffix(".json").write_text(json.dumps(side))
    assert te.check_engine_matches(engine)["tensorrt_version"] == "10.3.0"
