"""SPLIT-SPAIR and SPAIR training speed, now and before (commit 2375a5c), side by side in one run.

    python benchmarks/bench_detector.py [--batch N] [--steps 30] [--threads N] [--configs config/train_split_spair.yaml ...]

For each training config (default config/train_split_spair.yaml and config/train_spair.yaml), at
its batch size unless --batch is given, at a step past every warm-up and annealing phase (5000,
so the full model runs), on CUDA when available, else on the CPU:

* aten operator calls per training step (torch.profiler on the CPU side, nested calls included),
  in total and per part: forward, zero_grad + backward, clip_grad_norm_, optimizer.step;
* training images/s through the trainer's data path (trainer.batches with the model's
  batch_extras) with data_workers 0 and 1, and of the model step alone on pre-made batches
  (data cost vs model cost); on CUDA also model steps/s at batch 64.

Every step is the trainer's (trainer.make_adam: fused Adam and clip_grad_norm_(foreach=True) over one
flat parameter tensor when the config trains every parameter from step 0). The "old" rows are
the model code and config of commit 2375a5c (read with `git show`) trained as its trainer did:
plain Adam, default clip_grad_norm_, scenes (solid + checkerboard) made in the training thread.
Timings follow 2 warm-up steps. Inference latency and throughput: benchmarks/bench_runtime.py.

Each row runs in its own process, so that each sets the CPU's denormal mode as its trainer did
before any thread exists (train.flush_denormals: on in the new trainer, absent in the old). A
randomly initialised model draws few denormal floats; a trained one many (the gradients of absent
objects' glimpses), so for config/train_split_spair.yaml three more rows time trained weights:
the shipped ones (what a user fine-tunes) with flush_denormals on and off, and the old model with
the weights its commit shipped (--no-trained skips them). `--variant KEY=VALUE ...` adds a row of
the shipped weights trained with those config settings changed (e.g. model.train_glimpses=12), and
its ratios to the shipped-weights rows.
"""
from __future__ import annotations

import argparse
import contextlib
import functools
import importlib
import multiprocessing
import os
import platform
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import torch

from split_perception.models import checkpoint as ckpt
from split_perception.training import trainer
from split_perception.training.optimizer_step import AdamStep

ROOT = Path(__file__).resolve().parents[1]
BASELINE = "2375a5c"
STEP = 5000  # after the background warm-up, expected presence and the count-prior annealing
WARMUP = 2
DEVICE = torch.device("cuda" if torch.cuda.is_available() else "cpu")


class OldUpdate:
    """How the BASELINE trainer updated: plain Adam, default clip_grad_norm_, grads set to None."""

    def __init__(self, model: torch.nn.Module, lr: float):
        self.params = list(model.parameters())
        self.optimizer = torch.optim.Adam(self.params, lr=lr)

    def zero_grad(self) -> None:
        self.optimizer.zero_grad(set_to_none=True)

    def clip(self, max_norm: float):
        return torch.nn.utils.clip_grad_norm_(self.params, max_norm)

    def step(self, lr: float) -> None:
        self.optimizer.step()


@dataclass
class Setup:
    """A model and how it is trained: update (zero_grad, clip, step), data and per-batch extras."""

    name: str
    model: torch.nn.Module
    update: object  # trainer.AdamStep or OldUpdate
    lr: float
    max_norm: float
    data: trainer.DataConfig
    extras: object  # batch_extras(x) -> dict, or None
    workers: tuple[int, ...]  # data_workers settings its trainer offers


def new_setup(path: Path, weights: Path | None = None, name: str = "new (working tree)",
              overrides: tuple[str, ...] = ()) -> tuple[Setup, int]:
    run = trainer.load_run_config(path, list(overrides))
    model_cls = ckpt.model_registry()[run.model_type][1]
    torch.manual_seed(0)
    model = model_cls(run.model).to(DEVICE)
    if weights is not None:
        trainer.load_init_weights(model, run, weights)
    extras = functools.partial(model_cls.batch_extras, run.model) if hasattr(model_cls, "batch_extras") else None
    update = trainer.make_adam(model, run)
    return Setup(name, model, update, run.train.lr, run.train.grad_clip, run.data, extras, (0, 1)), run.train.batch_size


def git_show(rev_path: str, text: bool = True) -> str | bytes:
    return subprocess.run(["git", "show", rev_path], cwd=ROOT, capture_output=True, text=text, check=True).stdout


def old_setup(path: Path, tmp: Path, rev: str = BASELINE, shipped_weights: bool = False, name: str = "") -> Setup:
    """The model of commit `rev` (spair.py + blocks.py as the package old_models) and its config,
    updated as that commit's trainer did: BASELINE's plain Adam, later ones fused Adam and
    clip_grad_norm_(foreach=True) per parameter tensor (before the flat update). shipped_weights:
    with the weights that commit shipped (split_perception/weights/split_spair.safetensors)."""
    pkg = tmp / "old_models"
    if not pkg.is_dir():
        pkg.mkdir()
        (pkg / "__init__.py").write_text("")
        for module in ("spair.py", "blocks.py"):  # spair.py imports `.blocks`: relative within old_models
            (pkg / module).write_text(git_show(f"{rev}:split_perception/models/{module}"))
    if str(tmp) not in sys.path:  # each row's process imports it anew
        sys.path.insert(0, str(tmp))
    spair = importlib.import_module("old_models.spair")
    raw = trainer.load_yaml(git_show(f"{rev}:{path.resolve().relative_to(ROOT)}"))
    model_cfg = {k: v for k, v in raw["model"].items() if k != "type"}
    train = raw.get("train") or {}
    torch.manual_seed(0)
    cfg = spair.SpairConfig(**model_cfg)
    model = spair.SplitSpair(cfg).to(DEVICE)
    if shipped_weights:
        from safetensors.torch import load as load_safetensors

        model.load_state_dict(load_safetensors(git_show(f"{rev}:split_perception/weights/split_spair.safetensors", text=False)))
    lr = train.get("lr", 1e-4)
    name = name or f"old ({rev})"
    data = ckpt.config_from_dict(trainer.DataConfig, raw.get("data") or {}, "data")
    if rev == BASELINE:  # scenes made in the training thread, no per-batch extras
        return Setup(name, model, OldUpdate(model, lr), lr, train.get("grad_clip", 1.0), data, None, (0,))
    extras = functools.partial(spair.SplitSpair.batch_extras, cfg) if hasattr(spair.SplitSpair, "batch_extras") else None
    update = AdamStep(model, lr, flat=False)
    return Setup(name, model, update, lr, train.get("grad_clip", 1.0), data, extras, (0, 1))


def sync():
    if DEVICE.type == "cuda":
        torch.cuda.synchronize()


def to_device(x, extras):
    return x.to(DEVICE, non_blocking=True), {k: v.to(DEVICE, non_blocking=True) for k, v in extras.items()}


def train_step(s: Setup, step: int, x, extras) -> None:
    loss = s.model(x, step=step, **extras)["loss"]
    s.update.zero_grad()
    loss.backward()
    s.update.clip(s.max_norm)
    s.update.step(s.lr)


@contextlib.contextmanager
def stderr_off():
    """Silences the profiler's start/stop lines, which libkineto writes to file descriptor 2."""
    sys.stderr.flush()
    saved, null = os.dup(2), os.open(os.devnull, os.O_WRONLY)
    os.dup2(null, 2)
    try:
        yield
    finally:
        os.dup2(saved, 2)
        os.close(saved)
        os.close(null)


def aten_calls(fn) -> int:
    with stderr_off(), torch.profiler.profile(activities=[torch.profiler.ProfilerActivity.CPU]) as prof:
        fn()
        sync()
    return sum(e.count for e in prof.key_averages() if e.key.startswith("aten::"))


def op_counts(s: Setup, batch: int) -> list[int]:
    """aten calls of one step after WARMUP steps: [forward, zero_grad + backward, clip, optimizer.step]."""
    items = [to_device(x, e) for _, x, e in trainer.batches(trainer.make_stream(s.data, batch), STEP, STEP + WARMUP + 1, 0, s.extras)]
    for i, (x, e) in enumerate(items[:WARMUP]):
        train_step(s, STEP + i, x, e)
    x, e = items[WARMUP]
    out = {}
    forward = aten_calls(lambda: out.update(loss=s.model(x, step=STEP + WARMUP, **e)["loss"]))
    backward = aten_calls(lambda: (s.update.zero_grad(), out["loss"].backward()))
    clip = aten_calls(lambda: s.update.clip(s.max_norm))
    return [forward, backward, clip, aten_calls(lambda: s.update.step(s.lr))]


def images_per_s(s: Setup, batch: int, steps: int, workers: int | None) -> float:
    """Through trainer.batches with `workers` data processes, or (None) the model alone on batches made beforehand."""
    made = trainer.batches(trainer.make_stream(s.data, batch), STEP, STEP + WARMUP + steps, workers or 0, s.extras)
    if workers is None:
        made = [(step, *to_device(x, e)) for step, x, e in made]
    for i, (step, x, e) in enumerate(made):
        if i == WARMUP:
            sync()
            t0 = time.perf_counter()
        train_step(s, step, *to_device(x, e))
    sync()
    return steps * batch / (time.perf_counter() - t0)


def machine() -> str:
    if DEVICE.type == "cuda":
        return f"{torch.cuda.get_device_name()} (CUDA {torch.version.cuda}), torch {torch.__version__}"
    cpu = platform.processor() or platform.machine()
    try:
        cpu = next(line.split(":", 1)[1].strip() for line in open("/proc/cpuinfo") if line.startswith("model name"))
    except (OSError, StopIteration):
        pass
    return (f"{cpu}, {os.cpu_count()} cores, {torch.get_num_threads()} torch threads, torch {torch.__version__} (CPU), "
            f"load average {os.getloadavg()[0]:.1f} at start")


@dataclass(frozen=True)
class Row:
    """One row of the table, measured in a process of its own."""

    kind: str  # "new" or "old"
    name: str
    flush_denormals: bool
    weights: Path | None = None  # new: a checkpoint to load
    old_shipped_weights: bool = False  # old: the weights its commit shipped
    overrides: tuple[str, ...] = ()  # new: config settings changed, as `split-perception train --set`
    old_config: Path | None = None  # old: its config at that commit, if not the new row's path


def measure_row(row: Row, path: Path, batch_arg: int | None, steps: int, tmp: Path, rev: str, threads: int) -> dict:
    if row.flush_denormals:
        torch.set_flush_denormal(True)  # first, as the trainer: threads made later inherit it
    if threads:
        torch.set_num_threads(threads)
    if DEVICE.type == "cuda":  # as the trainer does
        torch.backends.cuda.matmul.allow_tf32 = True
        torch.backends.cudnn.allow_tf32 = True
    if row.kind == "new":
        s, config_batch = new_setup(path, row.weights, row.name, row.overrides)
    else:
        s, config_batch = old_setup(row.old_config or path, tmp, rev, row.old_shipped_weights, row.name), None
    batch = batch_arg or config_batch or 16
    result = {"name": s.name, "batch": batch, "split": bool(getattr(s.model.cfg, "split", False)), "machine": machine()}
    result["ops"] = op_counts(s, batch)
    result["rates"] = {w: images_per_s(s, batch, steps, w) if w is None or w in s.workers else None for w in (0, 1, None)}
    if DEVICE.type == "cuda":
        result["batch64_steps_per_s"] = images_per_s(s, 64, steps, None) / 64
    return result


def _row_process(queue, *args) -> None:
    try:
        queue.put(measure_row(*args))
    except (OSError, subprocess.CalledProcessError, ImportError, KeyError, TypeError, ValueError) as e:
        why = e.stderr.strip() if isinstance(e, subprocess.CalledProcessError) else e
        queue.put({"error": str(why)})


def run_row(*args) -> dict:
    """measure_row in a fresh process (spawned: no thread pool inherited); not a Pool worker, so
    that the row's own data worker processes can start."""
    ctx = multiprocessing.get_context("spawn")
    queue = ctx.Queue()
    proc = ctx.Process(target=_row_process, args=(queue, *args))
    proc.start()
    result = queue.get()
    proc.join()
    return result


def print_row(name: str, ops: list[int], rates: dict) -> None:
    parts = " + ".join(f"{n:5d}" for n in ops)
    cols = "".join(f"{r:10.1f}" if r else f"{'-':>10}" for r in rates.values())
    print(f"  {name:36}{sum(ops):8d} = {parts}  |  {'':9}{cols}")


def bench(path: Path, batch_arg: int | None, steps: int, tmp: Path, rev: str = BASELINE, threads: int = 0,
          trained: Path | None = None, variant: tuple[str, ...] = (), old_config: Path | None = None) -> None:
    old_name = f"old ({rev}{', ' + old_config.name if old_config else ''})"
    new_row, old_row = Row("new", "new (working tree)", True), Row("old", old_name, False, old_config=old_config)
    rows = [new_row, old_row]
    if trained is not None:
        on_row = Row("new", "new, shipped weights", True, trained)
        off_row = Row("new", "new, shipped weights, no flush", False, trained)
        old_trained_row = Row("old", f"old ({rev}), its shipped weights", False, old_shipped_weights=True)
        rows += [on_row, off_row, old_trained_row]
        if variant:
            variant_row = Row("new", "new, shipped weights, " + " ".join(v.rsplit(".", 1)[-1] for v in variant), True, trained,
                              overrides=variant)
            rows.append(variant_row)
    results = {}
    for row in rows:
        r = run_row(row, path, batch_arg, steps, tmp, rev, threads)
        if "error" in r:
            print(f"  {row.name} unavailable: {r['error']}")
            continue
        if not results:
            print(f"machine: {r['machine']}")
            print(f"\n{path.relative_to(ROOT) if path.is_relative_to(ROOT) else path}: {'SPLIT-SPAIR' if r['split'] else 'SPAIR'}, "
                  f"batch {r['batch']}, step {STEP}, {steps} timed steps after {WARMUP} warm-up, {DEVICE.type}")
            print(f"  {'':36}{'aten calls/step = forward + backward + clip + optimizer':>42}  |  images/s: data w0   data w1   model alone")
        print_row(r["name"], r["ops"], r["rates"])
        results[row] = r
    new, old = results.get(new_row), results.get(old_row)
    if new and old:
        # a trainer without data workers (BASELINE) made scenes in the training thread only
        old_w1 = old["rates"][1] or old["rates"][0]
        ratios = [new["rates"][0] / old["rates"][0], new["rates"][1] / old_w1, new["rates"][None] / old["rates"][None]]
        parts = " + ".join(f"{n / o:5.2f}" for n, o in zip(new["ops"], old["ops"]))
        print(f"  {'new/old':36}{sum(new['ops']) / sum(old['ops']):8.2f} = {parts}  |  {'':9}" + "".join(f"{x:10.2f}" for x in ratios))
        if old["rates"][1] is None:
            print("  (both new data columns are divided by the old data-in-the-training-thread figure)")
    pairs = [] if trained is None else [("shipped weights: flush / no flush", on_row, off_row),
                                        ("shipped weights: new / old", on_row, old_trained_row)]
    if trained is not None and variant:
        pairs += [("shipped weights: variant / new", variant_row, on_row), ("shipped weights: variant / old", variant_row, old_trained_row)]
    for label, row_a, row_b in pairs:
        a, b = results.get(row_a), results.get(row_b)
        if a and b:
            print(f"  {label:36}{'':8}   {'':35}  |  {'':9}"
                  + "".join(f"{x / y:10.2f}" if x and y else f"{'-':>10}" for x, y in zip(a["rates"].values(), b["rates"].values())))
    for r in results.values():
        if "batch64_steps_per_s" in r:
            print(f"  {r['name']:36}model alone, batch 64: {r['batch64_steps_per_s']:.2f} steps/s")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--batch", type=int, default=None, help="batch size (default: the config's)")
    ap.add_argument("--steps", type=int, default=30, help="timed steps per figure, after 2 warm-up steps")
    ap.add_argument("--threads", type=int, default=0, help="torch CPU threads (default: torch's, as train.threads 0)")
    ap.add_argument("--baseline", default=BASELINE,
                    help=f"the commit to compare with (default {BASELINE}, the first vectorised model)")
    ap.add_argument("--configs", type=Path, nargs="+",
                    default=[ROOT / "config" / "train_split_spair.yaml", ROOT / "config" / "train_spair.yaml"])
    ap.add_argument("--no-trained", action="store_true", help="skip the shipped-weights rows")
    ap.add_argument("--old-config", type=Path, default=None,
                    help="the old rows' config at the baseline commit (default: each --configs path), e.g. to "
                         "compare config/train_split_spair_stage1.yaml with the baseline's config/train_split_spair.yaml")
    ap.add_argument("--variant", nargs="+", default=[], metavar="KEY=VALUE",
                    help="one more shipped-weights row with these config settings changed (e.g. model.train_glimpses=12)")
    args = ap.parse_args()
    shipped_config = (ROOT / "config" / "train_split_spair.yaml").resolve()
    with tempfile.TemporaryDirectory() as tmp:
        for path in args.configs:
            path = path.resolve()
            trained = None if args.no_trained or path != shipped_config else ROOT / "split_perception" / "weights" / "split_spair.safetensors"
            old_config = (ROOT / args.old_config).resolve() if args.old_config else None
            bench(path, args.batch, args.steps, Path(tmp), args.baseline, args.threads, trained, tuple(args.variant), old_config)


if __name__ == "__main__":
    main()
