"""Shared test set-up: ROS 2 traffic stays on this machine and in a domain of its own."""
import os
import random

# A random domain per test session keeps parallel runs (and other ROS users) apart; discovery
# stays on localhost so tests never reach the network.
os.environ.setdefault("ROS_DOMAIN_ID", str(random.Random(os.getpid()).randint(1, 100)))
os.environ.setdefault("ROS_AUTOMATIC_DISCOVERY_RANGE", "LOCALHOST")

import pytest  # noqa: E402


@pytest.fixture(scope="session")
def tiny_detector_files(tmp_path_factory):
    """A randomly initialised SPLIT-SPAIR checkpoint and its ONNX export (fast, no training)."""
    import torch

    from split_perception.export import export_onnx
    from split_perception.models import checkpoint as ckpt
    from split_perception.models.spair import MODEL_TYPE, SpairConfig, SplitSpair

    torch.manual_seed(0)
    d = tmp_path_factory.mktemp("tiny_detector")
    cfg = SpairConfig(z_what=8, z_local=4, z_bg=4, hidden=32)
    weights = d / "checkpoint.safetensors"
    ckpt.save_checkpoint(weights, SplitSpair(cfg), MODEL_TYPE, cfg, {"step": 0})
    onnx_path = export_onnx(weights, d / "model.onnx")
    return weights, onnx_path


TINY_MONET = dict(image_size=32, slots=4, attention="resnet18")


@pytest.fixture(scope="session")
def tiny_segmenter_files(tmp_path_factory):
    """A randomly initialised MONet (ResNet18 attention) checkpoint and its ONNX export."""
    import torch

    from split_perception.export import export_onnx
    from split_perception.models import checkpoint as ckpt
    from split_perception.models.monet import MODEL_TYPE, Monet, MonetConfig

    torch.manual_seed(0)
    d = tmp_path_factory.mktemp("tiny_segmenter")
    cfg = MonetConfig(**TINY_MONET)
    weights = d / "checkpoint.safetensors"
    ckpt.save_checkpoint(weights, Monet(cfg), MODEL_TYPE, cfg, {"step": 0})
    return weights, export_onnx(weights, d / "model.onnx")
