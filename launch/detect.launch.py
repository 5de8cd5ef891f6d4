"""ros2 launch split_perception detect.launch.py [image:=/camera/image_raw] [slots:=true] [params_file:=...]

Starts the SPLIT-SPAIR detector with parameters from config/detector.yaml and, with
slots:=true, the MONet slot node beside it (config/segmenter.yaml) on the same camera.
Remap `image` to your camera topic.
"""
import os

from ament_index_python.packages import get_package_share_directory
from launch import LaunchDescription
from launch.actions import DeclareLaunchArgument
from launch.conditions import IfCondition
from launch.substitutions import LaunchConfiguration
from launch_ros.actions import Node


def generate_launch_description():
    share = get_package_share_directory("split_perception")
    image = [("image", LaunchConfiguration("image"))]
    return LaunchDescription([
        DeclareLaunchArgument("image", default_value="/camera/image_raw", description="camera topic"),
        DeclareLaunchArgument("params_file", default_value=os.path.join(share, "config", "detector.yaml")),
        DeclareLaunchArgument("slots", default_value="false", description="also run the MONet slot node"),
        DeclareLaunchArgument("slot_params_file", default_value=os.path.join(share, "config", "segmenter.yaml")),
        Node(
            package="split_perception",
            executable="detector_node",
            name="split_spair_detector",
            parameters=[LaunchConfiguration("params_file")],
            remappings=image,
            output="screen",
        ),
        Node(
            package="split_perception",
            executable="segmenter_node",
            name="monet_segmenter",
            parameters=[LaunchConfiguration("slot_params_file")],
            remappings=image,
            output="screen",
            condition=IfCondition(LaunchConfiguration("slots")),
        ),
    ])
