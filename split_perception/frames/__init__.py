"""Frame I/O shared by the nodes and the CLI: numpy (and OpenCV / mcap where a format needs
them), never torch or rclpy (DESIGN.md §2).

Readers give H x W x 3 uint8 RGB frames from one source each: procedural scenes, an image
folder, a video file, a rosbag2 MCAP file. `open_reader(kind, ...)` picks one by name. DatasetWriter writes the dataset folder format
(crash-safe appends, quota); import_frames copies a reader into one.
"""
from split_perception.frames.dataset_folder import DatasetWriter, QuotaReached, encode_image, import_frames
from split_perception.frames.readers import (
    READERS,
    BagReader,
    FolderReader,
    FrameReader,
    FrameReadError,
    FrameSourceError,
    ProceduralReader,
    SourceTruncatedError,
    VideoReader,
    open_reader,
    resize,
)

__all__ = [
    "READERS", "BagReader", "FolderReader", "FrameReader", "FrameReadError", "FrameSourceError",
    "ProceduralReader", "VideoReader", "open_reader", "resize", "SourceTruncatedError",
    "DatasetWriter", "QuotaReached", "encode_image", "import_frames",
]
