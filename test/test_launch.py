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
             "camera_params"}


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
    assert set(nodes) == {"detector_node", "segmenter_node", "camera_source"}

    def running(**values):
        context = context_with(desc, **values)
        return {exe for exe, cond in nodes.items() if cond is None or cond.evaluate(context)}

    assert running() == {"detector_node"}
    assert running(slots="true", camera="true") == {"detector_node", "segmenter_node", "camera_source"}
    assert running(detector="false", slots="true") == {"segmenter_node"}


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
    for params in ("detector_params", "segmenter_params", "camera_params"):  # defaults name files that exist
        assert Path(context_with(desc).launch_configurations[params]).is_file()


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


def test_ros2_launch_with_a_camera_runs_end_to_end_and_ctrl_c_ends_every_process(tmp_path):
    """colcon build + `ros2 launch ... camera:=true slots:=true`: detections and slot masks carry the
    camera's stamps; SIGINT (Ctrl-C) ends launch and every node cleanly. About 5 s here."""
    pytest.importorskip("rclpy")
    ensure_ros2_tools()
    t0 = time.monotonic()
    install = build_workspace(tmp_path)
    build_s = time.monotonic() - t0
    import rclpy
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
    images, detections, masks = [], [], []
    node.create_subscription(Image, "/launch_test/image", images.append, 10)
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
