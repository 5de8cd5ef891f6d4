"""ros2 launch split_perception detect.launch.py [image:=/camera/image_raw] [params_file:=...]

Starts the SPLIT-SPAIR detector with parameters from config/detector.yaml; remap `image`
to your camera topic.
"""
import os

from ament_index_python.packages import get_package_share_directory
from launch import LaunchDescription
from launch.actions import DeclareLaunchArgument
from launch.substitutions import LaunchConfiguration
from launch_ros.actions import Node


def generate_launch_description():
    default_params = os.path.join(get_package_share_directory("split_perception"), "config", "detector.yaml")
    return LaunchDescription([
        DeclareLaunchArgument("image", default_value="/camera/image_raw", description="camera topic"),
        DeclareLaunchArgument("params_file", default_value=default_params),
        Node(
            package="split_perception",
            executable="detector_node",
            name="split_spair_detector",
            parameters=[LaunchConfiguration("params_file")],
            remappings=[("image", LaunchConfiguration("image"))],
            output="screen",
        ),
    ])
