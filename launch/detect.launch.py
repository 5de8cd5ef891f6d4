"""ros2 launch split_perception detect.launch.py [argument:=value ...]

Starts the SPLIT-SPAIR detector (detector_node, config/detector.yaml), with slots:=true the MONet
slot node (segmenter_node, config/segmenter.yaml), and with camera:=true a camera_source
(config/camera_source.yaml) publishing on `image`, and with record:=true a scene_recorder
(config/scene_recorder.yaml) writing the frames on `image` into a dataset folder for fine-tuning.
Every node reads its params file; the model, source and record_dir arguments below override single
values of it only when they are set (empty: as in the file).

    image:=/camera/image_raw        camera topic the models subscribe to (and camera_source publishes)
    namespace:=robot1               namespace of every node (their ~/ topics move with it)
    detector:=true  slots:=false    which model nodes run
    backend:= detector_model:= segmenter_model:=           overrides of backend / model_path
    detector_params:= segmenter_params:= camera_params:=   params files
    camera:=false camera_source:=procedural|folder|video|bag camera_path:= camera_info:=/camera/camera_info
    record:=false record_dir:= recorder_params:=           scene_recorder on `image` (config/scene_recorder.yaml),
                                                          writing a dataset folder to record_dir (empty: as in the file)
    dds_profile:=<config/fastdds_camera_frames.xml>       Fast DDS profile of every node: shared memory big enough
                                                          for whole camera frames (empty: none; an environment's
                                                          FASTRTPS_DEFAULT_PROFILES_FILE wins over the package's)

The nodes, their arguments and defaults are described once, in split_perception/launch_spec.py;
the pip-only runner behind `make demo` (split_perception/demo.py) starts its processes from the
same description.
"""
import os
import tempfile

import yaml
from ament_index_python.packages import get_package_share_directory
from launch import LaunchDescription
from launch.actions import DeclareLaunchArgument, GroupAction, SetEnvironmentVariable
from launch.conditions import IfCondition
from launch.substitution import Substitution
from launch.substitutions import LaunchConfiguration, NotEqualsSubstitution
from launch_ros.actions import Node

from split_perception import launch_spec


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


class NamespacedParams(Substitution):
    """The params file `base` as a node `name` in `namespace` reads it (launch_spec.namespaced_params_file:
    its bare `name:` section keyed by the node's full name, which ROS would otherwise not apply)."""

    def __init__(self, base, name: str, namespace):
        super().__init__()
        self.base, self.name, self.namespace = base, name, namespace

    def describe(self) -> str:
        return f"NamespacedParams({self.name})"

    def perform(self, context) -> str:
        return launch_spec.namespaced_params_file(self.base.perform(context), self.name, self.namespace.perform(context))


def arg(name: str):
    return LaunchConfiguration(name)


def node_action(spec: launch_spec.NodeSpec):
    """A launch_ros Node from the shared description; helper nodes (camera, recorder) sit in a
    GroupAction that carries their condition, model nodes carry it themselves."""
    condition = IfCondition(arg(spec.switch))
    params = [NamespacedParams(arg(spec.params), spec.name, arg("namespace")),
              Overrides(arg(spec.params), {p: arg(a) for p, a in spec.overrides})]
    node = Node(package=launch_spec.PACKAGE, executable=spec.executable, name=spec.name, namespace=arg("namespace"),
                parameters=params,
                remappings=[(topic, arg(a)) for topic, a in spec.remaps], output="screen",
                condition=condition if spec.model else None)
    return node if spec.model else GroupAction([node], condition=condition)


def generate_launch_description():
    config = os.path.join(get_package_share_directory(launch_spec.PACKAGE), "config")
    defaults = launch_spec.defaults(config)
    return LaunchDescription(
        [DeclareLaunchArgument(a.name, default_value=defaults[a.name], description=a.description or a.name)
         for a in launch_spec.ARGUMENTS]
        # before the nodes: the variables reach every process started after them
        + [SetEnvironmentVariable(variable, arg("dds_profile"), condition=IfCondition(NotEqualsSubstitution(arg("dds_profile"), "")))
           for variable in launch_spec.DDS_PROFILE_VARIABLES]
        + [node_action(spec) for spec in launch_spec.NODES]
    )
