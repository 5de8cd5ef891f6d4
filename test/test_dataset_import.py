"""Dataset folders written by frames/dataset_folder.py: the writer's crash safety (interrupted
writes, ENOSPC, torn index lines, quota) and `split-perception dataset from-bag / from-folder /
from-video` (every Image encoding the nodes take, CompressedImage, subsampling, resize, and the
clear one-line errors: wrong topic, wrong type, truncated bag). No ROS install needed."""
import errno
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

cv2 = pytest.importorskip("cv2")
pytest.importorskip("mcap_ros2")

from split_perception.frames import DatasetWriter, QuotaReached, import_frames, open_reader  # noqa: E402
from split_perception.frames import dataset_folder  # noqa: E402
from split_perception.training.dataset import DatasetFolder, FolderImageDataset  # noqa: E402

# rosbag2 message definitions as mcap-ros2-support wants them (ros2msg, dependencies appended)
_SEP = "=" * 80 + "\n"
_DEPS = (f"{_SEP}MSG: std_msgs/Header\nbuiltin_interfaces/Time stamp\nstring frame_id\n"
         f"{_SEP}MSG: builtin_interfaces/Time\nint32 sec\nuint32 nanosec\n")
IMAGE_DEF = ("std_msgs/Header header\nuint32 height\nuint32 width\nstring encoding\nuint8 is_bigendian\n"
             "uint32 step\nuint8[] data\n" + _DEPS)
COMPRESSED_DEF = "std_msgs/Header header\nstring format\nuint8[] data\n" + _DEPS
W, H = 32, 24
RGB = (200, 60, 20)


def cli(*args, timeout=120, quiet=True):
    return subprocess.run([sys.executable, "-m", "split_perception.cli", "dataset", *map(str, args)]
                          + (["--quiet"] if quiet and args[0] != "info" else []),
                          capture_output=True, text=True, timeout=timeout)


def raw_pixels(encoding: str, rgb=RGB) -> np.ndarray:
    """A W x H frame of colour `rgb` (grey for mono) in `encoding`'s layout."""
    img = np.broadcast_to(np.array(rgb, np.uint8), (H, W, 3))
    grey = np.full((H, W), rgb[0], np.uint8)
    return {"rgb8": img, "bgr8": img[..., ::-1],
            "rgba8": np.dstack([img, np.full((H, W), 255, np.uint8)]),
            "bgra8": np.dstack([img[..., ::-1], np.full((H, W), 255, np.uint8)]),
            "mono8": grey, "mono16": grey.astype(np.uint16) * 257}[encoding]


def image_msg(pixels: np.ndarray, encoding: str, i: int) -> dict:
    channels = 1 if pixels.ndim == 2 else pixels.shape[2]
    return {"header": {"stamp": {"sec": 100 + i, "nanosec": 5}, "frame_id": "cam"}, "height": H, "width": W,
            "encoding": encoding, "is_bigendian": 0, "step": W * channels * pixels.itemsize,
            "data": np.ascontiguousarray(pixels).tobytes()}


def write_bag(path: Path, frames: dict, chunk_size: int = 1 << 20, compress: bool = True) -> Path:
    """frames: {topic: [(encoding or 'png'/'jpeg', pixels), ...]} -> an MCAP rosbag2 file, plus /chatter."""
    from mcap.writer import CompressionType
    from mcap_ros2.writer import Writer

    with open(path, "wb") as f:
        writer = Writer(f, chunk_size=chunk_size, compression=CompressionType.ZSTD if compress else CompressionType.NONE)
        image = writer.register_msgdef("sensor_msgs/msg/Image", IMAGE_DEF)
        compressed = writer.register_msgdef("sensor_msgs/msg/CompressedImage", COMPRESSED_DEF)
        string = writer.register_msgdef("std_msgs/msg/String", "string data\n")
        t = 1_000_000_000
        for topic, items in frames.items():
            for i, (encoding, pixels) in enumerate(items):
                t += 1
                if encoding in ("png", "jpeg"):
                    data = cv2.imencode(".png" if encoding == "png" else ".jpg", pixels[..., ::-1])[1].tobytes()
                    msg = {"header": {"stamp": {"sec": 100 + i, "nanosec": 5}, "frame_id": "cam"},
                           "format": encoding, "data": data}
                    writer.write_message(topic, compressed, msg, log_time=t, publish_time=t)
                else:
                    writer.write_message(topic, image, image_msg(pixels, encoding, i), log_time=t, publish_time=t)
        writer.write_message("/chatter", string, {"data": "hello"}, log_time=t, publish_time=t)
        writer.finish()
    return path


def colours(out: Path) -> list:
    folder = DatasetFolder(out)
    return [tuple(int(v) for v in folder.image(i)[H // 2, W // 2]) for i in range(len(folder))]


def assert_valid_dataset(out: Path, count: int) -> list:
    r = cli("info", out)
    assert r.returncode == 0, r.stderr
    assert json.loads(r.stdout)["images"] == count
    ds = FolderImageDataset(out, size=16)
    img, target = ds[count - 1]
    assert tuple(img.shape) == (3, 16, 16) and target == {}
    lines = (out / "annotations.jsonl").read_text().splitlines()
    assert len(lines) == count and all((out / json.loads(line)["image"]).is_file() for line in lines)
    assert not [p for p in out.rglob(".*")], "temp files left behind"
    return [json.loads(line) for line in lines]


# --- bag import ---------------------------------------------------------------------------------
ENCODINGS = ["rgb8", "bgr8", "rgba8", "bgra8", "mono8", "mono16"]


def test_from_bag_every_raw_encoding_and_compressed(tmp_path):
    bag = write_bag(tmp_path / "run.mcap", {
        "/cam/image": [(e, raw_pixels(e)) for e in ENCODINGS],
        "/cam/compressed": [("png", raw_pixels("rgb8")), ("jpeg", raw_pixels("rgb8"))],
    })
    r = cli("from-bag", bag, "--topic", "/cam/image", tmp_path / "raw")
    assert r.returncode == 0, r.stderr
    assert "imported 6 of 6 frames" in r.stdout
    entries = assert_valid_dataset(tmp_path / "raw", 6)
    grey = (RGB[0],) * 3
    assert colours(tmp_path / "raw") == [RGB] * 4 + [grey, grey]  # PNG is lossless
    assert entries[1]["topic"] == "/cam/image" and entries[1]["frame_id"] == "cam"
    assert entries[1]["stamp"] == pytest.approx(101.000000005) and (entries[1]["width"], entries[1]["height"]) == (W, H)
    meta = json.loads((tmp_path / "raw" / "dataset.json").read_text())
    assert meta["count"] == 6 and meta["source"]["topic"] == "/cam/image" and not meta["labelled"]

    r = cli("from-bag", bag, "--topic", "/cam/compressed", tmp_path / "packed")
    assert r.returncode == 0, r.stderr
    assert_valid_dataset(tmp_path / "packed", 2)
    got = colours(tmp_path / "packed")
    assert got[0] == RGB and all(abs(a - b) <= 8 for a, b in zip(got[1], RGB))  # jpeg: lossy


def test_from_bag_subsample_resize_max_and_continue(tmp_path):
    frames = [("rgb8", raw_pixels("rgb8", (10 * i, 0, 0))) for i in range(10)]
    bag = write_bag(tmp_path / "run.mcap", {"/cam": frames})
    out = tmp_path / "ds"
    r = cli("from-bag", bag, out, "--every", 3, "--size", "16x8")  # the only image topic: no --topic needed
    assert r.returncode == 0, r.stderr
    assert "imported 4 of 10" in r.stdout
    entries = assert_valid_dataset(out, 4)
    assert [e["stamp"] for e in entries] == pytest.approx([100.000000005, 103.000000005, 106.000000005, 109.000000005])
    assert DatasetFolder(out).image(0).shape == (8, 16, 3)
    r = cli("from-bag", bag, out, "--max", 2, "--size", 16)  # an existing folder is continued
    assert r.returncode == 0, r.stderr
    entries = assert_valid_dataset(out, 6)
    assert entries[-1]["image"] == "images/000005.png" and DatasetFolder(out).image(5).shape == (16, 16, 3)


@pytest.mark.parametrize("case", ["wrong topic", "wrong type", "missing bag", "not a bag", "bad every"])
def test_from_bag_errors_are_one_line_exit_2(tmp_path, case):
    bag = write_bag(tmp_path / "run.mcap", {"/cam/image": [("rgb8", raw_pixels("rgb8"))]})
    (tmp_path / "junk.mcap").write_bytes(b"not an mcap file at all" * 10)
    args, words = {
        "wrong topic": (["--topic", "/camera/image_raw", bag], ["no topic '/camera/image_raw'",
                                                                 "/cam/image (Image, 1 messages)", "/chatter"]),
        "wrong type": (["--topic", "/chatter", bag], ["/chatter", "std_msgs/msg/String", "not an image"]),
        "missing bag": ([tmp_path / "nope.mcap"], ["no such file", "nope.mcap"]),
        "not a bag": ([tmp_path / "junk.mcap"], ["junk.mcap", "not a readable MCAP file"]),
        "bad every": (["--every", 0, bag], ["--every must be at least 1"]),
    }[case]
    r = cli("from-bag", *args, tmp_path / "out")
    assert r.returncode == 2, r.stderr
    lines = [line for line in r.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and "Traceback" not in r.stderr, r.stderr
    for word in words:
        assert word in lines[0], lines[0]
    assert not (tmp_path / "out" / "annotations.jsonl").exists()


def test_bad_size_is_a_usage_error(tmp_path):
    r = cli("from-bag", "--size", "big", tmp_path / "run.mcap", tmp_path / "out")
    assert r.returncode == 2 and "size must be S or WxH" in r.stderr.splitlines()[-1], r.stderr


def test_from_bag_truncated_keeps_what_was_imported(tmp_path):
    frames = [("rgb8", raw_pixels("rgb8", (20 * i, 5, 5))) for i in range(12)]
    full = write_bag(tmp_path / "full.mcap", {"/cam": frames}, chunk_size=1000, compress=False)  # a chunk a message
    data = full.read_bytes()
    cut = tmp_path / "cut.mcap"
    cut.write_bytes(data[: len(data) // 2])  # a recording cut off: no summary, a broken last record
    out = tmp_path / "ds"
    r = cli("from-bag", cut, "--topic", "/cam", out)
    assert r.returncode == 2, r.stdout
    lines = [line for line in r.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and "truncated" in lines[0] and "cut.mcap" in lines[0], r.stderr
    n = int(lines[0].split("the ")[-1].split(" frame")[0])
    assert 2 <= n < 12
    assert_valid_dataset(out, n)
    assert colours(out) == [(20 * i, 5, 5) for i in range(n)]  # the frames before the cut, intact


# --- folder and video import ---------------------------------------------------------------------
def test_from_folder_and_from_video(tmp_path):
    shots = tmp_path / "shots"
    shots.mkdir()
    for i in range(5):
        cv2.imwrite(str(shots / f"f{i}.png"), np.full((H, W, 3), (0, 0, 40 * i), np.uint8))  # BGR: red rises
    (shots / "zz_broken.png").write_bytes(b"\x89PNG not really")
    (shots / "notes.txt").write_text("ignored")
    r = cli("from-folder", shots, tmp_path / "from_folder", "--every", 2)
    assert r.returncode == 0, r.stderr
    assert "1 undecodable frame(s) skipped" in r.stdout
    entries = assert_valid_dataset(tmp_path / "from_folder", 3)
    assert [e["source_file"] for e in entries] == ["f0.png", "f2.png", "f4.png"]  # zz_broken.png: skipped
    assert colours(tmp_path / "from_folder") == [(0, 0, 0), (80, 0, 0), (160, 0, 0)]

    video = tmp_path / "clip.avi"
    writer = cv2.VideoWriter(str(video), cv2.VideoWriter_fourcc(*"MJPG"), 10, (W, H))
    if not writer.isOpened():
        pytest.skip("this OpenCV cannot write MJPG video")
    for i in range(8):
        writer.write(np.full((H, W, 3), (0, 25 * i, 0), np.uint8))
    writer.release()
    r = cli("from-video", video, tmp_path / "from_video", "--max", 3, "--every", 2)
    assert r.returncode == 0, r.stderr
    entries = assert_valid_dataset(tmp_path / "from_video", 3)
    assert [e["video_frame"] for e in entries] == [0, 2, 4]
    assert [abs(c[1] - 50 * k) <= 8 for k, c in enumerate(colours(tmp_path / "from_video"))] == [True] * 3
    # with its progress bar (no --quiet): a video's length is unknown to the bar, which once crashed the import
    r = cli("from-video", video, tmp_path / "from_video_bar", "--max", 3, "--every", 2, quiet=False)
    assert r.returncode == 0, r.stderr
    assert_valid_dataset(tmp_path / "from_video_bar", 3)

    r = cli("from-video", tmp_path / "notes.avi", tmp_path / "x")
    assert r.returncode == 2 and "no such file" in r.stderr


# --- the writer: crash safety ------------------------------------------------------------------
def frame(v: int) -> np.ndarray:
    return np.full((H, W, 3), v, np.uint8)


def test_interrupted_image_write_leaves_no_entry_and_no_temp_file(tmp_path, monkeypatch):
    out = tmp_path / "ds"
    with DatasetWriter(out) as w:
        w.add(frame(1), {"stamp": 1.0})
        real_replace = os.replace

        def crash(*a, **k):  # the process dies between writing the temp file and renaming it
            raise KeyboardInterrupt

        monkeypatch.setattr(os, "replace", crash)
        with pytest.raises(KeyboardInterrupt):
            w.add(frame(2), {"stamp": 2.0})
        monkeypatch.setattr(os, "replace", real_replace)
        w.add(frame(3), {"stamp": 3.0})
    entries = assert_valid_dataset(out, 2)
    assert [e["stamp"] for e in entries] == [1.0, 3.0]
    assert colours(out) == [(1, 1, 1), (3, 3, 3)]


class TornFile:
    """The index file on a disk that fills up mid-append: part of the line lands, then ENOSPC."""

    def __init__(self, real):
        self.real = real

    def write(self, data):
        self.real.write(data[:10])
        self.real.flush()
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    def __getattr__(self, name):
        return getattr(self.real, name)


@pytest.mark.parametrize("where", ["image", "index"])
def test_enospc_keeps_what_was_written(tmp_path, monkeypatch, where):
    out = tmp_path / "ds"
    w = DatasetWriter(out)
    w.add(frame(1))
    before = (out / "annotations.jsonl").read_bytes()
    if where == "image":
        def full(fd):
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

        monkeypatch.setattr(os, "fsync", full)  # the image temp file cannot be completed
    else:
        w._index = TornFile(w._index)
    with pytest.raises(OSError) as e:
        w.add(frame(2))
    assert e.value.errno == errno.ENOSPC
    monkeypatch.undo()
    assert (out / "annotations.jsonl").read_bytes() == before  # nothing half-added
    assert sorted(p.name for p in (out / "images").iterdir()) == ["000000.png"]  # no orphan, no temp file
    w.add(frame(3))  # the disk has room again: recording goes on
    w.close()
    assert_valid_dataset(out, 2)
    assert colours(out) == [(1, 1, 1), (3, 3, 3)]


def test_torn_index_line_is_cut_and_numbers_never_reused(tmp_path):
    out = tmp_path / "ds"
    with DatasetWriter(out) as w:
        w.add(frame(1))
        w.add(frame(2))
    (out / "images" / "000002.png").write_bytes(dataset_folder.encode_image(frame(9)))  # an orphan (crash after rename)
    with open(out / "annotations.jsonl", "ab") as f:
        f.write(b'{"image": "images/0000')  # a crash mid-append
    with pytest.raises(ValueError):
        DatasetFolder(out)
    with DatasetWriter(out) as w:
        assert w.count == 2
        entry = w.add(frame(4))
    assert entry["image"] == "images/000003.png"
    assert_valid_dataset(out, 3)
    assert colours(out) == [(1, 1, 1), (2, 2, 2), (4, 4, 4)]


def test_quota_and_unwritable_folder(tmp_path):
    out = tmp_path / "ds"
    size = len(dataset_folder.encode_image(frame(1)))
    with DatasetWriter(out, max_bytes=int(size * 2.5)) as w:
        w.add(frame(1))
        w.add(frame(2))
        with pytest.raises(QuotaReached, match="max_bytes"):
            w.add(frame(3))
    with DatasetWriter(out, max_frames=3) as w:  # the quota counts the whole folder
        w.add(frame(3))
        with pytest.raises(QuotaReached, match="max_frames"):
            w.add(frame(4))
    assert_valid_dataset(out, 3)
    (tmp_path / "file").write_text("x")
    with pytest.raises(OSError):
        DatasetWriter(tmp_path / "file" / "ds")  # a path under a file: not a folder we can write
    if os.geteuid() != 0:  # root writes through permission bits
        os.chmod(out, 0o555)
        os.chmod(out / "images", 0o555)
        try:
            with pytest.raises(OSError):
                DatasetWriter(out).add(frame(5))
        finally:
            os.chmod(out / "images", 0o755)
            os.chmod(out, 0o755)
        assert_valid_dataset(out, 3)


def test_import_frames_api_and_no_torch(tmp_path):
    bag = write_bag(tmp_path / "run.mcap", {"/cam": [("rgb8", raw_pixels("rgb8"))] * 3})
    with open_reader("bag", path=str(bag), topic="/cam") as reader:
        result = import_frames(reader, tmp_path / "ds", every=2)
    assert (result.read, result.written, result.bad, result.stopped) == (3, 2, 0, None)
    code = ("import sys, split_perception.frames as f, split_perception.nodes.scene_recorder; "
            "bad = [m for m in ('torch',) if m in sys.modules]; assert not bad, bad")
    subprocess.run([sys.executable, "-c", code], check=True, timeout=120)
