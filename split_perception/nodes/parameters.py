"""Parameter descriptors (what `ros2 param describe` shows) and the checks rclpy cannot express.

Ranges live in the descriptors (FloatingPointRange / IntegerRange): rclpy itself refuses a value
outside them, at start-up and at run time, naming the parameter, the range and the value.
Values that only take effect at start-up are read_only. What a range cannot say (a choice from a
list, a file that must exist) is checked here and refused with a reason that says what is wrong.
"""
from __future__ import annotations

from pathlib import Path
from typing import Sequence

from rcl_interfaces.msg import FloatingPointRange, IntegerRange, ParameterDescriptor
from rclpy.qos import QoSHistoryPolicy, QoSProfile, QoSReliabilityPolicy

from split_perception.backends import BACKENDS

RELIABILITY = {"best_effort": QoSReliabilityPolicy.BEST_EFFORT, "reliable": QoSReliabilityPolicy.RELIABLE}
MODEL_SUFFIXES = (".onnx", ".engine", ".safetensors")


def describe(description: str, *, range: tuple | None = None, choices: Sequence[str] = (), read_only: bool = False) -> ParameterDescriptor:
    """A descriptor: float bounds become a FloatingPointRange, int bounds an IntegerRange."""
    d = ParameterDescriptor(description=description, read_only=read_only)
    if range is not None:
        lo, hi = range
        if isinstance(lo, float) or isinstance(hi, float):
            d.floating_point_range = [FloatingPointRange(from_value=float(lo), to_value=float(hi), step=0.0)]
        else:
            d.integer_range = [IntegerRange(from_value=int(lo), to_value=int(hi), step=1)]
    if choices:
        d.additional_constraints = "one of: " + ", ".join(choices)
    if read_only:
        d.additional_constraints = "; ".join(filter(None, [d.additional_constraints, "read at start-up only"]))
    return d


# Shared by every camera model node (each node declares them itself, so its file lists all it
# takes). Functions, not constants: rclpy keeps and edits the descriptor object it is given.
def model_path_descriptor() -> ParameterDescriptor:
    return describe("model file (.onnx, .engine or .safetensors); empty: the shipped default. Setting it loads and "
                    "checks the new model in the background, then swaps it in (~/reload does the same for the "
                    "current value); a model that fails to load is reported and the old one keeps serving")


def backend_descriptor() -> ParameterDescriptor:
    return describe("inference backend; changing it reloads the model", choices=BACKENDS)


def reliability_descriptor(what: str) -> ParameterDescriptor:
    return describe(f"QoS reliability of {what}", choices=tuple(RELIABILITY), read_only=True)


def depth_descriptor(what: str) -> ParameterDescriptor:
    return describe(f"QoS queue depth of {what}", range=(1, 100), read_only=True)


def check_model_path(value: str) -> str | None:
    """Why `value` cannot be a model_path, or None. Only what needs no loading: the load itself
    (off the executor) reports everything else."""
    if value == "":
        return None
    path = Path(value)
    if not path.is_file():
        return f"model_path: no such file '{value}' (the current model keeps serving)"
    if path.suffix.lower() not in MODEL_SUFFIXES:
        return f"model_path must end in {', '.join(MODEL_SUFFIXES)}; got '{value}'"
    return None


def check_backend(value: str) -> str | None:
    return None if value in BACKENDS else f"backend must be one of {', '.join(BACKENDS)}; got '{value}'"


def qos_profile(reliability: str, depth: int, name: str) -> QoSProfile:
    """QoS from the `<name>.reliability` and `<name>.depth` parameters (keep-last history)."""
    if reliability not in RELIABILITY:
        raise ValueError(f"{name}.reliability must be one of {', '.join(RELIABILITY)}; got '{reliability}'")
    return QoSProfile(history=QoSHistoryPolicy.KEEP_LAST, depth=depth, reliability=RELIABILITY[reliability])
