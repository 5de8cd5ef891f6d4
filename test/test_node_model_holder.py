"""The nodes' shared model holder, without ROS: check, swap off the caller's thread, failures keep the old model."""
import logging
import threading
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest

from split_perception.nodes.model_holder import ModelCheckError, ModelHolder, check_model, file_id


@dataclass
class Result:
    values: np.ndarray


class FakeModel:
    """Stands in for a Detector/Segmenter: callable on frames, with input_size, backend and runner.source."""

    backend = "fake"

    def __init__(self, path, output=0.0, input_size=8, gate: threading.Event | None = None):
        self.runner = type("Runner", (), {"source": Path(path)})()
        self.output, self.input_size, self.gate, self.threshold = output, input_size, gate, None

    def __call__(self, image):
        assert image.shape == (self.input_size, self.input_size, 3)
        return Result(np.full(3, self.output, np.float32))


@pytest.fixture
def files(tmp_path):
    out = {}
    for name in ("a", "b", "nan", "broken"):
        out[name] = tmp_path / f"{name}.onnx"
        out[name].write_bytes(name.encode())
    return out


def open_fake(path, backend):
    if path.endswith("broken.onnx"):
        raise ValueError(f"{path}: not a loadable ONNX model (bad protobuf)")
    return FakeModel(path, output=np.nan if path.endswith("nan.onnx") else 0.0)


def test_check_model_runs_a_blank_frame_and_wants_finite_outputs(files):
    check_model(FakeModel(files["a"]))
    with pytest.raises(ModelCheckError, match="output 'values' is not finite"):
        check_model(FakeModel(files["a"], output=np.nan))
    with pytest.raises(ModelCheckError, match="input size"):
        check_model(FakeModel(files["a"], input_size=0))


def test_failed_loads_keep_the_old_model_and_say_why(files):
    holder = ModelHolder(open_fake, logging.getLogger("test"), settings={"threshold": 0.3})
    try:
        first = holder.load(str(files["broken"]), "auto")  # at start-up: no model, a reason
        assert not first.ok and "bad protobuf" in first.message and "no model is loaded" in first.message
        assert holder.current is None and "bad protobuf" in holder.error
        ok = holder.load(str(files["a"]), "auto")
        assert ok.ok and file_id(files["a"]) in ok.message and holder.error is None
        assert holder.model.threshold == 0.3  # settings apply to every model that serves
        a = holder.model
        for name, reason in (("broken", "bad protobuf"), ("nan", "not finite")):
            result = holder.request(str(files[name]), "auto").result(timeout=10)
            assert not result.ok and reason in result.message and f"still serving model {file_id(files['a'])}" in result.message
            assert holder.model is a and reason in holder.error
        holder.configure(threshold=0.9)
        assert a.threshold == 0.9
    finally:
        holder.close()


def test_loads_run_off_the_callers_thread_while_the_old_model_serves(files):
    gate = threading.Event()
    started = threading.Event()

    def slow_open(path, backend):
        started.set()
        assert gate.wait(10)
        return FakeModel(path)

    holder = ModelHolder(lambda p, b: FakeModel(p), logging.getLogger("test"))
    try:
        holder.load(str(files["a"]), "auto")
        a = holder.model
        holder._open = slow_open
        future = holder.request(str(files["b"]), "auto")
        assert started.wait(10)
        assert holder.model is a and holder.loading == str(files["b"])  # still serving a while b loads
        later = holder.request(str(files["a"]), "auto")  # queued behind the running load
        gate.set()
        assert future.result(timeout=10).ok
        result = later.result(timeout=10)
        assert result.ok and "replaced" in result.message
        assert holder.current.source == files["a"] and holder.loading is None
    finally:
        holder.close()


def test_requests_made_during_a_load_merge_into_the_newest(files):
    gate = threading.Event()
    started = threading.Event()
    opened = []

    def slow_open(path, backend):
        opened.append(Path(path).stem)
        started.set()
        assert gate.wait(10)
        return FakeModel(path)

    holder = ModelHolder(slow_open, logging.getLogger("test"))
    try:
        first = holder.request(str(files["a"]), "auto")
        assert started.wait(10)
        queued = [holder.request(str(files[n]), "auto") for n in ("nan", "b")]  # b supersedes nan
        gate.set()
        assert first.result(timeout=10).ok
        results = [f.result(timeout=10) for f in queued]
        assert opened == ["a", "b"] and all(r.ok and file_id(files["b"]) in r.message for r in results)
    finally:
        holder.close()


def test_close_answers_waiting_requests(files):
    holder = ModelHolder(open_fake, logging.getLogger("test"))
    holder.close()
    assert "shutting down" in holder.request(str(files["a"]), "auto").result(timeout=1).message
