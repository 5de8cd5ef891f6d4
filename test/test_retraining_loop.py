"""The retraining loop end to end over real DDS (issue 15 item 6), each step as a user runs it:
camera_source (procedural) -> scene_recorder writes N frames -> `split-perception dataset info` says
the folder is a valid dataset -> `split-perception train --init` the shipped detector on it (a few
steps) -> `split-perception deploy --node` to the running detector node -> its /diagnostics names the
new model and its detections of the camera's frames keep coming."""
import json
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest

rclpy = pytest.importorskip("rclpy")
from vision_msgs.msg import Detection2DArray  # noqa: E402

from ros_helpers import RemoteNode  # noqa: E402
from split_perception import cli  # noqa: E402
from split_perception.nodes.model_holder import file_id  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
SHIPPED = ROOT / "split_perception" / "weights" / "split_spair"
NS = "/split_spair_detector"
TOPIC = "/loop/image"  # the camera's topic; the RemoteNode clients' own camera publishers stay silent
N_FRAMES = 20


def params(**values) -> list[str]:
    return [a for k, v in values.items() for a in ("-p", f"{k}:={v}")]


def recorded(folder: Path) -> int:
    index = folder / "annotations.jsonl"
    return len(index.read_text().splitlines()) if index.exists() else 0


def test_record_finetune_deploy_and_the_running_detector_swaps(tmp_path, capsys):
    t0 = time.monotonic()
    live = tmp_path / "models" / "detector.onnx"  # what the robot's detector runs: the shipped model at first
    live.parent.mkdir()
    shutil.copyfile(SHIPPED.with_suffix(".onnx"), live)
    data, run = tmp_path / "robot_data", tmp_path / "ft"
    nodes = []
    try:
        # the robot: a detector on the camera topic, and the recorder (started before the camera, so
        # that both are listening when frames come)
        det = RemoteNode("split_perception.nodes.detector_node", "split_spair_detector",
                         ["-r", f"image:={TOPIC}", *params(model_path=live)], tmp_path / "detector.log",
                         {"det": (Detection2DArray, f"{NS}/detections")})
        nodes.append(det)
        rec = RemoteNode("split_perception.nodes.scene_recorder", "scene_recorder",
                         ["-r", f"image:={TOPIC}", *params(output_dir=data, max_rate_hz=0.0, max_frames=N_FRAMES)],
                         tmp_path / "recorder.log", {})
        nodes.append(rec)
        for node in (det, rec):
            assert node.wait(lambda n=node: n.statuses or n.proc.poll() is not None, 60) and node.proc.poll() is None, \
                node.log()
        cam = RemoteNode("split_perception.nodes.camera_source", "camera_source",
                         ["-r", f"image:={TOPIC}", *params(source="procedural", rate_hz=20.0)], tmp_path / "camera.log", {})
        nodes.append(cam)

        # 1. the recorder writes N frames, then stops at its quota (and stays up)
        assert rec.wait(lambda: recorded(data) >= N_FRAMES, 60), rec.log()
        assert rec.status(lambda s: "max_frames reached" in s[1], 15) is not None, rec.log()
        assert recorded(data) == N_FRAMES and rec.proc.poll() is None

        # 2. a valid dataset, by the command a user runs
        info = subprocess.run([sys.executable, "-m", "split_perception.cli", "dataset", "info", str(data)],
                              capture_output=True, text=True, timeout=60)
        assert info.returncode == 0 and json.loads(info.stdout)["images"] == N_FRAMES, (info.stdout, info.stderr)

        # the detector serves the shipped model on the camera's frames
        shipped_id = file_id(live)
        assert det.status(lambda s: s[2]["model_id"] == shipped_id and int(s[2]["frames_processed"]) > 0, 30), det.log()

        # 3. fine-tune the shipped detector on the recording: a few steps
        assert cli.main(["train", str(ROOT / "config" / "train_split_spair.yaml"), "--init", str(SHIPPED.with_suffix(".safetensors")),
                         "--out", str(run), "--set", "data.kind=folder", "--set", f"data.folder={data}",
                         "--set", "train.steps=5", "--set", "train.batch_size=4", "--set", "train.threads=1",
                         "--set", "train.data_workers=0", "--set", "train.log_every=1"]) == 0
        checkpoint = run / "checkpoint.safetensors"
        assert json.loads(checkpoint.with_suffix(".json").read_text())["step"] == 5
        validation = (run / "validation.csv").read_text().splitlines()
        assert len(validation) == 3  # header, step 0 (the shipped model), step 5 on the 2 held-out frames

        # 4. deploy to the running node: placed at its model_path, hot-swapped
        capsys.readouterr()
        assert cli.main(["deploy", str(checkpoint), "--node", NS]) == 0, capsys.readouterr()
        out = capsys.readouterr().out
        new_id = file_id(live)
        assert new_id != shipped_id and f"loaded model {new_id}" in out, out

        # 5. /diagnostics names the new model, and detections keep coming from it
        since = len(det.statuses)
        first = det.status(lambda s: s[2]["model_id"] == new_id and not s[2]["model_error"], 30, since=since)
        assert first is not None and first[2]["model_file"] == str(live), det.log()
        processed, answered = int(first[2]["frames_processed"]), len(det.received["det"])
        later = det.status(lambda s: s[2]["model_id"] == new_id and int(s[2]["frames_processed"]) >= processed + 5,
                           30, since=since)
        assert later is not None, det.log()
        assert det.wait(lambda: len(det.received["det"]) >= answered + 5, 30), det.log()
        assert all(n.proc.poll() is None for n in nodes), [n.log() for n in nodes]
    finally:
        for node in reversed(nodes):
            node.close()
    print(f"retraining loop: {time.monotonic() - t0:.1f} s")
