"""What every perception node shares: diagnostics from its frame worker, and the process main."""
from __future__ import annotations

import rclpy
from rclpy.executors import ExternalShutdownException

from split_perception import ros_messages


def publish_worker_diagnostics(node, publisher, worker, backend: str) -> None:
    """One /diagnostics status: the worker's counters and latency, WARN once a frame failed."""
    stats = worker.stats()
    stats["backend"] = backend
    ok = stats["frames_failed"] == 0
    message = "ok" if ok else f"{stats['frames_failed']} frame(s) failed"
    publisher.publish(
        ros_messages.diagnostics_msg(node.get_fully_qualified_name(), backend, stats, node.get_clock().now().to_msg(), ok, message)
    )


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
