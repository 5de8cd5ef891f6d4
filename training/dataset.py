"""Data sets: procedural scenes generated on the fly, and dataset folders on disk.

Dataset folder format (written by `split-perception dataset generate`, and the same layout
robot-collected data uses, minus the ground truth):

    DATASET/
      dataset.json        {"format": "split_perception.dataset/1", "count": N, "generator": {...}}
      annotations.jsonl   one JSON object per image, in index order
      images/000000.png   RGB
      labels/000000.png   optional, uint8 segmentation: 0 background, i+1 object i

Each annotations line holds `image` (path relative to the folder) and, when ground truth
exists, `count`, `boxes` ([[x1, y1, x2, y2], ...] in pixels, x2/y2 exclusive) and `labels`.
A folder with images but no annotations.jsonl (a robot's recording) is read as unlabelled.
"""
from __future__ import annotations

import json
from dataclasses import asdict
from pathlib import Path

import cv2
import numpy as np

from split_perception.atomic_io import atomic_write_bytes  # noqa: F401 - used by eval too

from . import scenes

FORMAT = "split_perception.dataset/1"
IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp")


# --------------------------------------------------------------------------- writing
def encode_png(image: np.ndarray) -> bytes:
    """RGB (H, W, 3) or single-channel uint8 -> PNG bytes."""
    arr = image[..., ::-1] if image.ndim == 3 else image  # OpenCV stores BGR
    ok, buf = cv2.imencode(".png", np.ascontiguousarray(arr))
    if not ok:
        raise OSError("PNG encoding failed")
    return buf.tobytes()


def scene_config_to_dict(cfg: scenes.SceneConfig) -> dict:
    return {"type": type(cfg).__name__, **asdict(cfg)}


def scene_config_from_dict(d: dict) -> scenes.SceneConfig:
    d = dict(d)
    kind = d.pop("type")
    classes = {"MultiObjectConfig": scenes.MultiObjectConfig, "RoomConfig": scenes.RoomConfig}
    if kind not in classes:
        raise ValueError(f"unknown scene config type '{kind}'")
    # JSON has no tuples; the frozen dataclasses want them back
    d = {k: tuple(v) if isinstance(v, list) else v for k, v in d.items()}
    return classes[kind](**d)


def write_generated_dataset(out_dir: Path, cfg: scenes.SceneConfig, count: int, seed: int, progress=None) -> Path:
    """Generate `count` scenes into a dataset folder; `annotations.jsonl` and `dataset.json` land last.

    Files appear atomically, so an interrupted run leaves complete PNGs and no index that
    points at missing ones.
    """
    out_dir = Path(out_dir)
    (out_dir / "images").mkdir(parents=True, exist_ok=True)
    (out_dir / "labels").mkdir(parents=True, exist_ok=True)
    lines = []
    for i in range(count):
        s = scenes.generate(cfg, seed, i)
        name = f"{i:06d}.png"
        atomic_write_bytes(out_dir / "images" / name, encode_png(s.image))
        atomic_write_bytes(out_dir / "labels" / name, encode_png(s.labels))
        lines.append(
            json.dumps(
                {
                    "image": f"images/{name}",
                    "labels": f"labels/{name}",
                    "count": s.count,
                    "boxes": np.round(s.boxes, 3).tolist(),
                }
            )
        )
        if progress:
            progress(i + 1)
    atomic_write_bytes(out_dir / "annotations.jsonl", ("\n".join(lines) + "\n").encode())
    meta = {"format": FORMAT, "count": count, "seed": seed, "generator": scene_config_to_dict(cfg)}
    atomic_write_bytes(out_dir / "dataset.json", json.dumps(meta, indent=2).encode())
    return out_dir


# --------------------------------------------------------------------------- reading
def _decode_bgr(path: Path, flag: int = cv2.IMREAD_COLOR) -> np.ndarray:
    """An image file decoded by OpenCV (BGR); a missing or unreadable file raises with its path."""
    data = np.fromfile(str(path), dtype=np.uint8) if Path(path).is_file() else None
    if data is None:
        raise FileNotFoundError(f"image not found: {path}")
    img = cv2.imdecode(data, flag)
    if img is None:
        raise ValueError(f"not a readable image: {path}")
    return img


def read_rgb(path: Path) -> np.ndarray:
    """Read an image file as RGB uint8; a missing or unreadable file raises with its path."""
    return _decode_bgr(path)[..., ::-1].copy()


_REDUCED_JPEG = ((8, cv2.IMREAD_REDUCED_COLOR_8), (4, cv2.IMREAD_REDUCED_COLOR_4), (2, cv2.IMREAD_REDUCED_COLOR_2))


def read_rgb_resized(path: Path, size: int, width: int = 0, height: int = 0) -> np.ndarray:
    """An image file as RGB uint8 resized to size x size (INTER_AREA), for training. A JPEG whose
    width and height are given (the index records them) and are at least 2, 4 or 8 times `size` is
    decoded at 1/2, 1/4 or 1/8 scale by libjpeg's DCT scaling: a 640x480 frame to 48 px in 0.3 ms
    instead of 1.4 (mean absolute difference to a full decode + INTER_AREA: 0.5 of 255)."""
    path = Path(path)
    flag = cv2.IMREAD_COLOR
    if width and height and path.suffix.lower() in (".jpg", ".jpeg"):
        flag = next((f for factor, f in _REDUCED_JPEG if min(width, height) // factor >= size), flag)
    img = _decode_bgr(path, flag)
    if img.shape[:2] != (size, size):
        img = cv2.resize(img, (size, size), interpolation=cv2.INTER_AREA)
    return np.ascontiguousarray(img[..., ::-1])


class DatasetFolder:
    """Index of a dataset folder: labelled (annotations.jsonl) or a plain folder of images."""

    def __init__(self, root: Path):
        self.root = Path(root)
        if not self.root.is_dir():
            raise FileNotFoundError(f"dataset folder not found: {self.root}")
        ann = self.root / "annotations.jsonl"
        if ann.is_file():
            self.records = []
            for n, line in enumerate(ann.read_text().splitlines(), 1):
                if not line.strip():
                    continue
                try:
                    rec = json.loads(line)
                    rec["image"]
                except (json.JSONDecodeError, KeyError, TypeError) as e:
                    raise ValueError(f"{ann}:{n}: not a valid annotation line ({e})") from None
                self.records.append(rec)
        else:
            files = sorted(p for p in self.root.rglob("*") if p.suffix.lower() in IMAGE_SUFFIXES)
            self.records = [{"image": str(p.relative_to(self.root))} for p in files]
        if not self.records:
            raise ValueError(f"no images in dataset folder {self.root}")

    def __len__(self) -> int:
        return len(self.records)

    @property
    def labelled(self) -> bool:
        return "count" in self.records[0]

    def image(self, i: int) -> np.ndarray:
        return read_rgb(self.root / self.records[i]["image"])

    def image_resized(self, i: int, size: int) -> np.ndarray:
        """Image i as RGB uint8 at size x size (see read_rgb_resized)."""
        rec = self.records[i]
        try:
            width, height = int(rec.get("width", 0)), int(rec.get("height", 0))
        except (TypeError, ValueError):
            width = height = 0
        return read_rgb_resized(self.root / rec["image"], size, width, height)

    def target(self, i: int) -> dict:
        rec = self.records[i]
        out = {}
        if "count" in rec:
            out["count"] = int(rec["count"])
            out["boxes"] = np.asarray(rec.get("boxes", []), np.float32).reshape(-1, 4)
        if "labels" in rec:
            lab = cv2.imread(str(self.root / rec["labels"]), cv2.IMREAD_UNCHANGED)
            if lab is None:
                raise ValueError(f"not a readable label image: {self.root / rec['labels']}")
            out["labels"] = lab
        return out


# --------------------------------------------------------------------------- torch
def to_tensor(image: np.ndarray, size: int | None = None):
    """(H, W, 3) uint8 -> (3, S, S) float tensor in [0, 1], resized to `size` if given."""
    import torch

    if size is not None and image.shape[:2] != (size, size):
        image = cv2.resize(image, (size, size), interpolation=cv2.INTER_AREA)
    return torch.from_numpy(np.ascontiguousarray(image)).permute(2, 0, 1).float().div_(255.0)


class SceneDataset:
    """torch Dataset of procedural scenes: item i is scene (seed, i), generated on demand.

    Returns (image (3, S, S) float in [0, 1], target dict with count, boxes, labels).
    """

    def __init__(self, cfg: scenes.SceneConfig, length: int, seed: int = 0):
        self.cfg, self.length, self.seed = cfg, int(length), int(seed)

    def __len__(self) -> int:
        return self.length

    def __getitem__(self, i: int):
        if not 0 <= i < self.length:
            raise IndexError(i)
        s = scenes.generate(self.cfg, self.seed, i)
        return to_tensor(s.image), {"count": s.count, "boxes": s.boxes, "labels": s.labels}


class FolderImageDataset:
    """torch Dataset over a dataset folder, images resized to `size` (unlabelled or labelled)."""

    def __init__(self, root: Path, size: int):
        self.folder, self.size = DatasetFolder(root), int(size)

    def __len__(self) -> int:
        return len(self.folder)

    def __getitem__(self, i: int):
        return to_tensor(self.folder.image(i), self.size), self.folder.target(i)


def collate(batch):
    """Stack images; keep targets as a list (counts and boxes vary per image)."""
    import torch

    images = torch.stack([b[0] for b in batch])
    return images, [b[1] for b in batch]
