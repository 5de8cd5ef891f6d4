"""A training step recorded once as a CUDA graph and replayed (issue 12: kernels per step).

Eager PyTorch launches every kernel of a step from Python, a few microseconds of host time each,
and at SPLIT-SPAIR's sizes the GPU mostly waits for those launches. Recorded as a CUDA graph, the
whole step (zero_grad, forward, backward, clipping, the Adam update) is one launch.

A recording replays the same kernels on the same memory, so it holds only where the step is the
same every time (`why_not` says what is missing):
* one CUDA device, one process (DDP's gradient hooks talk to other processes);
* the gradients preallocated in place (optimizer_step's flat parameters) and a capturable Adam,
  whose learning rate is a device tensor filled before each replay;
* a forward that no longer depends on the step number: the model's Python branches and constants
  of the step at recording time are frozen into the graph, so the trainer records only from
  `model.schedules_end(cfg)` on;
* batches of one shape, copied into the recording's input tensors before each replay (a batch of
  another shape is stepped eagerly).
Random numbers (presence samples, patch shuffles) stay random: each replay advances the CUDA
generator's offset.
"""
from __future__ import annotations

from collections.abc import Callable

import torch

StepFn = Callable[[torch.Tensor, dict], tuple[dict, torch.Tensor]]


def why_not(device: torch.device, world: int, flat: bool, capturable: bool) -> str | None:
    """None when a training step on `device` can be recorded, else the reason it cannot."""
    if device.type != "cuda":
        return f"CUDA graphs need a CUDA device, not {device.type}"
    if world > 1:
        return "CUDA graphs are not used with several processes (DDP)"
    if not flat:
        return "the model has parameters that start to learn late (a background warm-up): per-tensor Adam"
    if not capturable:
        return "the optimizer is not capturable"
    return None


class GraphedStep:
    """step_fn(x, extras) -> (terms, grad_norm), run `warmup` times eagerly on a side stream
    (lazy initialisation: cuBLAS handles, Adam's state) and then recorded on the next batch;
    every later call copies its batch in and replays. The returned tensors are the recording's:
    they are overwritten by the next call. When recording fails (it runs nothing), `failure` says
    why and every call from then on runs step_fn eagerly."""

    def __init__(self, step_fn: StepFn, warmup: int = 3):
        self.step_fn = step_fn
        self.warmup = warmup
        self.calls = 0
        self.graph: torch.cuda.CUDAGraph | None = None
        self.inputs: tuple[torch.Tensor, dict] | None = None
        self.outputs: tuple[dict, torch.Tensor] | None = None
        self.failure: str | None = None

    def __call__(self, x: torch.Tensor, extras: dict) -> tuple[dict, torch.Tensor]:
        self.calls += 1
        if self.failure is not None:
            return self.step_fn(x, extras)
        if self.graph is None and self.calls <= self.warmup:
            side = torch.cuda.Stream()
            side.wait_stream(torch.cuda.current_stream())
            with torch.cuda.stream(side):
                out = self.step_fn(x, extras)
            torch.cuda.current_stream().wait_stream(side)
            return out
        if self.graph is None:
            try:
                self._record(x, extras)
            except RuntimeError as e:
                self.failure = str(e).splitlines()[0] if str(e) else type(e).__name__
                return self.step_fn(x, extras)
        static_x, static_extras = self.inputs
        if x.shape != static_x.shape or any(v.shape != static_extras[k].shape for k, v in extras.items()):
            return self.step_fn(x, extras)  # a batch of another shape than the recording's: eagerly
        static_x.copy_(x, non_blocking=True)
        for k, v in extras.items():
            static_extras[k].copy_(v, non_blocking=True)
        self.graph.replay()
        return self.outputs

    def _record(self, x: torch.Tensor, extras: dict) -> None:
        self.inputs = (x.clone(), {k: v.clone() for k, v in extras.items()})
        torch.cuda.synchronize()
        graph = torch.cuda.CUDAGraph()
        with torch.cuda.graph(graph):
            self.outputs = self.step_fn(*self.inputs)
        self.graph = graph  # recorded, not run: __call__ replays it for this batch
