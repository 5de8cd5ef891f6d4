"""The training step's update: gradient-norm clipping and Adam, over one flat parameter tensor.

Why flat: clipping and Adam cost operator calls per parameter tensor (measured for SPLIT-SPAIR,
106 tensors: 658 profiled calls for clip_grad_norm_(foreach=True) and 744 for the fused Adam
step on the CPU), and on a GPU each is a kernel launch or more. With every parameter a view
into one flat tensor, and every gradient a view into another, both see one tensor.

How: each parameter's data becomes a view into `flat`, and its .grad a preallocated view into
`flat.grad`; backward then accumulates each gradient in place into its view (autograd adds into
an existing .grad), zero_grad zeroes one tensor, and clipping and Adam run on the single
Parameter that owns the storage. Nothing else changes: the model keeps its parameters, modules
and state dict (checkpoints stay per tensor).

One difference from per-tensor Adam: a tensor that gets no gradient in a step is not skipped
(its gradient is zero, not None) and shares the one step count. Adam's moments of a tensor that
never had a gradient are zero, so its update is zero too; but a tensor that starts to learn late
(SPAIR's object networks after a background warm-up) would see Adam's bias correction of the
shared step count, not its own. So models declare whether every parameter learns from the first
step (`every_parameter_learns_from_step_0`), and those that do not keep per-tensor Adam.
"""
from __future__ import annotations

import torch
from torch import nn


class FlatParameters:
    """`params` rewired as views into one Parameter (`self.param`), gradients into its .grad."""

    def __init__(self, params: list[nn.Parameter]):
        if len({(p.dtype, p.device) for p in params}) != 1:
            raise ValueError("flat parameters need one dtype and device for all tensors")
        first = params[0]
        flat = torch.empty(sum(p.numel() for p in params), dtype=first.dtype, device=first.device)
        grad = torch.zeros_like(flat)
        offset = 0
        with torch.no_grad():
            for p in params:
                n = p.numel()
                flat[offset:offset + n].copy_(p.reshape(-1))
                p.data = flat[offset:offset + n].view_as(p)
                p.grad = grad[offset:offset + n].view_as(p)
                offset += n
        self.param = nn.Parameter(flat)  # shares flat's storage: updating it updates the model
        self.param.grad = grad


class AdamStep:
    """zero_grad / clip + Adam step of a model's trainable parameters, flat when `flat`.

    capturable: the update can be recorded in a CUDA graph (training.graphed_step); the learning
    rate then lives in a device tensor that set_lr fills, so that a replayed update reads the new
    value instead of the one it was recorded with."""

    def __init__(self, model: nn.Module, lr: float, flat: bool, capturable: bool = False):
        params = [p for p in model.parameters() if p.requires_grad]
        self.flat = FlatParameters(params) if flat and params else None
        self.params = [self.flat.param] if self.flat else params
        self.capturable = capturable
        # fused: one kernel per update instead of ~25 operator calls per parameter tensor
        self.optimizer = torch.optim.Adam(self.params, lr=lr, fused=True, capturable=capturable)

    def zero_grad(self) -> None:
        if self.flat:
            self.flat.param.grad.zero_()  # the views must stay: never set to None
        else:
            self.optimizer.zero_grad(set_to_none=True)

    def clip(self, max_norm: float) -> torch.Tensor:
        return torch.nn.utils.clip_grad_norm_(self.params, max_norm, foreach=True)

    def state_loaded(self) -> None:
        """To call after optimizer.load_state_dict: the saved param groups replace this optimizer's
        settings, and a state saved by a run on the CPU must not turn capturable off here."""
        for group in self.optimizer.param_groups:
            group["capturable"] = self.capturable

    def reset_state(self) -> None:
        """Forget the moments and step counts: Adam starts afresh from the current weights (a saved
        state that does not belong to them must not steer their updates)."""
        self.optimizer.state.clear()

    def set_lr(self, lr: float) -> None:
        for group in self.optimizer.param_groups:
            if not self.capturable:
                group["lr"] = lr
            elif torch.is_tensor(group["lr"]):
                group["lr"].fill_(lr)
            else:  # first call, or a state loaded from a checkpoint (which stores the lr as a number)
                group["lr"] = torch.tensor(float(lr), device=self.params[0].device)

    def update(self) -> None:
        self.optimizer.step()

    def step(self, lr: float) -> None:
        self.set_lr(lr)
        self.update()
