"""The training loop shared by every model: `split-perception train CONFIG.yaml`.

* Config: YAML with `model` (the model's config dataclass fields + `type`), `data` and
  `train` sections; unknown keys are errors. `--set train.steps=100` overrides any value.
* Data: procedural scenes (deterministic per step, so resuming replays the same stream)
  or one or several dataset folders (robot recordings, unlabelled or labelled), optionally mixed
  with procedural scenes at a set share of every batch (data.procedural_fraction). Every
  data.holdout_every-th frame of each folder is held out and validated on (validation.csv).
* Output folder: checkpoint.safetensors/.json (model), optimizer.safetensors (resume),
  metrics.csv (one row per log step: every loss term), validation.csv (folder data: loss terms
  and reconstruction MSE on the held-out frames), written atomically.
* Resume: a run folder with a checkpoint continues from its step unless --fresh.
* Fine-tuning (--init CHECKPOINT): a new run starts from another checkpoint's weights (same model
  type, weights that fit this config's model tensor by tensor), with a fresh optimizer; the
  model's step-dependent schedules (prior annealing, warm-ups) continue from the init checkpoint's
  step. A run folder that has its own checkpoint resumes it instead (--init is then ignored).
* Devices: CPU or CUDA (bf16 autocast on CUDA); several GPUs with `torchrun --nproc_per_node N
  -m split_perception.cli train ...` (DistributedDataParallel; rank 0 writes).
"""
from __future__ import annotations

import csv
import dataclasses
import functools
import json
import os
import re
import signal
import sys
import threading
import time
from dataclasses import dataclass, field, fields
from pathlib import Path

import numpy as np
import torch
import yaml

from split_perception.models import checkpoint as ckpt

from . import dataset, graphed_step, scenes
from .optimizer_step import AdamStep


@dataclass(frozen=True)
class DataConfig:
    kind: str = "multi_object"  # multi_object | room | folder
    # multi_object: background kinds, mixed within every batch (scenes.TRAIN_BACKGROUNDS; the
    # held-out kinds scenes.HELD_OUT_BACKGROUNDS are for testing)
    backgrounds: tuple[str, ...] = scenes.TRAIN_BACKGROUNDS
    sprites: str = scenes.TRAIN_SPRITES  # scenes.SPRITE_KINDS; "varied" adds procedural random shapes
    sprite_size_jitter: int = 2  # sprite side drawn from (14 px at 48 px, scaled) +- this many px
    touching_prob: float = 0.0  # multi_object: share of objects placed against one already placed
    overlap_prob: float = 0.0  # multi_object: share of the others placed over one already placed (occluding it)
    sprite_turns: bool = False  # multi_object: each object turned by a random multiple of 90 degrees
    object_colours: str = "bright"  # multi_object: scenes.OBJECT_COLOUR_KINDS, "bright", "any" (also dark, greyish), "faint", "mixed" or "camera"
    object_shading: float = 0.0  # multi_object: brightness ramp across each object (scenes.MultiObjectConfig)
    min_visible_fraction: float = 0.6  # multi_object: occlusion limit, each object keeps this much of itself
    camera_blur: float = 0.0  # multi_object: each frame blurred by a Gaussian of sigma in [0, this] px (soft edges)
    palette: str = "train"
    image_size: int = 48
    max_objects: int = 5
    min_objects: int = 0
    # kind == folder: a dataset folder (or a plain folder of images), or a list of them
    folder: str | tuple[str, ...] = ""
    seed: int = 0
    # kind == room: further scenes.RoomConfig fields (surface kinds, object shapes, sizes,
    # same-colour and touching objects), checked by RoomConfig itself
    room: dict = field(default_factory=dict)
    # kind == folder: share of every batch made of procedural scenes of `procedural_kind`, drawn with
    # the settings above (backgrounds, sprites, palette, objects, room); 0: folder frames only
    procedural_fraction: float = 0.0
    procedural_kind: str = "multi_object"  # multi_object | room
    # kind == folder: frames N-1, 2N-1, ... of each folder are held out of training and validated on
    # (a deterministic split: the same frames whatever the seed); 0: no validation
    holdout_every: int = 10
    # kind == folder: decoded frames (at image_size) kept in memory by each data process, up to this
    # many MB (a 48 px frame takes 7 kB): after the first pass, no frame is decoded again; 0: off
    cache_mb: int = 512

    def __post_init__(self):
        kinds = ("multi_object", "room", "folder")
        if self.kind not in kinds:
            raise ValueError(f"data.kind must be one of {', '.join(kinds)}; got '{self.kind}'")
        if self.procedural_kind not in kinds[:2]:
            raise ValueError(f"data.procedural_kind must be multi_object or room; got '{self.procedural_kind}'")
        if not 0.0 <= self.procedural_fraction < 1.0:
            raise ValueError(f"data.procedural_fraction must be in [0, 1) (the rest of each batch is folder frames); "
                             f"got {self.procedural_fraction}")
        if self.procedural_fraction and self.kind != "folder":
            raise ValueError(f"data.procedural_fraction mixes procedural scenes into folder data: it needs data.kind "
                             f"folder (data.kind is '{self.kind}', all procedural already)")
        if self.cache_mb < 0:
            raise ValueError(f"data.cache_mb must be 0 (off) or more; got {self.cache_mb}")
        if self.holdout_every < 0 or self.holdout_every == 1:
            raise ValueError(f"data.holdout_every must be 0 (no validation) or at least 2 (every N-th frame held out); "
                             f"got {self.holdout_every}")
        if self.kind == "folder" and not self.folders():
            raise ValueError("data.kind is folder but data.folder names no folder (one path or a list of paths)")

    def folders(self) -> tuple[str, ...]:
        """data.folder as a tuple of paths (one path or a list in the config)."""
        return tuple(f for f in ((self.folder,) if isinstance(self.folder, str) else self.folder) if f)


@dataclass(frozen=True)
class TrainConfig:
    steps: int = 10000
    batch_size: int = 32
    lr: float = 1e-4
    grad_clip: float = 1.0
    seed: int = 0
    log_every: int = 50
    checkpoint_every: int = 500
    device: str = "auto"  # auto | cpu | cuda
    # bf16 autocast on CUDA. Off by default: at these model sizes it is slower than fp32 with TF32
    # matmuls (SPLIT-SPAIR batch 64 on an H200: 12.9 vs 16.2 steps/s eager, the casts are ~500 more
    # kernels per step). Its NaN (step ~1,000, issue 12) came from bernoulli_kl, now always fp32.
    amp: bool = False
    # CUDA: once the model's step-dependent schedules are over (model.schedules_end), record the
    # whole training step as a CUDA graph and replay it (training.graphed_step): one launch
    # instead of ~2,000 kernels per step, 8x the steps/s of eager SPLIT-SPAIR at batch 64 on an
    # H200 (docs/RESULTS.md). Ignored on the CPU.
    cuda_graph: bool = True
    threads: int = 0  # CPU threads (0: torch default)
    # CPU: treat denormal floats as zero for the whole training process. The glimpses of absent
    # objects get gradients scaled by their tiny presence: 12-15% of the glimpse encoder's are
    # denormal, which x86 cores compute far slower (docs/RESULTS.md: a fine-tuning step of the
    # shipped model 2.8x faster with this on, 2 threads). Threads inherit the setting when they
    # are created, so it is set before the first torch operation of a run.
    flush_denormals: bool = True
    # Scenes (and the model's batch extras) are made in this many worker processes, ahead of the
    # training step; 0: in the training thread; -1: auto. Training on the CPU: 0 on machines with
    # 2 cores or fewer (measured on the 2-core dev CPU: 139 images/s in the thread, 120 with one
    # worker competing for the cores), else min(4, cores // 4). On a GPU the model needs one core
    # and data is the limit (an H200's 16 cores: 37 batches of 64 per second with 12 workers, the
    # recorded SPLIT-SPAIR step 130): cores - 2, at most 16. Batches stay a pure function of the step.
    data_workers: int = -1
    # Folder data: validate on the held-out frames (data.holdout_every) every this many steps
    # (0: at every checkpoint), at the start of a new run and at the end; at most val_images frames
    # (evenly spaced over the held-out ones, decoded once).
    validate_every: int = 0
    val_images: int = 256
    # The last lr_decay_steps steps lower the learning rate linearly from lr to lr * lr_decay_to
    # (0: constant). The lr is set from this config at every step, so a resumed run takes the
    # config's (or --set's) lr, not the one stored with the optimizer state.
    lr_decay_steps: int = 0
    lr_decay_to: float = 0.1

    def __post_init__(self):
        if not self.lr > 0:
            raise ValueError(f"train.lr must be > 0, got {self.lr}")
        if self.lr_decay_steps < 0:
            raise ValueError(f"train.lr_decay_steps must be >= 0, got {self.lr_decay_steps}")
        if not 0 <= self.lr_decay_to <= 1:
            raise ValueError(f"train.lr_decay_to must be in [0, 1], got {self.lr_decay_to}")


@dataclass
class RunConfig:
    model_type: str
    model: object
    data: DataConfig
    train: TrainConfig
    out_dir: Path
    raw: dict = field(default_factory=dict)


class _ConfigLoader(yaml.SafeLoader):
    """YAML with numbers read the way people write them (YAML 1.2): 3e-4, 1e5, 1E-3, .5, -.5.

    PyYAML follows YAML 1.1, where a float needs a dot and a signed exponent, so `lr: 3e-4`
    would be the string "3e-4"."""


_ConfigLoader.add_implicit_resolver(
    "tag:yaml.org,2002:float",
    re.compile(
        r"""^(?:[-+]?(?:[0-9][0-9_]*)\.[0-9_]*(?:[eE][-+]?[0-9]+)?
        |[-+]?(?:[0-9][0-9_]*)(?:[eE][-+]?[0-9]+)
        |[-+]?\.[0-9_]+(?:[eE][-+]?[0-9]+)?
        |[-+]?\.(?:inf|Inf|INF)
        |\.(?:nan|NaN|NAN))$""",
        re.X,
    ),
    list("-+0123456789."),
)


def load_yaml(text: str):
    """A training config (or one --set value) as Python values; see _ConfigLoader."""
    return yaml.load(text, Loader=_ConfigLoader)  # noqa: S506 - a SafeLoader subclass


def _set_dotted(d: dict, key: str, value) -> None:
    parts = key.strip().split(".")
    if not all(parts):
        raise ValueError(f"--set: bad key '{key}'")
    for i, p in enumerate(parts[:-1]):
        if d.get(p) is None:
            d[p] = {}
        d = d[p]
        if not isinstance(d, dict):
            raise ValueError(f"--set {key}: '{'.'.join(parts[:i + 1])}' is not a section")
    d[parts[-1]] = value


SECTIONS = ("model", "data", "train")  # a run config's sections; `out_dir` is its one top-level value


def _sections_with_field(name: str) -> list[str]:
    """The config sections (model of any type, data, train) that have a field `name`."""
    models = [cls for cls, *_ in ckpt.model_registry().values()]
    return [section for section, classes in (("model", models), ("data", [DataConfig]), ("train", [TrainConfig]))
            if any(name in {f.name for f in dataclasses.fields(c)} for c in classes)]


def load_run_config(path: Path, overrides: list[str] = (), out_dir: str | None = None) -> RunConfig:
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"training config not found: {path}")
    try:
        raw = load_yaml(path.read_text()) or {}
    except yaml.YAMLError as e:
        raise ValueError(f"{path}: not valid YAML ({e})") from None
    if not isinstance(raw, dict):
        raise ValueError(f"{path}: expected a mapping of sections (model, data, train), got {type(raw).__name__}")
    for item in overrides:
        if "=" not in item:
            raise ValueError(f"--set expects KEY=VALUE, got '{item}'")
        k, v = item.split("=", 1)
        if "." not in k and k.strip() not in (*SECTIONS, "out_dir"):
            raise ValueError(f"--set {k}: keys are SECTION.KEY (sections model, data, train)"
                             + "".join(f"; did you mean {s}.{k.strip()}?" for s in _sections_with_field(k.strip())))
        try:
            value = load_yaml(v)
        except yaml.YAMLError as e:
            raise ValueError(f"--set {k}: cannot read value {v!r} ({e})") from None
        _set_dotted(raw, k, value)
    unknown = sorted(set(raw) - {*SECTIONS, "out_dir"})
    if unknown:
        raise ValueError(f"{path}: unknown sections {unknown}")
    for section in SECTIONS:
        if raw.get(section) is not None and not isinstance(raw[section], dict):
            raise ValueError(f"{path}: section '{section}' must be a mapping, got {raw[section]!r}")
    model_raw = dict(raw.get("model") or {})
    model_type = model_raw.pop("type", None)
    registry = ckpt.model_registry()
    if model_type not in registry:
        raise ValueError(f"{path}: model.type must be one of {sorted(registry)}, got {model_type!r}")
    model_cfg = ckpt.config_from_dict(registry[model_type][0], model_raw, "model")
    data = ckpt.config_from_dict(DataConfig, raw.get("data") or {}, "data")
    train = ckpt.config_from_dict(TrainConfig, raw.get("train") or {}, "train")
    glimpses = getattr(model_cfg, "train_glimpses", 0)
    if glimpses and data.kind == "multi_object" and data.max_objects >= glimpses:
        # the drawn cells must leave room for a missed object's cell beside every present one
        raise ValueError(f"{path}: model.train_glimpses {glimpses} draws too few cells for scenes of up to "
                         f"data.max_objects {data.max_objects} objects: set it above {data.max_objects}, or 0 (every cell)")
    out = Path(out_dir or raw.get("out_dir") or f"runs/{model_type}")
    return RunConfig(model_type, model_cfg, data, train, out, raw)


# ------------------------------------------------------------------ data
class SceneStream:
    """Batch `step` is a pure function of (seed, step, rank): resuming replays the same data."""

    def __init__(self, data: DataConfig, batch_size: int, rank: int = 0, world: int = 1):
        self.data, self.batch_size, self.rank, self.world = data, batch_size, rank, world
        if data.kind == "multi_object":
            self.configs = [
                scenes.MultiObjectConfig(
                    image_size=data.image_size, background=bg, palette=data.palette,
                    max_objects=data.max_objects, min_objects=data.min_objects, sprites=data.sprites,
                    sprite_size=max(6, round(14 * data.image_size / 48)),
                    sprite_size_jitter=data.sprite_size_jitter, touching_prob=data.touching_prob,
                    overlap_prob=data.overlap_prob, sprite_turns=data.sprite_turns,
                    min_visible_fraction=data.min_visible_fraction, object_colours=data.object_colours,
                    object_shading=data.object_shading, camera_blur=data.camera_blur,
                )
                for bg in data.backgrounds
            ]
        elif data.kind == "room":
            room = {**data.room, "image_size": data.image_size, "min_objects": data.min_objects, "max_objects": data.max_objects}
            self.configs = [ckpt.config_from_dict(scenes.RoomConfig, room, "data.room")]
        else:
            raise ValueError(f"unknown procedural data kind '{data.kind}'")

    def batch(self, step: int) -> torch.Tensor:
        n = self.batch_size
        first = (step * self.world + self.rank) * n
        imgs = []
        for i in range(first, first + n):
            cfg = self.configs[i % len(self.configs)]
            imgs.append(dataset.to_tensor(scenes.generate(cfg, self.data.seed, i).image))
        return torch.stack(imgs)


class FolderFrames:
    """The frames of one or several dataset folders, split once and deterministically: frames
    N-1, 2N-1, ... of each folder (N = data.holdout_every) are held out for validation, the rest
    are trained on. Frames are referred to as (folder, index) rows of small integer arrays, so the
    object pickles cheaply into data worker processes, where decoding then happens. Decoded frames
    (uint8 at the model's input size) are kept in memory up to data.cache_mb per process."""

    def __init__(self, data: DataConfig):
        self.folders = [dataset.DatasetFolder(Path(f)) for f in data.folders()]
        self.size, n = data.image_size, data.holdout_every
        self.cache: dict[tuple[int, int], np.ndarray] = {}
        self.cache_left = data.cache_mb << 20
        rows = np.array([(f, i) for f, folder in enumerate(self.folders) for i in range(len(folder))], np.int64)
        held = (rows[:, 1] % n == n - 1) if n else np.zeros(len(rows), bool)
        self.train, self.held_out = rows[~held], rows[held]
        if not len(self.train):
            raise ValueError(f"no training frames left in {', '.join(data.folders())} after holding out every "
                             f"{n}-th for validation (data.holdout_every)")

    def image(self, row) -> torch.Tensor:
        key = (int(row[0]), int(row[1]))
        img = self.cache.get(key)
        if img is None:
            img = self.folders[key[0]].image_resized(key[1], self.size)
            if img.nbytes <= self.cache_left:
                self.cache[key] = img
                self.cache_left -= img.nbytes
        return dataset.to_tensor(img)

    def record(self, row) -> dict:
        return self.folders[int(row[0])].records[int(row[1])]

    def describe(self) -> str:
        per_folder = ", ".join(f"{f.root} ({len(f)})" for f in self.folders)
        return f"{len(self.train)} training + {len(self.held_out)} held-out frames from {per_folder}"


class FolderStream:
    """Random batches of training frames from dataset folders, seeded by step (resumable), each
    batch optionally topped up with procedural scenes (data.procedural_fraction of it)."""

    def __init__(self, data: DataConfig, batch_size: int, rank: int = 0, world: int = 1):
        self.frames = FolderFrames(data)
        self.data, self.batch_size, self.rank, self.world = data, batch_size, rank, world
        self.n_procedural = procedural_share(data.procedural_fraction, batch_size)
        self.procedural = None
        if self.n_procedural:
            scene_data = dataclasses.replace(data, kind=data.procedural_kind, procedural_fraction=0.0)
            self.procedural = SceneStream(scene_data, self.n_procedural, rank, world)

    def batch(self, step: int) -> torch.Tensor:
        g = torch.Generator().manual_seed(self.data.seed * 1_000_003 + step * self.world + self.rank)
        idx = torch.randint(len(self.frames.train), (self.batch_size - self.n_procedural,), generator=g)
        images = [self.frames.image(self.frames.train[int(i)]) for i in idx]
        if self.procedural is not None:
            images.extend(self.procedural.batch(step))
        return torch.stack(images)

    def describe(self) -> str:
        mix = (f"; each batch of {self.batch_size}: {self.batch_size - self.n_procedural} folder frames + "
               f"{self.n_procedural} procedural '{self.data.procedural_kind}' scenes" if self.n_procedural else "")
        return self.frames.describe() + mix


def procedural_share(fraction: float, batch_size: int) -> int:
    """Procedural scenes per batch: fraction of it, rounded, at least one and at most all but one."""
    if not fraction:
        return 0
    if batch_size < 2:
        raise ValueError(f"data.procedural_fraction needs train.batch_size of at least 2 (one folder frame, one "
                         f"scene); got {batch_size}")
    return min(batch_size - 1, max(1, round(fraction * batch_size)))


def make_stream(data: DataConfig, batch_size: int, rank: int = 0, world: int = 1):
    return FolderStream(data, batch_size, rank, world) if data.kind == "folder" else SceneStream(data, batch_size, rank, world)


class _StepBatches(torch.utils.data.Dataset):
    """Item `step` is (the stream's batch for that step, the model's extras for it): lets a
    DataLoader make batches ahead, in worker processes."""

    def __init__(self, stream, extras=None):
        self.stream, self.extras = stream, extras

    def __len__(self):
        return 1 << 62

    def __getitem__(self, step: int) -> tuple[torch.Tensor, dict]:
        x = self.stream.batch(step)
        return x, (self.extras(x) if self.extras else {})


def learning_rate(tc: TrainConfig, step: int) -> float:
    """The lr of step `step`: tc.lr, then a linear decay to tc.lr * tc.lr_decay_to over the last
    tc.lr_decay_steps steps (all of them in a run shorter than that, e.g. --set train.steps=100)."""
    span = min(tc.lr_decay_steps, tc.steps)
    start = tc.steps - span
    if span <= 0 or step < start:
        return tc.lr
    return tc.lr * (1.0 - (1.0 - tc.lr_decay_to) * min(1.0, (step - start + 1) / span))


def data_workers(setting: int, device_type: str = "cpu") -> int:
    """TrainConfig.data_workers resolved: -1 picks by core count and device (see there)."""
    if setting >= 0:
        return setting
    cores = os.cpu_count() or 1
    if device_type == "cuda":
        return max(1, min(16, cores - 2))
    return 0 if cores <= 2 else min(4, cores // 4)


def batches(stream, start: int, stop: int, workers: int, extras=None):
    """Yield (step, batch, extras) for steps start..stop-1, made in `workers` processes (0: here).

    `extras(x) -> dict` is the model's per-batch precomputation (SplitSpair.batch_extras)."""
    items = _StepBatches(stream, extras)
    if workers <= 0:
        for step in range(start, stop):
            yield (step, *items[step])
        return
    loader = torch.utils.data.DataLoader(
        items, batch_size=None, sampler=range(start, stop), num_workers=workers, prefetch_factor=4
    )
    for step, (x, more) in zip(range(start, stop), loader):
        yield step, x, more


# ------------------------------------------------------------------ fine-tuning and validation
def config_differences(a: dict, b: dict, names=("checkpoint", "config")) -> list[str]:
    """'key: A in the checkpoint, B in the config' for every model config field that differs."""
    a, b = json.loads(json.dumps(a)), json.loads(json.dumps(b))  # tuples and lists compare alike
    out = []
    for k in sorted(set(a) | set(b)):
        if a.get(k, "(absent)") != b.get(k, "(absent)"):
            out.append(f"{k}: {a.get(k, '(absent)')} in the {names[0]}, {b.get(k, '(absent)')} in the {names[1]}")
    return out


def load_init_weights(model: torch.nn.Module, run: RunConfig, path: Path) -> dict:
    """Copy the weights of checkpoint `path` into `model` (built from run.model); nothing else of
    the checkpoint (no optimizer state) is taken. Raises CheckpointError naming what differs when the
    checkpoint holds another model type or weights that do not fit this config's model. Returns
    {"step": the init checkpoint's training step (0 if its .json does not say), "differences": model
    config fields that differ but leave every weight fitting (e.g. loss weights)}."""
    from safetensors.torch import load_file

    path = Path(path)
    meta = ckpt.read_metadata(path)  # missing / damaged / not ours: CheckpointError naming the file
    init_type = meta.get("model_type")
    if init_type != run.model_type:
        raise ckpt.CheckpointError(f"--init {path}: holds a '{init_type}' model, but this config trains "
                                   f"'{run.model_type}' (model.type)")
    try:
        init_cfg = json.loads(meta["config"])
    except (KeyError, json.JSONDecodeError) as e:
        raise ckpt.CheckpointError(f"--init {path}: bad model config in its metadata ({e})") from None
    # a field the checkpoint predates ran at its default: only a non-default value is a difference
    defaults = ckpt.field_defaults(run.model)
    differences = config_differences({**defaults, **init_cfg}, run.model.to_dict())
    try:
        state = load_file(str(path))
    except Exception as e:  # noqa: BLE001 - safetensors raises several types for damaged files
        raise ckpt.CheckpointError(f"--init {path}: damaged weights ({e})") from None
    if hasattr(model, "fit_init_state"):  # shapes a fine-tune may change (added inputs, glimpse size)
        state = model.fit_init_state(state)
    own = model.state_dict()
    missing = [k for k in own if k not in state]
    unexpected = [k for k in state if k not in own]
    shapes = [f"{k} {tuple(state[k].shape)} vs {tuple(own[k].shape)}" for k in own
              if k in state and state[k].shape != own[k].shape]
    if missing or unexpected or shapes:
        tensors = "; ".join(filter(None, [
            f"{len(shapes)} of another shape (checkpoint vs config), e.g. {', '.join(shapes[:3])}" if shapes else "",
            f"{len(missing)} missing from the checkpoint, e.g. {', '.join(missing[:3])}" if missing else "",
            f"{len(unexpected)} not in this config's model, e.g. {', '.join(unexpected[:3])}" if unexpected else ""]))
        raise ckpt.CheckpointError(
            f"--init {path}: its weights do not fit the {run.model_type} model this config builds. Model config "
            f"differs in: {'; '.join(differences) or 'no field (the model code changed)'}. Tensors: {tensors}")
    model.load_state_dict({k: v.to(own[k].dtype) if v.is_floating_point() else v for k, v in state.items()})
    step = 0
    sidecar = path.with_suffix(".json")
    try:
        step = int(json.loads(sidecar.read_text()).get("step", 0))
    except (OSError, ValueError, TypeError, AttributeError):
        pass
    return {"step": step, "differences": differences}


def saved_extras(weights: Path) -> dict:
    """The training state a run's checkpoint.json holds ({} if unreadable)."""
    try:
        extras = json.loads(weights.with_suffix(".json").read_text())
        return extras if isinstance(extras, dict) else {}
    except (OSError, ValueError):
        return {}


def kept_checkpoint(weights: Path) -> str:
    """What a run folder's weights file holds, for a message after a failed save."""
    try:
        step = ckpt.saved_step(weights)
    except ckpt.CheckpointError:  # none yet (the first save failed), or not readable
        return "no checkpoint"
    return f"the checkpoint of step {step if step is not None else saved_extras(weights).get('step', '?')}"


class Validation:
    """Loss terms and reconstruction MSE of the model (eval mode: no sampling) on held-out frames,
    decoded once; with labelled frames and a detector, also count accuracy / error (presence > 0.5,
    no NMS). Appends one row per validation to `path` (CSV)."""

    def __init__(self, frames: FolderFrames, max_images: int, batch_size: int, path: Path):
        rows = frames.held_out
        if max_images and len(rows) > max_images:
            rows = rows[np.unique(np.linspace(0, len(rows) - 1, max_images).round().astype(np.int64))]
        self.x = torch.stack([frames.image(r) for r in rows]) if len(rows) else None
        records = [frames.record(r) for r in rows]
        self.counts = (torch.tensor([int(r["count"]) for r in records])
                       if records and all("count" in r for r in records) else None)
        self.batch_size, self.path = max(1, batch_size), Path(path)

    def __len__(self) -> int:
        return 0 if self.x is None else len(self.x)

    @torch.no_grad()
    def run(self, model: torch.nn.Module, step: int, schedule_step: int, device: torch.device) -> dict:
        was_training = model.training
        model.eval()
        sums: dict = {}
        predicted = []
        try:
            for i in range(0, len(self), self.batch_size):
                x = self.x[i : i + self.batch_size].to(device)
                out = model(x, step=schedule_step)
                n = len(x)
                for k, v in out.items():
                    if torch.is_tensor(v) and v.dim() == 0 and k != "mse":
                        sums[k] = sums.get(k, 0.0) + float(v) * n
                sums["mse"] = sums.get("mse", 0.0) + float(((out["recon"].float() - x) ** 2).mean()) * n
                if "pres_prob" in out:
                    predicted.append((out["pres_prob"] > 0.5).sum(1).cpu())
        finally:
            model.train(was_training)
        row = {"step": step, "images": len(self), "loss": sums.pop("loss") / len(self), "mse": sums.pop("mse") / len(self)}
        if self.counts is not None and predicted:
            pred = torch.cat(predicted)
            row["count_acc"] = float((pred == self.counts).float().mean())
            row["count_error"] = float((pred - self.counts).abs().float().mean())
        row.update({k: v / len(self) for k, v in sums.items()})
        append_csv_row(self.path, row)
        return row


def append_csv_row(path: Path, row: dict) -> None:
    """Append `row` to a CSV file, under its existing header (a new file gets the row's keys)."""
    path = Path(path)
    fieldnames = list(row)
    if path.is_file() and path.stat().st_size:
        with open(path, newline="") as f:
            fieldnames = next(csv.reader(f), fieldnames)
    new = not path.is_file() or not path.stat().st_size
    with open(path, "a", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=fieldnames, extrasaction="ignore")
        if new:
            writer.writeheader()
        writer.writerow(row)
        f.flush()
        os.fsync(f.fileno())


# ------------------------------------------------------------------ loop
def _device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(name)


def _distributed() -> tuple[int, int, int]:
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world > 1 and not torch.distributed.is_initialized():
        backend = "nccl" if torch.cuda.is_available() else "gloo"
        torch.distributed.init_process_group(backend)
    return int(os.environ.get("RANK", "0")), int(os.environ.get("LOCAL_RANK", "0")), world


def train(run: RunConfig, resume: bool = True, quiet: bool = False, init: Path | None = None) -> dict:
    """Train until run.train.steps; returns the last logged terms. `init`: a checkpoint whose
    weights a new run starts from (fine-tuning); ignored when the run folder is resumed.
    With train.flush_denormals (the default) the calling process treats denormal floats as zero
    from then on, in every thread torch creates after this call."""
    tc = run.train
    if tc.flush_denormals:
        torch.set_flush_denormal(True)  # before torch's thread pool exists (see TrainConfig)
    rank, local_rank, world = _distributed()
    device = _device(tc.device)
    if device.type == "cuda" and world > 1:
        device = torch.device("cuda", local_rank)
    if tc.threads:
        torch.set_num_threads(tc.threads)
    torch.manual_seed(tc.seed + rank)

    _, model_cls = ckpt.model_registry()[run.model_type]
    model = model_cls(run.model).to(device)
    if device.type == "cuda":
        torch.backends.cuda.matmul.allow_tf32 = True
        torch.backends.cudnn.allow_tf32 = True
    out = run.out_dir
    weights, opt_file = out / "checkpoint.safetensors", out / "optimizer.safetensors"
    start = 0
    # the model sees step + schedule_offset: a fine-tuned model's annealing and warm-ups continue
    # from where its init checkpoint left them instead of starting over
    schedule_offset, init_info = 0, None
    bar = None  # the progress bar, once training starts

    def say(message: str) -> None:
        if rank == 0 and not quiet:
            if bar is not None:
                bar.write(message, file=sys.stderr)
            else:
                print(message, file=sys.stderr)

    resuming = resume and weights.is_file() and opt_file.is_file()
    if resuming:
        loaded, _, _ = ckpt.load_checkpoint(weights, expected_type=run.model_type)
        if loaded.cfg != run.model:
            raise ValueError(f"{weights}: was trained with another model config; use --fresh or another --out")
        model.load_state_dict(loaded.state_dict())
    elif init:
        info = load_init_weights(model, run, Path(init))
    # once the weights are in: flattening rewires them (capturable only where flat: one process)
    adam = make_adam(model, run, world, capturable=tc.cuda_graph and device.type == "cuda")
    if resuming:
        saved = saved_extras(weights)
        weights_step = ckpt.saved_step(weights)
        if weights_step is None:  # a checkpoint from before the weights file kept its step
            weights_step = int(saved.get("step", 0))
        try:
            start = int(ckpt.load_optimizer(opt_file, adam.optimizer)["step"])
            adam.state_loaded()
            # a save cut short (full disk) after the weights, before the optimizer state
            mismatch = None if start == weights_step else f"its state is from step {start}, the weights from step {weights_step}"
        except ValueError as e:  # a state of another layout (per-tensor vs flat): the weights still count
            mismatch = str(e)
        if mismatch:
            start = weights_step
            adam.reset_state()
            say(f"{opt_file}: {mismatch}; Adam restarts from the step-{start} weights")
        schedule_offset, init_info = int(saved.get("schedule_offset", 0)), saved.get("init")
        torch.manual_seed(tc.seed + rank + start)
        say(f"resuming {out} from step {start}")
        if init:
            say(f"--init {init} ignored: {out} has its own checkpoint (step {start}), which wins; use --fresh or "
                f"another --out to start over from {init}")
    elif init:
        schedule_offset = info["step"]
        init_info = {"checkpoint": str(Path(init).resolve()), "step": info["step"]}
        say(f"fine-tuning from {init} (its step {info['step']}; schedules continue from there): weights loaded, "
            f"optimizer state fresh")
        if info["differences"]:
            say("  the weights fit, but the model config differs (this config's values are used): "
                + "; ".join(info["differences"]))
    ddp_model = model
    if world > 1:
        ddp_model = torch.nn.parallel.DistributedDataParallel(
            # the background warm-up leaves the object networks without gradients
            model, device_ids=[local_rank] if device.type == "cuda" else None, find_unused_parameters=True
        )

    stream = make_stream(run.data, tc.batch_size, rank, world)
    if isinstance(stream, FolderStream):
        say(f"data: {stream.describe()}")
    validation = None
    if rank == 0 and isinstance(stream, FolderStream) and len(stream.frames.held_out) and tc.val_images > 0:
        validation = Validation(stream.frames, tc.val_images, tc.batch_size, out / "validation.csv")
    elif isinstance(stream, FolderStream):
        say("no validation: no held-out frames (data.holdout_every 0, or folders shorter than it) or train.val_images 0")
    validate_every = tc.validate_every or tc.checkpoint_every
    amp = tc.amp and device.type == "cuda"
    graph_from, graphed = None, None  # model steps from graph_from on are replayed from a recording
    if tc.cuda_graph and device.type == "cuda":  # on the CPU the setting is ignored, silently
        why = graphed_step.why_not(device, world, adam.flat is not None, adam.capturable)
        if why is None and not hasattr(model_cls, "schedules_end"):
            why = f"{run.model_type} does not say from which step its forward stops depending on the step"
        if why:
            say(f"train.cuda_graph: off ({why})")
        else:
            graph_from = model_cls.schedules_end(run.model)
    log_path = out / "metrics.csv"
    if rank == 0:
        out.mkdir(parents=True, exist_ok=True)
        (out / "config.yaml").write_text(yaml.safe_dump(run.raw, sort_keys=False))
    last: dict = {}
    if rank == 0 and not quiet:
        from tqdm import tqdm

        bar = tqdm(total=tc.steps, initial=start, desc=out.name, dynamic_ncols=True)
    t_last, steps_since = time.perf_counter(), 0

    def save(step: int) -> None:
        if rank != 0:
            return
        extra = {"step": step, "train": vars_of(tc), "data": vars_of(run.data)}
        if init_info:
            extra.update(init=init_info, schedule_offset=schedule_offset)
        try:
            ckpt.save_checkpoint(weights, model, run.model_type, run.model, extra)
            ckpt.save_optimizer(opt_file, adam.optimizer, {"step": step})
        except OSError as e:  # a full disk, a quota: each file is written whole or not at all
            kept = kept_checkpoint(weights)
            raise OSError(e.errno, f"could not save step {step} in {out} ({e.strerror or e}); {kept} is kept there: "
                                   "free space and run the same command to resume") from e

    def validate(step: int) -> None:
        if validation is None:
            return
        row = validation.run(model, step, step + schedule_offset, device)
        extra = "".join(f", {k} {row[k]:.3g}" for k in ("count_acc", "count_error") if k in row)
        say(f"validation at step {step} ({row['images']} held-out frames): loss {row['loss']:.4g}, "
            f"mse {row['mse']:.4g}{extra}")

    def one_step(x: torch.Tensor, extras: dict, model_step: int) -> tuple[dict, torch.Tensor]:
        """Forward, backward, clipping and the Adam update (at the lr set before): the part of a
        step that train.cuda_graph records."""
        # autocast's cache of cast weights must not outlive a recording (PyTorch's CUDA graph notes)
        with torch.autocast(device.type, dtype=torch.bfloat16, enabled=amp, cache_enabled=graph_from is None):
            terms = ddp_model(x, step=model_step, **extras)
        adam.zero_grad()
        terms["loss"].backward()
        grad_norm = adam.clip(tc.grad_clip)
        adam.update()
        # detached: no autograd graph outlives its step (a kept one makes CUDA graph recording warn)
        return {k: v.detach() if torch.is_tensor(v) else v for k, v in terms.items()}, grad_norm

    step = start
    previous_handlers = _stop_on_termination_signals()
    try:
        if start == 0 and start < tc.steps:
            validate(0)  # the starting point: the init checkpoint (or random weights) on the held-out frames
        extras_fn = functools.partial(model_cls.batch_extras, run.model) if hasattr(model_cls, "batch_extras") else None
        for step, x, extras in batches(stream, start, tc.steps, data_workers(tc.data_workers, device.type), extras_fn):
            x = x.to(device, non_blocking=True)
            extras = {k: v.to(device, non_blocking=True) for k, v in extras.items()}
            ddp_model.train()
            adam.set_lr(learning_rate(tc, step))
            if graph_from is not None and step + schedule_offset >= graph_from:
                if graphed is None:
                    model_step = step + schedule_offset  # frozen into the recording
                    graphed = graphed_step.GraphedStep(functools.partial(one_step, model_step=model_step))
                    say(f"train.cuda_graph: the step is recorded as a CUDA graph from step {step} on")
                terms, grad_norm = graphed(x, extras)
                if graphed.failure:  # this step ran eagerly, and so will the rest
                    say(f"train.cuda_graph: off (recording failed: {graphed.failure})")
                    graph_from = None
            else:
                terms, grad_norm = one_step(x, extras, step + schedule_offset)
            loss = terms["loss"]
            if not torch.isfinite(loss):
                raise FloatingPointError(f"loss became {float(loss)} at step {step}; last good checkpoint kept in {out}")
            steps_since += 1
            if rank == 0 and ((step + 1) % tc.log_every == 0 or step + 1 == tc.steps):
                now = time.perf_counter()
                last = {k: float(v.detach()) for k, v in terms.items() if torch.is_tensor(v) and v.dim() == 0}
                last.update(step=step + 1, grad_norm=float(grad_norm), steps_per_s=steps_since / (now - t_last))
                t_last, steps_since = now, 0
                append_csv_row(log_path, last)
                if bar:
                    bar.set_postfix({k: f"{v:.3g}" for k, v in last.items() if k not in ("step",)}, refresh=False)
            if bar:
                bar.update(1)
            if (step + 1) % tc.checkpoint_every == 0 or step + 1 == tc.steps:
                save(step + 1)
            if (step + 1) % validate_every == 0 or step + 1 == tc.steps:
                validate(step + 1)
    except KeyboardInterrupt:
        # Ctrl-C: keep what was learnt; the next `train` resumes from here
        save(step)
        if rank == 0:
            print(f"\ninterrupted at step {step}; checkpoint saved, run again to resume", file=sys.stderr)
        raise
    finally:
        for sig, handler in previous_handlers.items():
            signal.signal(sig, handler)
        if bar:
            bar.close()
    return last


def make_adam(model: torch.nn.Module, run: RunConfig, world: int = 1, capturable: bool = False) -> AdamStep:
    """The trainer's update, made once the weights are loaded (flattening rewires them): flat
    when every parameter learns from the first step and there is one process (DDP keeps its own
    per-tensor gradient buckets); capturable for train.cuda_graph."""
    learns = getattr(type(model), "every_parameter_learns_from_step_0", None)
    flat = world == 1 and learns is not None and learns(run.model)
    return AdamStep(model, run.train.lr, flat=flat, capturable=capturable and flat)


def _interrupt(signum, frame):
    raise KeyboardInterrupt(signal.Signals(signum).name)


def _stop_on_termination_signals() -> dict:
    """SIGTERM (systemd, docker stop, a cluster's pre-emption) and SIGINT end training like Ctrl-C:
    checkpoint saved, resumable. SIGINT is set explicitly because shells start background jobs with
    it ignored, which would otherwise make `kill -INT` do nothing."""
    if threading.current_thread() is not threading.main_thread():
        return {}  # only the main thread may set handlers
    return {sig: signal.signal(sig, _interrupt) for sig in (signal.SIGTERM, signal.SIGINT)}


def vars_of(dc) -> dict:
    return {f.name: getattr(dc, f.name) for f in fields(dc)}


def train_from_config(path: Path, overrides=(), out_dir: str | None = None, resume: bool = True,
                      init: Path | None = None) -> dict:
    run = load_run_config(path, overrides, out_dir)
    return train(run, resume=resume, init=init)
