"""Checkpoints: safetensors weights that carry their own model config, plus a JSON sidecar.

    run/checkpoint.safetensors   weights; metadata: format, model_type, config (JSON)
    run/checkpoint.json          the same config plus training state (step, ...) for people
    run/optimizer.safetensors    optimizer state for resuming (training only)

No pickle anywhere: a checkpoint from an untrusted source can at worst fail to load.
Writes are atomic (temp file + rename), so an interrupted run never leaves a torn file.
"""
from __future__ import annotations

import json
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


def config_from_dict(cls, d: dict):
    """Build a frozen config dataclass from JSON, rejecting unknown keys by name."""
    known = {f.name for f in fields(cls)}
    unknown = sorted(set(d) - known)
    if unknown:
        raise CheckpointError(f"unknown {cls.__name__} keys: {', '.join(unknown)}")
    return cls(**{k: tuple(v) if isinstance(v, list) else v for k, v in d.items()})


def save_checkpoint(path: Path, model: torch.nn.Module, model_type: str, config, extra: dict | None = None) -> None:
    path = Path(path)
    cfg_json = json.dumps(config.to_dict())
    meta = {"format": FORMAT, "model_type": model_type, "config": cfg_json}
    tensors = {k: v.detach().contiguous().cpu() for k, v in model.state_dict().items()}
    atomic_write(path, lambda tmp: save_file(tensors, tmp, metadata=meta))
    sidecar = {"format": FORMAT, "model_type": model_type, "config": config.to_dict(), **(extra or {})}
    atomic_write(path.with_suffix(".json"), lambda tmp: Path(tmp).write_text(json.dumps(sidecar, indent=2)))


def read_metadata(path: Path) -> dict:
    """The safetensors header metadata, with clear errors for missing or damaged files."""
    from safetensors import safe_open

    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"checkpoint not found: {path}")
    try:
        with safe_open(str(path), framework="pt") as f:
            meta = f.metadata() or {}
    except (SafetensorError, OSError, ValueError) as e:
        raise CheckpointError(f"{path}: not a readable safetensors checkpoint ({e})") from None
    if meta.get("format") != FORMAT:
        raise CheckpointError(f"{path}: not a split_perception checkpoint (format {meta.get('format')!r})")
    return meta


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
def save_optimizer(path: Path, optimizer: torch.optim.Optimizer, extra: dict) -> None:
    """Optimizer state as flat tensors + JSON param groups in safetensors metadata."""
    sd = optimizer.state_dict()
    tensors = {}
    for pid, st in sd["state"].items():
        for name, value in st.items():
            t = value if torch.is_tensor(value) else torch.tensor(value)
            tensors[f"{pid}.{name}"] = t.detach().contiguous().cpu()
    meta = {"param_groups": json.dumps(sd["param_groups"]), "extra": json.dumps(extra)}
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
