"""SPLIT-SPAIR detector node: camera image in, boxes and disentangled latents out.

    in   image                      sensor_msgs/Image (remap to your camera), sensor-data QoS
    out  ~/detections               vision_msgs/Detection2DArray (input pixels, score = presence)
         ~/latents/what             32FC1 N x A, row i = detection i
         ~/latents/local            32FC1 1 x L (z_l; empty without SPLIT)
         ~/latents/background       32FC1 1 x B
         ~/debug_image              rgb8, boxes drawn (parameter publish_debug_image)
         /diagnostics               rate, latency, dropped frames, backend
All outputs carry the input image's header.
"""
from __future__ import annotations

from rclpy.parameter import Parameter
from rclpy.qos import QoSProfile
from sensor_msgs.msg import Image
from vision_msgs.msg import Detection2DArray

from split_perception import ros_messages
from split_perception.detector import load_detector
from split_perception.image_conversion import array_to_image, image_to_rgb
from split_perception.nodes.node_runtime import CameraModelNode, spin


class DetectorNode(CameraModelNode):
    def __init__(self, **kwargs):
        super().__init__("split_spair_detector", **kwargs)
        model_path = self.declare_parameter("model_path", "").value
        backend = self.declare_parameter("backend", "auto").value
        threshold = self.declare_parameter("threshold", 0.5).value
        nms_iou = self.declare_parameter("nms_iou", -1.0).value  # < 0: off
        self.publish_debug = self.declare_parameter("publish_debug_image", False).value
        self.detector = load_detector(model_path or None, backend, threshold, nms_iou if nms_iou >= 0 else None)
        out_qos = QoSProfile(depth=10)
        self.pub_det = self.create_publisher(Detection2DArray, "~/detections", out_qos)
        self.pub_what = self.create_publisher(Image, "~/latents/what", out_qos)
        self.pub_local = self.create_publisher(Image, "~/latents/local", out_qos)
        self.pub_bg = self.create_publisher(Image, "~/latents/background", out_qos)
        self.pub_debug = self.create_publisher(Image, "~/debug_image", out_qos) if self.publish_debug else None
        self.start_camera(self.detector)
        self.add_on_set_parameters_callback(self.reject_runtime_changes)

    def process(self, msg: Image) -> None:
        rgb = image_to_rgb(msg)
        det = self.detector(rgb)
        self.pub_det.publish(ros_messages.detections_msg(det, msg.header))
        self.pub_what.publish(ros_messages.matrix_msg(det.what, msg.header))
        self.pub_local.publish(ros_messages.matrix_msg(det.local, msg.header))
        self.pub_bg.publish(ros_messages.matrix_msg(det.background, msg.header))
        if self.pub_debug:
            self.pub_debug.publish(array_to_image(ros_messages.debug_image(rgb, det), "rgb8", msg.header))

    def reject_runtime_changes(self, params: list[Parameter]):
        from rcl_interfaces.msg import SetParametersResult

        for p in params:
            if p.name == "threshold" and isinstance(p.value, float) and 0.0 <= p.value <= 1.0:
                self.detector.threshold = p.value
                continue
            return SetParametersResult(successful=False, reason=f"'{p.name}' is read at start-up only (threshold in [0, 1] can change)")
        return SetParametersResult(successful=True)


def main(args=None) -> None:
    spin(DetectorNode, args)


if __name__ == "__main__":
    main()
