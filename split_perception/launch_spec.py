"""The nodes of split_perception and how they start: the one description that both
launch/detect.launch.py (`ros2 launch`) and the pip-only runner behind `make demo`
(split_perception/demo.py: one process per node, as `ros2 run` starts them) build their nodes from.

No launch / launch_ros import here (a pip-only install has neither): the launch file turns
ARGUMENTS into DeclareLaunchArgument and NODES into launch_ros Nodes; `command()` turns the same
entries and a dict of argument values into a `python -m ... --ros-args ...` command line that
starts the node exactly as the launch file would (same name, namespace, params file, overrides,
remappings).
"""
from __future__ import annotations

import os
import sys
from dataclasses import dataclass
from pathlib import Path

PACKAGE = "split_perception"


@dataclass(frozen=True)
class Argument:
    """A launch argument. `config_file`: the default is that file of the package's config folder."""

    name: str
    default: str = ""
    description: str = ""
    config_file: str = ""


@dataclass(frozen=True)
class NodeSpec:
    """One node of the package.

    switch     launch argument ("true" / "false") that starts it
    executable console script (`ros2 run split_perception <executable>`)
    module     `python -m <module>` runs the same main()
    name       node name, also the key of its params file
    params     launch argument naming its params file
    overrides  (parameter, launch argument): the argument's value, when not empty, overrides the
               parameter of the params file
    remaps     (topic, launch argument): the topic is remapped to the argument's value
    model      a model node (detector, slots); the others are helpers (camera, recorder)
    """

    switch: str
    executable: str
    module: str
    name: str
    params: str
    overrides: tuple[tuple[str, str], ...] = ()
    remaps: tuple[tuple[str, str], ...] = (("image", "image"),)
    model: bool = False


ARGUMENTS: tuple[Argument, ...] = (
    Argument("image", "/camera/image_raw", "camera topic the models subscribe to (and camera_source publishes)"),
    Argument("namespace", "", "namespace of every node (their ~/ topics move with it)"),
    Argument("detector", "true", "run the SPLIT-SPAIR detector"),
    Argument("slots", "false", "also run the MONet slot node"),
    Argument("backend", "", "backend of both models; empty: as in the params files"),
    Argument("detector_model", "", "detector model_path; empty: as in detector_params"),
    Argument("segmenter_model", "", "slot model_path; empty: as in segmenter_params"),
    Argument("detector_params", description="params file of the detector", config_file="detector.yaml"),
    Argument("segmenter_params", description="params file of the slot node", config_file="segmenter.yaml"),
    Argument("camera", "false", "also start camera_source, publishing on `image`"),
    Argument("camera_source", "", "procedural | folder | video | bag; empty: as in camera_params"),
    Argument("camera_path", "", "folder, video or .mcap file of camera_source"),
    Argument("camera_info", "/camera/camera_info", "camera_source's CameraInfo topic"),
    Argument("camera_params", description="params file of camera_source", config_file="camera_source.yaml"),
    Argument("record", "false", "also start scene_recorder, writing the frames on `image` to a dataset folder"),
    Argument("record_dir", "", "scene_recorder output_dir; empty: as in recorder_params"),
    Argument("recorder_params", description="params file of scene_recorder", config_file="scene_recorder.yaml"),
    Argument("dds_profile", description="Fast DDS XML profile every node starts with (shared memory that holds "
             "whole camera frames); empty: none. Default: the one the environment names, else the package's",
             config_file="fastdds_camera_frames.xml"),
)

# Where Fast DDS looks for an XML profile: 2.x (ROS 2 Jazzy) and 3.x (later distributions)
DDS_PROFILE_VARIABLES = ("FASTRTPS_DEFAULT_PROFILES_FILE", "FASTDDS_DEFAULT_PROFILES_FILE")

NODES: tuple[NodeSpec, ...] = (
    NodeSpec("detector", "detector_node", f"{PACKAGE}.nodes.detector_node", "split_spair_detector", "detector_params",
             overrides=(("model_path", "detector_model"), ("backend", "backend")), model=True),
    NodeSpec("slots", "segmenter_node", f"{PACKAGE}.nodes.segmenter_node", "monet_segmenter", "segmenter_params",
             overrides=(("model_path", "segmenter_model"), ("backend", "backend")), model=True),
    NodeSpec("camera", "camera_source", f"{PACKAGE}.nodes.camera_source", "camera_source", "camera_params",
             overrides=(("source", "camera_source"), ("path", "camera_path")),
             remaps=(("image", "image"), ("camera_info", "camera_info"))),
    NodeSpec("record", "scene_recorder", f"{PACKAGE}.nodes.scene_recorder", "scene_recorder", "recorder_params",
             overrides=(("output_dir", "record_dir"),)),
)


def node(switch: str) -> NodeSpec:
    """The entry started by the launch argument `switch` ("detector", "slots", "camera", "record")."""
    for spec in NODES:
        if spec.switch == switch:
            return spec
    raise KeyError(f"no node is switched by '{switch}'; switches: {', '.join(s.switch for s in NODES)}")


def config_dir() -> Path:
    """The package's config folder: the source tree's when running from a checkout (pip -e), else
    the installed share folder (colcon)."""
    here = Path(__file__).resolve().parents[1] / "config"
    if (here / "detector.yaml").is_file():
        return here
    from ament_index_python.packages import get_package_share_directory

    return Path(get_package_share_directory(PACKAGE)) / "config"


def defaults(config: Path | str | None = None) -> dict[str, str]:
    """Every argument's default value (params files in `config`, default: config_dir()). A Fast DDS
    profile the environment already names is the dds_profile default: the user's choice wins."""
    config = Path(config) if config else config_dir()
    values = {a.name: str(config / a.config_file) if a.config_file else a.default for a in ARGUMENTS}
    own_profile = next((os.environ[v] for v in DDS_PROFILE_VARIABLES if os.environ.get(v)), "")
    if own_profile:
        values["dds_profile"] = own_profile
    return values


def dds_environment(profile: str) -> dict[str, str]:
    """The environment variables that make Fast DDS load `profile` (a dds_profile value; empty: none).
    Other middlewares ignore them."""
    return {variable: profile for variable in DDS_PROFILE_VARIABLES} if profile else {}


def is_true(value: str) -> bool:
    """As launch's IfCondition reads a value."""
    text = str(value).strip().lower()
    if text not in ("true", "false", "1", "0"):
        raise ValueError(f"expected true or false, got '{value}'")
    return text in ("true", "1")


def resolve(values: dict[str, str] | None = None, config: Path | str | None = None) -> dict[str, str]:
    """The defaults with `values` set; unknown argument names are refused."""
    values = dict(values or {})
    unknown = sorted(set(values) - {a.name for a in ARGUMENTS})
    if unknown:
        raise ValueError(f"unknown launch argument(s) {', '.join(unknown)}; "
                         f"arguments: {', '.join(a.name for a in ARGUMENTS)}")
    return {**defaults(config), **{k: str(v) for k, v in values.items()}}


def selected(values: dict[str, str]) -> list[NodeSpec]:
    """The nodes the launch file starts with these argument values (resolved)."""
    return [spec for spec in NODES if is_true(values[spec.switch])]


def namespaced_params_file(path: str, node_name: str, namespace: str) -> str:
    """`path`, or for a node in `namespace` a copy of it whose section keyed by the bare node name
    is keyed by the node's full name. ROS reads a bare key `name` as `/name`, so without this a
    namespaced node would silently ignore its params file. Sections keyed otherwise (`/**`, full
    names) are kept as they are; a file without a bare section is returned unchanged."""
    namespace = namespace.strip("/")
    if not namespace:
        return path
    import tempfile

    import yaml

    with open(path) as f:
        content = yaml.safe_load(f) or {}
    if not isinstance(content, dict) or node_name not in content:
        return path
    content[f"/{namespace}/{node_name}"] = content.pop(node_name)
    with tempfile.NamedTemporaryFile("w", prefix=f"{PACKAGE}_{node_name}_", suffix=".yaml", delete=False) as f:
        yaml.safe_dump(content, f)
    return f.name


def ros_args(spec: NodeSpec, values: dict[str, str], extra: dict[str, object] | None = None) -> list[str]:
    """`--ros-args ...` that start `spec` as the launch file does with argument `values`
    (resolved): node name, namespace, params file, the non-empty overrides, remappings; then
    `extra` parameters ({name: value}) on top."""
    args = ["--ros-args", "-r", f"__node:={spec.name}"]
    namespace = values.get("namespace", "").strip("/")
    if namespace:
        args += ["-r", f"__ns:=/{namespace}"]
    args += ["--params-file", namespaced_params_file(values[spec.params], spec.name, namespace)]
    params = {name: values[arg] for name, arg in spec.overrides if values[arg] != ""}
    for name, value in {**params, **(extra or {})}.items():
        if isinstance(value, bool):
            value = str(value).lower()
        args += ["-p", f"{name}:={value}"]
    for topic, arg in spec.remaps:
        args += ["-r", f"{topic}:={values[arg]}"]
    return args


def command(spec: NodeSpec, values: dict[str, str], extra: dict[str, object] | None = None,
            python: str = sys.executable) -> list[str]:
    """The command line of one node in its own process, as `ros2 run` would start it."""
    return [python, "-m", spec.module, *ros_args(spec, values, extra)]
