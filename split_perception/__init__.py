"""split_perception: unsupervised object-centric perception for ROS 2.

    from split_perception import load_detector, load_segmenter
    detections = load_detector()(rgb_uint8_image)    # the shipped SPLIT-SPAIR model
    slots = load_segmenter()(rgb_uint8_image)        # the shipped MONet (ResNet18 attention)
"""
from .detector import Detections, load_detector
from .segmenter import Segmentation, load_segmenter

__all__ = ["Detections", "Segmentation", "load_detector", "load_segmenter"]
