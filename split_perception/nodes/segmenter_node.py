"""MONet slot node: camera image in, slot masks and slot latents out.

    in   image                 sensor_msgs/Image (remap to your camera), sensor-data QoS
    out  ~/masks               mono8 label image at input resolution (slot index per pixel)
         ~/slot_probs          32FC1 (K*h) x w: the K soft masks at model resolution, stacked
         ~/slot_latents        32FC1 K x D, row k = slot k
         /diagnostics          rate, latency, dropped frames, backend
All outputs carry the input image's header.
"""
from __future__ import annotations

from rclpy.qos import QoSProfile
from sensor_msgs.msg import Image

from split_perception import ros_messages
from split_perception.image_conversion import array_to_image, image_to_rgb
from split_perception.nodes.node_runtime import CameraModelNode, spin
from split_perception.segmenter import load_segmenter


class SegmenterNode(CameraModelNode):
    def __init__(self, **kwargs):
        super().__init__("monet_segmenter", **kwargs)
        model_path = self.declare_parameter("model_path", "").value
        backend = self.declare_parameter("backend", "auto").value
        self.segmenter = load_segmenter(model_path or None, backend)
        out_qos = QoSProfile(depth=10)
        self.pub_masks = self.create_publisher(Image, "~/masks", out_qos)
        self.pub_probs = self.create_publisher(Image, "~/slot_probs", out_qos)
        self.pub_latents = self.create_publisher(Image, "~/slot_latents", out_qos)
        self.start_camera(self.segmenter)

    def process(self, msg: Image) -> None:
        seg = self.segmenter(image_to_rgb(msg))
        self.pub_masks.publish(array_to_image(seg.labels, "mono8", msg.header))
        k, h, w = seg.model_masks.shape
        self.pub_probs.publish(ros_messages.matrix_msg(seg.model_masks.reshape(k * h, w), msg.header))
        self.pub_latents.publish(ros_messages.matrix_msg(seg.latents, msg.header))


def main(args=None) -> None:
    spin(SegmenterNode, args)


if __name__ == "__main__":
    main()
