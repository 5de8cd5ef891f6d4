"""The ROS side of `split-perception deploy`: ask a running perception node what it runs and make it
load a new model file (deploy.py holds the algorithm and calls this through its NodeClient shape).

    info()          GetParameters model_path / backend; the model type from what the node publishes
                    (~/detections: a detector, split_spair; ~/masks: a slot segmenter, monet)
    reload(path)    SetParameters model_path (if it names another file), then ~/reload (std_srvs/Trigger):
                    the node loads, checks and swaps in the file off its executor and answers with the
                    new model id, or why it kept serving the old model

Runs in a context of its own, so it can live in a process that has other ROS work (tests).
"""
from __future__ import annotations

import os
import time

import rclpy
from rcl_interfaces.srv import GetParameters, SetParameters
from rclpy.context import Context
from rclpy.executors import SingleThreadedExecutor
from rclpy.parameter import Parameter, parameter_value_to_python
from std_srvs.srv import Trigger

from split_perception.deploy import NodeInfo, NodeUnreachable
from split_perception.nodes.node_runtime import RELOAD_WAIT_S

PUBLISHED_BY = {"detections": "split_spair", "masks": "monet"}


class RosNodeClient:
    def __init__(self, name: str, timeout: float = 15.0):
        self.name, self.timeout = name, timeout
        self.context = Context()
        rclpy.init(context=self.context)
        self.node = rclpy.create_node(f"split_perception_deploy_{os.getpid()}", context=self.context)
        self.executor = SingleThreadedExecutor(context=self.context)
        self.executor.add_node(self.node)

    def _wait(self, predicate, timeout: float) -> bool:
        end = time.monotonic() + timeout
        while time.monotonic() < end:
            if predicate():
                return True
            self.executor.spin_once(timeout_sec=0.05)
        return bool(predicate())

    def _call(self, srv_type, service: str, request, timeout: float):
        client = self.node.create_client(srv_type, f"{self.name}/{service}")
        try:
            if not self._wait(client.service_is_ready, self.timeout):
                raise NodeUnreachable(f"node {self.name} not found (no {self.name}/{service} service within "
                                      f"{self.timeout:.0f} s; is it running, in this ROS_DOMAIN_ID?)")
            future = client.call_async(request)
            if not self._wait(future.done, timeout):
                raise NodeUnreachable(f"node {self.name} did not answer {service} within {timeout:.0f} s")
            return future.result()
        finally:
            self.node.destroy_client(client)

    def info(self) -> NodeInfo:
        response = self._call(GetParameters, "get_parameters", GetParameters.Request(names=["model_path", "backend"]),
                              self.timeout)
        values = [parameter_value_to_python(v) for v in response.values]
        if len(values) != 2 or not all(isinstance(v, str) for v in values):
            raise NodeUnreachable(f"node {self.name} has no model_path / backend parameters: not a perception node")
        return NodeInfo(self.name, values[0], values[1], self._model_type())

    def _model_type(self) -> str | None:
        """What the node publishes says what it runs; None if the graph does not show it in time (the
        node's services can be discovered before its publishers)."""
        namespace, _, base = self.name.rpartition("/")
        found: list[str] = []

        def look() -> bool:
            try:
                topics = self.node.get_publisher_names_and_types_by_node(base, namespace or "/")
            except Exception:  # noqa: BLE001 - rclpy raises while the node is not (yet) in the graph
                return False
            found[:] = [PUBLISHED_BY[t.rsplit("/", 1)[-1]] for t, _ in topics if t.rsplit("/", 1)[-1] in PUBLISHED_BY]
            return bool(found)

        self._wait(look, min(self.timeout, 5.0))
        return found[0] if found else None

    def reload(self, model_path: str) -> tuple[bool, str]:
        current = parameter_value_to_python(self._call(
            GetParameters, "get_parameters", GetParameters.Request(names=["model_path"]), self.timeout).values[0])
        if current != model_path:
            request = SetParameters.Request(parameters=[Parameter("model_path", value=model_path).to_parameter_msg()])
            result = self._call(SetParameters, "set_parameters", request, self.timeout).results[0]
            if not result.successful:
                return False, f"model_path {model_path} refused: {result.reason}"
        # the node answers when its load is done (at most RELOAD_WAIT_S: then "still loading")
        response = self._call(Trigger, "reload", Trigger.Request(), RELOAD_WAIT_S + self.timeout)
        return bool(response.success), response.message

    def close(self) -> None:
        try:
            self.executor.shutdown()
            self.node.destroy_node()
        finally:
            self.context.try_shutdown()


def ros_connect(name: str) -> RosNodeClient:
    """run_deploy's `connect`: a client of node `name`, or NodeUnreachable when rclpy or the RMW cannot start."""
    try:
        return RosNodeClient(name)
    except Exception as e:  # noqa: BLE001 - rclpy / the RMW failing to start: no node can be reached
        raise NodeUnreachable(f"cannot start a ROS client to reach {name}: {type(e).__name__}: {e}") from None
