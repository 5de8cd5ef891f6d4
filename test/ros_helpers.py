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
