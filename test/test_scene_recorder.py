"""The scene_recorder node over real DDS: frames from a publisher land in a valid dataset folder;
rate limit, near-duplicate skipping, ~/stop and ~/start, the quota, a write that fails mid-recording
and a folder it cannot write (the node stays up and says why on /diagnostics)."""
import itertools
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import yaml

rclpy = pytest.importorskip("rclpy")
from std_srvs.srv import Trigger  # noqa: E402

from ros_helpers import RemoteNode, frame_msg, level, status_tuple  # noqa: E402
from split_perception.training.dataset import DatasetFolder, FolderImageDataset  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
MODULE = "split_perception.nodes.scene_recorder"


def params(**values) -> list[str]:
    return [a for k, v in values.items() for a in ("-p", f"{k}:={v}")]


def recorder(tmp_path, name: str, **values) -> RemoteNode:
    return RemoteNode(MODULE, "scene_recorder", ["-r", "image:=/cam/image", *params(**values)],
                      tmp_path / f"{name}.log", {})


def entries(out: Path) -> list:
    index = out / "annotations.jsonl"
    return [json.loads(line) for line in index.read_text().splitlines()] if index.exists() else []


def solid(v: int, encoding: str = "rgb8"):
    return frame_msg(np.full((24, 32, 3), v, np.uint8), stamp=v, encoding=encoding)


def record(node: RemoteNode, out: Path, v: int, timeout: float = 15.0) -> None:
    """Publish frame `v` until it is in the index."""
    n = len(entries(out))
    assert node.send_until(solid(v), lambda: len(entries(out)) > n, timeout), node.log()


def publish_for(node: RemoteNode, seconds: float, values) -> None:
    """Publish the values' frames in turn (round and round) for `seconds`."""
    values = itertools.cycle(values)
    node.wait(lambda: node.camera.publish(solid(next(values))) and False, seconds)


def valid_dataset(out: Path, count: int) -> None:
    r = subprocess.run([sys.executable, "-m", "split_perception.cli", "dataset", "info", str(out)],
                       capture_output=True, text=True, timeout=60)
    assert r.returncode == 0 and json.loads(r.stdout)["images"] == count, (r.stdout, r.stderr)
    assert len(FolderImageDataset(out, size=16)) == count
    assert not [p for p in out.rglob(".*")], "temp files left behind"


def stat(node: RemoteNode, key: str) -> str:
    return node.latest()[2][key]


def test_records_frames_with_rate_limit_duplicates_start_stop_and_quota(tmp_path):
    out = tmp_path / "rec"
    with recorder(tmp_path, "main", output_dir=out, max_rate_hz=0.0, duplicate_threshold=4.0) as node:
        for v in (10, 60, 110):
            record(node, out, v)
        got = entries(out)
        assert [e["stamp"] for e in got] == [10, 60, 110]
        assert all(e["frame_id"] == "cam" and e["topic"] == "/cam/image" for e in got)
        assert [int(DatasetFolder(out).image(i)[0, 0, 0]) for i in range(3)] == [10, 60, 110]

        # near duplicates of the last frame (110 +- 2 < threshold 4) are skipped
        publish_for(node, 1.0, [111, 109, 112] * 100)
        assert len(entries(out)) == 3
        assert node.status(lambda s: int(s[2]["skipped_duplicate"]) > 0) is not None, node.log()

        # rate limit: frames changing every time, at most ~1 per second written. Best-effort frames
        # may be lost on a busy machine, so wait for the events rather than count after a fixed time:
        # the first frame after the change is written at once, later ones are skipped for the rate
        assert all(r.successful for r in node.set_parameters({"max_rate_hz": 1.0}))
        record(node, out, 120)
        start, values = time.monotonic(), itertools.cycle(range(130, 250))

        def rate_skips() -> int:
            return int(status_tuple(node.statuses[-1])[2]["skipped_rate"])

        assert node.wait(lambda: node.camera.publish(solid(next(values))) or (
            rate_skips() > 0 and time.monotonic() - start > 2.5), 30), node.log()
        written = len(entries(out)) - 4
        assert written <= time.monotonic() - start + 1, written  # without the limit: one per frame received
        assert all(r.successful for r in node.set_parameters({"max_rate_hz": 0.0}))

        # ~/stop: nothing written, `enabled` follows; ~/start: recording again
        assert node.call(Trigger, "~/stop", Trigger.Request()).success
        n = len(entries(out))
        publish_for(node, 1.0, range(0, 250, 7))
        assert len(entries(out)) == n and node.get_parameters("enabled") == [False]
        assert node.status(lambda s: s[1].startswith("stopped")) is not None
        response = node.call(Trigger, "~/start", Trigger.Request())
        assert response.success and "recording" in response.message, response.message
        record(node, out, 5)
        assert node.get_parameters("enabled") == [True]

        # quota: recording stops with a WARN, the node stays up; raising it and ~/start goes on
        n = len(entries(out))
        assert all(r.successful for r in node.set_parameters({"max_frames": n + 1}))
        record(node, out, 200)
        publish_for(node, 0.5, [30, 90])
        assert len(entries(out)) == n + 1
        s = node.status(lambda s: "max_frames reached" in s[1])
        assert s is not None and s[0] == level("WARN"), node.log()
        assert node.proc.poll() is None
        assert not node.call(Trigger, "~/start", Trigger.Request()).success  # still full
        assert all(r.successful for r in node.set_parameters({"max_frames": 0}))
        assert node.call(Trigger, "~/start", Trigger.Request()).success

        # a write that fails mid-recording (images/ replaced by a file): ERROR, node up, nothing lost
        n = len(entries(out))
        (out / "images").rename(tmp_path / "images_aside")
        (out / "images").write_text("not a folder")
        node.send_until(solid(77), lambda: False, 1.0)
        s = node.status(lambda s: "cannot write" in s[1])
        assert s is not None and s[0] == level("ERROR"), node.log()
        assert node.proc.poll() is None and len(entries(out)) == n
        (out / "images").unlink()
        (tmp_path / "images_aside").rename(out / "images")
        assert node.call(Trigger, "~/start", Trigger.Request()).success
        record(node, out, 33)
        assert node.status(lambda s: s[0] == level("OK") and s[1] == "recording") is not None
    valid_dataset(out, n + 1)
    assert json.loads((out / "dataset.json").read_text())["count"] == n + 1


def test_unwritable_folder_keeps_the_node_up_with_a_diagnostic(tmp_path):
    (tmp_path / "file").write_text("x")
    out = tmp_path / "file" / "rec"  # a path under a regular file: cannot be created, even by root
    with recorder(tmp_path, "unwritable", output_dir=out) as node:
        s = node.status(lambda s: s[0] == level("ERROR"))
        assert s is not None and "cannot open dataset folder" in s[1] and str(out) in s[1], node.log()
        assert s[2]["recording"] == "False"
        response = node.call(Trigger, "~/start", Trigger.Request())
        assert not response.success and "cannot open dataset folder" in response.message
        node.send_until(solid(50), lambda: False, 0.5)
        assert node.proc.poll() is None
    if os.geteuid() != 0:  # a read-only folder (root writes through permission bits)
        ro = tmp_path / "ro"
        ro.mkdir()
        os.chmod(ro, 0o555)
        try:
            with recorder(tmp_path, "readonly", output_dir=ro / "rec") as node:
                s = node.status(lambda s: s[0] == level("ERROR"))
                assert s is not None and "Permission denied" in s[1], node.log()
        finally:
            os.chmod(ro, 0o755)


def test_params_file_names_declared_parameters():
    values = yaml.safe_load((ROOT / "config" / "scene_recorder.yaml").read_text())["scene_recorder"]["ros__parameters"]
    src = (ROOT / "split_perception" / "nodes" / "scene_recorder.py").read_text()
    for name in values:
        assert f'declare_parameter("{name}"' in src, name
