"""Helpers for tests that put real messages on real DDS between processes."""
from __future__ import annotations

import os
import subprocess
import sys
import time


def spawn_python(code: str) -> subprocess.Popen:
    """Run `code` in a second Python process with this test session's ROS environment."""
    return subprocess.Popen(
        [sys.executable, "-c", code], env=dict(os.environ), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )


def stop(proc: subprocess.Popen) -> str:
    proc.terminate()
    try:
        _, err = proc.communicate(timeout=10)
    except subprocess.TimeoutExpired:
        proc.kill()
        _, err = proc.communicate()
    return err


def spin_until(executor, predicate, timeout: float) -> bool:
    """Spin `executor` until `predicate()` is true or `timeout` seconds pass."""
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        executor.spin_once(timeout_sec=0.1)
        if predicate():
            return True
    return False


def client_node(name: str, topics: dict[str, tuple[type, str]]):
    """A client node that records every message on `topics` ({key: (type, topic)}) and publishes
    camera frames on `cam/image` with sensor-data QoS. Returns (node, received, camera, executor)."""
    import rclpy
    from rclpy.executors import SingleThreadedExecutor
    from rclpy.qos import qos_profile_sensor_data
    from sensor_msgs.msg import Image

    node = rclpy.create_node(name)
    received: dict[str, list] = {key: [] for key in topics}
    for key, (msg_type, topic) in topics.items():
        node.create_subscription(msg_type, topic, received[key].append, 10)
    camera = node.create_publisher(Image, "cam/image", qos_profile_sensor_data)
    executor = SingleThreadedExecutor()
    executor.add_node(node)
    return node, received, camera, executor


class RemoteNode:
    """A node in its own process (`python -m <module> --ros-args ...`, as `ros2 run` starts it) and
    a client node here that talks to it over DDS: topics, parameters, services, /diagnostics.

    Uses a context of its own, so a module can keep one RemoteNode alive across its tests while
    other modules use the default context. The node's log goes to `log_path` (never a pipe, which
    a long-lived node could fill). Every wait polls its condition with a timeout.
    """

    def __init__(self, module: str, node_name: str, ros_args: list[str], log_path, topics: dict[str, tuple[type, str]]):
        import rclpy
        from diagnostic_msgs.msg import DiagnosticArray
        from rclpy.context import Context
        from rclpy.executors import SingleThreadedExecutor
        from rclpy.qos import qos_profile_sensor_data
        from sensor_msgs.msg import Image

        self.name, self.fqn = node_name, f"/{node_name}"
        self.log_path = log_path
        self._log_file = open(log_path, "w")
        self.proc = subprocess.Popen([sys.executable, "-m", module, "--ros-args", *ros_args],
                                     env=dict(os.environ), stdout=self._log_file, stderr=subprocess.STDOUT, text=True)
        self.context = Context()
        rclpy.init(context=self.context)
        self.client = rclpy.create_node(f"{node_name}_test_client", context=self.context)
        self.received: dict[str, list] = {key: [] for key in topics}
        for key, (msg_type, topic) in topics.items():
            self.client.create_subscription(msg_type, topic, self.received[key].append, 10)
        self.statuses: list = []  # this node's DiagnosticStatus messages, oldest first
        self.client.create_subscription(DiagnosticArray, "/diagnostics", self._on_diagnostics, 10)
        self.camera = self.client.create_publisher(Image, "cam/image", qos_profile_sensor_data)
        self.executor = SingleThreadedExecutor(context=self.context)
        self.executor.add_node(self.client)
        self._clients: dict[str, object] = {}

    def _on_diagnostics(self, msg) -> None:
        self.statuses += [s for s in msg.status if s.name == self.fqn]

    def wait(self, predicate, timeout: float = 30.0) -> bool:
        return spin_until(self.executor, predicate, timeout)

    def __enter__(self) -> "RemoteNode":
        """`with RemoteNode(...) as node:` waits until the node is up and always closes it."""
        try:
            self.wait_until_up()
        except BaseException:
            self.close()
            raise
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def wait_until_up(self, timeout: float = 60.0) -> None:
        """Until the node subscribes to the camera and has published /diagnostics (only a live node does)."""
        up = self.wait(lambda: (self.camera.get_subscription_count() > 0 and self.statuses) or self.proc.poll() is not None, timeout)
        assert up and self.proc.poll() is None, f"node did not come up; log:\n{self.log()}"

    def send_until(self, msg, predicate, timeout: float = 30.0) -> bool:
        """Publish `msg` (best effort: it may be lost, or replaced by a newer frame) until `predicate()`."""
        return self.wait(lambda: predicate() or self.camera.publish(msg), timeout)

    def call(self, srv_type, service: str, request, timeout: float = 30.0):
        """Call a service of the node (`~/x` names are relative to it) and return the response."""
        name = f"{self.fqn}/{service[2:]}" if service.startswith("~/") else service
        client = self._clients.get(name)
        if client is None:
            client = self._clients[name] = self.client.create_client(srv_type, name)
        assert self.wait(client.service_is_ready, timeout), f"service {name} not available; log:\n{self.log()}"
        future = client.call_async(request)
        assert self.wait(future.done, timeout), f"no answer from {name} within {timeout} s; log:\n{self.log()}"
        return future.result()

    def set_parameters(self, values: dict):
        """Set parameters one by one (as `ros2 param set` does); returns their SetParametersResults."""
        from rcl_interfaces.srv import SetParameters
        from rclpy.parameter import Parameter

        request = SetParameters.Request(parameters=[Parameter(k, value=v).to_parameter_msg() for k, v in values.items()])
        return list(self.call(SetParameters, "~/set_parameters", request).results)

    def get_parameters(self, *names: str) -> list:
        from rcl_interfaces.srv import GetParameters
        from rclpy.parameter import parameter_value_to_python

        values = self.call(GetParameters, "~/get_parameters", GetParameters.Request(names=list(names))).values
        return [parameter_value_to_python(v) for v in values]

    def describe_parameters(self, *names: str) -> list:
        from rcl_interfaces.srv import DescribeParameters

        return list(self.call(DescribeParameters, "~/describe_parameters", DescribeParameters.Request(names=list(names))).descriptors)

    def status(self, predicate=lambda s: True, timeout: float = 15.0, since: int = 0):
        """The first /diagnostics status of this node (after the first `since` received) for which
        `predicate(status)` holds, as (level, message, {key: value}); None after `timeout`."""
        def found():
            return next((s for s in self.statuses[since:] if predicate(status_tuple(s))), None)

        self.wait(lambda: found() is not None, timeout)
        s = found()
        return status_tuple(s) if s is not None else None

    def latest(self):
        """The newest /diagnostics status of this node, as (level, message, {key: value})."""
        assert self.wait(lambda: self.statuses, 15), f"no /diagnostics from {self.fqn}; log:\n{self.log()}"
        return status_tuple(self.statuses[-1])

    def log(self) -> str:
        with open(self.log_path) as f:
            return f.read()

    def close(self) -> str:
        """Stop the node (SIGTERM, as launch does) and the client; returns the node's log."""
        try:
            stop(self.proc)
        finally:
            self.client.destroy_node()
            self.executor.shutdown()
            self.context.try_shutdown()
            self._log_file.close()
        return self.log()


def status_tuple(status):
    return status.level, status.message, {kv.key: kv.value for kv in status.values}


def level(name: str) -> bytes:
    from diagnostic_msgs.msg import DiagnosticStatus

    return getattr(DiagnosticStatus, name)


def export_tiny_model(kind: str, out_dir, seed: int):
    """A randomly initialised model of `kind` ('detector' or 'segmenter', the sizes of conftest's
    tiny fixtures) exported to ONNX in `out_dir`; a different seed gives a different valid model."""
    from pathlib import Path

    import torch

    from split_perception.export import export_onnx
    from split_perception.models import checkpoint as ckpt

    torch.manual_seed(seed)
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    if kind == "detector":
        from split_perception.models.spair import MODEL_TYPE, SpairConfig, SplitSpair

        cfg = SpairConfig(z_what=8, z_local=4, z_bg=4, hidden=32)
        model = SplitSpair(cfg)
    else:
        from split_perception.models.monet import MODEL_TYPE, Monet, MonetConfig

        cfg = MonetConfig(image_size=32, slots=4, attention="resnet18")
        model = Monet(cfg)
    weights = out_dir / f"{kind}_{seed}.safetensors"
    ckpt.save_checkpoint(weights, model, MODEL_TYPE, cfg, {"step": 0})
    return Path(export_onnx(weights, out_dir / f"{kind}_{seed}.onnx"))


def frame_msg(image, stamp: int, encoding: str = "rgb8"):
    """A camera frame with a stamp (seconds) that tells its answers apart."""
    from split_perception.image_conversion import array_to_image

    msg = array_to_image(image, encoding)
    msg.header.frame_id, msg.header.stamp.sec = "cam", stamp
    return msg


def answers(received: list, stamp: int) -> list:
    return [m for m in received if m.header.stamp.sec == stamp]


def load_launch_description(root):
    """generate_launch_description() of `root`'s launch/detect.launch.py, with the ament index
    pointed at that source tree. Returns (module, description). Needs `launch` / `launch_ros`."""
    import importlib.util

    import ament_index_python.packages as aip

    spec = importlib.util.spec_from_file_location("detect_launch", root / "launch" / "detect.launch.py")
    module = importlib.util.module_from_spec(spec)
    real = aip.get_package_share_directory
    aip.get_package_share_directory = lambda name: str(root)
    try:
        spec.loader.exec_module(module)
        return module, module.generate_launch_description()
    finally:
        aip.get_package_share_directory = real
