"""Writing the dataset folder format (training/dataset.py reads it): the scene recorder and
`split-perception dataset from-bag / from-folder / from-video` use this one writer.

    DATASET/
      dataset.json        {"format": "split_perception.dataset/1", "count": N, "labelled": false, "source": {...}}
      annotations.jsonl   one JSON object per image: "image" (relative path), "width", "height", and what
                          the source says: "stamp" (s), "frame_id", "topic", "source_file", ...
      images/000000.png   RGB (or .jpg)

Crash safety, the order of every frame: the image is written to a temp file beside its final
name, fsynced and renamed into place; only then is its index line appended (one write, flushed and
fsynced). So an index line always points at a complete image; an interruption leaves at most an
image without a line (ignored by readers, never overwritten: numbering goes on after the highest
file) or a torn last line, which the next writer cuts off and a failed append removes at once.
`dataset.json` is rewritten atomically at open and close; the index is the source of truth.

A write that fails (ENOSPC, EACCES, EROFS...) raises OSError after undoing its own partial work;
what was written before stays valid. numpy and OpenCV only (no torch, no rclpy).
"""
from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np

from split_perception.atomic_io import atomic_write_bytes

FORMAT = "split_perception.dataset/1"
INDEX, META, IMAGES = "annotations.jsonl", "dataset.json", "images"
IMAGE_FORMATS = ("png", "jpg")


class QuotaReached(Exception):
    """The writer's max_frames or max_bytes would be exceeded; nothing was written."""


def encode_image(frame: np.ndarray, image_format: str = "png") -> bytes:
    """H x W x 3 RGB (or H x W mono) uint8 -> PNG / JPEG bytes."""
    import cv2

    if image_format not in IMAGE_FORMATS:
        raise ValueError(f"image format must be one of {', '.join(IMAGE_FORMATS)}; got '{image_format}'")
    arr = frame[..., ::-1] if frame.ndim == 3 else frame  # OpenCV writes BGR
    params = [cv2.IMWRITE_JPEG_QUALITY, 95] if image_format == "jpg" else []
    ok, buf = cv2.imencode(f".{image_format}", np.ascontiguousarray(arr), params)
    if not ok:
        raise ValueError(f"{image_format} encoding failed for a {frame.shape} {frame.dtype} frame")
    return buf.tobytes()


def _image_number(name: str) -> int:
    stem = name.split(".", 1)[0]
    return int(stem) if stem.isdigit() else -1


class DatasetWriter:
    """Appends frames to a dataset folder (created if missing; an existing one is continued).

    max_frames / max_bytes (0: no limit) bound the folder's images in total (frames in the index,
    bytes of image files), so a resumed recording keeps within the same quota; add() raises
    QuotaReached instead of exceeding it.
    """

    def __init__(self, root: str | Path, *, source: dict | None = None, image_format: str = "png",
                 max_frames: int = 0, max_bytes: int = 0):
        if image_format not in IMAGE_FORMATS:
            raise ValueError(f"image format must be one of {', '.join(IMAGE_FORMATS)}; got '{image_format}'")
        self.root = Path(root)
        self.image_format, self.max_frames, self.max_bytes = image_format, int(max_frames), int(max_bytes)
        self.source = dict(source or {})
        (self.root / IMAGES).mkdir(parents=True, exist_ok=True)
        self.count = self._repair_index()
        files = [p for p in (self.root / IMAGES).iterdir() if p.is_file() and not p.name.startswith(".")]
        self.next_number = max([self.count - 1] + [_image_number(p.name) for p in files]) + 1
        self.bytes_used = sum(p.stat().st_size for p in files)
        self._index = open(self.root / INDEX, "ab")
        try:
            self._write_meta()
        except BaseException:
            self._index.close()
            raise

    def _repair_index(self) -> int:
        """Cut a torn last line (an append interrupted mid-write); returns the number of entries."""
        path = self.root / INDEX
        if not path.exists():
            return 0
        data = path.read_bytes()
        if data and not data.endswith(b"\n"):
            keep = data.rfind(b"\n") + 1
            with open(path, "r+b") as f:
                f.truncate(keep)
                os.fsync(f.fileno())
            data = data[:keep]
        return sum(1 for line in data.splitlines() if line.strip())

    def _write_meta(self) -> None:
        path = self.root / META
        meta = {}
        if path.is_file():
            try:
                meta = json.loads(path.read_text())
            except (ValueError, OSError):
                meta = {}
        meta.update(format=FORMAT, count=self.count)
        meta.setdefault("labelled", False)
        if self.source:
            meta["source"] = self.source
        atomic_write_bytes(path, json.dumps(meta, indent=2).encode())

    def check_quota(self, extra_bytes: int = 0) -> str | None:
        """Why one more frame of `extra_bytes` would exceed the quota, or None."""
        if self.max_frames and self.count >= self.max_frames:
            return f"max_frames reached ({self.count} frames in '{self.root}')"
        if self.max_bytes and self.bytes_used + extra_bytes > self.max_bytes:
            return (f"max_bytes reached ({self.bytes_used} of {self.max_bytes} bytes of images in '{self.root}'"
                    f"{f'; the next frame needs {extra_bytes}' if extra_bytes else ''})")
        return None

    def add(self, frame: np.ndarray, meta: dict | None = None) -> dict:
        """Write one frame (image, then its index line); returns the index entry."""
        reason = self.check_quota()
        if reason:
            raise QuotaReached(reason)
        data = encode_image(frame, self.image_format)
        reason = self.check_quota(len(data))
        if reason:
            raise QuotaReached(reason)
        name = f"{IMAGES}/{self.next_number:06d}.{self.image_format}"
        image_path = self.root / name
        atomic_write_bytes(image_path, data)  # OSError: its temp file is already removed
        self.next_number += 1  # never reuse a number, even if the line below fails
        entry = {"image": name, "width": int(frame.shape[1]), "height": int(frame.shape[0]), **(meta or {})}
        line = (json.dumps(entry) + "\n").encode()
        position = self._index.tell()
        try:
            self._index.write(line)
            self._index.flush()
            os.fsync(self._index.fileno())
        except OSError:
            self._undo_append(position, image_path)
            raise
        self.count += 1
        self.bytes_used += len(data)
        return entry

    def _undo_append(self, position: int, image_path: Path) -> None:
        """After a failed append: cut the index back to its last whole line, drop the orphan image."""
        try:
            self._index.close()  # drops what is still buffered
        except OSError:
            pass
        try:
            with open(self.root / INDEX, "r+b") as f:
                f.truncate(position)
        except OSError:
            pass  # the next writer cuts a torn line off (_repair_index)
        try:
            image_path.unlink()
        except OSError:
            pass
        self._index = open(self.root / INDEX, "ab")

    def close(self) -> None:
        """Update dataset.json's count and close the index (best effort on a full disk: the index
        is what readers use)."""
        if self._index.closed:
            return
        try:
            self._index.close()
        finally:
            try:
                self._write_meta()
            except OSError:
                pass

    def __enter__(self) -> "DatasetWriter":
        return self

    def __exit__(self, *exc) -> None:
        self.close()


class ImportResult:
    def __init__(self):
        self.read = self.written = self.bad = 0
        self.stopped: str | None = None  # why the import ended before the end of the source


def import_frames(reader, out: str | Path, *, every: int = 1, size: tuple[int, int] = (0, 0), max_frames: int = 0,
                  source: dict | None = None, image_format: str = "png", progress=None) -> ImportResult:
    """Copy frames of a frames/ reader into a dataset folder: every `every`-th frame, resized to
    `size` (0, 0: as read), at most `max_frames` written. A frame that cannot be decoded is skipped
    (counted in `bad`); a source that breaks off (truncated bag) or a write that fails stops the
    import with `stopped` set (an OSError is re-raised) and leaves the folder valid with what was
    written. progress(n) is called after each frame read."""
    from split_perception.frames.readers import FrameReadError, SourceTruncatedError, resize

    if every < 1:
        raise ValueError(f"--every must be at least 1; got {every}")
    result = ImportResult()
    with DatasetWriter(out, source=source, image_format=image_format) as writer:
        while not max_frames or result.written < max_frames:
            try:
                frame = reader.read()
            except SourceTruncatedError as e:
                result.stopped = str(e)
                break
            except FrameReadError:
                frame = False  # counted below, position kept for --every
            if frame is None:
                break
            index = result.read
            result.read += 1
            if frame is False:
                result.bad += 1
            elif index % every == 0:
                writer.add(resize(frame, *size), dict(reader.last_meta))
                result.written += 1
            if progress:
                progress(1)
    return result
