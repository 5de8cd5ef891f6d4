"""Camera source node: frames from procedural scenes, an image folder, a video or a rosbag2 MCAP
file, published as a camera would.

    out  image          sensor_msgs/Image rgb8, QoS output_qos.* (reliable: best-effort subscribers match too)
         camera_info    sensor_msgs/CameraInfo (header, width, height; no calibration)
Both carry the same header: stamp from the node clock when the frame is published, `frame_id`.

Parameters (config/camera_source.yaml lists them all; `ros2 param describe` shows each):
`source` procedural | folder | video | bag, `path`, `topic` (bag), `background` / `palette` /
`seed` (procedural), `rate_hz` (changeable at run time), `loop`, `max_frames`, `width` / `height`
(resize; 0: as read), `frame_id`, `wait_for_subscribers`.

Behaviour: a source that cannot be opened (no such folder or file, no image in the folder, a
video OpenCV cannot decode, a bag topic that is not there: the line names the topics that are)
or a bad parameter value ends the process at start-up with one line and exit status 2. A frame
that cannot be decoded is skipped with a warning. At the end of a finite source without `loop`
(or after `max_frames`) the node waits until reliable subscribers have the last frame (at most
2 s), says so, and exits with status 0; procedural scenes never end.
The frame readers live in split_perception/frames (no ROS there).
"""
from __future__ import annotations


from rcl_interfaces.msg import SetParametersResult
from rclpy.duration import Duration
from rclpy.node import Node
from rclpy.task import Future
from sensor_msgs.msg import CameraInfo, Image

from split_perception.frames import READERS, FrameReadError, FrameSourceError, open_reader, resize
from split_perception.image_conversion import array_to_image
from split_perception.nodes import parameters as P
from split_perception.nodes.node_runtime import spin
from split_perception.training.scenes import BACKGROUNDS

PROCEDURAL_KINDS = BACKGROUNDS + ("room",)  # multi-object background kinds, and MONet room scenes
ACK_WAIT_S = 2.0


class CameraSource(Node):
    def __init__(self, **kwargs):
        super().__init__("camera_source", **kwargs)
        ro = dict(read_only=True)
        self.declare_parameter("source", "procedural", P.describe("where frames come from", choices=READERS, **ro))
        self.declare_parameter("path", "", P.describe("folder: a folder of images (sorted by name); video: a video "
                                                      "file; bag: a rosbag2 .mcap file or folder", **ro))
        self.declare_parameter("topic", "", P.describe("bag: the image topic to play (Image or CompressedImage); empty: "
                                                       "the bag's only image topic", **ro))
        self.declare_parameter("background", "solid", P.describe("procedural: scene background kind",
                                                                 choices=PROCEDURAL_KINDS, **ro))
        self.declare_parameter("palette", "test", P.describe("procedural: background colours, train or unseen test "
                                                             "palette", choices=("train", "test"), **ro))
        self.declare_parameter("seed", 0, P.describe("procedural: frame i is scene (seed, i)", range=(0, 2**31 - 1), **ro))
        self.declare_parameter("rate_hz", 10.0, P.describe("frames per second", range=(0.01, 1000.0)))
        self.declare_parameter("loop", False, P.describe("start again at the end of a folder, video or bag; false: "
                                                         "the node exits after the last frame"))
        self.declare_parameter("max_frames", 0, P.describe("exit after this many frames; 0: no limit",
                                                           range=(0, 2**31 - 1), **ro))
        self.declare_parameter("width", 0, P.describe("resize frames to width x height; 0 (both): as read",
                                                      range=(0, 8192), **ro))
        self.declare_parameter("height", 0, P.describe("see width", range=(0, 8192), **ro))
        self.declare_parameter("frame_id", "camera", P.describe("header.frame_id of image and camera_info"))
        self.declare_parameter("wait_for_subscribers", 0, P.describe("hold the first frame until this many subscribers "
                                                                     "match `image` (e.g. to play a bag from its start)",
                                                                     range=(0, 100), **ro))
        self.declare_parameter("output_qos.reliability", "reliable", P.reliability_descriptor("image and camera_info"))
        self.declare_parameter("output_qos.depth", 5, P.depth_descriptor("image and camera_info"))

        p = {name: param.value for name, param in self.get_parameters_by_prefix("").items()}
        self.size = (p["width"], p["height"])
        if (self.size[0] == 0) != (self.size[1] == 0):
            raise ValueError(f"width and height must be set together (0 and 0: as read); got {self.size[0]} x {self.size[1]}")
        qos = P.qos_profile(p["output_qos.reliability"], p["output_qos.depth"], "output_qos")
        self.reader = open_reader(p["source"], path=p["path"], topic=p["topic"], background=p["background"],
                                  palette=p["palette"], seed=p["seed"])  # FrameSourceError: see main()
        self.pub_image = self.create_publisher(Image, "image", qos)
        self.pub_info = self.create_publisher(CameraInfo, "camera_info", qos)
        self.published = self.skipped = self.good_in_pass = 0
        self.max_frames, self.wait_for = p["max_frames"], p["wait_for_subscribers"]
        self.finished = Future()  # result: exit status
        self.timer = self.create_timer(1.0 / p["rate_hz"], self.tick)
        self.add_on_set_parameters_callback(self.on_set_parameters)
        self.get_logger().info(f"publishing {self.reader.description} on {self.pub_image.topic_name} at "
                               f"{p['rate_hz']:g} Hz (loop: {str(p['loop']).lower()})")

    def tick(self) -> None:
        if self.finished.done():
            return
        if self.pub_image.get_subscription_count() < self.wait_for:
            return
        try:
            frame = self.next_frame()
        except FrameReadError as e:
            self.skipped += 1
            self.get_logger().warning(f"frame skipped: {e}", throttle_duration_sec=5.0)
            return
        if frame is None:
            return
        self.publish(resize(frame, *self.size))
        if self.max_frames and self.published >= self.max_frames:
            self.finish(f"published max_frames = {self.max_frames} frames")

    def next_frame(self):
        """The next frame; at the end of the source rewind (loop) or finish (None)."""
        frame = self.reader.read()
        if frame is None:
            if not self.good_in_pass:
                self.finish(f"no readable frame in {self.reader.description}", status=1)
                return None
            if not self.get_parameter("loop").value:
                self.finish(f"end of {self.reader.description} after {self.published} frames (loop: false)")
                return None
            self.reader.rewind()
            self.good_in_pass = 0
            frame = self.reader.read()
        self.good_in_pass += frame is not None
        return frame

    def publish(self, frame) -> None:
        msg = array_to_image(frame, "rgb8")
        msg.header.stamp = self.get_clock().now().to_msg()
        msg.header.frame_id = self.get_parameter("frame_id").value
        info = CameraInfo(header=msg.header, height=msg.height, width=msg.width)
        self.pub_image.publish(msg)
        self.pub_info.publish(info)
        self.published += 1

    def finish(self, why: str, status: int = 0) -> None:
        """Stop publishing; reliable subscribers get the last frames before the process exits."""
        self.timer.cancel()
        self.pub_image.wait_for_all_acked(Duration(seconds=ACK_WAIT_S))
        log = self.get_logger().info if status == 0 else self.get_logger().error
        log(f"{why}; {self.skipped} frame(s) skipped; exiting")
        self.finished.set_result(status)

    def on_set_parameters(self, params) -> SetParametersResult:
        for param in params:
            if param.name == "rate_hz" and not self.finished.done():
                self.timer.cancel()
                self.destroy_timer(self.timer)
                self.timer = self.create_timer(1.0 / param.value, self.tick)
        return SetParametersResult(successful=True)

    def destroy_node(self):
        self.reader.close()
        super().destroy_node()


def main(args=None) -> None:
    """Spin until the source ends, Ctrl-C or shutdown. Exit status: 0 at the end of the source or on
    Ctrl-C, 1 if no frame of the source could be decoded, 2 for a source that cannot be opened or
    a bad parameter value (one line, no traceback)."""
    spin(CameraSource, args, startup_errors=(FrameSourceError,))


if __name__ == "__main__":
    main()
