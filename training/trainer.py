"""The training loop shared by every model: `split-perception train CONFIG.yaml`.

* Config: YAML with `model` (the model's config dataclass fields + `type`), `data` and
  `train` sections; unknown keys are errors. `--set train.steps=100` overrides any value.
* Data: procedural scenes (deterministic per step, so resuming replays the same stream)
  or a dataset folder (robot recordings, unlabelled).
* Output folder: checkpoint.safetensors/.json (model), optimizer.safetensors (resume),
  metrics.csv (one row per log step: every loss term), written atomically.
* Resume: a run folder with a checkpoint continues from its step unless --fresh.
* Devices: CPU or CUDA (bf16 autocast on CUDA); several GPUs with `torchrun --nproc_per_node N
  -m split_perception.cli train ...` (DistributedDataParallel; rank 0 writes).
"""
from __future__ import annotations

import csv
import functools
import os
import re
import signal
import sys
import threading
import time
from dataclasses import dataclass, field, fields
from pathlib import Path

import torch
import yaml

from split_perception.models import checkpoint as ckpt

from . import dataset, scenes


@dataclass(frozen=True)
class DataConfig:
    kind: str = "multi_object"  # multi_object | room | folder
    # multi_object: background kinds, mixed within every batch (scenes.TRAIN_BACKGROUNDS; the
    # held-out kinds scenes.HELD_OUT_BACKGROUNDS are for testing)
    backgrounds: tuple[str, ...] = scenes.TRAIN_BACKGROUNDS
    sprites: str = scenes.TRAIN_SPRITES
    palette: str = "train"
    image_size: int = 48
    max_objects: int = 5
    min_objects: int = 0
    folder: str = ""  # kind == folder: a dataset folder or a folder of images
    seed: int = 0
    # kind == room: further scenes.RoomConfig fields (surface kinds, object shapes, sizes,
    # same-colour and touching objects), checked by RoomConfig itself
    room: dict = field(default_factory=dict)


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
    # bf16 autocast on CUDA. Off by default: with it, SPAIR and SPLIT-SPAIR training hit a NaN loss
    # between steps 659 and 1515 on an H100 (issue 12), and no GPU was available here to find
    # which operation overflows; fp32 with TF32 matmuls (set below on CUDA) trains.
    amp: bool = False
    threads: int = 0  # CPU threads (0: torch default)
    # Scenes (and the model's batch extras) are made in this many worker processes, ahead of the
    # training step; 0: in the training thread; -1: auto = 0 on machines with 2 cores or fewer
    # (measured on the 2-core dev CPU: 139 images/s in the thread, 120 with one worker competing
    # for the cores), else min(4, cores // 4). Batches stay a pure function of the step.
    data_workers: int = -1


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
        try:
            value = load_yaml(v)
        except yaml.YAMLError as e:
            raise ValueError(f"--set {k}: cannot read value {v!r} ({e})") from None
        _set_dotted(raw, k, value)
    unknown = sorted(set(raw) - {"model", "data", "train", "out_dir"})
    if unknown:
        raise ValueError(f"{path}: unknown sections {unknown}")
    for section in ("model", "data", "train"):
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


class FolderStream:
    """Random batches from a dataset folder, seeded by step (resumable)."""

    def __init__(self, data: DataConfig, batch_size: int, rank: int = 0, world: int = 1):
        self.ds = dataset.FolderImageDataset(Path(data.folder), data.image_size)
        self.data, self.batch_size, self.rank, self.world = data, batch_size, rank, world

    def batch(self, step: int) -> torch.Tensor:
        g = torch.Generator().manual_seed(self.data.seed * 1_000_003 + step * self.world + self.rank)
        idx = torch.randint(len(self.ds), (self.batch_size,), generator=g)
        return torch.stack([self.ds[int(i)][0] for i in idx])


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


def data_workers(setting: int) -> int:
    """TrainConfig.data_workers resolved: -1 picks by core count (see there)."""
    if setting >= 0:
        return setting
    cores = os.cpu_count() or 1
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


def train(run: RunConfig, resume: bool = True, quiet: bool = False) -> dict:
    """Train until run.train.steps; returns the last logged terms."""
    tc = run.train
    rank, local_rank, world = _distributed()
    device = _device(tc.device)
    if device.type == "cuda" and world > 1:
        device = torch.device("cuda", local_rank)
    if tc.threads:
        torch.set_num_threads(tc.threads)
    torch.manual_seed(tc.seed + rank)

    _, model_cls = ckpt.model_registry()[run.model_type]
    model = model_cls(run.model).to(device)
    # fused: one kernel per update instead of ~25 operator calls per parameter tensor
    # (measured for SPLIT-SPAIR: 744 profiled calls per step fused, 2,662 foreach)
    optimizer = torch.optim.Adam(model.parameters(), lr=tc.lr, fused=True)
    if device.type == "cuda":
        torch.backends.cuda.matmul.allow_tf32 = True
        torch.backends.cudnn.allow_tf32 = True
    out = run.out_dir
    weights, opt_file = out / "checkpoint.safetensors", out / "optimizer.safetensors"
    start = 0
    if resume and weights.is_file() and opt_file.is_file():
        loaded, _, _ = ckpt.load_checkpoint(weights, expected_type=run.model_type)
        if loaded.cfg != run.model:
            raise ValueError(f"{weights}: was trained with another model config; use --fresh or another --out")
        model.load_state_dict(loaded.state_dict())
        start = int(ckpt.load_optimizer(opt_file, optimizer)["step"])
        torch.manual_seed(tc.seed + rank + start)
        if rank == 0 and not quiet:
            print(f"resuming {out} from step {start}", file=sys.stderr)
    ddp_model = model
    if world > 1:
        ddp_model = torch.nn.parallel.DistributedDataParallel(
            # the background warm-up leaves the object networks without gradients
            model, device_ids=[local_rank] if device.type == "cuda" else None, find_unused_parameters=True
        )

    stream = make_stream(run.data, tc.batch_size, rank, world)
    amp = tc.amp and device.type == "cuda"
    log_path = out / "metrics.csv"
    writer, log_file = None, None
    if rank == 0:
        out.mkdir(parents=True, exist_ok=True)
        (out / "config.yaml").write_text(yaml.safe_dump(run.raw, sort_keys=False))
    last: dict = {}
    bar = None
    if rank == 0 and not quiet:
        from tqdm import tqdm

        bar = tqdm(total=tc.steps, initial=start, desc=out.name, dynamic_ncols=True)
    t_last, steps_since = time.perf_counter(), 0

    def save(step: int) -> None:
        if rank != 0:
            return
        ckpt.save_checkpoint(weights, model, run.model_type, run.model, {"step": step, "train": vars_of(tc), "data": vars_of(run.data)})
        ckpt.save_optimizer(opt_file, optimizer, {"step": step})

    step = start
    previous_handlers = _stop_on_termination_signals()
    try:
        extras_fn = functools.partial(model_cls.batch_extras, run.model) if hasattr(model_cls, "batch_extras") else None
        for step, x, extras in batches(stream, start, tc.steps, data_workers(tc.data_workers), extras_fn):
            x = x.to(device, non_blocking=True)
            extras = {k: v.to(device, non_blocking=True) for k, v in extras.items()}
            ddp_model.train()
            with torch.autocast(device.type, dtype=torch.bfloat16, enabled=amp):
                terms = ddp_model(x, step=step, **extras)
            loss = terms["loss"]
            if not torch.isfinite(loss):
                raise FloatingPointError(f"loss became {float(loss)} at step {step}; last good checkpoint kept in {out}")
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            grad_norm = torch.nn.utils.clip_grad_norm_(model.parameters(), tc.grad_clip, foreach=True)
            optimizer.step()
            steps_since += 1
            if rank == 0 and ((step + 1) % tc.log_every == 0 or step + 1 == tc.steps):
                now = time.perf_counter()
                last = {k: float(v.detach()) for k, v in terms.items() if torch.is_tensor(v) and v.dim() == 0}
                last.update(step=step + 1, grad_norm=float(grad_norm), steps_per_s=steps_since / (now - t_last))
                t_last, steps_since = now, 0
                if writer is None:
                    new = not log_path.exists()
                    log_file = open(log_path, "a", newline="")
                    writer = csv.DictWriter(log_file, fieldnames=list(last), extrasaction="ignore")
                    if new:
                        writer.writeheader()
                writer.writerow(last)
                log_file.flush()
                if bar:
                    bar.set_postfix({k: f"{v:.3g}" for k, v in last.items() if k not in ("step",)}, refresh=False)
            if bar:
                bar.update(1)
            if (step + 1) % tc.checkpoint_every == 0 or step + 1 == tc.steps:
                save(step + 1)
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
        if log_file:
            log_file.close()
    return last


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


def train_from_config(path: Path, overrides=(), out_dir: str | None = None, resume: bool = True) -> dict:
    run = load_run_config(path, overrides, out_dir)
    return train(run, resume=resume)
