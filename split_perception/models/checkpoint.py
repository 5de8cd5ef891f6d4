"""Checkpoints: safetensors weights that carry their own model config, plus a JSON sidecar.

    run/checkpoint.safetensors   weights; metadata: format, model_type, config (JSON)
    run/checkpoint.json          the same config plus training state (step, ...) for people
    run/optimizer.safetensors    optimizer state for resuming (training only)

No pickle anywhere: a checkpoint from an untrusted source can at worst fail to load.
Writes are atomic (temp file + rename), so an interrupted run never leaves a torn file.
"""
from __future__ import annotations

import dataclasses
import json
import math
import types
import typing
from dataclasses import fields
from pathlib import Path

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file

from split_perception.atomic_io import atomic_write

FORMAT = "split_perception.checkpoint/1"


class CheckpointError(ValueError):
    """A checkpoint that cannot be used; the message names the file and the problem."""


def model_registry() -> dict:
    """model_type -> (config class, model class); imported lazily to keep start-up light."""
    from . import spair

    registry = {spair.MODEL_TYPE: (spair.SpairConfig, spair.SplitSpair)}
    try:
        from . import monet

        registry[monet.MODEL_TYPE] = (monet.MonetConfig, monet.Monet)
    except ImportError:  # pragma: no cover - MONet not built yet
        pass
    return registry


class ConfigError(ValueError):
    """A config value of the wrong type; the message names the key and the expected type."""


def _type_name(tp) -> str:
    return getattr(tp, "__name__", None) or str(tp).replace("typing.", "")


def _convert(value, tp, key: str):
    """`value` as type `tp` (a config field's annotation), or ConfigError naming `key`."""
    origin, args = typing.get_origin(tp), typing.get_args(tp)
    if origin in (typing.Union, types.UnionType):
        if value is None and type(None) in args:
            return None
        options = [a for a in args if a is not type(None)]
        for opt in options:
            try:
                return _convert(value, opt, key)
            except ConfigError:
                pass
        raise ConfigError(f"{key}: expected {' or '.join(_type_name(a) for a in args)}, got {value!r}")
    if origin is tuple:
        if not isinstance(value, (list, tuple)):
            raise ConfigError(f"{key}: expected a list of {_type_name(args[0]) if args else 'values'}, got {value!r}")
        if len(args) == 2 and args[1] is Ellipsis:
            return tuple(_convert(v, args[0], f"{key}[{i}]") for i, v in enumerate(value))
        if args:
            if len(value) != len(args):
                raise ConfigError(f"{key}: expected {len(args)} values, got {len(value)}: {value!r}")
            return tuple(_convert(v, a, f"{key}[{i}]") for i, (v, a) in enumerate(zip(value, args)))
        return tuple(value)
    if tp is bool:
        if isinstance(value, bool):
            return value
        if isinstance(value, str) and value.strip().lower() in ("true", "false"):
            return value.strip().lower() == "true"
        raise ConfigError(f"{key}: expected bool (true or false), got {value!r}")
    if tp is int:
        if isinstance(value, bool):
            raise ConfigError(f"{key}: expected int, got {value!r}")
        if isinstance(value, int):
            return value
        number = value
        if isinstance(value, str):  # "1e5", "100_000", " 12 "
            try:
                return int(value.strip(), 10)
            except ValueError:
                try:
                    number = float(value)
                except ValueError:
                    raise ConfigError(f"{key}: expected int, got {value!r}") from None
        if isinstance(number, float) and math.isfinite(number) and number.is_integer():
            return int(number)
        raise ConfigError(f"{key}: expected int, got {value!r}")
    if tp is float:
        if isinstance(value, bool):
            raise ConfigError(f"{key}: expected float, got {value!r}")
        if isinstance(value, (int, float)):
            return float(value)
        if isinstance(value, str):  # "3e-4" (YAML 1.1 reads it as a string), ".5", "1E-3"
            try:
                return float(value)
            except ValueError:
                pass
        raise ConfigError(f"{key}: expected float, got {value!r}")
    if tp is str:
        if isinstance(value, str):
            return value
        raise ConfigError(f"{key}: expected str, got {value!r} ({type(value).__name__}; quote it to pass a string)")
    if dataclasses.is_dataclass(tp) and isinstance(tp, type):
        if not isinstance(value, dict):
            raise ConfigError(f"{key}: expected a mapping of {tp.__name__} keys, got {value!r}")
        return config_from_dict(tp, value, key)
    return tuple(value) if isinstance(value, list) else value  # an annotation without a rule


def field_defaults(cls) -> dict:
    """{field: default} of a config dataclass (fields with a default factory left out): what a field
    that a saved config predates ran at."""
    return {f.name: f.default for f in fields(cls) if f.default is not dataclasses.MISSING}


def config_from_dict(cls, d: dict, section: str | None = None):
    """Build a frozen config dataclass from JSON or YAML, rejecting unknown keys by name and
    converting each value to its field's type: "3e-4" or 3 for a float, 1e5 for an int, a list
    for a tuple. A value that does not fit raises ConfigError naming `section.key` and the type.
    """
    if not isinstance(d, dict):
        raise ConfigError(f"{section or cls.__name__}: expected a mapping of {cls.__name__} keys, got {d!r}")
    known = {f.name for f in fields(cls)}
    unknown = sorted(set(d) - known)
    if unknown:
        where = f" in {section}" if section else ""
        raise CheckpointError(f"unknown {cls.__name__} keys{where}: {', '.join(map(str, unknown))}")
    hints = typing.get_type_hints(cls)
    prefix = f"{section}." if section else ""
    return cls(**{k: _convert(v, hints.get(k, typing.Any), prefix + k) for k, v in d.items()})


def save_checkpoint(path: Path, model: torch.nn.Module, model_type: str, config, extra: dict | None = None) -> None:
    path = Path(path)
    cfg_json = json.dumps(config.to_dict())
    meta = {"format": FORMAT, "model_type": model_type, "config": cfg_json}
    if extra and "step" in extra:
        # in the weights file itself, not only in the .json written after it: a run resumed after a
        # save that was cut short between the two files still knows which step its weights are from
        meta["step"] = str(int(extra["step"]))
    # a copy each: trained parameters may be views into one flat tensor (training.optimizer_step),
    # and safetensors refuses tensors that share memory
    tensors = {k: v.detach().cpu().clone(memory_format=torch.contiguous_format) for k, v in model.state_dict().items()}
    atomic_write(path, lambda tmp: save_file(tensors, tmp, metadata=meta))
    sidecar = {"format": FORMAT, "model_type": model_type, "config": config.to_dict(), **(extra or {})}
    atomic_write(path.with_suffix(".json"), lambda tmp: Path(tmp).write_text(json.dumps(sidecar, indent=2)))


def read_metadata(path: Path) -> dict:
    """The safetensors header metadata, with clear errors for missing or damaged files."""
    from safetensors import safe_open

    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"checkpoint not found: {path}")
    if path.suffix.lower() == ".onnx":
        raise CheckpointError(f"{path}: an ONNX export, not a training checkpoint (.safetensors); ONNX files run "
                              "through load_detector() / load_segmenter(), e.g. python benchmarks/detector_errors.py "
                              "--model FILE or python benchmarks/segmenter_api_eval.py FILE")
    try:
        with safe_open(str(path), framework="pt") as f:
            meta = f.metadata() or {}
    except (SafetensorError, OSError, ValueError) as e:
        raise CheckpointError(f"{path}: not a readable safetensors checkpoint ({e})") from None
    if meta.get("format") != FORMAT:
        raise CheckpointError(f"{path}: not a split_perception checkpoint (format {meta.get('format')!r})")
    return meta


def saved_step(path: Path) -> int | None:
    """The training step a checkpoint's weights are from, as its own file records it (None: not recorded,
    as in checkpoints written before the step was kept there)."""
    step = read_metadata(path).get("step")
    return int(step) if step is not None else None


def load_checkpoint(path: Path, expected_type: str | None = None, map_location: str = "cpu"):
    """Rebuild (model, config, model_type) from a checkpoint file alone."""
    path = Path(path)
    meta = read_metadata(path)
    model_type = meta.get("model_type")
    if expected_type and model_type != expected_type:
        raise CheckpointError(f"{path}: holds a '{model_type}' model, expected '{expected_type}'")
    registry = model_registry()
    if model_type not in registry:
        raise CheckpointError(f"{path}: unknown model type '{model_type}'")
    cfg_cls, model_cls = registry[model_type]
    try:
        cfg = config_from_dict(cfg_cls, json.loads(meta["config"]))
    except (KeyError, json.JSONDecodeError, TypeError, ValueError) as e:
        raise CheckpointError(f"{path}: bad model config ({e})") from None
    model = model_cls(cfg)
    try:
        state = load_file(str(path), device=map_location)
    except (SafetensorError, OSError) as e:
        raise CheckpointError(f"{path}: damaged weights ({e})") from None
    state = {k: v.float() if v.is_floating_point() else v for k, v in state.items()}  # fp16 storage is fine
    missing, unexpected = model.load_state_dict(state, strict=False)
    if missing or unexpected:
        raise CheckpointError(
            f"{path}: weights do not fit the {model_type} config (missing {missing[:3]}, unexpected {unexpected[:3]})"
        )
    return model, cfg, model_type


# ------------------------------------------------------------------ optimizer state (resume)
def _number_of_scalar_tensor(value):
    """JSON for a capturable optimizer's lr, which lives in a 0-d tensor (training.optimizer_step)."""
    if torch.is_tensor(value) and value.dim() == 0:
        return value.item()
    raise TypeError(f"optimizer param group value {value!r} is not JSON serialisable")


def save_optimizer(path: Path, optimizer: torch.optim.Optimizer, extra: dict) -> None:
    """Optimizer state as flat tensors + JSON param groups in safetensors metadata."""
    sd = optimizer.state_dict()
    tensors = {}
    for pid, st in sd["state"].items():
        for name, value in st.items():
            t = value if torch.is_tensor(value) else torch.tensor(value)
            tensors[f"{pid}.{name}"] = t.detach().contiguous().cpu()
    meta = {"param_groups": json.dumps(sd["param_groups"], default=_number_of_scalar_tensor), "extra": json.dumps(extra)}
    atomic_write(Path(path), lambda tmp: save_file(tensors, tmp, metadata=meta))


def load_optimizer(path: Path, optimizer: torch.optim.Optimizer) -> dict:
    from safetensors import safe_open

    with safe_open(str(path), framework="pt") as f:
        meta = f.metadata()
        state: dict = {}
        for key in f.keys():
            pid, name = key.split(".", 1)
            state.setdefault(int(pid), {})[name] = f.get_tensor(key)
    optimizer.load_state_dict({"state": state, "param_groups": json.loads(meta["param_groups"])})
    return json.loads(meta["extra"])
