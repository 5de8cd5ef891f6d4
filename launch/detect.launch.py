"""ros2 launch split_perception detect.launch.py [argument:=value ...]

Starts the SPLIT-SPAIR detector (config/detector.yaml), with slots:=true the MONet slot node
(config/segmenter.yaml), and with camera:=true a camera_source (config/camera_source.yaml)
publishing on `image`. Every node reads its params file; the model and source arguments below
override single values of it only when they are set (empty: as in the file).

    image:=/camera/image_raw        camera topic the models subscribe to (and camera_source publishes)
    namespace:=robot1               namespace of every node (their ~/ topics move with it)
    detector:=true  slots:=false    which model nodes run
    backend:= detector_model:= segmenter_model:=           overrides of backend / model_path
    detector_params:= segmenter_params:= camera_params:=   params files
    camera:=false camera_source:=procedural|folder|video|bag camera_path:= camera_info:=/camera/camera_info
"""
import os
import tempfile

import yaml
from ament_index_python.packages import get_package_share_directory
from launch import LaunchDescription
from launch.actions import DeclareLaunchArgument, GroupAction
from launch.conditions import IfCondition
from launch.substitution import Substitution
from launch.substitutions import LaunchConfiguration
from launch_ros.actions import Node


class Overrides(Substitution):
    """A params file (path) that sets `values` ({parameter: substitution}) that are not empty, for
    the node it is given to; with none set, `base` again (loading it twice changes nothing)."""

    def __init__(self, base, values: dict):
        super().__init__()
        self.base, self.values = base, values

    def describe(self) -> str:
        return f"Overrides({', '.join(self.values)})"

    def perform(self, context) -> str:
        values = {name: value.perform(context) for name, value in self.values.items()}
        values = {name: value for name, value in values.items() if value != ""}
        if not values:
            return self.base.perform(context)
        with tempfile.NamedTemporaryFile("w", prefix="split_perception_", suffix=".yaml", delete=False) as f:
            yaml.safe_dump({"/**": {"ros__parameters": values}}, f)
        return f.name


def arg(name: str):
    return LaunchConfiguration(name)


def generate_launch_description():
    config = os.path.join(get_package_share_directory("split_perception"), "config")
    image = [("image", arg("image"))]

    def model_node(executable, name, params, model, condition):
        return Node(package="split_perception", executable=executable, name=name, namespace=arg("namespace"),
                    parameters=[arg(params), Overrides(arg(params), {"model_path": arg(model), "backend": arg("backend")})],
                    remappings=image, output="screen", condition=IfCondition(arg(condition)))

    camera = Node(package="split_perception", executable="camera_source", name="camera_source", namespace=arg("namespace"),
                  parameters=[arg("camera_params"), Overrides(arg("camera_params"), {"source": arg("camera_source"),
                                                                                    "path": arg("camera_path")})],
                  remappings=image + [("camera_info", arg("camera_info"))], output="screen")
    return LaunchDescription([
        DeclareLaunchArgument("image", default_value="/camera/image_raw", description="camera topic"),
        DeclareLaunchArgument("namespace", default_value="", description="namespace of every node"),
        DeclareLaunchArgument("detector", default_value="true", description="run the SPLIT-SPAIR detector"),
        DeclareLaunchArgument("slots", default_value="false", description="also run the MONet slot node"),
        DeclareLaunchArgument("backend", default_value="", description="backend of both models; empty: as in the params files"),
        DeclareLaunchArgument("detector_model", default_value="", description="detector model_path; empty: as in detector_params"),
        DeclareLaunchArgument("segmenter_model", default_value="", description="slot model_path; empty: as in segmenter_params"),
        DeclareLaunchArgument("detector_params", default_value=os.path.join(config, "detector.yaml")),
        DeclareLaunchArgument("segmenter_params", default_value=os.path.join(config, "segmenter.yaml")),
        DeclareLaunchArgument("camera", default_value="false", description="also start camera_source, publishing on `image`"),
        DeclareLaunchArgument("camera_source", default_value="", description="procedural | folder | video | bag; empty: as in camera_params"),
        DeclareLaunchArgument("camera_path", default_value="", description="folder, video or .mcap file of camera_source"),
        DeclareLaunchArgument("camera_info", default_value="/camera/camera_info", description="camera_source's CameraInfo topic"),
        DeclareLaunchArgument("camera_params", default_value=os.path.join(config, "camera_source.yaml")),
        model_node("detector_node", "split_spair_detector", "detector_params", "detector_model", "detector"),
        model_node("segmenter_node", "monet_segmenter", "segmenter_params", "segmenter_model", "slots"),
        GroupAction([camera], condition=IfCondition(arg("camera"))),
    ])
