"""Where bf16 autocast training of SPLIT-SPAIR first goes non-finite (issue 12), printed.

    python benchmarks/bf16_overflow.py [--config config/train_split_spair_stage1.yaml] [--batch 64]
                                       [--steps 3000] [--seconds 240] [--workers 3]

Trains from scratch on CUDA with bf16 autocast (as `train.amp: true`), checking every loss term
and the gradient norm at every step. At the first non-finite value it puts back the weights and
the CUDA generator state from before that step, runs the same batch again with a forward hook on
every module, and prints the first module whose output is not finite (or, when every module's is,
which loss terms are not), then the backward with anomaly detection, which names the backward
function that first returns a non-finite gradient and the forward line that made it.
"""
from __future__ import annotations

import argparse
import functools
import tempfile
import time
from pathlib import Path

import torch

from split_perception.models import checkpoint as ckpt
from split_perception.training import trainer

ROOT = Path(__file__).resolve().parents[1]
DEV = torch.device("cuda")


def scalar_terms(terms: dict) -> dict:
    return {k: v for k, v in terms.items() if torch.is_tensor(v) and v.dim() == 0}


def first_non_finite_module(model: torch.nn.Module, forward) -> tuple[list, dict]:
    """(every module's (name, finite, largest |output|) in call order, the terms) of one forward."""
    seen = []

    def hook(module, inputs, output, name):
        outs = [o for o in (output if isinstance(output, (tuple, list)) else (output,)) if torch.is_tensor(o) and o.is_floating_point()]
        if outs:
            finite = all(bool(torch.isfinite(o).all()) for o in outs)
            largest = max(float(o.detach().abs().float().nan_to_num(0, 0, 0).max()) if o.numel() else 0.0 for o in outs)
            seen.append((name, finite, largest, outs[0].dtype))

    handles = [m.register_forward_hook(functools.partial(hook, name=n)) for n, m in model.named_modules() if n]
    try:
        terms = forward()
    finally:
        for h in handles:
            h.remove()
    return seen, terms


def diagnose(model, weights_before, rng_before, forward, step: int) -> None:
    with torch.no_grad():
        for p, saved in zip(model.parameters(), weights_before):
            p.copy_(saved)
    torch.cuda.set_rng_state(rng_before)
    seen, terms = first_non_finite_module(model, forward)
    bad_terms = {k: float(v) for k, v in scalar_terms(terms).items() if not torch.isfinite(v)}
    print(f"step {step}, the same batch again: non-finite loss terms {bad_terms or 'none'}")
    first = next((s for s in seen if not s[1]), None)
    if first:
        print(f"  first module with a non-finite output: {first[0]} ({first[3]})")
    else:
        print("  every module's output is finite: the non-finite value comes from a function between modules")
    print("  largest |output| per module (top 8): " + ", ".join(f"{n} {m:.3g} ({str(d)[6:]})" for n, _, m, d in
                                                             sorted(seen, key=lambda s: -s[2])[:8]))
    print("  terms: " + ", ".join(f"{k} {float(v):.4g}" for k, v in scalar_terms(terms).items()))
    if not bad_terms:
        with torch.autograd.detect_anomaly(check_nan=True):
            try:
                terms["loss"].backward()
                print("  backward with anomaly detection: no non-finite gradient this time")
            except RuntimeError as e:
                print(f"  backward with anomaly detection: {str(e).splitlines()[0]}")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--config", default="config/train_split_spair_stage1.yaml")
    ap.add_argument("--batch", type=int, default=64)
    ap.add_argument("--steps", type=int, default=3000)
    ap.add_argument("--seconds", type=float, default=240)
    ap.add_argument("--workers", type=int, default=3)
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()
    torch.backends.cuda.matmul.allow_tf32 = True
    torch.backends.cudnn.allow_tf32 = True
    run = trainer.load_run_config(ROOT / args.config, [], tempfile.mkdtemp())
    _, cls = ckpt.model_registry()[run.model_type]
    torch.manual_seed(args.seed)
    model = cls(run.model).to(DEV).train()
    adam = trainer.make_adam(model, run)
    extras_fn = functools.partial(cls.batch_extras, run.model)
    print(f"bf16 autocast, {args.config}, batch {args.batch}, lr {run.train.lr}, seed {args.seed}, {torch.cuda.get_device_name()}")
    t0 = time.perf_counter()
    for step, x, extras in trainer.batches(trainer.make_stream(run.data, args.batch), 0, args.steps, args.workers, extras_fn):
        x, extras = x.to(DEV), {k: v.to(DEV) for k, v in extras.items()}
        weights_before = [p.detach().clone() for p in model.parameters()]
        rng_before = torch.cuda.get_rng_state()

        def forward():
            with torch.autocast("cuda", dtype=torch.bfloat16):
                return model(x, step=step, **extras)

        terms = forward()
        adam.zero_grad()
        terms["loss"].backward()
        norm = adam.clip(run.train.grad_clip)
        values = torch.stack([v.float() for v in scalar_terms(terms).values()] + [norm.float()])
        if not bool(torch.isfinite(values).all()):
            print(f"non-finite at step {step} ({time.perf_counter() - t0:.0f} s): " + ", ".join(
                f"{k} {float(v):.4g}" for k, v in zip([*scalar_terms(terms), "grad_norm"], values)))
            adam.zero_grad()
            diagnose(model, weights_before, rng_before, forward, step)
            return
        adam.step(trainer.learning_rate(run.train, step))
        if (step + 1) % 100 == 0:
            print(f"step {step + 1}: loss {float(terms['loss']):.5g}, grad norm {float(norm):.3g}, "
                  f"{(step + 1) / (time.perf_counter() - t0):.1f} steps/s", flush=True)
        if time.perf_counter() - t0 > args.seconds:
            print(f"no non-finite value in {step + 1} steps ({args.seconds:.0f} s limit)")
            return
    print(f"no non-finite value in {args.steps} steps")


if __name__ == "__main__":
    main()
