"""The trainer's update over one flat parameter tensor: the same training as per-tensor Adam, fewer calls."""
import subprocess
import sys

import pytest
import torch

from split_perception.models import checkpoint as ckpt
from split_perception.models.monet import Monet, MonetConfig
from split_perception.models.spair import MODEL_TYPE, SpairConfig, SplitSpair
from split_perception.training.optimizer_step import AdamStep

TINY_SPAIR = dict(image_size=24, hidden=32, z_what=8, z_local=4, z_bg=4, bg_warmup_steps=0)


def _images(seed: int, size: int = 24) -> torch.Tensor:
    return torch.rand(2, 3, size, size, generator=torch.Generator().manual_seed(seed))


def _train(flat: bool, steps: int = 3, capturable: bool = False) -> dict:
    torch.manual_seed(0)
    cfg = SpairConfig(**TINY_SPAIR)
    model = SplitSpair(cfg)
    update = AdamStep(model, lr=1e-3, flat=flat, capturable=capturable)
    for step in range(steps):
        torch.manual_seed(100 + step)  # the same samples in both runs
        x = _images(step)
        loss = model(x, step=5000, **SplitSpair.batch_extras(cfg, x))["loss"]
        update.zero_grad()
        loss.backward()
        update.clip(1.0)
        update.step(1e-3 / (step + 1))  # a changing lr, as under train.lr_decay_steps
    return {k: v.detach().clone() for k, v in model.state_dict().items()}


def test_flat_update_trains_exactly_as_per_tensor_adam():
    per_tensor, flat = _train(flat=False), _train(flat=True)
    start = SplitSpair(SpairConfig(**TINY_SPAIR)).state_dict()
    moved = [k for k in flat if not torch.equal(flat[k], start[k])]
    assert len(moved) > 50  # it trained
    for k in per_tensor:
        torch.testing.assert_close(flat[k], per_tensor[k], rtol=1e-5, atol=1e-6, msg=k)


def test_capturable_adam_reads_each_steps_lr_from_its_tensor():
    """train.cuda_graph's update (lr in a device tensor that set_lr fills) trains as the plain one."""
    flat, capturable = _train(flat=True), _train(flat=True, capturable=True)
    for k in flat:
        torch.testing.assert_close(capturable[k], flat[k], rtol=1e-5, atol=1e-6, msg=k)


def test_a_capturable_optimizer_state_is_saved_and_resumed(tmp_path):
    model = SplitSpair(SpairConfig(**TINY_SPAIR))
    update = AdamStep(model, lr=1e-3, flat=True, capturable=True)
    x = _images(0)
    model(x, step=5000)["loss"].backward()
    update.step(2e-4)
    assert torch.is_tensor(update.optimizer.param_groups[0]["lr"])
    path = tmp_path / "optimizer.safetensors"
    ckpt.save_optimizer(path, update.optimizer, {"step": 1})  # the lr tensor is stored as a number
    again = AdamStep(SplitSpair(SpairConfig(**TINY_SPAIR)), lr=1e-3, flat=True, capturable=True)
    assert ckpt.load_optimizer(path, again.optimizer) == {"step": 1}
    assert again.optimizer.param_groups[0]["lr"] == pytest.approx(2e-4)
    again.set_lr(5e-5)  # back in a tensor, which a recorded update would read
    assert torch.is_tensor(again.optimizer.param_groups[0]["lr"]) and float(again.optimizer.param_groups[0]["lr"]) == pytest.approx(5e-5)
    torch.testing.assert_close(again.optimizer.state[again.params[0]]["exp_avg"], update.optimizer.state[update.params[0]]["exp_avg"])
    plain = AdamStep(SplitSpair(SpairConfig(**TINY_SPAIR)), lr=1e-3, flat=True)  # a run on the CPU saves capturable off
    plain_path = tmp_path / "plain.safetensors"
    ckpt.save_optimizer(plain_path, plain.optimizer, {"step": 0})
    ckpt.load_optimizer(plain_path, again.optimizer)
    assert again.optimizer.param_groups[0]["capturable"] is False  # what the file said
    again.state_loaded()
    assert again.optimizer.param_groups[0]["capturable"] is True


def test_flat_views_survive_zero_grad_and_a_checkpoint(tmp_path):
    cfg = SpairConfig(**TINY_SPAIR)
    model = SplitSpair(cfg)
    update = AdamStep(model, lr=1e-3, flat=True)
    storage = update.flat.param.untyped_storage().data_ptr()
    for step in range(2):
        x = _images(step)
        update.zero_grad()
        model(x, step=5000, **SplitSpair.batch_extras(cfg, x))["loss"].backward()
        grads = [p.grad for p in model.parameters()]
        assert all(g.untyped_storage().data_ptr() == update.flat.param.grad.untyped_storage().data_ptr() for g in grads)
        # the flat gradient is this step's, not the sum of both (zero_grad cleared it)
        total = torch.cat([g.reshape(-1) for g in grads])
        assert torch.equal(total, update.flat.param.grad)
    assert all(p.untyped_storage().data_ptr() == storage for p in model.parameters())
    path = tmp_path / "flat.safetensors"
    ckpt.save_checkpoint(path, model, MODEL_TYPE, cfg)  # safetensors refuses shared memory unless copied
    loaded, _, _ = ckpt.load_checkpoint(path)
    for (k, a), b in zip(model.state_dict().items(), loaded.state_dict().values()):
        assert torch.equal(a, b), k


@pytest.mark.parametrize("model_cls,cfg", [
    (SplitSpair, SpairConfig(**TINY_SPAIR)),
    (SplitSpair, SpairConfig(**{**TINY_SPAIR, "split": False})),
    (SplitSpair, SpairConfig(**{**TINY_SPAIR, "bg_warmup_steps": 1000})),
    (Monet, MonetConfig(image_size=32, slots=3, attention="resnet18")),
    (Monet, MonetConfig(image_size=32, slots=3, attention="unet", unet_channels=(8, 8, 8))),
])
def test_models_say_truly_whether_every_parameter_learns_from_step_0(model_cls, cfg):
    """The flat update is only chosen when this holds (training.optimizer_step explains why)."""
    torch.manual_seed(0)
    model = model_cls(cfg)
    x = _images(0, cfg.image_size)
    extras = model_cls.batch_extras(cfg, x) if hasattr(model_cls, "batch_extras") else {}
    model(x, step=0, **extras)["loss"].backward()
    every = all(p.grad is not None and p.grad.abs().sum() > 0 for p in model.parameters())
    assert model_cls.every_parameter_learns_from_step_0(cfg) == every


def test_resuming_a_run_saved_with_per_tensor_adam_keeps_its_weights(tmp_path):
    """An optimizer file of the other layout (an older run) is reported, Adam restarts, the step stays."""
    from test_trainer import saved_step, train_cmd

    out = tmp_path / "run"
    assert subprocess.run(train_cmd(out, 3), capture_output=True, timeout=120).returncode == 0
    model, _, _ = ckpt.load_checkpoint(out / "checkpoint.safetensors")
    per_tensor = torch.optim.Adam(model.parameters(), lr=1e-4)
    model.zero_grad()
    for p in model.parameters():
        p.grad = torch.zeros_like(p)
    per_tensor.step()
    ckpt.save_optimizer(out / "optimizer.safetensors", per_tensor, {"step": 3})
    res = subprocess.run(train_cmd(out, 5), capture_output=True, text=True, timeout=120)
    assert res.returncode == 0, res.stderr[-2000:]
    assert "Adam restarts from the step-3 weights" in res.stderr, res.stderr[-2000:]
    assert saved_step(out) == 5


def test_a_training_step_of_the_shipped_config_stays_within_6000_operator_calls():
    """Issue 12's launch-count target, counted as benchmarks/bench_detector.py prints it (aten calls
    on the CPU, nested included: forward, zero_grad + backward, clip, Adam). Deterministic, not timed:
    it fails when a change adds operators per step, e.g. per-wavefront work or a per-tensor update."""
    from pathlib import Path

    root = Path(__file__).resolve().parents[1]
    sys.path.insert(0, str(root / "benchmarks"))
    try:
        import bench_detector
    finally:
        sys.path.remove(str(root / "benchmarks"))
    setup, batch = bench_detector.new_setup(root / "config" / "train_split_spair.yaml")
    counts = bench_detector.op_counts(setup, batch)
    assert counts[2] + counts[3] < 100, counts  # clip + Adam on one flat tensor
    assert sum(counts) <= 6000, counts  # measured 5,902 = 2,296 + 3,569 + 28 + 9 (2 threads, train_glimpses 12)
