"""SPLIT-SPAIR detector node: camera image in, boxes and disentangled latents out.

    in   image                      sensor_msgs/Image (remap to your camera), QoS image_qos.*
    out  ~/detections               vision_msgs/Detection2DArray (input pixels, score = presence)
         ~/latents/what             32FC1 N x A, row i = detection i
         ~/latents/local            32FC1 1 x L (z_l; empty without SPLIT)
         ~/latents/background       32FC1 1 x B
         ~/debug_image              rgb8, boxes drawn (parameter publish_debug_image)
         /diagnostics               rate, latency, frame counters, model id, backend
    srv  ~/enable                   std_srvs/SetBool: false drops frames without inference
         ~/reload                   std_srvs/Trigger: load model_path again, answer with the outcome
All outputs carry the input image's header. Model loading and hot-swap: node_runtime.py.
"""
from __future__ import annotations

from sensor_msgs.msg import Image
from vision_msgs.msg import Detection2DArray

from split_perception import ros_messages
from split_perception.detector import DEFAULT_DUPLICATE_COLOUR, DEFAULT_DUPLICATE_OVERLAP, DEFAULT_NMS_IOU, load_detector
from split_perception.image_conversion import array_to_image
from split_perception.nodes import parameters as P
from split_perception.nodes.node_runtime import CameraModelNode, frame_to_rgb, spin


class DetectorNode(CameraModelNode):
    def __init__(self, **kwargs):
        super().__init__("split_spair_detector", **kwargs)
        self.declare_parameter("model_path", "", P.model_path_descriptor())
        self.declare_parameter("backend", "auto", P.backend_descriptor())
        self.declare_parameter("threshold", 0.5, P.describe("presence probability above which a cell is a detection", range=(0.0, 1.0)))
        self.declare_parameter("nms_iou", DEFAULT_NMS_IOU, P.describe("IoU above which non-maximum suppression drops the weaker box; "
                                                                      "< 0: off", range=(-1.0, 1.0)))
        self.declare_parameter("duplicate_overlap", DEFAULT_DUPLICATE_OVERLAP, P.describe(
            "drop a box whose glimpse overlaps a better box's by more than this in the same colour (one object "
            "drawn twice); < 0: off", range=(-1.0, 1.0)))
        self.declare_parameter("duplicate_colour", DEFAULT_DUPLICATE_COLOUR, P.describe(
            "largest RGB distance (0-1 per channel) between the two glimpses' mean colours for duplicate_overlap "
            "to call them one object", range=(0.0, 2.0)))
        self.declare_parameter("publish_debug_image", False, P.describe("publish ~/debug_image: the frame with boxes drawn"))
        self.declare_parameter("image_qos.reliability", "best_effort", P.reliability_descriptor("the image subscription"))
        self.declare_parameter("image_qos.depth", 1, P.depth_descriptor("the image subscription (only the newest frame is processed)"))
        self.declare_parameter("output_qos.reliability", "reliable", P.reliability_descriptor("the output publishers"))
        self.declare_parameter("output_qos.depth", 10, P.depth_descriptor("the output publishers"))
        out_qos = self.qos("output_qos")
        self.pub_det = self.create_publisher(Detection2DArray, "~/detections", out_qos)
        self.pub_what = self.create_publisher(Image, "~/latents/what", out_qos)
        self.pub_local = self.create_publisher(Image, "~/latents/local", out_qos)
        self.pub_bg = self.create_publisher(Image, "~/latents/background", out_qos)
        self.pub_debug = None  # created when publish_debug_image is first true
        self.start(lambda path, backend: load_detector(path or None, backend))

    def configure(self, changed: dict) -> None:
        if "threshold" in changed:
            self.holder.configure(threshold=changed["threshold"])
        if "nms_iou" in changed:
            self.holder.configure(nms_iou=changed["nms_iou"] if changed["nms_iou"] >= 0 else None)
        if "duplicate_overlap" in changed:
            self.holder.configure(duplicate_overlap=changed["duplicate_overlap"] if changed["duplicate_overlap"] >= 0 else None)
        if "duplicate_colour" in changed:
            self.holder.configure(duplicate_colour=changed["duplicate_colour"])
        if changed.get("publish_debug_image") and self.pub_debug is None:
            self.pub_debug = self.create_publisher(Image, "~/debug_image", self.qos("output_qos"))
        if "publish_debug_image" in changed:
            self.publish_debug = changed["publish_debug_image"]

    def process(self, detector, msg: Image) -> None:
        rgb = frame_to_rgb(msg)
        det = detector(rgb)
        self.pub_det.publish(ros_messages.detections_msg(det, msg.header))
        self.pub_what.publish(ros_messages.matrix_msg(det.what, msg.header))
        self.pub_local.publish(ros_messages.matrix_msg(det.local, msg.header))
        self.pub_bg.publish(ros_messages.matrix_msg(det.background, msg.header))
        if self.publish_debug:
            self.pub_debug.publish(array_to_image(ros_messages.debug_image(rgb, det), "rgb8", msg.header))


def main(args=None) -> None:
    spin(DetectorNode, args)


if __name__ == "__main__":
    main()
