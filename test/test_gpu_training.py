"""What GPU training relies on, checked on the CPU: train.cuda_graph (recording itself needs a
GPU: benchmarks/bench_cuda.py and benchmarks/gpu_recipe.sh run it there) and bf16 autocast."""
import os
from pathlib import Path

import pytest
import torch

from split_perception.models import checkpoint as ckpt
from split_perception.models.blocks import bernoulli_kl
from split_perception.models.monet import Monet, MonetConfig
from split_perception.models.spair import SpairConfig, SplitSpair
from split_perception.training import graphed_step, trainer

ROOT = Path(__file__).resolve().parents[1]

TINY_SPAIR = dict(image_size=24, hidden=32, z_what=8, z_local=4, z_bg=4, bg_warmup_steps=0,
                  expected_presence_steps=300, count_prior_start=0.5, count_prior_end=1e-3, count_prior_anneal_steps=700)


def _loss(model, x, step: int) -> float:
    torch.manual_seed(7)  # the same samples at every step
    return float(model(x, step=step)["loss"].detach())


@pytest.mark.parametrize("model", [SplitSpair(SpairConfig(**TINY_SPAIR)), SplitSpair(SpairConfig(**{**TINY_SPAIR, "bg_warmup_steps": 200})),
                                   Monet(MonetConfig(image_size=32, slots=3, attention="resnet18"))])
def test_forward_stops_depending_on_the_step_at_schedules_end(model):
    """A recorded step freezes the step number: from schedules_end on, every step must give the
    same forward (and before it, the schedules must still be moving, or the bound is too late)."""
    end = type(model).schedules_end(model.cfg)
    x = torch.rand(2, 3, model.cfg.image_size, model.cfg.image_size, generator=torch.Generator().manual_seed(0))
    model.train()
    at_end = _loss(model, x, end)
    assert _loss(model, x, end + 1) == at_end and _loss(model, x, end + 10_000) == at_end
    if end > 0:
        assert _loss(model, x, end - 1) != at_end


def test_schedules_end_is_the_last_schedule():
    cfg = SpairConfig(**{**TINY_SPAIR, "bg_warmup_steps": 200})
    assert SplitSpair.schedules_end(cfg) == 200 + 700
    assert SplitSpair.schedules_end(SpairConfig(**{**TINY_SPAIR, "expected_presence_steps": 900})) == 900


def test_why_a_step_cannot_be_recorded():
    cuda = torch.device("cuda")
    assert graphed_step.why_not(cuda, 1, flat=True, capturable=True) is None
    assert "CUDA device" in graphed_step.why_not(torch.device("cpu"), 1, True, True)
    assert "DDP" in graphed_step.why_not(cuda, 2, True, True)
    assert "warm-up" in graphed_step.why_not(cuda, 1, False, True)
    assert "capturable" in graphed_step.why_not(cuda, 1, True, False)


def test_bernoulli_kl_stays_finite_for_bf16_probabilities_near_one():
    """bf16 training went NaN here on a GPU: 1 - 1e-6 is 1 in bf16, and log1p(-1) * 0 is NaN."""
    q = torch.tensor([1.0, 0.0, 0.5, 0.999], dtype=torch.bfloat16)
    p = torch.tensor([1e-7, 0.5, 0.5, 1.0], dtype=torch.bfloat16)
    kl = bernoulli_kl(q, p, p_eps=1e-6)
    assert kl.dtype == torch.float32 and torch.isfinite(kl).all()
    torch.testing.assert_close(kl, bernoulli_kl(q.float(), p.float(), p_eps=1e-6))


def test_the_shipped_model_trains_under_bf16_autocast_without_nan():
    """On a GPU bf16 training went NaN (kl_pres); the shipped weights, whose presences saturate, show
    it on the CPU's bf16 autocast too: NaN at the first step before bernoulli_kl computed in fp32."""
    model, _, _ = ckpt.load_checkpoint(ROOT / "split_perception/weights/split_spair.safetensors")
    run = trainer.load_run_config(ROOT / "config/train_split_spair.yaml", [], "unused")
    x = trainer.make_stream(run.data, 8).batch(0)
    model.train()
    losses = {}
    for bf16 in (False, True):
        torch.manual_seed(0)
        model.zero_grad()
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
            terms = model(x, step=5000)
        terms["loss"].backward()
        grads = torch.cat([p.grad.reshape(-1) for p in model.parameters() if p.grad is not None])
        assert torch.isfinite(terms["kl_pres"]) and torch.isfinite(grads).all(), bf16
        losses[bf16] = float(terms["loss"].detach())
    assert abs(losses[True] - losses[False]) < 0.01 * abs(losses[False]), losses


def test_data_workers_by_device():
    cores = os.cpu_count()
    assert trainer.data_workers(3, "cuda") == 3
    assert trainer.data_workers(-1, "cuda") == max(1, min(16, cores - 2))
    assert trainer.data_workers(-1, "cpu") == (0 if cores <= 2 else min(4, cores // 4))


def test_a_failed_recording_leaves_every_step_to_run_eagerly(monkeypatch):
    """Recording runs nothing, so a failure loses no step: that batch and every later one is
    stepped eagerly, and `failure` gives the trainer the reason to log."""
    seen = []

    def step_fn(x, extras):
        seen.append(float(x.sum()))
        return {"loss": x.sum()}, x.new_zeros(())

    def refuse(*args):
        raise RuntimeError("operation not permitted when stream is capturing\n(details)")

    monkeypatch.setattr(torch.cuda, "synchronize", refuse)  # the first thing recording does
    step = graphed_step.GraphedStep(step_fn, warmup=0)
    terms, _ = step(torch.ones(2), {})
    assert step.failure == "operation not permitted when stream is capturing" and step.graph is None
    assert float(terms["loss"]) == 2.0
    step(torch.full((3,), 2.0), {})
    assert seen == [2.0, 6.0]
