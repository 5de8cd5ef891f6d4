"""Frame I/O shared by the nodes and the CLI: numpy (and OpenCV / mcap where a format needs
them), never torch or rclpy (DESIGN.md §2).

Readers give H x W x 3 uint8 RGB frames from one source each: procedural scenes, an image
folder, a video file, a rosbag2 MCAP file. `open_reader(kind, ...)` picks one by name.
"""
from split_perception.frames.readers import (
    READERS,
    BagReader,
    FolderReader,
    FrameReader,
    FrameReadError,
    FrameSourceError,
    ProceduralReader,
    VideoReader,
    open_reader,
    resize,
)

__all__ = [
    "READERS", "BagReader", "FolderReader", "FrameReader", "FrameReadError", "FrameSourceError",
    "ProceduralReader", "VideoReader", "open_reader", "resize",
]
