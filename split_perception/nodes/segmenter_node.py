"""MONet slot node: camera image in, slot masks and slot latents out.

    in   image                 sensor_msgs/Image (remap to your camera), QoS image_qos.*
    out  ~/masks               mono8 label image at input resolution (slot index per pixel; with
                               slot_per_object, objects that shared a slot moved to empty slots)
         ~/slot_probs          32FC1 (K*h) x w: the K soft masks at model resolution, stacked
                               (edges refined by colour, as ~/masks, while refine_edges is true)
         ~/slot_latents        32FC1 K x D, row k = slot k
         ~/segments            mono16 segment id per pixel, input resolution: each slot's connected
                               regions apart (parameter publish_segments)
         ~/segment_slots       32FC1 1 x S, entry i = the slot (row of ~/slot_latents) of segment i
         /diagnostics          rate, latency, frame counters, model id, backend
    srv  ~/enable              std_srvs/SetBool: false drops frames without inference
         ~/reload              std_srvs/Trigger: load model_path again, answer with the outcome
All outputs carry the input image's header. Model loading and hot-swap: node_runtime.py.
"""
from __future__ import annotations

import numpy as np
from sensor_msgs.msg import Image

from split_perception import ros_messages
from split_perception.image_conversion import array_to_image
from split_perception.nodes import parameters as P
from split_perception.nodes.node_runtime import CameraModelNode, frame_to_rgb, spin
from split_perception.segmenter import load_segmenter


class SegmenterNode(CameraModelNode):
    def __init__(self, **kwargs):
        super().__init__("monet_segmenter", **kwargs)
        self.declare_parameter("model_path", "", P.model_path_descriptor())
        self.declare_parameter("backend", "auto", P.backend_descriptor())
        self.declare_parameter("refine_edges", True, P.describe("move mask edges onto the frame's colour edges "
                                                                "(split_perception/mask_refinement.py, frame_edges.py)"))
        self.declare_parameter("split_touching", True, P.describe("split segments where two blobs meet at a neck or "
                                                                  "two colours at a sharp edge, and cut objects out of the wall or floor "
                                                                  "whose slot took them (split_perception/touching_objects.py)"))
        self.declare_parameter("slot_per_object", True, P.describe("move segments that share a slot to the slots the model "
                                                                   "left empty, so ~/masks separates objects (split_perception/object_slots.py)"))
        self.declare_parameter("publish_segments", False, P.describe("publish ~/segments and ~/segment_slots: each slot's "
                                                                     "connected regions apart (objects one slot took)"))
        self.declare_parameter("image_qos.reliability", "best_effort", P.reliability_descriptor("the image subscription"))
        self.declare_parameter("image_qos.depth", 1, P.depth_descriptor("the image subscription (only the newest frame is processed)"))
        self.declare_parameter("output_qos.reliability", "reliable", P.reliability_descriptor("the output publishers"))
        self.declare_parameter("output_qos.depth", 10, P.depth_descriptor("the output publishers"))
        out_qos = self.qos("output_qos")
        self.pub_masks = self.create_publisher(Image, "~/masks", out_qos)
        self.pub_probs = self.create_publisher(Image, "~/slot_probs", out_qos)
        self.pub_latents = self.create_publisher(Image, "~/slot_latents", out_qos)
        self.pub_segments = self.pub_segment_slots = None  # created when publish_segments is first true
        self.start(lambda path, backend: load_segmenter(path or None, backend))

    def configure(self, changed: dict) -> None:
        if "refine_edges" in changed:
            self.holder.configure(refine_edges=changed["refine_edges"])
        if "split_touching" in changed:
            self.holder.configure(split_touching=changed["split_touching"])
        if "slot_per_object" in changed:
            self.holder.configure(slot_per_object=changed["slot_per_object"])
        if changed.get("publish_segments") and self.pub_segments is None:
            self.pub_segments = self.create_publisher(Image, "~/segments", self.qos("output_qos"))
            self.pub_segment_slots = self.create_publisher(Image, "~/segment_slots", self.qos("output_qos"))
        if "publish_segments" in changed:
            self.publish_segments = changed["publish_segments"]

    def process(self, segmenter, msg: Image) -> None:
        seg = segmenter(frame_to_rgb(msg))
        self.pub_masks.publish(array_to_image(seg.labels, "mono8", msg.header))
        k, h, w = seg.model_masks.shape
        self.pub_probs.publish(ros_messages.matrix_msg(seg.model_masks.reshape(k * h, w), msg.header))
        self.pub_latents.publish(ros_messages.matrix_msg(seg.latents, msg.header))
        if self.publish_segments:
            self.pub_segments.publish(array_to_image(seg.segments.astype(np.uint16), "mono16", msg.header))
            self.pub_segment_slots.publish(ros_messages.matrix_msg(seg.segment_slots, msg.header))


def main(args=None) -> None:
    spin(SegmenterNode, args)


if __name__ == "__main__":
    main()
