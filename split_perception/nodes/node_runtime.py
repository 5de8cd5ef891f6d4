"""What every perception node shares: the camera -> model plumbing, diagnostics, the process main."""
from __future__ import annotations

import rclpy
from diagnostic_msgs.msg import DiagnosticArray
from rclpy.executors import ExternalShutdownException
from rclpy.node import Node
from rclpy.qos import qos_profile_sensor_data
from sensor_msgs.msg import Image

from split_perception import ros_messages
from split_perception.nodes.frame_worker import FrameWorker


class CameraModelNode(Node):
    """A node that runs one model (a detector or segmenter API object) on the newest frame of
    `image`, off the executor thread, and reports on /diagnostics once a second.

    Subclasses load their model and create their output publishers, then call start_camera(model);
    they implement process(msg) (runs in the worker thread)."""

    def start_camera(self, model) -> None:
        runner = model.runner
        provider = getattr(runner, "provider", "")
        self.get_logger().info(f"model {runner.source} on {model.backend}{f' ({provider})' if provider else ''}, input {model.input_size}px")
        self.backend = model.backend
        self.pub_diag = self.create_publisher(DiagnosticArray, "/diagnostics", 10)
        self.worker = FrameWorker(self.process, self.report_bad_frame)
        self.create_subscription(Image, "image", self.worker.submit, qos_profile_sensor_data)
        self.create_timer(1.0, self.publish_diagnostics)

    def process(self, msg: Image) -> None:
        raise NotImplementedError

    def report_bad_frame(self, error: Exception) -> None:
        self.get_logger().warning(f"frame skipped: {error}", throttle_duration_sec=5.0)

    def publish_diagnostics(self) -> None:
        """One /diagnostics status: the worker's counters and latency, WARN once a frame failed."""
        stats = self.worker.stats()
        stats["backend"] = self.backend
        ok = stats["frames_failed"] == 0
        message = "ok" if ok else f"{stats['frames_failed']} frame(s) failed"
        self.pub_diag.publish(
            ros_messages.diagnostics_msg(self.get_fully_qualified_name(), self.backend, stats, self.get_clock().now().to_msg(), ok, message)
        )

    def destroy_node(self):
        if hasattr(self, "worker"):
            self.worker.stop()
        super().destroy_node()


def spin(node_class, args=None) -> None:
    """rclpy.init, build the node, spin until Ctrl-C or shutdown, clean up in every case."""
    rclpy.init(args=args)
    node = None
    try:
        node = node_class()
        rclpy.spin(node)
    except (KeyboardInterrupt, ExternalShutdownException):
        pass
    finally:
        if node is not None:
            node.destroy_node()
        if rclpy.ok():
            rclpy.shutdown()
