"""`make demo`: the product on the embedded defaults, as a robot runs it.

Three ROS 2 nodes, each in its own process as `ros2 run` starts them, built from the same
description as `ros2 launch split_perception detect.launch.py camera:=true slots:=true`
(split_perception/launch_spec.py):

    camera_source  -- /demo/camera/image -->  split_spair_detector  --> ~/detections (boxes)
    (procedural scenes,                   \\-> monet_segmenter       --> ~/masks, ~/slot_latents (K slots)
     unseen colours)

This process listens to the camera and to both nodes over DDS like any other subscriber would,
and shows what they do:
* a live one-line status: rates, objects per frame against the scene generator's ground truth,
  slots in use, end-to-end latency (camera stamp -> answer here), frames lost;
* every frame with the detector's boxes, and with the slot masks blended on it, as PNG files in
  OUT/frames/, then a contact sheet (OUT/contact_sheet.png) and an animation (OUT/demo.gif);
* at the end: count accuracy against the ground truth, foreground ARI of the slots, latency,
  lost frames (OUT/summary.txt, OUT/summary.json). Node logs: OUT/logs/.

It ends after --frames frames (the camera stops there) or on Ctrl-C (SIGINT) / SIGTERM: every
node process is stopped, and the files are written from what arrived. The number of slots K and
the model input sizes are read from the nodes' messages, never assumed.
"""
from __future__ import annotations

import argparse
import concurrent.futures
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

CAMERA_TOPIC = "/demo/camera/image"
PANEL_PX = 192  # frames are drawn this size (nearest-neighbour upscaling keeps the pixels visible)
GIF_MAX_FRAMES = 80
OPEN_RUN_FRAME_FILES = 600  # --frames 0 (until Ctrl-C): the newest 600 frames' pictures stay (about 8 MB), not a full disk
SHEET_FRAMES = 8
ANSWER_WAIT_S = 3.0  # a frame with no answer from a node after this long counts as lost by it
STARTUP_TIMEOUT_S = 120.0
MODEL_NODES = {"detector": "split_spair_detector", "slots": "monet_segmenter"}  # status name -> node name
# distinct slot colours (RGB); more slots get evenly spaced hues
SLOT_COLOURS = [(230, 25, 75), (60, 180, 75), (255, 225, 25), (0, 130, 200), (245, 130, 48), (145, 30, 180),
                (70, 240, 240), (240, 50, 230), (210, 245, 60), (250, 190, 212), (0, 128, 128), (170, 110, 40)]


def add_arguments(p: argparse.ArgumentParser) -> None:
    """The demo's command-line options (split-perception demo ...)."""
    p.add_argument("--frames", type=int, default=200, help="stop after this many camera frames (default 200: "
                                                          "20 s at 10 Hz); 0: run until Ctrl-C, keeping the "
                                                          f"pictures of the newest {OPEN_RUN_FRAME_FILES} frames")
    p.add_argument("--out", default="runs/demo", help="output folder (default runs/demo)")
    p.add_argument("--rate", type=float, default=10.0, help="camera frame rate in Hz (default 10)")
    p.add_argument("--background", default="solid",
                   help="procedural scene kind of the camera: solid (default), gradient, checkerboard, stripes, "
                        "texture, noise, vignette, plaid, texture_test, or room (MONet room scenes)")
    p.add_argument("--palette", choices=["train", "test"], default="test",
                   help="background colours: test (default: colours never seen in training) or train")
    p.add_argument("--seed", type=int, default=0, help="scene seed: frame i is scene (seed, i)")
    p.add_argument("--detector-model", default="", help="detector model file (default: the shipped one)")
    p.add_argument("--segmenter-model", default="", help="slot model file (default: the shipped one)")
    p.add_argument("--backend", default="", help="backend of both models (default: as in config/*.yaml, auto)")
    p.add_argument("--no-gif", action="store_true", help="skip the animated GIF")


# --- drawing (numpy + OpenCV, no ROS) ------------------------------------------------------------
def slot_colours(k: int) -> np.ndarray:
    """(k, 3) uint8 RGB, one distinct colour per slot."""
    import colorsys

    extra = [tuple(int(255 * c) for c in colorsys.hsv_to_rgb(i / max(1, k - 12), 0.8, 0.9)) for i in range(max(0, k - 12))]
    return np.array((SLOT_COLOURS + extra)[:k], np.uint8).reshape(-1, 3)


def upscale(rgb: np.ndarray) -> tuple[np.ndarray, float]:
    """The frame resized so its longer side is PANEL_PX (nearest neighbour); returns it and the scale."""
    import cv2

    h, w = rgb.shape[:2]
    scale = PANEL_PX / max(h, w)
    size = (max(1, round(w * scale)), max(1, round(h * scale)))
    interp = cv2.INTER_NEAREST if scale >= 1 else cv2.INTER_AREA
    return cv2.resize(np.ascontiguousarray(rgb), size, interpolation=interp), scale


def draw_boxes(rgb: np.ndarray, boxes: np.ndarray, scores: np.ndarray) -> np.ndarray:
    """The frame (upscaled) with each detection's box and presence score."""
    import cv2

    img, scale = upscale(rgb)
    img = img.copy()
    corners = [((int(round(x1)), int(round(y1))), (int(round(x2)) - 1, int(round(y2)) - 1))
               for x1, y1, x2, y2 in np.asarray(boxes).reshape(-1, 4) * scale]
    texts = [f"{s:.2f}" for s in scores]
    (tw, th), _ = cv2.getTextSize("0.00", cv2.FONT_HERSHEY_SIMPLEX, 0.38, 3)
    for p1, p2 in corners:  # every box first: a later box's lines would cross an earlier score
        cv2.rectangle(img, p1, p2, (0, 0, 0), 3)
        cv2.rectangle(img, p1, p2, (255, 255, 255), 1)
    for text, at in zip(texts, score_positions(corners, (tw, th), img.shape[0])):
        cv2.putText(img, text, at, cv2.FONT_HERSHEY_SIMPLEX, 0.38, (0, 0, 0), 3, cv2.LINE_AA)
        cv2.putText(img, text, at, cv2.FONT_HERSHEY_SIMPLEX, 0.38, (255, 255, 255), 1, cv2.LINE_AA)
    return img


def score_positions(corners: list, text_size: tuple[int, int], height: int) -> list[tuple[int, int]]:
    """Where each box's score is written (text baseline, left): above the box, else below, else just
    inside its top, whichever first covers no score written before it (neighbouring objects' scores
    were written over each other)."""
    tw, th = text_size
    written: list[tuple[int, int, int, int]] = []
    out = []
    for (x1, y1), (_, y2) in corners:
        spots = [(x1, y1 - 3), (x1, y2 + th + 3), (x1 + 2, y1 + th + 2)]
        spots = [(x, y) for x, y in spots if th <= y < height] or [(x1, max(th, y1 + th + 2))]
        free = [(x, y) for x, y in spots if not any(x < b[2] and b[0] < x + tw and y - th < b[3] and b[1] < y for b in written)]
        x, y = (free or spots)[0]
        written.append((x, y - th, x + tw, y))
        out.append((x, y))
    return out


def draw_slots(rgb: np.ndarray, labels: np.ndarray, k: int) -> np.ndarray:
    """The frame (upscaled) with each pixel tinted by the colour of its slot, slot borders dark."""
    import cv2

    img, _ = upscale(rgb)
    lab = cv2.resize(labels.astype(np.uint8), (img.shape[1], img.shape[0]), interpolation=cv2.INTER_NEAREST)
    colours = slot_colours(max(k, int(lab.max()) + 1))
    blend = (0.45 * img + 0.55 * colours[lab]).astype(np.uint8)
    edge = np.zeros(lab.shape, bool)
    edge[:, 1:] |= lab[:, 1:] != lab[:, :-1]
    edge[1:, :] |= lab[1:, :] != lab[:-1, :]
    blend[edge] = (blend[edge] * 0.3).astype(np.uint8)
    return blend


def caption(img: np.ndarray, lines: list[str], height: int | None = None, scale: float = 0.42) -> np.ndarray:
    """`img` with a white band of text lines below it (height: the band's, default to fit)."""
    import cv2

    band_h = height or 6 + 16 * len(lines)
    band = np.full((band_h, img.shape[1], 3), 255, np.uint8)
    for i, line in enumerate(lines):
        cv2.putText(band, line, (4, 14 + 16 * i), cv2.FONT_HERSHEY_SIMPLEX, scale, (20, 20, 20), 1, cv2.LINE_AA)
    return np.concatenate([img, band], axis=0)


def pad_to(img: np.ndarray, h: int, w: int) -> np.ndarray:
    out = np.full((h, w, 3), 255, np.uint8)
    out[: img.shape[0], : img.shape[1]] = img
    return out


def hstack(images: list[np.ndarray], gap: int = 6) -> np.ndarray:
    h = max(i.shape[0] for i in images)
    parts = []
    for i, img in enumerate(images):
        parts.append(pad_to(img, h, img.shape[1]))
        if i < len(images) - 1:
            parts.append(np.full((h, gap, 3), 255, np.uint8))
    return np.concatenate(parts, axis=1)


def vstack(images: list[np.ndarray], gap: int = 6) -> np.ndarray:
    w = max(i.shape[1] for i in images)
    parts = []
    for i, img in enumerate(images):
        parts.append(pad_to(img, img.shape[0], w))
        if i < len(images) - 1:
            parts.append(np.full((gap, w, 3), 255, np.uint8))
    return np.concatenate(parts, axis=0)


def write_png(path: Path, rgb: np.ndarray) -> None:
    import cv2

    if not cv2.imwrite(str(path), np.ascontiguousarray(rgb[..., ::-1])):
        raise OSError(f"could not write {path}")


# --- what arrives ----------------------------------------------------------------------------------
@dataclass
class Frame:
    """One camera frame and what each node answered for it (keyed by the camera's stamp)."""

    stamp: tuple[int, int]
    created: float = field(default_factory=time.monotonic)  # when anything of it arrived first
    seen_at: float = 0.0  # time.monotonic() when the camera frame arrived here
    seq: int = 0  # 1, 2, ... in the order the camera frames arrived here
    rgb: np.ndarray | None = None
    index: int | None = None  # scene index in the generator's sequence (None: unknown)
    truth_count: int | None = None
    truth_labels: np.ndarray | None = None
    boxes: np.ndarray | None = None
    scores: np.ndarray | None = None
    det_latency_ms: float | None = None
    labels: np.ndarray | None = None
    seg_latency_ms: float | None = None
    slots_k: int | None = None
    fg_ari: float | None = None


def stamp_of(msg) -> tuple[int, int]:
    return msg.header.stamp.sec, msg.header.stamp.nanosec


def latency_ms(stamp: tuple[int, int]) -> float:
    """Now minus the camera stamp (the camera stamps with the system clock when it publishes)."""
    return (time.time() - (stamp[0] + stamp[1] * 1e-9)) * 1000.0


class Rate:
    """Events per second over the last `window` seconds."""

    def __init__(self, window: float = 2.0):
        self.window, self.times = window, []

    def tick(self) -> None:
        now = time.monotonic()
        self.times = [t for t in self.times if now - t < self.window] + [now]

    def hz(self, final: bool = False) -> float:
        """The rate now; final=True: over the window before the last event (after the stream
        ended, when 'now' would read 0 Hz)."""
        now = self.times[-1] if final and self.times else time.monotonic()
        times = [t for t in self.times if now - t < self.window + 1e-9]
        if len(times) < 2:
            return 0.0
        return (len(times) - 1) / max(times[-1] - times[0], 1e-6)


@dataclass
class Totals:
    frames: int = 0  # camera frames finished (answered or given up on)
    det_answered: int = 0
    seg_answered: int = 0
    det_lost: int = 0
    seg_lost: int = 0
    pred_counts: list = field(default_factory=list)
    true_counts: list = field(default_factory=list)
    det_latency: list = field(default_factory=list)
    seg_latency: list = field(default_factory=list)
    slots_used: list = field(default_factory=list)
    fg_ari: list = field(default_factory=list)
    slots_k: int | None = None
    truth_unknown: int = 0


class GroundTruth:
    """The camera's procedural scenes again, here: frame i of the camera is scene (seed, i); a
    received frame is matched to its scene by its pixels (the camera is reliable and in order, so
    the next index almost always matches)."""

    def __init__(self, background: str, palette: str, seed: int):
        from split_perception.training import scenes

        self.scenes, self.seed, self.next = scenes, seed, 0
        self.cfg = (scenes.RoomConfig() if background == "room"
                    else scenes.MultiObjectConfig(background=background, palette=palette))
        scenes.generate(self.cfg, seed, 0)  # the first scene loads the generator's assets (seconds): not mid-run

    def match(self, rgb: np.ndarray):
        for i in range(self.next, self.next + 30):
            scene = self.scenes.generate(self.cfg, self.seed, i)
            if scene.image.shape == rgb.shape and np.array_equal(scene.image, rgb):
                self.next = i + 1
                return i, scene
        return None, None


# --- the run ---------------------------------------------------------------------------------------
class DemoRun:
    def __init__(self, args, out_dir: Path):
        self.args, self.out = args, out_dir
        self.frames_dir, self.logs_dir = out_dir / "frames", out_dir / "logs"
        self.pending: dict[tuple[int, int], Frame] = {}
        self.totals = Totals()
        self.rates = {"camera": Rate(), "detector": Rate(), "slots": Rate()}
        self.diag: dict[str, dict] = {}  # node name -> its /diagnostics values
        self.diag_errors: dict[str, str] = {}  # node name -> the message of its newest ERROR status
        self.kept: list = []  # (frame number, answered by both, future of its panels) for the sheet and the GIF
        self.drawer = concurrent.futures.ThreadPoolExecutor(max_workers=1, thread_name_prefix="demo_drawer")
        self.keep_every = max(1, args.frames // GIF_MAX_FRAMES) if args.frames else 2
        self.last_det: Frame | None = None
        self.stop_reason = ""
        self.truth: GroundTruth | None = None  # made while the nodes start (its first scene takes seconds)
        self.started = time.monotonic()
        self.first_frame_at: float | None = None
        self.procs: dict[str, subprocess.Popen] = {}
        self.camera_frames = 0
        self.in_flight = 0  # frames left out at the stop, their answers not in yet
        self.tty = sys.stdout.isatty()
        self.status_shown = False

    # --- processes ---------------------------------------------------------------------------------
    def start_nodes(self) -> None:
        from split_perception import launch_spec

        values = launch_spec.resolve({
            "image": CAMERA_TOPIC, "camera_info": "/demo/camera/camera_info", "camera": "true", "slots": "true",
            "detector_model": self.args.detector_model, "segmenter_model": self.args.segmenter_model,
            "backend": self.args.backend,
        })
        # the camera's settings beyond its params file; it holds the first frame until the two
        # model nodes and this process subscribe, so every frame of the sequence is seen by all
        camera_extra = {"source": "procedural", "background": self.args.background, "palette": self.args.palette,
                        "seed": self.args.seed, "rate_hz": float(self.args.rate), "max_frames": self.args.frames,
                        "wait_for_subscribers": 3, "frame_id": "demo_camera"}
        env = dict(os.environ, PYTHONUNBUFFERED="1", **launch_spec.dds_environment(values["dds_profile"]))
        env.setdefault("ROS_AUTOMATIC_DISCOVERY_RANGE", "LOCALHOST")
        self.logs_dir.mkdir(parents=True, exist_ok=True)
        self._camera_start = None
        for spec in launch_spec.selected(values):
            cmd = launch_spec.command(spec, values, camera_extra if spec.switch == "camera" else None)
            if spec.switch == "camera":
                # started once both model nodes report a loaded model (start_camera_when_ready): a node
                # subscribes before its model is loaded and ignores frames until then, which on a busy
                # machine cost the first frames of a short run
                self._camera_start = (spec.name, cmd, env)
                continue
            self._spawn(spec.switch, spec.name, cmd, env)

    def _spawn(self, switch: str, name: str, cmd: list[str], env: dict) -> None:
        log = open(self.logs_dir / f"{name}.log", "w")
        log.write(" ".join(cmd) + "\n\n")
        log.flush()
        self.procs[switch] = subprocess.Popen(cmd, env=env, stdout=log, stderr=subprocess.STDOUT,
                                              stdin=subprocess.DEVNULL, preexec_fn=_die_with_parent)
        log.close()

    def start_camera_when_ready(self) -> None:
        """Start the camera once the detector and slot node both name a loaded model in /diagnostics."""
        if self._camera_start is None:
            return
        if not self.without_model():
            name, cmd, env = self._camera_start
            self._camera_start = None
            self._spawn("camera", name, cmd, env)

    def stop_nodes(self) -> None:
        """SIGINT (what Ctrl-C sends) to every node still running, then SIGKILL after 10 s."""
        for proc in self.procs.values():
            if proc.poll() is None:
                proc.send_signal(signal.SIGINT)
        end = time.monotonic() + 10
        for proc in self.procs.values():
            try:
                proc.wait(timeout=max(0.1, end - time.monotonic()))
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()

    def log_tail(self, switch: str, lines: int = 15) -> str:
        from split_perception import launch_spec

        path = self.logs_dir / f"{launch_spec.node(switch).name}.log"
        text = path.read_text(errors="replace").splitlines() if path.exists() else []
        return f"--- {path} (last lines) ---\n" + "\n".join(text[-lines:])

    # --- messages ----------------------------------------------------------------------------------
    def frame(self, stamp) -> Frame:
        if stamp not in self.pending:
            self.pending[stamp] = Frame(stamp)
        return self.pending[stamp]

    def on_camera(self, msg) -> None:
        from split_perception.image_conversion import image_to_rgb

        f = self.frame(stamp_of(msg))
        f.seen_at = time.monotonic()
        self.camera_frames += 1
        f.seq = self.camera_frames
        f.rgb = np.array(image_to_rgb(msg))
        f.index, scene = self.truth.match(f.rgb)
        if scene is not None:
            f.truth_count, f.truth_labels = scene.count, scene.labels
        self.rates["camera"].tick()
        self.first_frame_at = self.first_frame_at or f.seen_at

    def on_detections(self, msg) -> None:
        f = self.frame(stamp_of(msg))
        f.det_latency_ms = latency_ms(f.stamp)
        boxes = [(d.bbox.center.position.x - d.bbox.size_x / 2, d.bbox.center.position.y - d.bbox.size_y / 2,
                  d.bbox.center.position.x + d.bbox.size_x / 2, d.bbox.center.position.y + d.bbox.size_y / 2)
                 for d in msg.detections]
        f.boxes = np.array(boxes, np.float32).reshape(-1, 4)
        f.scores = np.array([d.results[0].hypothesis.score if d.results else 0.0 for d in msg.detections], np.float32)
        self.rates["detector"].tick()

    def on_masks(self, msg) -> None:
        from split_perception.image_conversion import image_to_array

        f = self.frame(stamp_of(msg))
        f.seg_latency_ms = latency_ms(f.stamp)
        f.labels = np.array(image_to_array(msg))
        self.rates["slots"].tick()

    def on_slot_latents(self, msg) -> None:
        self.frame(stamp_of(msg)).slots_k = int(msg.height)  # K x D: one row per slot

    def on_diagnostics(self, msg) -> None:
        from diagnostic_msgs.msg import DiagnosticStatus

        for status in msg.status:
            self.diag[status.name] = {kv.key: kv.value for kv in status.values}
            if status.level == DiagnosticStatus.ERROR:
                self.diag_errors[status.name] = status.message
            else:
                self.diag_errors.pop(status.name, None)

    def failed_loads(self) -> dict[str, str]:
        """{node: why} for the model nodes that hold no model and are not loading one: at the start that
        is a model that did not load (a missing or corrupt file, a backend not installed); the nodes stay
        up waiting for a new model_path, but the demo has nothing to show."""
        return {f"/{topic}": self.diag_errors[f"/{topic}"] for topic in self.without_model().values()
                if f"/{topic}" in self.diag and "loading " not in self.diag_errors.get(f"/{topic}", "loading ")}

    def without_model(self) -> dict[str, str]:
        """{status name: node name} of the model nodes whose /diagnostics name no model (or not heard yet)."""
        return {name: topic for name, topic in MODEL_NODES.items()
                if self.diag.get(f"/{topic}", {}).get("model_id", "none") == "none"}

    # --- frames done -------------------------------------------------------------------------------
    def finish_ready(self, flush: bool = False) -> None:
        """Finish frames both nodes answered, or that waited ANSWER_WAIT_S; flush (at the stop): leave out
        the rest, still in flight."""
        now = time.monotonic()
        for stamp in sorted(self.pending):
            f = self.pending[stamp]
            answered = f.boxes is not None and f.labels is not None and f.slots_k is not None
            if f.rgb is None:  # an answer to a camera frame that has not arrived here (yet)
                if flush or now - f.created > ANSWER_WAIT_S:
                    del self.pending[stamp]
                continue
            if answered or now - f.seen_at > ANSWER_WAIT_S:
                del self.pending[stamp]
                self.finish(f)
            elif flush:  # still in flight when the run stopped: neither answered nor lost
                del self.pending[stamp]
                self.in_flight += 1

    def finish(self, f: Frame) -> None:
        from split_perception.training import metrics

        t = self.totals
        t.frames += 1
        n = f.seq
        if f.index is None:
            t.truth_unknown += 1
        if f.boxes is not None:
            t.det_answered += 1
            t.det_latency.append(f.det_latency_ms)
            if f.truth_count is not None:
                t.pred_counts.append(len(f.boxes))
                t.true_counts.append(f.truth_count)
            self.last_det = f
        else:
            t.det_lost += 1
        if f.labels is not None:
            t.seg_answered += 1
            t.seg_latency.append(f.seg_latency_ms)
            t.slots_used.append(len(np.unique(f.labels)))
            if f.slots_k:
                t.slots_k = f.slots_k
            if f.truth_labels is not None and f.truth_labels.shape == f.labels.shape:
                f.fg_ari = metrics.foreground_ari(f.truth_labels, f.labels)
                if np.isfinite(f.fg_ari):
                    t.fg_ari.append(f.fg_ari)
        else:
            t.seg_lost += 1
        keep = (n - 1) % self.keep_every == 0
        # drawing and PNG writing on a thread of their own: the ROS callbacks here stay on time
        future = self.drawer.submit(self.render, f, n, keep)
        if keep:
            self.kept.append((n, f.boxes is not None and f.labels is not None, future))
            if len(self.kept) > GIF_MAX_FRAMES:  # a run without an end: keep every other one
                self.kept, self.keep_every = self.kept[::2], self.keep_every * 2

    def render(self, f: Frame, n: int, keep: bool):
        """Write frame n's pictures; returns its row of panels when it is kept for the sheet."""
        tile = self.tile(f, n)
        write_png(self.frames_dir / f"{n:06d}_boxes.png", tile["boxes"])
        write_png(self.frames_dir / f"{n:06d}_slots.png", tile["slots"])
        self.forget_old_frame(n)
        return tile["row"] if keep else None

    def forget_old_frame(self, n: int) -> None:
        """A run without an end (--frames 0) keeps only the pictures of its newest frames."""
        if not self.args.frames and n > OPEN_RUN_FRAME_FILES:
            for kind in ("boxes", "slots"):
                (self.frames_dir / f"{n - OPEN_RUN_FRAME_FILES:06d}_{kind}.png").unlink(missing_ok=True)

    def tile(self, f: Frame, n: int) -> dict:
        """The frame, its boxes and its slots side by side with captions."""
        camera, _ = upscale(f.rgb)
        if f.boxes is not None:
            boxes = draw_boxes(f.rgb, f.boxes, f.scores)
            det_text = [f"detector: {len(f.boxes)} object(s)", f"{f.det_latency_ms:.0f} ms after the camera"]
        else:
            boxes, det_text = np.full_like(camera, 200), ["detector: no answer", "(frame lost)"]
        if f.labels is not None:
            k = f.slots_k or int(f.labels.max()) + 1
            slots = draw_slots(f.rgb, f.labels, k)
            used = len(np.unique(f.labels))
            ari = f"fg-ARI {f.fg_ari:.2f}" if f.fg_ari is not None and np.isfinite(f.fg_ari) else "fg-ARI -"
            # three short lines: one long line ran past the panel's 192 px
            seg_text = [f"slots: {used} of K={k} in use", ari, f"{f.seg_latency_ms:.0f} ms after the camera"]
        else:
            slots, seg_text = np.full_like(camera, 200), ["slots: no answer", "(frame lost)"]
        truth = f"{f.truth_count} object(s)" if f.truth_count is not None else "ground truth unknown"
        cam_text = [f"camera frame {n}", f"truth: {truth}"]
        panels = [caption(camera, cam_text, 56), caption(boxes, det_text, 56), caption(slots, seg_text, 56)]
        return {"boxes": boxes, "slots": slots, "row": hstack(panels)}

    # --- status ------------------------------------------------------------------------------------
    def status_line(self, final: bool = False) -> str:
        """The one-line status; final=True: after the stream ended, rates over its last seconds."""
        t = self.totals
        if self.first_frame_at is None:
            up = [name for name, topic in MODEL_NODES.items() if f"/{topic}" in self.diag]
            waiting = list(self.without_model())
            return (f"starting {time.monotonic() - self.started:4.0f} s: nodes up: {', '.join(up) or 'none yet'}; "
                    f"loading: {', '.join(waiting) or '-'}; camera waits for all subscribers")
        total = f"/{self.args.frames}" if self.args.frames else ""
        last = self.last_det
        objects = (f" {len(last.boxes)} obj (truth {last.truth_count if last.truth_count is not None else '?'})"
                   if last is not None else "")
        acc = ""
        if t.true_counts:
            from split_perception.training import metrics

            acc = f" acc {metrics.count_accuracy(t.pred_counts, t.true_counts):.2f}"
        det_ms = f" {np.median(t.det_latency[-20:]):.0f} ms" if t.det_latency else ""
        seg_ms = f" {np.median(t.seg_latency[-20:]):.0f} ms" if t.seg_latency else ""
        used = f" {t.slots_used[-1]}/{t.slots_k or '?'} used" if t.slots_used else ""
        hz = {name: rate.hz(final) for name, rate in self.rates.items()}
        return (f"frame {self.camera_frames}{total} | cam {hz['camera']:.1f} Hz | "
                f"det {hz['detector']:.1f} Hz{objects}{acc}{det_ms} | "
                f"slots {hz['slots']:.1f} Hz{used}{seg_ms} | lost {t.det_lost}/{t.seg_lost}")

    def show_status(self, final: bool = False) -> None:
        line = self.status_line(final)
        if self.tty:
            width = shutil.get_terminal_size((120, 20)).columns
            sys.stdout.write("\r\x1b[2K" + line[: width - 1])
        else:
            sys.stdout.write("status: " + line + "\n")
        sys.stdout.flush()
        self.status_shown = True

    def end_status(self) -> None:
        if self.tty and self.status_shown:
            sys.stdout.write("\n")
            sys.stdout.flush()

    # --- outputs -----------------------------------------------------------------------------------
    def header(self) -> list[str]:
        t = self.totals
        scenes = "MONet room scenes" if self.args.background == "room" else \
            f"procedural '{self.args.background}' scenes, {'unseen' if self.args.palette == 'test' else 'training'} colours"
        lines = [
            "split_perception demo: camera_source -> detector_node (SPLIT-SPAIR) + segmenter_node (MONet), over ROS 2",
            f"camera: {scenes}, {self.args.rate:g} Hz. Columns: camera frame (with the generator's object count) |",
            "detector boxes (label: presence probability) | slot masks (one colour per slot, borders dark)",
        ]
        if t.true_counts:
            from split_perception.training import metrics

            ari = (f"; slots: foreground ARI {np.mean(t.fg_ari):.2f} (1 = each object exactly one slot)"
                   if t.fg_ari else "")
            lines.append(f"{t.frames} frames: detector count accuracy "
                         f"{metrics.count_accuracy(t.pred_counts, t.true_counts):.2f} (share of frames with the exact "
                         f"object count){ari}")
        return lines

    def write_outputs(self) -> dict:
        paths = {}
        self.drawer.shutdown(wait=True)  # every frame's files are written
        self.kept = sorted((n, answered, future.result()) for n, answered, future in self.kept)
        if self.kept:
            # the sheet shows frames both nodes answered, spread over the run (lost ones only if too few)
            pool = [k for k in self.kept if k[1]]
            pool = pool if len(pool) >= min(SHEET_FRAMES, len(self.kept)) else self.kept
            picks = np.linspace(0, len(pool) - 1, min(SHEET_FRAMES, len(pool))).round().astype(int)
            rows = [pool[i][2] for i in sorted(set(picks.tolist()))]
            grid = [hstack(rows[i : i + 2], gap=16) for i in range(0, len(rows), 2)]
            body = vstack(grid, gap=10)
            header = caption(np.zeros((0, body.shape[1], 3), np.uint8), self.header(), scale=0.5)
            sheet = vstack([header, body], gap=4)
            paths["contact_sheet"] = self.out / "contact_sheet.png"
            write_png(paths["contact_sheet"], sheet)
            if not self.args.no_gif:
                from PIL import Image

                frames = [Image.fromarray(pad_to(tile, *self.kept[0][2].shape[:2])) for _, _, tile in self.kept]
                paths["gif"] = self.out / "demo.gif"
                frames[0].save(paths["gif"], save_all=True, append_images=frames[1:], loop=0,
                               duration=max(50, int(1000 * self.keep_every / self.args.rate)))
        summary = self.summary()
        (self.out / "summary.json").write_text(json.dumps(summary, indent=2) + "\n")
        (self.out / "summary.txt").write_text("\n".join(summary["lines"]) + "\n")
        paths["summary"] = self.out / "summary.txt"
        paths["frames"] = self.frames_dir
        return paths

    def summary(self) -> dict:
        from split_perception.training import metrics

        t = self.totals

        def pct(values, q):
            return round(float(np.percentile(values, q)), 1) if values else None

        acc = metrics.count_accuracy(t.pred_counts, t.true_counts) if t.true_counts else None
        err = metrics.count_error(t.pred_counts, t.true_counts) if t.true_counts else None
        out = {
            "frames": t.frames, "stopped_by": self.stop_reason, "in_flight_at_stop": self.in_flight,
            "detector": {"answered": t.det_answered, "lost": t.det_lost, "count_accuracy": acc, "count_error": err,
                         "objects_per_frame": round(float(np.mean(t.pred_counts)), 2) if t.pred_counts else None,
                         "true_objects_per_frame": round(float(np.mean(t.true_counts)), 2) if t.true_counts else None,
                         "latency_ms_p50": pct(t.det_latency, 50), "latency_ms_p99": pct(t.det_latency, 99)},
            "slots": {"answered": t.seg_answered, "lost": t.seg_lost, "K": t.slots_k,
                      "slots_used_per_frame": round(float(np.mean(t.slots_used)), 2) if t.slots_used else None,
                      "fg_ari": round(float(np.mean(t.fg_ari)), 3) if t.fg_ari else None,
                      "latency_ms_p50": pct(t.seg_latency, 50), "latency_ms_p99": pct(t.seg_latency, 99)},
            "nodes": {name: {k: d.get(k) for k in ("model_id", "backend", "frames_received", "frames_processed",
                                                     "frames_dropped", "latency_ms_p50")} for name, d in self.diag.items()},
        }
        d, s = out["detector"], out["slots"]
        notes = [f"{self.in_flight} still in flight at the stop left out" if self.in_flight else "",
                 f"ground truth unknown for {t.truth_unknown}" if t.truth_unknown else ""]
        lines = ["; ".join([f"frames {t.frames} ({self.stop_reason})"] + [n for n in notes if n])]
        if acc is not None:
            lines.append(f"detector: answered {d['answered']}, lost {d['lost']}; count accuracy {acc:.3f}, count error "
                         f"{err:.3f} ({d['objects_per_frame']} objects per frame, truth {d['true_objects_per_frame']})")
        else:
            lines.append(f"detector: answered {d['answered']}, lost {d['lost']}")
        if d["latency_ms_p50"] is not None:
            lines.append(f"detector latency camera -> detections here: p50 {d['latency_ms_p50']} ms, "
                         f"p99 {d['latency_ms_p99']} ms")
        ari = f", foreground ARI {s['fg_ari']:.3f}" if s["fg_ari"] is not None else ""
        if s["K"] is not None:
            lines.append(f"slots: answered {s['answered']}, lost {s['lost']}; K = {s['K']}, "
                         f"{s['slots_used_per_frame']} slots in use per frame{ari}")
        else:
            lines.append(f"slots: answered {s['answered']}, lost {s['lost']}")
        if s["latency_ms_p50"] is not None:
            lines.append(f"slots latency camera -> masks here: p50 {s['latency_ms_p50']} ms, p99 {s['latency_ms_p99']} ms")
        out["lines"] = lines
        return out

    # --- main loop ---------------------------------------------------------------------------------
    def run(self) -> int:
        import rclpy
        from diagnostic_msgs.msg import DiagnosticArray
        from rclpy.context import Context
        from rclpy.executors import SingleThreadedExecutor
        from rclpy.qos import QoSProfile, ReliabilityPolicy
        from rclpy.signals import SignalHandlerOptions
        from sensor_msgs.msg import Image
        from vision_msgs.msg import Detection2DArray

        stop = {"signal": None}

        def on_signal(signum, _frame):
            stop["signal"] = signal.Signals(signum).name

        previous = {s: signal.signal(s, on_signal) for s in (signal.SIGINT, signal.SIGTERM)}
        status = 0
        try:
            self.start_nodes()
            self.truth = GroundTruth(self.args.background, self.args.palette, self.args.seed)
        except BaseException:
            self.stop_nodes()
            for s, handler in previous.items():
                signal.signal(s, handler)
            raise
        context = Context()
        rclpy.init(context=context, signal_handler_options=SignalHandlerOptions.NO)
        node = rclpy.create_node("demo_viewer", context=context)
        executor = SingleThreadedExecutor(context=context)
        executor.add_node(node)
        reliable = QoSProfile(depth=100, reliability=ReliabilityPolicy.RELIABLE)
        node.create_subscription(Image, CAMERA_TOPIC, self.on_camera, reliable)
        node.create_subscription(Detection2DArray, "/split_spair_detector/detections", self.on_detections, reliable)
        node.create_subscription(Image, "/monet_segmenter/masks", self.on_masks, reliable)
        node.create_subscription(Image, "/monet_segmenter/slot_latents", self.on_slot_latents, reliable)
        node.create_subscription(DiagnosticArray, "/diagnostics", self.on_diagnostics, 10)
        print(f"split_perception demo: camera_source publishes procedural scenes on {CAMERA_TOPIC}; split_spair_detector "
              f"(boxes) and monet_segmenter (slot masks) answer, each in its own process (logs: {self.logs_dir}). "
              f"Ctrl-C stops.\n"
              "status: det = detector: objects in the newest frame (truth = the scene generator's count), acc = count "
              "accuracy so far; slots = slot node: slots in use / K; ms = camera -> answer here (median); lost = camera "
              "frames the detector / slot node never answered", flush=True)
        next_status = 0.0
        camera_done_at = None
        try:
            while True:
                executor.spin_once(timeout_sec=0.05)
                self.finish_ready()
                now = time.monotonic()
                if stop["signal"]:
                    self.stop_reason = f"stopped by {stop['signal']}"
                    break
                self.start_camera_when_ready()
                failed = self.failed_loads() if self.first_frame_at is None else {}
                if failed:
                    self.end_status()
                    for name, why in failed.items():
                        print(f"demo: {name} could not load its model: {why}\n(its log: {self.logs_dir})", file=sys.stderr)
                    self.stop_reason, status = "a model did not load", 1
                    break
                crashed = [s for s in ("detector", "slots") if self.procs[s].poll() is not None]
                if crashed:
                    time.sleep(0.3)  # a Ctrl-C in the terminal reaches the nodes too: was this one?
                    if stop["signal"]:
                        continue
                    self.end_status()
                    for s in crashed:
                        print(f"demo: the {s} node ended (exit status {self.procs[s].returncode})\n{self.log_tail(s)}",
                              file=sys.stderr)
                    self.stop_reason, status = "a node ended", 1
                    break
                camera = self.procs.get("camera")
                if camera is not None and camera.poll() is not None:
                    if camera.returncode != 0:
                        time.sleep(0.3)
                        if stop["signal"]:
                            continue
                        self.end_status()
                        print(f"demo: camera_source ended (exit status {camera.returncode})\n{self.log_tail('camera')}",
                              file=sys.stderr)
                        self.stop_reason, status = "camera failed", 1
                        break
                    camera_done_at = camera_done_at or now
                    if not self.pending or now - camera_done_at > ANSWER_WAIT_S + 1:
                        self.stop_reason = f"camera sent its {self.args.frames} frames"
                        break
                if self.first_frame_at is None and now - self.started > STARTUP_TIMEOUT_S:
                    self.end_status()
                    print(f"demo: no camera frame within {STARTUP_TIMEOUT_S:.0f} s; the nodes' logs are in "
                          f"{self.logs_dir}", file=sys.stderr)
                    self.stop_reason, status = "start-up timed out", 1
                    break
                if now >= next_status:
                    self.show_status()
                    next_status = now + (0.25 if self.tty else 2.0)
        finally:
            # a second Ctrl-C while the nodes stop or the files are written must not cut that short
            signal.signal(signal.SIGINT, signal.SIG_IGN)
            signal.signal(signal.SIGTERM, signal.SIG_IGN)
            try:
                self.stop_nodes()
                self.finish_ready(flush=True)
                self.show_status(final=True)
                self.end_status()
                node.destroy_node()
                executor.shutdown()
                context.try_shutdown()
            finally:
                for s, handler in previous.items():
                    signal.signal(s, handler)
        paths = self.write_outputs()
        for line in self.summary()["lines"]:
            print(line)
        for key, label in (("frames", "frames (boxes, slots)"), ("contact_sheet", "contact sheet"), ("gif", "animation"),
                           ("summary", "summary")):
            if key in paths:
                print(f"{label + ':':23s}{paths[key]}")
        if self.totals.frames == 0 and status == 0:
            print("demo: no frame arrived", file=sys.stderr)
            status = 1
        return status


def _die_with_parent() -> None:
    """In a node process before it starts: end with SIGTERM if the demo process dies (Linux)."""
    try:
        import ctypes

        ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG
    except (OSError, AttributeError):
        pass


def run_demo(args) -> int:
    """split-perception demo (see the module docstring)."""
    if args.frames < 0:
        raise ValueError(f"--frames must be >= 0, got {args.frames}")
    if not 0 < args.rate <= 1000:
        raise ValueError(f"--rate must be in (0, 1000] Hz, got {args.rate}")
    from split_perception.training.scenes import BACKGROUNDS

    PROCEDURAL_KINDS = BACKGROUNDS + ("room",)  # as camera_source takes them
    if args.background not in PROCEDURAL_KINDS:
        raise ValueError(f"--background must be one of {', '.join(PROCEDURAL_KINDS)}; got '{args.background}'")
    out = Path(args.out)
    frames = out / "frames"
    frames.mkdir(parents=True, exist_ok=True)
    for old in list(frames.glob("*_boxes.png")) + list(frames.glob("*_slots.png")):  # an earlier run's
        old.unlink()
    for name in ("contact_sheet.png", "demo.gif"):
        (out / name).unlink(missing_ok=True)
    return DemoRun(args, out).run()
