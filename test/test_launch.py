"""launch/detect.launch.py: its arguments and nodes (needs launch_ros: skipped without it), and the
real `ros2 launch` with a camera source (needs ../shared/ros2-tools, installed into the venv
when missing, and colcon: builds the package into a temporary workspace)."""
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml
from ros_helpers import load_launch_description

ROOT = Path(__file__).resolve().parents[1]
ROS2_TOOLS = ROOT.parent / "shared" / "ros2-tools"
ARGUMENTS = {"image", "namespace", "detector", "slots", "backend", "detector_model", "segmenter_model",
             "detector_params", "segmenter_params", "camera", "camera_source", "camera_path", "camera_info",
             "camera_params", "record", "record_dir", "recorder_params", "dds_profile"}


def context_with(desc, **values):
    """A LaunchContext holding every argument's default, then `values`."""
    from launch import LaunchContext
    from launch.actions import DeclareLaunchArgument

    context = LaunchContext()
    for e in desc.entities:
        if isinstance(e, DeclareLaunchArgument):
            context.launch_configurations[e.name] = "".join(s.perform(context) for s in e.default_value)
    context.launch_configurations.update(values)
    return context


def nodes_of(desc):
    """[(node, condition)] for every Node, also those inside a GroupAction (the group's condition)."""
    from launch.actions import GroupAction
    from launch_ros.actions import Node

    found = []
    for e in desc.entities:
        if isinstance(e, Node):
            found.append((e, e.condition))
        elif isinstance(e, GroupAction):
            found += [(n, e.condition) for n in e.get_sub_entities() if isinstance(n, Node)]
    return found


def test_launch_arguments_choose_the_nodes():
    pytest.importorskip("launch_ros")
    _, desc = load_launch_description(ROOT)
    from launch.actions import DeclareLaunchArgument

    assert ARGUMENTS <= {e.name for e in desc.entities if isinstance(e, DeclareLaunchArgument)}
    nodes = {n.node_executable: cond for n, cond in nodes_of(desc)}
    assert set(nodes) == {"detector_node", "segmenter_node", "camera_source", "scene_recorder"}

    def running(**values):
        context = context_with(desc, **values)
        return {exe for exe, cond in nodes.items() if cond is None or cond.evaluate(context)}

    assert running() == {"detector_node"}
    assert running(slots="true", camera="true") == {"detector_node", "segmenter_node", "camera_source"}
    assert running(detector="false", slots="true") == {"segmenter_node"}
    assert running(record="true") == {"detector_node", "scene_recorder"}


def test_model_and_source_arguments_override_only_when_set(tmp_path):
    pytest.importorskip("launch_ros")
    module, desc = load_launch_description(ROOT)
    from launch.substitutions import LaunchConfiguration

    base = LaunchConfiguration("detector_params")
    overrides = module.Overrides(base, {"model_path": LaunchConfiguration("detector_model"),
                                        "backend": LaunchConfiguration("backend")})
    default = str(ROOT / "config" / "detector.yaml")
    assert overrides.perform(context_with(desc)) == default  # nothing set: the params file alone
    path = overrides.perform(context_with(desc, detector_model=str(tmp_path / "m.onnx")))
    try:
        assert yaml.safe_load(Path(path).read_text()) == {"/**": {"ros__parameters": {"model_path": str(tmp_path / "m.onnx")}}}
    finally:
        os.unlink(path)
    for params in ("detector_params", "segmenter_params", "camera_params", "recorder_params"):  # defaults name files that exist
        assert Path(context_with(desc).launch_configurations[params]).is_file()


def test_the_launch_file_and_the_demo_runner_share_one_description():
    """launch/detect.launch.py builds its arguments and nodes from split_perception/launch_spec.py;
    the runner behind `make demo` starts the same nodes from it (same executable module, name,
    params file and remappings)."""
    pytest.importorskip("launch_ros")
    from launch.actions import DeclareLaunchArgument

    from split_perception import launch_spec

    _, desc = load_launch_description(ROOT)
    declared = {e.name: e for e in desc.entities if isinstance(e, DeclareLaunchArgument)}
    assert set(declared) == {a.name for a in launch_spec.ARGUMENTS}
    defaults = launch_spec.defaults(ROOT / "config")
    assert {name: context_with(desc).launch_configurations[name] for name in declared} == defaults
    nodes = nodes_of(desc)
    # launch_ros exposes node_name only once the action ran: the name given is its private __node_name
    assert [(n.node_executable, n._Node__node_name) for n, _ in nodes] == [(s.executable, s.name) for s in launch_spec.NODES]
    for values in ({}, {"slots": "true", "camera": "true"}, {"detector": "false", "slots": "true", "record": "true"}):
        context = context_with(desc, **values)
        launched = [n.node_executable for n, cond in nodes if cond is None or cond.evaluate(context)]
        assert launched == [s.executable for s in launch_spec.selected(launch_spec.resolve(values, ROOT / "config"))]
    setup = (ROOT / "setup.py").read_text()
    for spec in launch_spec.NODES:  # `ros2 run` and `python -m` start the same main
        assert f'"{spec.executable} = {spec.module}:main"' in setup
    values = launch_spec.resolve({"image": "/cam", "detector_model": "/m.onnx"}, ROOT / "config")
    cmd = launch_spec.command(launch_spec.node("detector"), values, {"threshold": 0.7, "publish_debug_image": True})
    assert cmd[1:3] == ["-m", "split_perception.nodes.detector_node"]
    assert " ".join(cmd[3:]) == (f"--ros-args -r __node:=split_spair_detector --params-file {ROOT / 'config' / 'detector.yaml'} "
                                 "-p model_path:=/m.onnx -p threshold:=0.7 -p publish_debug_image:=true -r image:=/cam")
    with pytest.raises(ValueError, match="unknown launch argument"):
        launch_spec.resolve({"slot": "true"})


def test_a_namespaced_node_reads_its_params_file(tmp_path):
    """ROS reads a bare `node_name:` key of a params file as `/node_name`: a node in a namespace
    would ignore it. The launch file and the demo runner key it by the node's full name."""
    pytest.importorskip("launch_ros")
    import rclpy
    from rclpy.context import Context

    from split_perception import launch_spec

    params = tmp_path / "detector.yaml"
    params.write_text("split_spair_detector:\n  ros__parameters:\n    threshold: 0.7\n")
    values = launch_spec.resolve({"namespace": "robot1", "detector_params": str(params)}, ROOT / "config")
    context = Context()
    rclpy.init(args=["node", *launch_spec.ros_args(launch_spec.node("detector"), values)], context=context)
    try:
        node = rclpy.create_node("any_name", context=context)
        node.declare_parameter("threshold", 0.5)
        assert node.get_fully_qualified_name() == "/robot1/split_spair_detector"
        assert node.get_parameter("threshold").value == 0.7
        node.destroy_node()
    finally:
        context.try_shutdown()
    # the launch file's substitution does the same
    module, desc = load_launch_description(ROOT)
    from launch.substitutions import LaunchConfiguration

    sub = module.NamespacedParams(LaunchConfiguration("detector_params"), "split_spair_detector",
                                  LaunchConfiguration("namespace"))
    path = sub.perform(context_with(desc, namespace="robot1", detector_params=str(params)))
    try:
        assert yaml.safe_load(Path(path).read_text()) == {"/robot1/split_spair_detector": {"ros__parameters": {"threshold": 0.7}}}
    finally:
        os.unlink(path)
    assert sub.perform(context_with(desc, detector_params=str(params))) == str(params)  # no namespace: the file itself


# --- the real ros2 launch -------------------------------------------------------------------------
def venv_bin(name: str) -> Path:
    return Path(sys.executable).parent / name


def ensure_ros2_tools() -> None:
    """Install ../shared/ros2-tools into this venv when `ros2` / launch_ros / colcon are missing."""
    have = subprocess.run([sys.executable, "-c", "import launch_ros, ros2cli, composition_interfaces.srv"],
                          capture_output=True).returncode == 0 and venv_bin("ros2").exists() and venv_bin("colcon").exists()
    if have:
        return
    if not (ROS2_TOOLS / "install.sh").exists() or sys.prefix == sys.base_prefix:
        pytest.skip("ros2 launch needs ../shared/ros2-tools and a virtual environment to install it into")
    subprocess.run([str(ROS2_TOOLS / "install.sh"), sys.prefix], check=True, timeout=600)


def build_workspace(tmp_path: Path) -> Path:
    """colcon build of a copy of the package (the source tree stays untouched); returns install/."""
    src = tmp_path / "ws" / "src" / "split_perception"
    src.mkdir(parents=True)
    for name in ("package.xml", "setup.py", "setup.cfg"):
        shutil.copy2(ROOT / name, src / name)
    ignore = shutil.ignore_patterns("__pycache__", "*.pyc")
    for name in ("resource", "split_perception", "training", "launch", "config"):
        shutil.copytree(ROOT / name, src / name, ignore=ignore)
    env = dict(os.environ, AMENT_PREFIX_PATH=sys.prefix, PATH=f"{venv_bin('')}:{os.environ['PATH']}")
    proc = subprocess.run([str(venv_bin("colcon")), "build", "--packages-select", "split_perception"],
                          cwd=tmp_path / "ws", env=env, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    return tmp_path / "ws" / "install"


def descendants(pid: int) -> list:
    import psutil

    try:
        return psutil.Process(pid).children(recursive=True)
    except psutil.NoSuchProcess:
        return []


def call_service(node, executor, srv_type, name: str, request, log_path: Path, timeout: float = 60.0):
    """Call the service `name` from `node` (spun by `executor`) and return its response."""
    from ros_helpers import spin_until

    client = node.create_client(srv_type, name)
    try:
        assert spin_until(executor, client.service_is_ready, timeout), f"no service {name}\n{log_path.read_text()}"
        future = client.call_async(request)
        assert spin_until(executor, future.done, timeout), f"no answer from {name}\n{log_path.read_text()}"
        return future.result()
    finally:
        node.destroy_client(client)


def check_enable_and_reload(node, executor, name: str, statuses: list, log_path: Path) -> None:
    """~/enable false: /diagnostics of `name` says disabled; true again: enabled; ~/reload loads
    the model again and answers success with its id (the id /diagnostics reports)."""
    from std_srvs.srv import SetBool, Trigger

    from ros_helpers import spin_until

    def diagnosed(key: str, value: str) -> bool:
        return any(s.name == name and {kv.key: kv.value for kv in s.values}.get(key) == value for s in statuses)

    for enabled in (False, True):
        response = call_service(node, executor, SetBool, f"{name}/enable", SetBool.Request(data=enabled), log_path)
        assert response.success, response.message
        assert ("disabled" in response.message) != enabled, response.message
        statuses.clear()
        assert spin_until(executor, lambda: diagnosed("enabled", str(enabled)), 10), \
            f"{name}: /diagnostics never said enabled={enabled}\n{log_path.read_text()}"
    response = call_service(node, executor, Trigger, f"{name}/reload", Trigger.Request(), log_path)
    assert response.success, response.message
    statuses.clear()
    assert spin_until(executor, lambda: any(s.name == name for s in statuses), 10)
    model_id = next({kv.key: kv.value for kv in s.values}["model_id"] for s in statuses if s.name == name)
    assert model_id != "none" and model_id in response.message, (model_id, response.message)


def test_dds_profile_reaches_the_nodes_unless_empty_and_the_environment_wins(monkeypatch):
    pytest.importorskip("launch_ros")
    from launch.actions import SetEnvironmentVariable

    from split_perception import launch_spec

    for variable in launch_spec.DDS_PROFILE_VARIABLES:
        monkeypatch.delenv(variable, raising=False)
    profile = launch_spec.defaults(ROOT / "config")["dds_profile"]
    assert Path(profile) == ROOT / "config" / "fastdds_camera_frames.xml"
    import xml.etree.ElementTree as ET

    sizes = [int(e.text) for e in ET.parse(profile).iter() if e.tag.endswith("segment_size")]
    assert sizes and min(sizes) >= 4 * 640 * 480 * 3, "the segment holds several 640 x 480 rgb8 frames"
    assert launch_spec.dds_environment("") == {}
    assert set(launch_spec.dds_environment(profile).values()) == {profile}
    monkeypatch.setenv("FASTRTPS_DEFAULT_PROFILES_FILE", "/mine.xml")
    assert launch_spec.defaults(ROOT / "config")["dds_profile"] == "/mine.xml"
    monkeypatch.delenv("FASTRTPS_DEFAULT_PROFILES_FILE")

    _, desc = load_launch_description(ROOT)
    setters = [e for e in desc.entities if isinstance(e, SetEnvironmentVariable)]
    assert {"".join(s.perform(None) for s in e.name) for e in setters} == set(launch_spec.DDS_PROFILE_VARIABLES)
    first_node = min(desc.entities.index(n) if n in desc.entities else len(desc.entities) for n, _ in nodes_of(desc))
    assert all(desc.entities.index(e) < first_node for e in setters), "set before any node starts"
    for values, applies in (({}, True), ({"dds_profile": ""}, False)):
        context = context_with(desc, **values)
        assert all(e.condition.evaluate(context) == applies for e in setters)


def test_ros2_launch_with_a_camera_runs_end_to_end_and_ctrl_c_ends_every_process(tmp_path):
    """colcon build + `ros2 launch ... camera:=true slots:=true`: detections and slot masks carry the
    camera's stamps; ~/enable and ~/reload of both launched nodes answer and act; SIGINT (Ctrl-C)
    ends launch and every node cleanly."""
    pytest.importorskip("rclpy")
    ensure_ros2_tools()
    t0 = time.monotonic()
    install = build_workspace(tmp_path)
    build_s = time.monotonic() - t0
    import rclpy
    from diagnostic_msgs.msg import DiagnosticArray
    from rclpy.context import Context
    from rclpy.executors import SingleThreadedExecutor
    from sensor_msgs.msg import Image
    from vision_msgs.msg import Detection2DArray

    from ros_helpers import spin_until

    script = (f"source {sys.prefix}/bin/activate && export AMENT_PREFIX_PATH=$VIRTUAL_ENV && "
              f"source {install}/setup.bash && exec ros2 launch split_perception detect.launch.py "
              "namespace:=robot camera:=true slots:=true image:=/launch_test/image camera_info:=/launch_test/camera_info")
    log = open(tmp_path / "launch.log", "w")
    launch = subprocess.Popen(["bash", "-c", script], stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    context = Context()
    rclpy.init(context=context)
    node = rclpy.create_node("launch_test_client", context=context)
    images, detections, masks, statuses = [], [], [], []
    node.create_subscription(Image, "/launch_test/image", images.append, 10)
    node.create_subscription(DiagnosticArray, "/diagnostics", lambda m: statuses.extend(m.status), 10)
    node.create_subscription(Detection2DArray, "/robot/split_spair_detector/detections", detections.append, 10)
    node.create_subscription(Image, "/robot/monet_segmenter/masks", masks.append, 10)
    executor = SingleThreadedExecutor(context=context)
    executor.add_node(node)
    children = []
    try:
        def answered():
            stamps = {(m.header.stamp.sec, m.header.stamp.nanosec) for m in images}
            return all(any((m.header.stamp.sec, m.header.stamp.nanosec) in stamps for m in out) for out in (detections, masks))

        ok = spin_until(executor, lambda: answered() or launch.poll() is not None, 90)
        assert ok and launch.poll() is None, (tmp_path / "launch.log").read_text()
        assert all(m.header.frame_id == "camera" for m in detections + masks)
        children = descendants(launch.pid)
        names = " ".join(" ".join(c.cmdline()) for c in children)
        assert "detector_node" in names and "camera_source" in names and "segmenter_node" in names
        for c in children:  # every node (the camera above all) runs with the frame-sized DDS profile
            if "--ros-args" in c.cmdline():
                profile = c.environ().get("FASTRTPS_DEFAULT_PROFILES_FILE", "")
                assert profile.startswith(str(install)) and Path(profile).is_file(), (c.cmdline(), profile)
                assert profile.endswith("share/split_perception/config/fastdds_camera_frames.xml"), profile
        for name in ("/robot/split_spair_detector", "/robot/monet_segmenter"):
            check_enable_and_reload(node, executor, name, statuses, log_path=tmp_path / "launch.log")
        launch.send_signal(signal.SIGINT)  # what Ctrl-C sends
        launch.wait(timeout=30)
    finally:
        if launch.poll() is None:
            os.killpg(launch.pid, signal.SIGKILL)
            launch.wait()
        node.destroy_node()
        executor.shutdown()
        context.try_shutdown()
        log.close()
    end = time.monotonic() + 10
    while time.monotonic() < end and any(c.is_running() and c.status() != "zombie" for c in children):
        time.sleep(0.1)
    alive = [c for c in children if c.is_running() and c.status() != "zombie"]
    assert not alive, f"still running after Ctrl-C: {alive}\n{(tmp_path / 'launch.log').read_text()}"
    assert launch.returncode == 0, (tmp_path / "launch.log").read_text()
    print(f"colcon build {build_s:.1f} s, launch to Ctrl-C {time.monotonic() - t0 - build_s:.1f} s")
