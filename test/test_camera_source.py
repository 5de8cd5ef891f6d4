"""The camera_source node over real DDS: every source kind, looping, the end of a finite source,
and start-up misconfiguration (one clear line, exit status 2). Frame readers without ROS too."""
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import yaml

rclpy = pytest.importorskip("rclpy")
cv2 = pytest.importorskip("cv2")
from sensor_msgs.msg import CameraInfo, Image  # noqa: E402

from ros_helpers import RemoteNode  # noqa: E402
from split_perception.frames import FrameSourceError, open_reader  # noqa: E402
from split_perception.image_conversion import image_to_rgb  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
MODULE = "split_perception.nodes.camera_source"
COLOURS = [(255, 0, 0), (0, 255, 0), (0, 0, 255), (255, 255, 0), (0, 255, 255), (255, 0, 255)]  # RGB


def solid(rgb, width=32, height=24) -> np.ndarray:
    return np.broadcast_to(np.array(rgb, np.uint8), (height, width, 3)).copy()


@pytest.fixture
def camera(tmp_path):
    """start(name, *ros_args): camera_source in its own process publishing on /<name>/image and
    /<name>/camera_info, and a client here that records both. Closed after the test."""
    nodes = []

    def start(name: str, *ros_args: str) -> RemoteNode:
        args = ["-r", f"image:={name}/image", "-r", f"camera_info:={name}/camera_info", *ros_args]
        nodes.append(RemoteNode(MODULE, "camera_source", args, tmp_path / f"{name}.log",
                                {"image": (Image, f"/{name}/image"), "info": (CameraInfo, f"/{name}/camera_info")}))
        return nodes[-1]

    yield start
    for node in nodes:
        node.close()


def params(**values) -> list[str]:
    return [a for k, v in values.items() for a in ("-p", f"{k}:={v}")]


def centre_colours(msgs) -> list[tuple]:
    return [tuple(int(v) for v in image_to_rgb(m)[m.height // 2, m.width // 2]) for m in msgs]


def close_to(a, b, tol: int = 30) -> bool:
    return len(a) == len(b) and all(abs(x - y) <= tol for pa, pb in zip(a, b) for x, y in zip(pa, pb))


def ends_after(node: RemoteNode, count: int, timeout: float = 60.0) -> list:
    """The node publishes `count` frames, then exits by itself with status 0; returns the frames."""
    assert node.wait(lambda: node.proc.poll() is not None, timeout), f"source did not end; log:\n{node.log()}"
    assert node.proc.returncode == 0, node.log()
    node.wait(lambda: len(node.received["image"]) >= count, 5)
    node.wait(lambda: False, 0.3)  # and nothing more arrives
    assert len(node.received["image"]) == count, node.log()
    return node.received["image"]


def test_procedural_frames_from_the_params_file_resized_with_node_clock_stamps(camera):
    start = time.time()
    node = camera("proc", "--params-file", str(ROOT / "config" / "camera_source.yaml"),
                  *params(rate_hz=30.0, width=64, height=40, frame_id="test_cam", background="checkerboard"))
    assert node.wait(lambda: len(node.received["image"]) >= 3 and len(node.received["info"]) >= 3 or node.proc.poll() is not None, 60), node.log()
    images = node.received["image"][:3]
    for m in images:
        assert (m.encoding, m.width, m.height, m.header.frame_id) == ("rgb8", 64, 40, "test_cam")
        stamp = m.header.stamp.sec + m.header.stamp.nanosec * 1e-9
        assert start - 1 < stamp < time.time() + 1  # the node clock at publication
    stamps = [(m.header.stamp.sec, m.header.stamp.nanosec) for m in images]
    assert stamps == sorted(set(stamps))
    assert len({bytes(m.data) for m in images}) == 3  # a new scene every frame

    def paired_info():  # camera_info carries the same header as its image
        stamps = {(m.header.stamp.sec, m.header.stamp.nanosec) for m in node.received["image"]}
        return next((i for i in node.received["info"] if (i.header.stamp.sec, i.header.stamp.nanosec) in stamps), None)

    assert node.wait(lambda: paired_info() is not None, 10)
    info = paired_info()
    assert (info.width, info.height, info.header.frame_id) == (64, 40, "test_cam")
    assert node.proc.poll() is None  # procedural scenes never end
    # rate_hz changes at run time; the source is read at start-up only
    assert [r.successful for r in node.set_parameters({"rate_hz": 5.0})] == [True]
    refused = node.set_parameters({"source": "folder"})[0]
    assert not refused.successful and "read-only" in refused.reason
    n = len(node.received["image"])
    assert node.wait(lambda: len(node.received["image"]) >= n + 2, 10) and node.proc.poll() is None


def test_folder_plays_once_in_name_order_skips_a_corrupt_file_and_exits(camera, tmp_path):
    folder = tmp_path / "shots"
    folder.mkdir()
    for name, rgb in zip(["b.png", "a.jpg", "c.png"], COLOURS):
        cv2.imwrite(str(folder / name), solid(rgb)[..., ::-1])  # OpenCV writes BGR
    (folder / "b2.png").write_bytes(b"not a png")
    (folder / "notes.txt").write_text("not an image")
    node = camera("folder", *params(source="folder", path=folder, rate_hz=20.0, wait_for_subscribers=1))
    frames = ends_after(node, 3)
    assert close_to(centre_colours(frames), [COLOURS[1], COLOURS[0], COLOURS[2]])  # a.jpg, b.png, c.png
    log = node.log()
    assert "frame skipped: cannot decode image" in log and "b2.png" in log
    assert "end of folder" in log and "after 3 frames" in log


def test_folder_loops_until_max_frames(camera, tmp_path):
    folder = tmp_path / "two"
    folder.mkdir()
    for i in range(2):
        cv2.imwrite(str(folder / f"{i}.png"), solid(COLOURS[i])[..., ::-1])
    node = camera("loop", *params(source="folder", path=folder, rate_hz=30.0, loop="true", max_frames=5,
                                  wait_for_subscribers=1))
    frames = ends_after(node, 5)
    assert close_to(centre_colours(frames), [COLOURS[0], COLOURS[1]] * 2 + [COLOURS[0]])
    assert "max_frames = 5" in node.log()


def test_video_file_plays_every_frame(camera, tmp_path):
    video = tmp_path / "clip.avi"
    writer = cv2.VideoWriter(str(video), cv2.VideoWriter_fourcc(*"MJPG"), 10.0, (32, 24))
    assert writer.isOpened()
    for rgb in COLOURS:
        writer.write(solid(rgb)[..., ::-1])
    writer.release()
    node = camera("video", *params(source="video", path=video, rate_hz=30.0, wait_for_subscribers=1))
    frames = ends_after(node, len(COLOURS))
    assert close_to(centre_colours(frames), COLOURS)
    assert (frames[0].width, frames[0].height) == (32, 24)


# --- rosbag2 MCAP -------------------------------------------------------------------------------
_TIME = "int32 sec\nuint32 nanosec\n"
_HEADER = "builtin_interfaces/Time stamp\nstring frame_id\n"
_SEP = "=" * 80 + "\n"
_DEPS = f"{_SEP}MSG: std_msgs/Header\n{_HEADER}{_SEP}MSG: builtin_interfaces/Time\n{_TIME}"
IMAGE_DEF = ("std_msgs/Header header\nuint32 height\nuint32 width\nstring encoding\nuint8 is_bigendian\n"
             "uint32 step\nuint8[] data\n" + _DEPS)
COMPRESSED_DEF = "std_msgs/Header header\nstring format\nuint8[] data\n" + _DEPS


def write_bag(path: Path) -> Path:
    """An MCAP rosbag2 file: /cam/image (3 raw frames: rgb8, bgr8, mono8), /cam/compressed (2 PNG
    frames) and /chatter (std_msgs/String)."""
    from mcap_ros2.writer import Writer

    with open(path, "wb") as f:
        writer = Writer(f)
        image = writer.register_msgdef("sensor_msgs/msg/Image", IMAGE_DEF)
        compressed = writer.register_msgdef("sensor_msgs/msg/CompressedImage", COMPRESSED_DEF)
        string = writer.register_msgdef("std_msgs/msg/String", "string data\n")
        t = 1_000_000_000
        raw = [("rgb8", solid(COLOURS[0])), ("bgr8", solid(COLOURS[1])[..., ::-1]), ("mono8", np.full((24, 32), 200, np.uint8))]
        for i, (encoding, pixels) in enumerate(raw):
            channels = 1 if pixels.ndim == 2 else 3
            msg = {"header": {"stamp": {"sec": 1, "nanosec": i}, "frame_id": "bag"}, "height": 24, "width": 32,
                   "encoding": encoding, "is_bigendian": 0, "step": 32 * channels,
                   "data": np.ascontiguousarray(pixels).tobytes()}
            writer.write_message("/cam/image", image, msg, log_time=t + i, publish_time=t + i)
        for i, rgb in enumerate(COLOURS[3:5]):
            png = cv2.imencode(".png", solid(rgb)[..., ::-1])[1].tobytes()
            msg = {"header": {"stamp": {"sec": 2, "nanosec": i}, "frame_id": "bag"}, "format": "png", "data": png}
            writer.write_message("/cam/compressed", compressed, msg, log_time=t + 10 + i, publish_time=t + 10 + i)
        writer.write_message("/chatter", string, {"data": "hello"}, log_time=t, publish_time=t)
        writer.finish()
    return path


def test_bag_plays_the_chosen_image_topic(camera, tmp_path):
    bag = write_bag(tmp_path / "run.mcap")
    raw = camera("bag_raw", *params(source="bag", path=bag, topic="/cam/image", rate_hz=30.0, wait_for_subscribers=1))
    packed = camera("bag_png", *params(source="bag", path=bag, topic="/cam/compressed", rate_hz=30.0,
                                       wait_for_subscribers=1))
    assert close_to(centre_colours(ends_after(raw, 3)), [COLOURS[0], COLOURS[1], (200, 200, 200)], tol=0)
    assert close_to(centre_colours(ends_after(packed, 2)), COLOURS[3:5], tol=0)


@pytest.mark.parametrize("case", ["missing folder", "empty folder", "unreadable video", "wrong bag topic",
                                  "bag topic not an image", "two image topics", "bad size"])
def test_start_up_misconfiguration_is_one_line_and_exit_status_2(tmp_path, case):
    (tmp_path / "empty").mkdir()
    (tmp_path / "clip.mp4").write_bytes(b"\x00" * 2048)
    bag = write_bag(tmp_path / "run.mcap")
    args, words = {
        "missing folder": (params(source="folder", path=tmp_path / "nope"), ["no such folder", "nope"]),
        "empty folder": (params(source="folder", path=tmp_path / "empty"), ["no image files", "empty"]),
        "unreadable video": (params(source="video", path=tmp_path / "clip.mp4"), ["cannot read a frame", "clip.mp4"]),
        "wrong bag topic": (params(source="bag", path=bag, topic="/camera/image_raw"),
                            ["no topic '/camera/image_raw'", "/cam/image (Image, 3 messages)",
                             "/cam/compressed (CompressedImage, 2 messages)", "/chatter"]),
        "bag topic not an image": (params(source="bag", path=bag, topic="/chatter"), ["std_msgs/msg/String", "/cam/image"]),
        "two image topics": (params(source="bag", path=bag), ["2 image topics", "set `topic`", "/cam/compressed"]),
        "bad size": (params(width=64), ["bad parameter value", "width and height"]),
    }[case]
    proc = subprocess.run([sys.executable, "-m", MODULE, "--ros-args", *args], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 2, proc.stderr
    assert "Traceback" not in proc.stderr
    lines = [line for line in proc.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and "FATAL" in lines[0], proc.stderr
    for word in words:
        assert word in lines[0], lines[0]


# --- readers without ROS, config ----------------------------------------------------------------
def test_readers_rewind_and_give_rgb(tmp_path):
    bag = write_bag(tmp_path / "run.mcap")
    with open_reader("bag", path=str(bag), topic="/cam/image") as reader:
        first = [reader.read() for _ in range(4)]
        assert first[3] is None and first[0].shape == (24, 32, 3) and first[0].dtype == np.uint8
        reader.rewind()
        assert np.array_equal(reader.read(), first[0])
    procedural = open_reader("procedural", background="room", seed=3)
    a = procedural.read()
    procedural.rewind()
    assert np.array_equal(procedural.read(), a)
    with pytest.raises(FrameSourceError, match="unknown source"):
        open_reader("webcam")


def test_frames_package_needs_neither_torch_nor_rclpy():
    code = ("import sys, split_perception.frames as f; r = f.open_reader('procedural'); r.read(); "
            "bad = [m for m in ('torch', 'rclpy') if m in sys.modules]; assert not bad, bad")
    subprocess.run([sys.executable, "-c", code], check=True, timeout=120)


def test_params_file_names_declared_parameters():
    values = yaml.safe_load((ROOT / "config" / "camera_source.yaml").read_text())["camera_source"]["ros__parameters"]
    src = (ROOT / "split_perception" / "nodes" / "camera_source.py").read_text()
    for name in values:
        assert f'declare_parameter("{name}"' in src, name
