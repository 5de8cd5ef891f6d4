"""`split-perception deploy CHECKPOINT [--node NAME] [--out PATH]`: export -> check -> atomic place
-> ask a node to reload.

1. Export: the checkpoint's inference graph to ONNX (export.py), written to a hidden temp file beside
   the target (same file system, so the final rename is atomic).
2. Check: the export is loaded the way a node loads it (`load_detector` / `load_segmenter` on ONNX
   Runtime), run on one procedural frame, and every graph output is compared with the torch
   checkpoint's (CPU, fp32) on the same input: same shapes, finite, within atol + rtol * |torch|.
   A checkpoint of another model type than the node runs (or than the file it replaces holds) is
   refused before anything is exported.
3. Place: fsync, then rename over the target. If any step fails nothing is placed: the target (and
   the model the node serves) stays as it was, and DeployError says why.
4. Reload (run_deploy, with a NodeClient: nodes/reload_client.py, rclpy): the node's `model_path`
   names the target (or is set to it), then its `~/reload` service loads, checks and swaps in the
   new file off its executor; its answer (new model id, or why it kept the old model) is reported.
   Without rclpy the file is placed and no node is contacted (said so).

Exit status of run_deploy (the CLI's): 0 placed (and the node reloaded it, when one was named and
reachable), 2 nothing placed (bad checkpoint, failed check, wrong model type, bad target), 3 placed
but the node was not reached or did not load it (it keeps serving its old model).

No rclpy here: the node side is a small client object (see NodeClient), so tests drive this module
with a fake one and the real one is tested against a running node.
"""
from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Protocol

import numpy as np

from split_perception.atomic_io import atomic_write
from split_perception.nodes.model_holder import file_id as model_id  # the id a node reports for a file

EXIT_OK, EXIT_NOT_PLACED, EXIT_NOT_RELOADED = 0, 2, 3
# ONNX Runtime vs torch on the CPU, fp32: measured max |diff| 8e-6 on a fine-tuned shipped detector's outputs
# (boxes in model pixels up to 48, probabilities, latents); a wrong or broken export is off by far more
ATOL, RTOL = 1e-3, 1e-3
MODEL_KINDS = {"split_spair": "detector", "monet": "slot segmenter"}


class DeployError(Exception):
    """Nothing was placed; the message says why."""


@dataclass
class CheckReport:
    model_type: str
    input_size: int
    max_abs_diff: dict[str, float]  # per graph output, ONNX Runtime vs torch

    @property
    def worst(self) -> tuple[str, float]:
        return max(self.max_abs_diff.items(), key=lambda kv: kv[1])

    def summary(self) -> str:
        name, diff = self.worst
        return (f"ONNX Runtime output matches the torch checkpoint on one {self.input_size} px frame "
                f"({len(self.max_abs_diff)} outputs, max |diff| {diff:.2g} in '{name}')")


@dataclass
class Deployed:
    path: Path
    model_id: str  # what the node's /diagnostics shows once it serves this file
    model_type: str
    check: CheckReport
    notes: list[str] = field(default_factory=list)


def checkpoint_model_type(checkpoint: Path) -> str:
    from split_perception.models import checkpoint as ckpt

    if Path(checkpoint).suffix.lower() in (".onnx", ".engine"):
        raise DeployError(f"{checkpoint} is already an exported model: deploy takes the .safetensors checkpoint it was "
                          f"exported from (the export is checked against it)")
    try:
        meta = ckpt.read_metadata(checkpoint)
    except ckpt.CheckpointError as e:
        raise DeployError(f"cannot deploy: {e}") from None
    model_type = meta.get("model_type")
    if model_type not in MODEL_KINDS:
        raise DeployError(f"cannot deploy {checkpoint}: unknown model type '{model_type}'")
    return model_type


def onnx_model_type(path: Path) -> str | None:
    """The model type an existing ONNX export declares, or None if it cannot be read."""
    try:
        import onnx

        proto = onnx.load(str(path), load_external_data=False)
    except Exception:  # noqa: BLE001 - a damaged file says nothing about what it should hold
        return None
    return next((p.value for p in proto.metadata_props if p.key == "model_type"), None)


def check_frame(size: int) -> np.ndarray:
    """A deterministic procedural scene with objects, at the model's input size."""
    from split_perception.training import scenes

    cfg = scenes.MultiObjectConfig(image_size=size, sprite_size=max(6, round(14 * size / 48)), min_objects=2,
                                   background="gradient")
    return scenes.generate(cfg, 4242, 0).image


def check_export(onnx_path: Path, checkpoint: Path, frame: np.ndarray | None = None,
                 atol: float = ATOL, rtol: float = RTOL) -> CheckReport:
    """Load `onnx_path` as a node would (public API, ONNX Runtime), run one frame, and compare every
    graph output with the torch checkpoint's on the same input. Raises DeployError on a mismatch."""
    from split_perception import load_detector, load_segmenter
    from split_perception.backends.torch_runner import TorchRunner
    from split_perception.preprocessing import preprocess

    onnx_path, checkpoint = Path(onnx_path), Path(checkpoint)
    try:
        reference = TorchRunner(checkpoint, device="cpu")  # fp32: the export's reference
    except Exception as e:  # noqa: BLE001
        raise DeployError(f"cannot run the checkpoint {checkpoint} with torch: {e}") from None
    loader = load_detector if reference.model_type == "split_spair" else load_segmenter
    try:
        api = loader(onnx_path, backend="onnxruntime")
    except Exception as e:  # noqa: BLE001 - any load failure means the export is unusable
        raise DeployError(f"the export does not load with ONNX Runtime: {e}") from None
    size = api.input_size
    if size != int(reference.metadata["input_size"]):
        raise DeployError(f"the export takes {size} px input, the checkpoint {reference.metadata['input_size']} px")
    frame = check_frame(size) if frame is None else frame
    x = preprocess(frame, size)
    try:
        got = api.runner.run(x)
        api(frame)  # the public call too: post-processing reads every output it needs
    except Exception as e:  # noqa: BLE001
        raise DeployError(f"the export failed on a {size} px frame: {type(e).__name__}: {e}") from None
    want = reference.run(x)
    diffs = {}
    for name, w in want.items():
        if name not in got:
            raise DeployError(f"the export lacks output '{name}' (it has {', '.join(got)})")
        g = np.asarray(got[name])
        if g.shape != w.shape:
            raise DeployError(f"output '{name}': shape {g.shape} in the export, {w.shape} from the checkpoint")
        if not np.isfinite(w).all():
            raise DeployError(f"output '{name}' of the checkpoint is not finite (NaN/inf weights?): not deploying it")
        if not np.isfinite(g).all():
            raise DeployError(f"output '{name}' of the export is not finite")
        diff = np.abs(g.astype(np.float64) - w)
        if w.size and (diff > atol + rtol * np.abs(w)).any():
            raise DeployError(f"output '{name}' of the export differs from the checkpoint's by up to {diff.max():.3g} "
                              f"(allowed {atol:g} + {rtol:g} x |value|)")
        diffs[name] = float(diff.max()) if w.size else 0.0
    return CheckReport(reference.model_type, size, diffs)


def _fsync_dir(path: Path) -> None:
    fd = os.open(str(path), os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def deploy(checkpoint: Path, target: Path, expected_model_type: str | None = None,
           check: Callable[[Path, Path], CheckReport] = check_export) -> Deployed:
    """Export `checkpoint` to ONNX, check the export, and rename it over `target` (atomic). Raises
    DeployError with nothing placed if the checkpoint cannot be read, holds another model type than
    `expected_model_type` or than the file at `target`, or the export fails its check."""
    from split_perception.export import export_onnx

    checkpoint, target = Path(checkpoint), Path(target)
    if target.suffix.lower() != ".onnx":
        raise DeployError(f"the target must be an .onnx file (nodes build TensorRT engines from it); got {target}")
    if target.is_dir():
        raise DeployError(f"the target {target} is a directory; give a file path ending in .onnx")
    model_type = checkpoint_model_type(checkpoint)
    if expected_model_type and model_type != expected_model_type:
        raise DeployError(f"{checkpoint} holds a '{model_type}' model ({MODEL_KINDS[model_type]}), but the node runs "
                          f"a '{expected_model_type}' model ({MODEL_KINDS.get(expected_model_type, '?')})")
    if target.is_file():
        existing = onnx_model_type(target)
        if existing and existing != model_type:
            raise DeployError(f"{checkpoint} holds a '{model_type}' model ({MODEL_KINDS[model_type]}), but {target} holds a "
                              f"'{existing}' model: not replacing it")
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise DeployError(f"cannot create the target folder {target.parent}: {e}") from None
    reports = []

    def export_and_check(staged: str) -> None:
        try:
            export_onnx(checkpoint, Path(staged))
        except Exception as e:  # noqa: BLE001 - a damaged checkpoint fails here in many ways
            raise DeployError(f"export of {checkpoint} failed: {e}") from None
        reports.append(check(Path(staged), checkpoint))  # raises DeployError: nothing is placed

    try:
        atomic_write(target, export_and_check, keep_suffix=True)
        try:
            _fsync_dir(target.parent)  # the rename itself survives a power cut
        except OSError:
            pass
    except OSError as e:
        raise DeployError(f"cannot write {target}: {e}") from None
    report = reports[0]
    deployed = Deployed(target, model_id(target), model_type, report)
    deployed.notes.extend(_prebuild_engine(target))
    return deployed


def _prebuild_engine(onnx_path: Path) -> list[str]:
    """Where TensorRT runs, build the node's cached engine now, so its reload does not wait for it."""
    from split_perception.backends import tensorrt_unavailable

    reason = tensorrt_unavailable()
    if reason:
        return [f"no TensorRT engine built ({reason}): nodes run the ONNX file with ONNX Runtime"]
    try:
        from split_perception.tensorrt_engine import cached_engine

        return [f"TensorRT engine built into the node's cache: {cached_engine(onnx_path)}"]
    except Exception as e:  # noqa: BLE001 - the node falls back to ONNX Runtime (or builds it itself)
        return [f"TensorRT engine build failed ({e}); the node builds it at load or runs ONNX Runtime"]


# --------------------------------------------------------------------------- the whole command
@dataclass
class NodeInfo:
    name: str  # fully qualified
    model_path: str  # '' = the shipped default
    backend: str
    model_type: str | None  # from what the node publishes (detections: split_spair, masks: monet); None if unknown


class NodeClient(Protocol):
    """What run_deploy needs from a running node (nodes/reload_client.RosNodeClient over rclpy)."""

    def info(self) -> NodeInfo: ...

    def reload(self, model_path: str) -> tuple[bool, str]: ...  # (loaded, the node's answer)

    def close(self) -> None: ...


class NodeUnreachable(Exception):
    """The named node could not be reached (not running, wrong name, another ROS domain)."""


def default_target(node_name: str) -> Path:
    """Where a node that runs the shipped default model gets its deployed model (the shipped files stay)."""
    base = Path(os.environ.get("XDG_DATA_HOME") or Path.home() / ".local" / "share")
    return base / "split_perception" / "models" / (node_name.strip("/").replace("/", "__") + ".onnx")


def node_name(name: str) -> str:
    name = name.strip()
    return name if name.startswith("/") else "/" + name


def run_deploy(checkpoint: Path, node: str | None = None, out: Path | None = None,
               connect: Callable[[str], NodeClient] | None = None, say: Callable[[str], None] = print) -> int:
    """The `deploy` command: returns its exit status (see the module docstring), saying each step.

    connect(node_name) -> NodeClient (raises NodeUnreachable); None: rclpy is not importable."""
    checkpoint = Path(checkpoint)
    out = Path(out).expanduser().absolute() if out else None
    client, info = None, None
    try:
        if node:
            node = node_name(node)
            if connect is None:
                if out is None:
                    say(f"error: rclpy is not importable here, so the model_path of {node} cannot be asked: give --out PATH")
                    return EXIT_NOT_PLACED
                say(f"rclpy is not importable here: no node will be contacted ({node} is not asked to reload)")
            else:
                try:
                    client = connect(node)
                    info = client.info()
                except NodeUnreachable as e:
                    if client is not None:
                        client.close()
                        client = None
                    if out is None:
                        say(f"error: {e}; nothing placed (give --out PATH to place the model anyway)")
                        return EXIT_NOT_PLACED
                    say(f"warning: {e}; placing {out} anyway")
        target = out
        if info is not None:
            if info.backend == "torch" and info.model_type == "split_spair":
                say(f"error: {info.name} runs the torch backend, which runs a detector's .safetensors checkpoint, not "
                    f"its ONNX export: set its backend to auto or onnxruntime first (ros2 param set {info.name} "
                    f"backend auto); nothing placed")
                return EXIT_NOT_PLACED
            if target is None:
                if not info.model_path:
                    target = default_target(info.name)
                    say(f"{info.name} runs the shipped default model; the new one goes to {target}")
                elif not os.path.isabs(info.model_path):
                    say(f"error: {info.name}'s model_path '{info.model_path}' is relative to the node's working "
                        f"directory: give --out with an absolute path; nothing placed")
                    return EXIT_NOT_PLACED
                else:
                    target = Path(info.model_path)
        if target is None:
            say("error: nowhere to place the model: give --out PATH (and/or --node NAME)")
            return EXIT_NOT_PLACED
        try:
            deployed = deploy(checkpoint, target, expected_model_type=info.model_type if info else None)
        except DeployError as e:
            kept = f"; {info.name} keeps its current model" if info else ""
            say(f"error: {e}; nothing placed{kept}")
            return EXIT_NOT_PLACED
        say(f"checked: {deployed.check.summary()}")
        say(f"placed {deployed.path} (model id {deployed.model_id})")
        for note in deployed.notes:
            say(note)
        if node and client is None:
            say(f"no node was contacted: {node} was not asked to reload")
            return EXIT_OK if connect is None else EXIT_NOT_RELOADED
        if client is None:
            return EXIT_OK
        ok, message = client.reload(str(deployed.path))
        if not ok:
            say(f"error: {info.name} did not load it: {message}")
            return EXIT_NOT_RELOADED
        if deployed.model_id not in message:
            say(f"warning: {info.name} loaded another file than the one placed (was it replaced meanwhile?): {message}")
            return EXIT_NOT_RELOADED
        say(f"{info.name}: {message}")
        if info.model_path != str(deployed.path):
            say(f"{info.name}'s model_path is now {deployed.path} (set at run time: put it in the node's parameter "
                f"file to keep it after a restart)")
        return EXIT_OK
    finally:
        if client is not None:
            client.close()
