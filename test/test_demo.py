"""`make demo` (split-perception demo): camera source, detector and slot node in their own
processes over DDS; a run of a few frames (with a small slot model of another K) and a run of the
shipped models stopped by Ctrl-C (SIGINT). About 30 s."""
import json
import os
import re
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
NODE_MODULES = ("split_perception.nodes.detector_node", "split_perception.nodes.segmenter_node",
                "split_perception.nodes.camera_source")


def start_demo(out: Path, *args: str) -> tuple[subprocess.Popen, list]:
    """The demo as `make demo` runs it; its stdout lines collect in the returned list."""
    proc = subprocess.Popen([sys.executable, "-m", "split_perception.cli", "demo", "--out", str(out), *args],
                            env=dict(os.environ), stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    lines: list[str] = []
    threading.Thread(target=lambda: lines.extend(iter(proc.stdout.readline, "")), daemon=True).start()
    return proc, lines


def node_processes(parent: int) -> list[int]:
    """PIDs of the node processes whose parent is `parent` (from /proc; Linux)."""
    found = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
            cmdline = (stat.parent / "cmdline").read_bytes().decode(errors="replace")
        except OSError:
            continue
        if int(fields[1]) == parent and any(m in cmdline for m in NODE_MODULES):
            found.append(int(stat.parent.name))
    return found


def alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state != "Z"


def is_png(path: Path) -> bool:
    import cv2

    return path.read_bytes()[:8] == PNG_SIGNATURE and cv2.imread(str(path)) is not None


def check_outputs(out: Path, lines: list[str]) -> dict:
    """The pictures are valid PNG files, the status reported detections and slots; returns summary.json."""
    text = "".join(lines)
    assert re.search(r"det [\d.]+ Hz \d+ obj \(truth \d+\)", text), text  # the live status saw detections...
    assert re.search(r"slots [\d.]+ Hz \d+/\d+ used", text), text  # ... and slots, K read from the messages
    summary = json.loads((out / "summary.json").read_text())
    assert summary["frames"] > 0
    assert summary["detector"]["answered"] > 0 and summary["detector"]["count_accuracy"] is not None
    assert summary["slots"]["answered"] > 0 and summary["slots"]["K"] >= 2
    assert re.search(rf"contact sheet: +{re.escape(str(out / 'contact_sheet.png'))}", text)  # the paths are printed
    assert is_png(out / "contact_sheet.png")
    boxes, slots = sorted((out / "frames").glob("*_boxes.png")), sorted((out / "frames").glob("*_slots.png"))
    assert len(boxes) == len(slots) == summary["frames"]
    assert all(is_png(p) for p in boxes + slots)
    return summary


def test_demo_runs_n_frames_and_writes_its_pictures(tmp_path, tiny_segmenter_files):
    """With another slot model (K = 4 slots, conftest TINY_MONET): the demo reads K from the
    messages and draws what arrives."""
    pytest.importorskip("rclpy")
    from conftest import TINY_MONET

    _, tiny_onnx = tiny_segmenter_files
    proc, lines = start_demo(tmp_path, "--frames", "12", "--segmenter-model", str(tiny_onnx))
    try:
        proc.wait(timeout=120)
    finally:
        if proc.poll() is None:
            proc.kill()
    time.sleep(0.2)  # the reader thread takes the last lines
    assert proc.returncode == 0, "".join(lines)
    summary = check_outputs(tmp_path, lines)
    assert summary["stopped_by"] == "camera sent its 12 frames"
    assert summary["frames"] + summary["in_flight_at_stop"] == 12
    assert summary["slots"]["K"] == TINY_MONET["slots"]
    assert f"/{TINY_MONET['slots']} used" in "".join(lines)
    from PIL import Image

    with Image.open(tmp_path / "demo.gif") as gif:
        assert gif.n_frames == summary["frames"]
    text = "".join(lines)
    assert "count accuracy" in text and "foreground ARI" in text


def test_ctrl_c_ends_every_node_and_writes_the_files(tmp_path):
    """SIGINT (what Ctrl-C sends) to the demo alone: it stops its nodes, writes what arrived, exits 0."""
    pytest.importorskip("rclpy")
    proc, lines = start_demo(tmp_path, "--frames", "0")
    nodes = []
    try:
        end = time.monotonic() + 90
        while time.monotonic() < end and proc.poll() is None:
            if re.search(r"slots [\d.]+ Hz \d+/\d+ used", "".join(lines)):
                break
            time.sleep(0.2)
        assert proc.poll() is None, "".join(lines)
        nodes = node_processes(proc.pid)
        assert len(nodes) == 3, (nodes, "".join(lines))
        proc.send_signal(signal.SIGINT)
        proc.wait(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
        proc.wait()
    time.sleep(0.2)
    assert proc.returncode == 0, "".join(lines)
    assert not [pid for pid in nodes if alive(pid)], "node processes still running after Ctrl-C"
    summary = check_outputs(tmp_path, lines)
    assert summary["stopped_by"] == "stopped by SIGINT"
    assert summary["slots"]["K"] >= 2  # the shipped slot model's, whatever it is now


def test_a_model_that_does_not_load_ends_the_demo_with_the_reason(tmp_path):
    """A missing detector file: the node stays up without a model (its documented choice), so the demo
    must not wait for frames that never come; it stops its nodes and says why, exit status 1."""
    pytest.importorskip("rclpy")
    proc, lines = start_demo(tmp_path, "--frames", "5", "--detector-model", str(tmp_path / "nothere.onnx"))
    try:
        proc.wait(timeout=90)
    finally:
        if proc.poll() is None:
            proc.kill()
    time.sleep(0.2)
    text = "".join(lines)
    assert proc.returncode == 1, text
    assert "/split_spair_detector could not load its model" in text and "nothere.onnx" in text, text
    assert "K = None" not in text, text
    assert json.loads((tmp_path / "summary.json").read_text())["stopped_by"] == "a model did not load"


def test_a_run_without_an_end_keeps_the_pictures_of_its_newest_frames(tmp_path):
    """--frames 0 runs until Ctrl-C: the frames folder must not grow until the disk is full."""
    import argparse

    from split_perception import demo

    run = demo.DemoRun(argparse.Namespace(frames=0), tmp_path)
    run.frames_dir.mkdir(parents=True)
    for n in (1, 2):
        for kind in ("boxes", "slots"):
            (run.frames_dir / f"{n:06d}_{kind}.png").write_bytes(b"x")
    run.forget_old_frame(demo.OPEN_RUN_FRAME_FILES)  # within the limit: nothing goes
    assert len(list(run.frames_dir.iterdir())) == 4
    run.forget_old_frame(demo.OPEN_RUN_FRAME_FILES + 1)  # frame 1 goes, frame 2 stays
    assert sorted(p.name for p in run.frames_dir.iterdir()) == ["000002_boxes.png", "000002_slots.png"]
    run.drawer.shutdown()


def test_the_final_status_line_gives_the_rates_of_the_streams_last_seconds(monkeypatch):
    """After the camera's last frame the nodes take a few seconds to stop; the status line written
    then read 0.0 Hz for every stream. The final line measures the window before the last event."""
    from split_perception import demo

    clock = {"now": 100.0}
    monkeypatch.setattr(demo.time, "monotonic", lambda: clock["now"])
    rate = demo.Rate(window=2.0)
    for _ in range(30):  # 10 Hz for 3 s
        clock["now"] += 0.1
        rate.tick()
    assert rate.hz() == pytest.approx(10.0)
    clock["now"] += 4.0  # the stream ended; the nodes are stopping
    assert rate.hz() == 0.0
    assert rate.hz(final=True) == pytest.approx(10.0)
    assert demo.Rate().hz(final=True) == 0.0  # no event at all


def test_the_scores_of_neighbouring_boxes_are_not_written_over_each_other():
    """Two objects side by side at about one height: the second box's score, written above it as
    usual, would cover the first's; it goes below its box instead. A box at the frame's top edge
    has its score below it."""
    from split_perception.demo import score_positions

    tw, th = 24, 9  # text width and height in px

    def rect(xy):
        return xy[0], xy[1] - th, xy[0] + tw, xy[1]

    def overlap(a, b):
        return a[0] < b[2] and b[0] < a[2] and a[1] < b[3] and b[1] < a[3]

    first, second = ((50, 40), (80, 70)), ((62, 42), (95, 75))
    a, b = score_positions([first, second], (tw, th), 240)
    assert a == (50, 37)  # above the first box
    assert b == (62, 75 + th + 3)  # below the second: above it would cover the first's score
    assert not overlap(rect(a), rect(b))
    assert score_positions([((5, 2), (30, 30))], (tw, th), 240) == [(5, 30 + th + 3)]
