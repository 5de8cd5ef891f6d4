"""ROS 2 node benchmark: what the nodes add over the bare API, and both nodes under a 30 Hz camera.

    python benchmarks/bench_nodes.py [--seconds 60] [--rate 30] [--n 100] [--backend auto]
                                     [--dds-profile PATH|none] [--both]

Needs rclpy (the .venv's PyPI wheels or a sourced ROS 2 install). Traffic stays on this machine
(ROS_AUTOMATIC_DISCOVERY_RANGE=LOCALHOST) in a random ROS_DOMAIN_ID unless those are set. Frames
are 640 x 480 rgb8 (procedural scenes resized up), published by this process with sensor-data
QoS (best effort, depth 5), as a camera driver does; the outputs are read with the nodes' output
QoS (reliable, 10). Answers are matched to frames by header stamp (the nodes copy the input
header); latencies are this process's clock, publish -> answer received. This process and the
nodes run with the Fast DDS profile that detect.launch.py gives its nodes (--dds-profile, default
config/fastdds_camera_frames.xml: shared memory that holds a whole frame); `--dds-profile none`
measures Fast DDS's defaults, `--both` runs the benchmark twice, without and with the profile.

1. Latency, detector only (`python -m split_perception.nodes.detector_node`, image remapped to
   /bench/image): one frame at a time, the next after the answer (no frame is dropped or
   queued), camera -> ~/detections; then load_detector()(frame) in this process on the same
   frames (the node is idle meanwhile). p50 / p99 of both and the difference: what the node adds
   (image message transport both ways, conversion, output messages, worker hand-over).
2. Load: the detector and the segmenter (`... .segmenter_node`), each its own process on the one
   image topic, fed at --rate Hz for --seconds. Per node: output rate of its main topic
   (~/detections, ~/masks), drop ratio (1 - frames answered / frames published), CPU % of the
   node process over the run (/proc/PID/stat utime + stime; 100 % = one core), VmRSS at start
   and end (/proc/PID/status), and whether a queue grew: answer latency p50 over the last fifth
   of the run against the first fifth (the nodes keep only the newest frame, so it should not).
"""
from __future__ import annotations

import argparse
import os
import platform
import random
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

os.environ.setdefault("ROS_DOMAIN_ID", str(random.Random(os.getpid()).randint(1, 100)))
os.environ.setdefault("ROS_AUTOMATIC_DISCOVERY_RANGE", "LOCALHOST")

import numpy as np  # noqa: E402

WIDTH, HEIGHT = 640, 480
IMAGE_TOPIC = "/bench/image"
NODES = {  # name: (module, main output topic, output type name)
    "detector": ("split_perception.nodes.detector_node", "/split_spair_detector/detections", "detections"),
    "segmenter": ("split_perception.nodes.segmenter_node", "/monet_segmenter/masks", "masks"),
}
CLK_TCK = os.sysconf("SC_CLK_TCK")


def machine_line() -> str:
    model = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo") as f:
            model = next((line.split(":", 1)[1].strip() for line in f if line.startswith("model name")), model)
    except OSError:
        pass
    return f"machine: {model}, {os.cpu_count()} cores ({len(os.sched_getaffinity(0))} usable), {platform.system()} {platform.machine()}, python {platform.python_version()}"


def cpu_seconds(pid: int) -> float:
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rpartition(")")[2].split()
    return (int(fields[11]) + int(fields[12])) / CLK_TCK  # utime, stime (fields 14, 15 of stat)


def rss_mb(pid: int) -> float:
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return float("nan")


def make_frames(n: int) -> list[np.ndarray]:
    from split_perception.frames import resize
    from split_perception.training import scenes

    cfg = scenes.MultiObjectConfig(image_size=48)
    return [np.ascontiguousarray(resize(scenes.generate(cfg, 0, i).image, WIDTH, HEIGHT)) for i in range(n)]


def pct(values, q) -> float:
    return float(np.percentile(np.asarray(values), q)) if len(values) else float("nan")


class Bench:
    """The client side: camera publisher, output subscribers that time answers by stamp."""

    def __init__(self, frames, log_dir: Path, backend: str):
        import rclpy
        from rclpy.executors import SingleThreadedExecutor
        from rclpy.qos import qos_profile_sensor_data
        from sensor_msgs.msg import Image

        from split_perception.image_conversion import array_to_image

        rclpy.init()
        self.node = rclpy.create_node("bench_nodes_client")
        self.camera = self.node.create_publisher(Image, IMAGE_TOPIC, qos_profile_sensor_data)
        self.msgs = [array_to_image(f, "rgb8") for f in frames]
        for m in self.msgs:
            m.header.frame_id = "cam"
        self.sent: dict[int, float] = {}  # seq -> publish time
        self.answers: dict[str, dict[int, float]] = {name: {} for name in NODES}
        self.cond = threading.Condition()
        self.seq = 0
        self.log_dir, self.backend = log_dir, backend
        self.procs: dict[str, subprocess.Popen] = {}
        self.executor = SingleThreadedExecutor()
        self.executor.add_node(self.node)
        self.spinner = threading.Thread(target=self.executor.spin, daemon=True)
        self.spinner.start()

    def subscribe(self, name: str) -> None:
        from sensor_msgs.msg import Image
        from vision_msgs.msg import Detection2DArray

        topic = NODES[name][1]
        msg_type = Detection2DArray if name == "detector" else Image
        self.node.create_subscription(msg_type, topic, lambda m, n=name: self.on_answer(n, m), 10)

    def on_answer(self, name: str, msg) -> None:
        t = time.perf_counter()
        with self.cond:
            self.answers[name].setdefault(msg.header.stamp.sec, t)
            self.cond.notify_all()

    def start_node(self, name: str, timeout: float = 120.0) -> None:
        """Start the node's process, then send frames until it answers one (model loaded, matched)."""
        module = NODES[name][0]
        log = open(self.log_dir / f"{name}.log", "w")
        self.procs[name] = subprocess.Popen(
            [sys.executable, "-m", module, "--ros-args", "-r", f"image:={IMAGE_TOPIC}", "-p", f"backend:={self.backend}"],
            env=dict(os.environ), stdout=log, stderr=subprocess.STDOUT)
        self.subscribe(name)
        t0 = time.monotonic()
        end = t0 + timeout
        while time.monotonic() < end:
            if self.procs[name].poll() is not None:
                raise RuntimeError(f"{name} node exited ({self.procs[name].returncode}):\n{(self.log_dir / f'{name}.log').read_text()}")
            seq = self.publish()
            if self.wait_answer(name, seq, 0.5):
                print(f"   ({name} node up and answering after {time.monotonic() - t0:.1f} s)", flush=True)
                return
        raise RuntimeError(f"{name} node did not answer within {timeout} s:\n{(self.log_dir / f'{name}.log').read_text()}")

    def publish(self, frame_index: int | None = None) -> int:
        self.seq += 1
        msg = self.msgs[(self.seq if frame_index is None else frame_index) % len(self.msgs)]
        msg.header.stamp.sec, msg.header.stamp.nanosec = self.seq, 0
        self.sent[self.seq] = time.perf_counter()
        self.camera.publish(msg)
        return self.seq

    def wait_answer(self, name: str, seq: int, timeout: float) -> bool:
        with self.cond:
            return self.cond.wait_for(lambda: seq in self.answers[name], timeout)

    def close(self) -> None:
        for proc in self.procs.values():
            proc.terminate()
        for proc in self.procs.values():
            try:
                proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        self.executor.shutdown()
        self.node.destroy_node()
        import rclpy

        rclpy.try_shutdown()


def latency_phase(bench: Bench, frames, n: int, backend: str) -> None:
    bench.start_node("detector")
    for i in range(10):  # warm-up, lockstep
        bench.wait_answer("detector", bench.publish(i), 0.5)
    e2e, lost, i = [], 0, 0
    while len(e2e) < n and i < 5 * n:  # a lost frame (best effort) is counted, and another one sent
        seq = bench.publish(i)
        i += 1
        if bench.wait_answer("detector", seq, 0.5):
            e2e.append(1000 * (bench.answers["detector"][seq] - bench.sent[seq]))
        else:
            lost += 1
        time.sleep(0.01)  # let the node's worker and outputs settle before the next frame

    from split_perception import load_detector

    api = load_detector(backend=backend)
    for i in range(10):
        api(frames[i % len(frames)])
    bare = []
    for i in range(n):
        f = frames[i % len(frames)]
        t0 = time.perf_counter()
        api(f)
        bare.append(1000 * (time.perf_counter() - t0))
    print(f"\n1. latency, detector, {WIDTH}x{HEIGHT} rgb8, {n} frames one at a time (api backend: {api.backend}; node backend param: {backend})")
    print(f"   camera -> ~/detections   p50 {pct(e2e, 50):7.2f} ms  p99 {pct(e2e, 99):7.2f} ms  ({len(e2e)} answered, {lost} lost: no answer in 0.5 s)")
    print(f"   load_detector()(frame)   p50 {pct(bare, 50):7.2f} ms  p99 {pct(bare, 99):7.2f} ms")
    print(f"   node adds                p50 {pct(e2e, 50) - pct(bare, 50):7.2f} ms  p99 {pct(e2e, 99) - pct(bare, 99):7.2f} ms")


def load_phase(bench: Bench, seconds: float, rate: float) -> None:
    bench.start_node("segmenter")
    for _ in range(10):  # both nodes warm
        seq = bench.publish()
        bench.wait_answer("segmenter", seq, 0.5)
        bench.wait_answer("detector", seq, 0.5)
    pids = {name: p.pid for name, p in bench.procs.items()}
    rss0 = {name: rss_mb(pid) for name, pid in pids.items()}
    cpu0 = {name: cpu_seconds(pid) for name, pid in pids.items()}
    first_seq = bench.seq + 1
    t0 = time.perf_counter()
    period, k = 1.0 / rate, 0
    while True:
        t_next = t0 + k * period
        if t_next - t0 >= seconds:
            break
        delay = t_next - time.perf_counter()
        if delay > 0:
            time.sleep(delay)
        bench.publish()
        k += 1
    t_end_pub = time.perf_counter()
    cpu1 = {name: cpu_seconds(pid) for name, pid in pids.items()}
    wall = t_end_pub - t0
    time.sleep(1.0)  # answers to the last frames
    rss1 = {name: rss_mb(pid) for name, pid in pids.items()}
    last_seq = bench.seq
    published = last_seq - first_seq + 1
    print(f"\n2. load: both nodes, {rate:g} Hz for {seconds:g} s: {published} frames published "
          f"({published / wall:.2f} Hz achieved)")
    for name in NODES:
        with bench.cond:
            got = {s: t for s, t in bench.answers[name].items() if first_seq <= s <= last_seq}
        seqs = sorted(got)
        lat = [1000 * (got[s] - bench.sent[s]) for s in seqs]
        fifth = max(1, len(lat) // 5)
        start_p50, end_p50 = pct(lat[:fifth], 50), pct(lat[-fifth:], 50)
        grew = end_p50 > 1.5 * start_p50 + 10.0
        out_times = sorted(got.values())
        out_rate = (len(out_times) - 1) / (out_times[-1] - out_times[0]) if len(out_times) > 1 else 0.0
        cpu = 100.0 * (cpu1[name] - cpu0[name]) / wall
        print(f"   {name:9s} {NODES[name][1]}: {out_rate:6.2f} Hz out, {len(got)}/{published} answered, "
              f"drop ratio {1 - len(got) / published:.3f}")
        print(f"   {'':9s} CPU {cpu:6.1f} % (of one core; {os.cpu_count()} cores), RSS {rss0[name]:.0f} -> {rss1[name]:.0f} MB "
              f"({rss1[name] - rss0[name]:+.1f} MB)")
        print(f"   {'':9s} latency p50 {pct(lat, 50):.1f} ms, p99 {pct(lat, 99):.1f} ms; first fifth p50 {start_p50:.1f} ms, "
              f"last fifth p50 {end_p50:.1f} ms: queue grew: {'YES' if grew else 'no'}")


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--seconds", type=float, default=60.0, help="duration of the 30 Hz load run")
    ap.add_argument("--rate", type=float, default=30.0, help="camera rate of the load run, Hz")
    ap.add_argument("--n", type=int, default=100, help="frames for the latency comparison")
    ap.add_argument("--backend", default="auto", help="backend of both nodes and of the bare API")
    ap.add_argument("--dds-profile", default="default", help="Fast DDS XML profile of this process (the camera) and the "
                    "nodes; 'none': Fast DDS defaults; default: what detect.launch.py uses")
    ap.add_argument("--both", action="store_true", help="run twice, with --dds-profile none and then the default")
    args = ap.parse_args(argv)
    if args.both:
        rest = [a for a in (argv if argv is not None else sys.argv[1:]) if a != "--both"]
        for profile in ("none", "default"):
            print(f"\n===== Fast DDS profile: {profile} =====", flush=True)
            subprocess.run([sys.executable, __file__, *rest, "--dds-profile", profile], check=True)
        return 0
    from split_perception import launch_spec

    profile = {"none": "", "default": launch_spec.defaults()["dds_profile"]}.get(args.dds_profile, args.dds_profile)
    for variable in launch_spec.DDS_PROFILE_VARIABLES:  # before rclpy starts Fast DDS in this process
        os.environ.pop(variable, None)
    os.environ.update(launch_spec.dds_environment(profile))

    t_start = time.perf_counter()
    print(machine_line())
    print(f"ROS_DOMAIN_ID={os.environ['ROS_DOMAIN_ID']}, RMW={os.environ.get('RMW_IMPLEMENTATION', 'default')}, "
          f"frames {WIDTH}x{HEIGHT} rgb8, camera QoS sensor-data (best effort, depth 5), "
          f"Fast DDS profile: {profile or 'none (defaults)'}", flush=True)
    frames = make_frames(30)
    with tempfile.TemporaryDirectory() as d:
        bench = Bench(frames, Path(d), args.backend)
        try:
            latency_phase(bench, frames, args.n, args.backend)
            load_phase(bench, args.seconds, args.rate)
        finally:
            bench.close()
    print(f"\ntotal run time {time.perf_counter() - t_start:.1f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
