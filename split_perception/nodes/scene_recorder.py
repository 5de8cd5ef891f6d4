"""Scene recorder node: camera frames into a dataset folder (the format training reads), for
fine-tuning on what the robot sees.

    in   image          sensor_msgs/Image (rgb8, bgr8, rgba8, bgra8, mono8, mono16), QoS image_qos.*
                        (sensor data: best effort, depth 1)
    out  /diagnostics   recording state, frames received / written / skipped, bytes, the last error
    srv  ~/start, ~/stop  std_srvs/Trigger (the same as setting `enabled`)

Parameters (config/scene_recorder.yaml lists them all): `output_dir`, `image_format` (png | jpg),
`enabled`, `max_rate_hz` (0: every frame), `duplicate_threshold` (mean absolute difference to the
last written frame, 0-255 scale, below which a frame is skipped; 0: off), `max_frames` and
`max_bytes` (quota over the whole folder, 0: none), `image_qos.*`.

Each frame: image written atomically (temp file, fsync, rename), then its index line appended
(frames/dataset_folder.py). A frame that cannot be converted is skipped with a warning. A write
that fails (full disk, read-only or missing-permission folder, ...) or a full quota stops
recording: the reason goes to the log and to /diagnostics (ERROR for a failed write, WARN for
the quota), the node stays up, and what was written stays a valid dataset. ~/start (or
enabled := true) tries again, e.g. after space was freed or the quota raised.
"""
from __future__ import annotations

import time

import numpy as np
from diagnostic_msgs.msg import DiagnosticArray, DiagnosticStatus
from rcl_interfaces.msg import SetParametersResult
from rclpy.node import Node
from rclpy.parameter import Parameter
from sensor_msgs.msg import Image
from std_srvs.srv import Trigger

from split_perception import ros_messages
from split_perception.frames.dataset_folder import IMAGE_FORMATS, DatasetWriter, QuotaReached
from split_perception.nodes import parameters as P
from split_perception.nodes.node_runtime import frame_to_rgb, spin

DUPLICATE_STRIDE = 4  # the duplicate test looks at every 4th pixel in each direction


def mean_abs_difference(a: np.ndarray, b: np.ndarray | None) -> float:
    """Mean |a - b| (0-255) on a subsampled grid; inf when there is no previous frame or the sizes differ."""
    if b is None or a.shape != b.shape:
        return float("inf")
    s = DUPLICATE_STRIDE
    return float(np.abs(a[::s, ::s].astype(np.int16) - b[::s, ::s].astype(np.int16)).mean())


class SceneRecorder(Node):
    def __init__(self, **kwargs):
        super().__init__("scene_recorder", **kwargs)
        ro = dict(read_only=True)
        self.declare_parameter("output_dir", "recordings/scenes", P.describe(
            "dataset folder to write (created if missing; an existing one is continued)", **ro))
        self.declare_parameter("image_format", "png", P.describe("image file format (png: lossless)",
                                                                 choices=IMAGE_FORMATS, **ro))
        self.declare_parameter("enabled", True, P.describe("record frames; ~/start and ~/stop set it too"))
        self.declare_parameter("max_rate_hz", 2.0, P.describe("most frames written per second; 0: no limit",
                                                              range=(0.0, 1000.0)))
        self.declare_parameter("duplicate_threshold", 2.0, P.describe(
            "skip a frame whose mean absolute difference (0-255) to the last written frame is below this; 0: off",
            range=(0.0, 255.0)))
        self.declare_parameter("max_frames", 0, P.describe("stop recording at this many frames in the folder; 0: no limit",
                                                           range=(0, 2**31 - 1)))
        self.declare_parameter("max_bytes", 0, P.describe("stop recording before the folder's images exceed this many "
                                                          "bytes; 0: no limit", range=(0, 2**62)))
        self.declare_parameter("image_qos.reliability", "best_effort", P.reliability_descriptor("image"))
        self.declare_parameter("image_qos.depth", 1, P.depth_descriptor("image"))

        p = {name: param.value for name, param in self.get_parameters_by_prefix("").items()}
        if p["image_format"] not in IMAGE_FORMATS:
            raise ValueError(f"image_format must be one of {', '.join(IMAGE_FORMATS)}; got '{p['image_format']}'")
        image_qos = P.qos_profile(p["image_qos.reliability"], p["image_qos.depth"], "image_qos")
        self.output_dir, self.image_format = p["output_dir"], p["image_format"]
        self.enabled, self.max_rate_hz, self.threshold = p["enabled"], p["max_rate_hz"], p["duplicate_threshold"]
        self.max_frames, self.max_bytes = p["max_frames"], p["max_bytes"]
        self.writer: DatasetWriter | None = None
        self.error = ""  # why recording stopped (a failed write, or the quota); "" while fine
        self.error_level = DiagnosticStatus.OK
        self.last_frame: np.ndarray | None = None
        self.last_write = -float("inf")
        self.counts = dict(frames_received=0, frames_written=0, skipped_disabled=0, skipped_rate=0,
                           skipped_duplicate=0, frames_failed=0)
        self.pub_diag = self.create_publisher(DiagnosticArray, "/diagnostics", 10)
        self.sub = self.create_subscription(Image, "image", self.on_image, image_qos)
        self.create_service(Trigger, "~/start", self.on_start)
        self.create_service(Trigger, "~/stop", self.on_stop)
        self.create_timer(1.0, self.publish_diagnostics)
        self.add_on_set_parameters_callback(self.on_set_parameters)
        if self.enabled:
            self.open_writer()
        self.get_logger().info(f"recording {self.sub.topic_name} into '{self.output_dir}' "
                               f"({'enabled' if self.enabled else 'disabled: call ~/start'})")

    # --- recording state ---------------------------------------------------------------------
    def open_writer(self) -> bool:
        if self.writer is not None:
            return True
        try:
            self.writer = DatasetWriter(self.output_dir, image_format=self.image_format, max_frames=self.max_frames,
                                        max_bytes=self.max_bytes, source={"kind": "scene_recorder",
                                                                          "topic": self.sub.topic_name})
        except OSError as e:
            self.fail(f"cannot open dataset folder '{self.output_dir}': {e.strerror or e}", DiagnosticStatus.ERROR)
            return False
        self.error, self.error_level = "", DiagnosticStatus.OK
        return True

    def close_writer(self) -> None:
        if self.writer is not None:
            self.writer.close()
            self.writer = None

    def fail(self, why: str, level) -> None:
        """Stop recording (the node stays up); ~/start tries again."""
        self.enabled, self.error, self.error_level = False, why, level
        self.close_writer()
        line = f"recording stopped: {why}; call ~/start to try again"
        if level == DiagnosticStatus.ERROR:  # rclpy wants one severity per call site
            self.get_logger().error(line)
        else:
            self.get_logger().warning(line)

    def start(self) -> tuple[bool, str]:
        self.enabled = True
        if not self.open_writer():
            return False, f"cannot record: {self.error}"
        reason = self.writer.check_quota()
        if reason:
            self.fail(reason, DiagnosticStatus.WARN)
            return False, f"cannot record: {reason}"
        return True, f"recording into '{self.output_dir}' ({self.writer.count} frames there)"

    def stop(self) -> tuple[bool, str]:
        was = self.enabled
        self.enabled = False
        count = self.writer.count if self.writer else None
        self.close_writer()
        return True, ("stopped" if was else "already stopped") + (f"; {count} frames in '{self.output_dir}'"
                                                                   if count is not None else "")

    # --- frames --------------------------------------------------------------------------------
    def on_image(self, msg: Image) -> None:
        self.counts["frames_received"] += 1
        if not self.enabled or self.writer is None:
            self.counts["skipped_disabled"] += 1
            return
        now = time.monotonic()
        if self.max_rate_hz > 0 and now - self.last_write < 1.0 / self.max_rate_hz:
            self.counts["skipped_rate"] += 1
            return
        try:
            frame = frame_to_rgb(msg)
        except Exception as e:  # a bad frame is skipped, the node goes on
            self.counts["frames_failed"] += 1
            self.get_logger().warning(f"frame skipped: {e}", throttle_duration_sec=5.0)
            return
        if self.threshold > 0 and mean_abs_difference(frame, self.last_frame) < self.threshold:
            self.counts["skipped_duplicate"] += 1
            return
        stamp = msg.header.stamp.sec + msg.header.stamp.nanosec * 1e-9
        try:
            self.writer.add(frame, {"stamp": stamp, "frame_id": msg.header.frame_id, "topic": self.sub.topic_name})
        except QuotaReached as e:
            self.fail(str(e), DiagnosticStatus.WARN)
            return
        except OSError as e:
            self.fail(f"cannot write to '{self.output_dir}': {e.strerror or e}", DiagnosticStatus.ERROR)
            return
        self.last_frame, self.last_write = frame, now
        self.counts["frames_written"] += 1

    # --- services, parameters ------------------------------------------------------------------
    def on_start(self, request, response):
        response.success, response.message = self.start()
        self.get_logger().info(f"~/start: {response.message}")
        self._sync_enabled()
        return response

    def on_stop(self, request, response):
        response.success, response.message = self.stop()
        self.get_logger().info(f"~/stop: {response.message}")
        self._sync_enabled()
        return response

    def _sync_enabled(self) -> None:
        """Keep the `enabled` parameter equal to the state (services and failures change it)."""
        if self.get_parameter("enabled").value != self.enabled:
            self._syncing = True
            try:
                self.set_parameters([Parameter("enabled", value=self.enabled)])
            finally:
                self._syncing = False

    def on_set_parameters(self, params) -> SetParametersResult:
        for param in params:
            if param.name == "max_rate_hz":
                self.max_rate_hz = param.value
            elif param.name == "duplicate_threshold":
                self.threshold = param.value
            elif param.name in ("max_frames", "max_bytes"):
                setattr(self, param.name, param.value)
                if self.writer is not None:
                    setattr(self.writer, param.name, param.value)
            elif param.name == "enabled" and not getattr(self, "_syncing", False):
                ok, message = self.start() if param.value else self.stop()
                self.get_logger().info(f"enabled := {str(param.value).lower()}: {message}")
                if not ok:
                    return SetParametersResult(successful=False, reason=message)
        return SetParametersResult(successful=True)

    # --- diagnostics ---------------------------------------------------------------------------
    def publish_diagnostics(self) -> None:
        if self.error:
            level, message = self.error_level, f"recording stopped: {self.error}"
        elif self.enabled:
            level, message = DiagnosticStatus.OK, "recording"
        else:
            level, message = DiagnosticStatus.OK, "stopped (~/start to record)"
        self._sync_enabled()
        writer = self.writer
        values = {"recording": bool(self.enabled and writer is not None), "output_dir": self.output_dir,
                  "frames_in_folder": writer.count if writer else "", "bytes_in_folder": writer.bytes_used if writer else "",
                  **self.counts, "error": self.error}
        msg = ros_messages.diagnostics_msg(self.get_fully_qualified_name(), "scene_recorder", values,
                                           self.get_clock().now().to_msg(), True, message)
        msg.status[0].level = level
        self.pub_diag.publish(msg)

    def destroy_node(self):
        self.close_writer()
        super().destroy_node()


def main(args=None) -> None:
    """Spin until Ctrl-C or shutdown; a bad parameter value at start-up: one line, exit status 2."""
    spin(SceneRecorder, args)


if __name__ == "__main__":
    main()
