"""What every perception node shares: camera -> model plumbing, the model holder, the ~/enable and
~/reload services, parameter checks, /diagnostics, and the process main.

Model lifecycle (the same for every node):
* start-up: the model named by `model_path` / `backend` loads before the node spins. If it is
  missing or broken the node still comes up, inactive: it drops frames without inference, says
  why on /diagnostics (ERROR) and in the log, and waits for a good `model_path` or a ~/reload.
* `ros2 param set ... model_path` (or `backend`): the new model loads and is checked on the
  holder's loader thread while frames keep running on the old one; it is swapped in once it
  passed. A failed load keeps the old model and is reported (log, /diagnostics WARN).
* ~/reload (std_srvs/Trigger): loads the current `model_path` again (e.g. a file replaced in
  place) and answers when the load is done: success and the new model's id, or the reason it
  failed. It waits at most RELOAD_WAIT_S on a callback group of its own, so the node keeps
  serving frames, parameters and ~/enable meanwhile; past that it answers "still loading".
* ~/enable (std_srvs/SetBool): false drops frames without inference until enabled again.
"""
from __future__ import annotations

import concurrent.futures
import sys

import rclpy
from diagnostic_msgs.msg import DiagnosticArray, DiagnosticStatus
from rcl_interfaces.msg import ParameterType, SetParametersResult
from rclpy.callback_groups import MutuallyExclusiveCallbackGroup
from rclpy.exceptions import ParameterException
from rclpy.executors import ExternalShutdownException, MultiThreadedExecutor
from rclpy.node import Node
from rclpy.parameter import Parameter
from sensor_msgs.msg import Image
from std_srvs.srv import SetBool, Trigger

from split_perception import ros_messages
from split_perception.image_conversion import image_to_rgb
from split_perception.nodes.frame_worker import FrameWorker
from split_perception.nodes.model_holder import ModelHolder
from split_perception.nodes.parameters import check_backend, check_model_path, qos_profile
from split_perception.preprocessing import MAX_INPUT_PIXELS, InputImageError

RELOAD_WAIT_S = 60.0  # a TensorRT engine build can take longer: then ~/reload answers "still loading"


def frame_to_rgb(msg: Image):
    """sensor_msgs/Image -> H x W x 3 uint8 RGB; refuses a frame over the pixel limit before
    converting it (its header alone says so)."""
    if msg.height * msg.width > MAX_INPUT_PIXELS:
        raise InputImageError(f"image {msg.width}x{msg.height} is larger than the {MAX_INPUT_PIXELS} pixel limit")
    return image_to_rgb(msg)


class CameraModelNode(Node):
    """A node that runs one model (a detector or segmenter API object) on the newest frame of
    `image`, off the executor thread, and reports on /diagnostics once a second.

    Subclasses declare their parameters (model_path, backend, image_qos.*, output_qos.* and their
    own), create their output publishers with self.qos("output_qos"), then call start(open_model)
    with open_model(path, backend) -> model. They implement process(model, msg) (runs in the
    worker thread) and configure(changed) for their own parameters (at start-up: all of them).
    """

    def start(self, open_model) -> None:
        image_qos = self.qos("image_qos")  # a bad QoS value ends start-up before any model loads
        self.enabled = True
        self.holder = ModelHolder(open_model, self.get_logger())
        self.configure({name: p.value for name, p in self.get_parameters_by_prefix("").items()})
        self.holder.load(self.get_parameter("model_path").value, self.get_parameter("backend").value)
        if self.holder.current is None:
            self.get_logger().error("no model: the node is up but inactive until model_path is set to a loadable "
                                    "model or ~/reload succeeds")
        self.pub_diag = self.create_publisher(DiagnosticArray, "/diagnostics", 10)
        self.worker = FrameWorker(self.process_frame, self.report_bad_frame)
        self.create_subscription(Image, "image", self.on_image, image_qos)
        self.create_service(SetBool, "~/enable", self.on_enable)
        self.create_service(Trigger, "~/reload", self.on_reload, callback_group=MutuallyExclusiveCallbackGroup())
        self.create_timer(1.0, self.publish_diagnostics)
        if hasattr(self, "add_pre_set_parameters_callback"):  # rclpy has pre-set callbacks from Jazzy on
            self.add_pre_set_parameters_callback(self.ints_as_doubles)
        self.add_on_set_parameters_callback(self.on_set_parameters)

    def qos(self, name: str):
        return qos_profile(self.get_parameter(f"{name}.reliability").value, self.get_parameter(f"{name}.depth").value, name)

    # --- what subclasses provide -------------------------------------------------------------
    def process(self, model, msg: Image) -> None:
        raise NotImplementedError

    def configure(self, changed: dict) -> None:
        """Apply the subclass's own run-time parameters (already checked against their descriptors)."""

    # --- frames --------------------------------------------------------------------------------
    def on_image(self, msg: Image) -> None:
        if self.enabled and self.holder.current is not None:
            self.worker.submit(msg)
        else:
            self.worker.ignore()

    def process_frame(self, msg: Image) -> None:  # worker thread
        self.process(self.holder.model, msg)

    def report_bad_frame(self, error: Exception) -> None:
        self.get_logger().warning(f"frame skipped: {error}", throttle_duration_sec=5.0)

    # --- services ------------------------------------------------------------------------------
    def on_enable(self, request: SetBool.Request, response: SetBool.Response) -> SetBool.Response:
        self.enabled = bool(request.data)
        response.success = True
        if not self.enabled:
            response.message = "disabled: frames are dropped without inference"
        elif self.holder.current is None:
            response.message = f"enabled, but no model is loaded ({self.holder.error})"
        else:
            response.message = f"enabled: running model {self.holder.current.model_id}"
        self.get_logger().info(response.message)
        return response

    def on_reload(self, request: Trigger.Request, response: Trigger.Response) -> Trigger.Response:
        future = self.holder.request(self.get_parameter("model_path").value, self.get_parameter("backend").value)
        try:
            result = future.result(timeout=RELOAD_WAIT_S)
            response.success, response.message = result.ok, result.message
        except concurrent.futures.TimeoutError:
            response.success = False
            response.message = f"still loading after {RELOAD_WAIT_S:.0f} s; /diagnostics reports the outcome"
        return response

    # --- parameters ----------------------------------------------------------------------------
    def ints_as_doubles(self, params: list[Parameter]) -> list[Parameter]:
        """`ros2 param set ... threshold 1` sends an integer: take it as 1.0 for a double parameter."""
        return [
            Parameter(p.name, Parameter.Type.DOUBLE, float(p.value))
            if p.type_ == Parameter.Type.INTEGER and self.has_parameter(p.name)
            and self.describe_parameter(p.name).type == ParameterType.PARAMETER_DOUBLE else p
            for p in params
        ]

    def on_set_parameters(self, params: list[Parameter]) -> SetParametersResult:
        """Ranges, types and read-only were checked by rclpy against the descriptors; here what they
        cannot say. A new model_path / backend starts a background load and is accepted at once."""
        changed = {p.name: p.value for p in params}
        reasons = [r for r in (check_model_path(changed["model_path"]) if "model_path" in changed else None,
                               check_backend(changed["backend"]) if "backend" in changed else None) if r]
        if reasons:
            return SetParametersResult(successful=False, reason="; ".join(reasons))
        self.configure(changed)
        if "model_path" in changed or "backend" in changed:
            path = changed.get("model_path", self.get_parameter("model_path").value)
            backend = changed.get("backend", self.get_parameter("backend").value)
            self.holder.request(path, backend)  # outcome: log and /diagnostics (~/reload answers with it)
        return SetParametersResult(successful=True)

    # --- diagnostics ---------------------------------------------------------------------------
    def health(self, stats: dict) -> tuple[int, str]:
        """The worst condition sets the level; the message lists each condition."""
        holder, level, parts = self.holder, DiagnosticStatus.OK, []
        if holder.current is None:
            level = DiagnosticStatus.ERROR
            parts.append(f"no model ({holder.error or 'not loaded'}); set model_path or call ~/reload")
        elif holder.error:
            level = DiagnosticStatus.WARN
            parts.append(f"{holder.error}; still serving model {holder.current.model_id}")
        if holder.loading:
            parts.append(f"loading {holder.loading}")
        if not self.enabled:
            parts.append("disabled (~/enable): frames are dropped without inference")
        if stats["frames_failed"]:
            level = max(level, DiagnosticStatus.WARN)
            parts.append(f"{stats['frames_failed']} frame(s) failed")
        return level, "; ".join(parts) or "ok"

    def publish_diagnostics(self) -> None:
        current = self.holder.current
        stats = self.worker.stats()
        level, message = self.health(stats)
        backend = current.model.backend if current else "none"
        values = {
            "enabled": self.enabled,
            "model_id": current.model_id if current else "none",
            "model_file": str(current.source) if current else "",
            "model_input_px": current.model.input_size if current else "",
            "model_error": self.holder.error or "",
            "backend": backend,
            **stats,
        }
        msg = ros_messages.diagnostics_msg(self.get_fully_qualified_name(), backend, values,
                                           self.get_clock().now().to_msg(), level == DiagnosticStatus.OK, message)
        msg.status[0].level = level  # diagnostics_msg knows OK and WARN; a node without a model is an ERROR
        self.pub_diag.publish(msg)

    def destroy_node(self):
        if hasattr(self, "worker"):
            self.worker.stop()
        if hasattr(self, "holder"):
            self.holder.close()
        super().destroy_node()


def parameter_error(e: Exception) -> str:
    """rclpy's ParameterException reads "<what>[. Reason: <why>]: <name>"; say "<name>: <why>"."""
    if isinstance(e, ParameterException):
        message, _, name = str(e).rpartition(": ")
        return f"{name}: {message.split('Reason: ', 1)[-1]}"
    return str(e)


def spin(node_class, args=None, startup_errors: tuple[type, ...] = ()) -> None:
    """rclpy.init, build the node, spin until Ctrl-C or shutdown, clean up in every case.

    A parameter value the node cannot take at start-up (out of range, wrong type, unknown QoS
    reliability) ends the process with one clear line and exit status 2: that is a
    configuration error no later message can fix. A bad model is not: see the module docstring.
    `startup_errors` are further exceptions of the constructor that end it the same way (e.g. a
    camera source that cannot be opened). A node with a `finished` future (a finite source)
    spins until it completes; its result is the exit status.
    """
    rclpy.init(args=args)
    node, status = None, 0
    logger = rclpy.logging.get_logger("split_perception")
    try:
        try:
            node = node_class()
        except startup_errors as e:
            logger.fatal(f"cannot start {node_class.__name__}: {e}")
            status = 2
        except (ParameterException, ValueError) as e:
            logger.fatal(f"bad parameter value: {parameter_error(e)}")
            status = 2
        else:
            executor = MultiThreadedExecutor(num_threads=3)  # ~/reload may wait on one thread; frames go on
            executor.add_node(node)
            finished = getattr(node, "finished", None)
            if finished is None:
                executor.spin()
            else:
                executor.spin_until_future_complete(finished)
                status = finished.result() if finished.done() else 0
    except (KeyboardInterrupt, ExternalShutdownException):
        pass
    finally:
        if node is not None:
            node.destroy_node()
        if rclpy.ok():
            rclpy.shutdown()
    if status:
        sys.exit(status)
