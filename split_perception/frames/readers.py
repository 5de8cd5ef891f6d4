"""Frame readers: one source each, H x W x 3 uint8 RGB frames out.

    reader = open_reader("folder", path="shots/")      # or "procedural", "video", "bag"
    frame = reader.read()                               # None at the end of the source
    reader.rewind()                                     # from the first frame again
    reader.close()

Opening checks everything that can be checked up front and raises FrameSourceError with one
line that says what is wrong (no such folder, no image in it, a video OpenCV cannot decode, a
bag topic that is not there: the message names the topics that are). A single frame that
cannot be decoded later (a corrupt file in a folder, a bag message in an unknown encoding)
raises FrameReadError: the caller may skip it and read on.

No torch, no rclpy: OpenCV, mcap and the procedural scene generator are imported only by the
reader that needs them.
"""
from __future__ import annotations

import os
from pathlib import Path
from typing import Iterator

import numpy as np
from struct import error as struct_error

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".ppm", ".pgm", ".pnm", ".tif", ".tiff", ".webp")
IMAGE_TYPES = ("sensor_msgs/msg/Image", "sensor_msgs/msg/CompressedImage")


class FrameSourceError(ValueError):
    """A source that cannot be opened as configured; the message says why in one line."""


class FrameReadError(FrameSourceError):
    """One frame that cannot be decoded; the source itself can go on."""


class SourceTruncatedError(FrameReadError):
    """The source ends early in a broken record (a bag cut off mid-write): the frames before it
    were read; the next read() gives None."""


class FrameReader:
    """Base: `description` names the source for logs; read() -> frame or None at the end."""

    description = "frames"
    frame_count: int | None = None  # frames in the source when known (for a progress bar)
    last_meta: dict = {}  # what the source says about the frame read() gave last (stamp, frame_id, file, ...)

    def read(self) -> np.ndarray | None:
        raise NotImplementedError

    def rewind(self) -> None:
        raise NotImplementedError

    def close(self) -> None:
        pass

    def __enter__(self):
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def _bgr_to_rgb(image: np.ndarray) -> np.ndarray:
    if image.ndim == 2:
        return np.repeat(image[..., None], 3, axis=2)
    return np.ascontiguousarray(image[..., 2::-1])  # BGR or BGRA -> RGB


class ProceduralReader(FrameReader):
    """Endless procedural scenes (training/scenes.py): `background` is a multi-object background
    kind (scenes.BACKGROUNDS) or "room" (MONet room scenes); frame i is scene (seed, i)."""

    def __init__(self, background: str = "solid", palette: str = "test", seed: int = 0, image_size: int | None = None):
        from split_perception.training import scenes

        self._scenes = scenes
        size = {} if image_size is None else {"image_size": image_size}
        try:
            if background == "room":
                self._cfg = scenes.RoomConfig(**size)
            else:
                self._cfg = scenes.MultiObjectConfig(background=background, palette=palette, **size)
        except ValueError as e:
            raise FrameSourceError(f"procedural scenes: {e}") from None
        self.seed, self.index = seed, 0
        self.description = f"procedural scenes ({background}, {palette} palette, seed {seed})"

    def read(self) -> np.ndarray:
        frame = self._scenes.generate(self._cfg, self.seed, self.index).image
        self.index += 1
        return frame

    def rewind(self) -> None:
        self.index = 0


class FolderReader(FrameReader):
    """The image files of one folder (not its subfolders), in sorted name order."""

    def __init__(self, path: str | Path):
        folder = Path(path)
        if not str(path):
            raise FrameSourceError("folder source: set `path` to a folder of images")
        if not folder.exists():
            raise FrameSourceError(f"folder source: no such folder '{folder}'")
        if not folder.is_dir():
            raise FrameSourceError(f"folder source: '{folder}' is not a folder")
        self.files = sorted(p for p in folder.iterdir() if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES)
        if not self.files:
            raise FrameSourceError(f"folder source: no image files ({', '.join(IMAGE_SUFFIXES)}) in '{folder}'")
        self.position = 0
        self.frame_count = len(self.files)
        self.description = f"folder '{folder}' ({len(self.files)} images)"

    def read(self) -> np.ndarray | None:
        import cv2

        if self.position >= len(self.files):
            return None
        file = self.files[self.position]
        self.position += 1
        self.last_meta = {"source_file": file.name}
        image = cv2.imread(str(file), cv2.IMREAD_COLOR)
        if image is None:
            raise FrameReadError(f"cannot decode image '{file}'")
        return _bgr_to_rgb(image)

    def rewind(self) -> None:
        self.position = 0


class VideoReader(FrameReader):
    """A video file decoded by OpenCV (cv2.VideoCapture); rewinding reopens it (seeking is not
    exact for every codec)."""

    def __init__(self, path: str | Path):
        file = Path(path)
        if not str(path):
            raise FrameSourceError("video source: set `path` to a video file")
        if not file.is_file():
            raise FrameSourceError(f"video source: no such file '{file}'")
        self.file = file
        self._cap = None
        self._first = self._open()
        self._pending = self._first
        self._index = 0
        self.description = f"video '{file}'"

    def _open(self) -> np.ndarray:
        # FFmpeg would print its own line for a file it cannot open; ours names the file and the
        # cause. Read when OpenCV first opens a video; a value the user set wins.
        os.environ.setdefault("OPENCV_FFMPEG_LOGLEVEL", "-8")
        import cv2

        if self._cap is not None:
            self._cap.release()
        self._cap = cv2.VideoCapture(str(self.file))
        ok, image = self._cap.read() if self._cap.isOpened() else (False, None)
        if not ok or image is None:
            self._cap.release()
            raise FrameSourceError(f"video source: cannot read a frame from '{self.file}' (not a video OpenCV can decode)")
        return _bgr_to_rgb(image)

    def read(self) -> np.ndarray | None:
        if self._pending is not None:
            frame, self._pending = self._pending, None
        else:
            ok, image = self._cap.read()
            if not ok or image is None:
                return None
            frame = _bgr_to_rgb(image)
        self.last_meta = {"source_file": self.file.name, "video_frame": self._index}
        self._index += 1
        return frame

    def rewind(self) -> None:
        self._pending = self._open()
        self._index = 0

    def close(self) -> None:
        if self._cap is not None:
            self._cap.release()


def _seekable_summary(f):
    """The file's summary, or None when it has none or it cannot be read (a file cut off)."""
    from mcap.exceptions import McapError
    from mcap.reader import SeekingReader

    try:
        return SeekingReader(f).get_summary()
    except (McapError, ValueError, EOFError, OSError, struct_error):
        return None


def bag_topics(files: list[Path]) -> dict[str, tuple[str, int]]:
    """{topic: (message type, message count)} over the MCAP files, from their summaries (a file
    without one, e.g. a recording that was cut off, is scanned up to where it breaks)."""
    from mcap.exceptions import McapError
    from mcap.reader import NonSeekingReader

    topics: dict[str, tuple[str, int]] = {}
    for file in files:
        try:
            with open(file, "rb") as f:
                summary = _seekable_summary(f)
                if summary is not None:
                    counts = summary.statistics.channel_message_counts if summary.statistics else {}
                    for cid, channel in summary.channels.items():
                        schema = summary.schemas.get(channel.schema_id)
                        old = topics.get(channel.topic, ("", 0))[1]
                        topics[channel.topic] = (schema.name if schema else "", old + counts.get(cid, 0))
                    continue
                f.seek(0)
                scanned = 0
                try:
                    for schema, channel, _ in NonSeekingReader(f).iter_messages(log_time_order=False):
                        old = topics.get(channel.topic, ("", 0))[1]
                        topics[channel.topic] = (schema.name if schema else "", old + 1)
                        scanned += 1
                except (McapError, ValueError, EOFError, struct_error):
                    if not scanned:
                        raise  # not MCAP at all (or broken before its first message)
        except (McapError, ValueError, EOFError, OSError, struct_error) as e:
            raise FrameSourceError(f"bag source: '{file}' is not a readable MCAP file ({str(e) or type(e).__name__})") from None
    return topics


class BagReader(FrameReader):
    """sensor_msgs/Image or CompressedImage messages of one topic of a rosbag2 MCAP file (or of
    a rosbag2 folder's .mcap files, in name order), decoded with mcap-ros2-support: no ROS
    install needed. `topic` empty: the bag's only image topic."""

    def __init__(self, path: str | Path, topic: str = ""):
        source = Path(path)
        if not str(path):
            raise FrameSourceError("bag source: set `path` to a rosbag2 .mcap file or folder")
        if not source.exists():
            raise FrameSourceError(f"bag source: no such file '{source}'")
        self.files = sorted(source.glob("*.mcap")) if source.is_dir() else [source]
        if not self.files:
            raise FrameSourceError(f"bag source: no .mcap file in '{source}' (only MCAP bags are read; "
                                   "convert a sqlite3 bag with `ros2 bag convert`)")
        topics = bag_topics(self.files)
        images = {t: v for t, v in topics.items() if v[0] in IMAGE_TYPES}
        listing = ", ".join(f"{t} ({v[0].rsplit('/', 1)[-1]}, {v[1]} messages)" for t, v in sorted(images.items())) or "none"
        if not topic:
            if len(images) != 1:
                raise FrameSourceError(f"bag source: '{source}' has {len(images)} image topics, set `topic` to one; "
                                       f"image topics: {listing}")
            topic = next(iter(images))
        elif topic not in topics:
            raise FrameSourceError(f"bag source: no topic '{topic}' in '{source}'; image topics: {listing}; "
                                   f"all topics: {', '.join(sorted(topics)) or 'none'}")
        elif topic not in images:
            raise FrameSourceError(f"bag source: topic '{topic}' in '{source}' carries {topics[topic][0]}, not an "
                                   f"image; image topics: {listing}")
        if images[topic][1] == 0:
            raise FrameSourceError(f"bag source: topic '{topic}' in '{source}' has no messages")
        self.topic, self.source = topic, source
        self.frame_count = images[topic][1]
        self.description = f"bag '{source}' topic {topic} ({images[topic][1]} frames)"
        self._messages = self._iterate()

    def _iterate(self) -> Iterator:
        """(type name, decoded message, log time) of the topic, file after file. A file cut off
        mid-record ends the iteration with SourceTruncatedError after the messages before it."""
        from mcap.exceptions import McapError
        from mcap.reader import NonSeekingReader, make_reader
        from mcap_ros2.decoder import DecoderFactory

        for file in self.files:
            with open(file, "rb") as f:
                summary = _seekable_summary(f)
                f.seek(0)
                reader = (make_reader(f, decoder_factories=[DecoderFactory()]) if summary is not None
                          else NonSeekingReader(f, decoder_factories=[DecoderFactory()]))
                count = 0
                try:
                    for schema, _, message, msg in reader.iter_decoded_messages(topics=[self.topic], log_time_order=summary is not None):
                        count += 1
                        yield schema.name, msg, message.log_time
                except (McapError, ValueError, EOFError, struct_error) as e:
                    raise SourceTruncatedError(f"bag '{file}' is truncated or corrupt after {count} message(s) of "
                                               f"{self.topic} ({str(e) or type(e).__name__})") from None

    def read(self) -> np.ndarray | None:
        item = next(self._messages, None)
        if item is None:
            return None
        type_name, msg, log_time = item
        header = getattr(msg, "header", None)
        self.last_meta = {"topic": self.topic, "log_time_ns": int(log_time)}
        if header is not None:
            self.last_meta.update(stamp=header.stamp.sec + header.stamp.nanosec * 1e-9, frame_id=header.frame_id)
        return decode_image(msg, type_name)

    def rewind(self) -> None:
        self._messages.close()  # closes the open file
        self._messages = self._iterate()

    def close(self) -> None:
        self._messages.close()


def decode_image(msg, type_name: str) -> np.ndarray:
    """A decoded sensor_msgs/Image or CompressedImage (any object with their fields) -> RGB."""
    if type_name.endswith("CompressedImage"):
        import cv2

        image = cv2.imdecode(np.frombuffer(bytes(msg.data), np.uint8), cv2.IMREAD_COLOR)
        if image is None:
            raise FrameReadError(f"cannot decode a CompressedImage (format '{msg.format}')")
        return _bgr_to_rgb(image)
    from split_perception.image_conversion import ImageConversionError, image_to_rgb

    try:
        return np.ascontiguousarray(image_to_rgb(msg))
    except ImageConversionError as e:
        raise FrameReadError(str(e)) from None


def resize(frame: np.ndarray, width: int, height: int) -> np.ndarray:
    """Resize to width x height (0, 0: unchanged); area averaging when shrinking."""
    if (width, height) in ((0, 0), (frame.shape[1], frame.shape[0])):
        return frame
    import cv2

    shrink = width * height < frame.shape[0] * frame.shape[1]
    return cv2.resize(frame, (width, height), interpolation=cv2.INTER_AREA if shrink else cv2.INTER_LINEAR)


READERS = ("procedural", "folder", "video", "bag")


def open_reader(kind: str, *, path: str = "", topic: str = "", background: str = "solid", palette: str = "test",
                seed: int = 0) -> FrameReader:
    """The reader for `kind` (one of READERS) with the settings that kind uses."""
    if kind == "procedural":
        return ProceduralReader(background, palette, seed)
    if kind == "folder":
        return FolderReader(path)
    if kind == "video":
        return VideoReader(path)
    if kind == "bag":
        return BagReader(path, topic)
    raise FrameSourceError(f"unknown source '{kind}'; one of: {', '.join(READERS)}")
