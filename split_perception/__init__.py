"""split_perception: unsupervised object-centric perception for ROS 2.

    from split_perception import load_detector
    detections = load_detector()(rgb_uint8_image)   # the shipped SPLIT-SPAIR model
"""
from .detector import Detections, load_detector

__all__ = ["Detections", "load_detector"]
