"""MONet and MONet-RN50*: masks, loss, learning, metrics on real scenes, the segmenter API."""
from pathlib import Path

import numpy as np
import pytest
import torch

from split_perception.models.monet import Monet, MonetConfig, ResNetAttention

ATTENTIONS = ["unet", "resnet18", "resnet50"]


@pytest.mark.parametrize("attention,upsampling", [(a, "transposed") for a in ATTENTIONS] + [("resnet18", "bilinear")])
def test_masks_sum_to_one_and_the_loss_is_finite(attention, upsampling):
    torch.manual_seed(0)
    cfg = MonetConfig(image_size=32, slots=5, attention=attention, unet_channels=(8, 8, 8), upsampling=upsampling, decoder_size=16)
    model = Monet(cfg)
    out = model(torch.rand(2, 3, 32, 32))
    assert out["masks"].shape == (2, 5, 32, 32)
    torch.testing.assert_close(out["masks"].sum(1), torch.ones(2, 32, 32))
    assert torch.isfinite(out["loss"])
    assert out["loss"].item() == pytest.approx(sum(out[k].item() for k in ("nll_x", "kl_z", "kl_mask")), rel=1e-5)
    out["loss"].backward()
    assert all(p.grad is not None for p in model.parameters() if p.requires_grad)


@pytest.mark.parametrize("decoder_size", [0, 8, 16])
def test_coarse_component_decoder_still_draws_at_image_size(decoder_size):
    cfg = MonetConfig(image_size=32, slots=3, decoder_size=decoder_size, upsampling="bilinear")
    vae = Monet(cfg).component_vae
    assert vae.coords.shape[-1] == (decoder_size or 32) + 8  # four unpadded 3x3 convs shrink it back
    rgb, mask_logits = vae.decode(torch.randn(5, cfg.z_dim))
    assert rgb.shape == (5, 3, 32, 32) and mask_logits.shape == (5, 1, 32, 32)
    assert 0.0 <= rgb.min() and rgb.max() <= 1.0


def test_bilinear_attention_has_no_transposed_convs_and_refines_at_full_resolution():
    """The checkerboard-free decoder: resize + conv, then a full-resolution refinement that sees
    the image, so a one-pixel change of the input can change the masks at that pixel."""
    torch.manual_seed(0)
    att = ResNetAttention(MonetConfig(image_size=32, slots=4, upsampling="bilinear")).eval()
    assert not any(isinstance(m, torch.nn.ConvTranspose2d) for m in att.modules())
    x = torch.rand(1, 3, 32, 32, requires_grad=True)
    log_masks = att(x)
    assert log_masks.shape == (1, 4, 32, 32)
    torch.testing.assert_close(log_masks.exp().sum(1), torch.ones(1, 32, 32))
    log_masks[0, 1, 20, 7].backward()
    assert x.grad[0, :, 20, 7].abs().sum() > 0


def test_slot_count_changes_only_the_resnet_head():
    """K is a head-size choice for the ResNet attention: the backbone and decoder stay as they are."""
    small = ResNetAttention(MonetConfig(slots=7))
    large = ResNetAttention(MonetConfig(slots=18))
    diff = {n for (n, a), (_, b) in zip(small.state_dict().items(), large.state_dict().items()) if a.shape != b.shape}
    assert diff == {"head.weight", "head.bias"}


def test_config_validation():
    with pytest.raises(ValueError, match="attention"):
        MonetConfig(attention="vgg")
    with pytest.raises(ValueError, match="slots"):
        MonetConfig(slots=1)
    with pytest.raises(ValueError, match="multiple of 16"):
        MonetConfig(image_size=40)
    with pytest.raises(ValueError, match="upsampling"):
        MonetConfig(upsampling="nearest")
    with pytest.raises(ValueError, match="decoder_size"):
        MonetConfig(image_size=64, decoder_size=12)
    with pytest.raises(ValueError, match="decoder_size"):
        MonetConfig(image_size=32, decoder_size=48)


def test_local_backbone_weights_load_and_bad_ones_are_refused(tmp_path):
    import torchvision
    from safetensors.torch import save_file

    ref = torchvision.models.resnet18(weights=None)
    good = tmp_path / "rn18.safetensors"
    save_file({k: v.contiguous() for k, v in ref.state_dict().items()}, str(good))
    att = ResNetAttention(MonetConfig(pretrained=str(good)))
    torch.testing.assert_close(att.stem[0].weight, ref.conv1.weight)
    bad = tmp_path / "other.safetensors"
    save_file({"x": torch.zeros(1)}, str(bad))
    with pytest.raises(ValueError, match="not resnet18 weights"):
        ResNetAttention(MonetConfig(pretrained=str(bad)))
    with pytest.raises(FileNotFoundError):
        ResNetAttention(MonetConfig(pretrained=str(tmp_path / "missing.pth")))


def test_short_training_lowers_the_loss():
    """Forty Adam steps on a fixed batch of room scenes (fixed, so batch noise cannot hide it)."""
    from split_perception.training import trainer

    torch.manual_seed(0)
    model = Monet(MonetConfig(image_size=32, slots=3, attention="unet", unet_channels=(8, 8, 8)))
    opt = torch.optim.Adam(model.parameters(), lr=1e-3)
    stream = trainer.SceneStream(trainer.DataConfig(kind="room", image_size=32, min_objects=1, max_objects=3), batch_size=8)
    batch, losses = stream.batch(0), []
    for step in range(40):
        out = model(batch, step=step)
        opt.zero_grad()
        out["loss"].backward()
        opt.step()
        losses.append(out["loss"].item())
    assert np.mean(losses[-5:]) < 0.85 * np.mean(losses[:5]), (losses[:8], losses[-8:])


def test_segmentation_metrics_on_real_room_scenes():
    from split_perception.training import metrics, scenes

    rng = np.random.default_rng(0)
    for i in range(5):
        s = scenes.generate(scenes.RoomConfig(image_size=64), 0, i)
        assert metrics.foreground_ari(s.labels, s.labels) == pytest.approx(1.0)
        assert metrics.mean_segmentation_covering(s.labels, s.labels) == pytest.approx(1.0)
        relabelled = (s.labels.astype(int) * 7 + 3) % 11  # another slot order: same segmentation
        assert metrics.foreground_ari(s.labels, relabelled) == pytest.approx(1.0)
        shuffled = rng.permutation(s.labels.reshape(-1)).reshape(s.labels.shape)
        assert abs(metrics.foreground_ari(s.labels, shuffled)) < 0.1
        assert metrics.mean_segmentation_covering(s.labels, shuffled) < 0.5


def test_evaluation_writes_metrics_and_figure(tmp_path, tiny_segmenter_files):
    import json

    from split_perception.training.evaluate import evaluate_checkpoint

    report = evaluate_checkpoint(tiny_segmenter_files[0], tmp_path, n_images=6)
    from split_perception.training.scenes import ROOM_TEST_KINDS

    assert set(report["test_sets"]) == set(ROOM_TEST_KINDS)
    for room in report["test_sets"].values():
        assert 0.0 <= room["msc"] <= 1.0 and -1.0 <= room["fg_ari"] <= 1.0 and room["reconstruction_mse"] > 0
    assert json.loads((tmp_path / "metrics.json").read_text())["model_type"] == "monet"
    assert (tmp_path / "figure.png").read_bytes()[:4] == b"\x89PNG"


def test_a_checkpoint_fine_tunes_into_more_slots_from_its_own_mixture(tiny_segmenter_files):
    """--init with model.slots above the checkpoint's: each new slot splits a foreground slot in two
    halves of its mass, so the grown model starts by explaining the scene as the checkpoint did
    (slot 0 and the unsplit slots keep their masks, a split slot's two halves sum to it), the new
    slots learn, and fewer slots than the checkpoint's are left for the shape check to refuse."""
    import dataclasses
    import json

    from safetensors.torch import load_file

    from split_perception.models import checkpoint as ckpt
    from split_perception.training import scenes, trainer

    weights, _ = tiny_segmenter_files
    cfg = MonetConfig(**json.loads(ckpt.read_metadata(weights)["config"]))  # K = 4
    state = load_file(str(weights))
    old = Monet(cfg).eval()
    old.load_state_dict(state)
    grown = Monet(dataclasses.replace(cfg, slots=6)).eval()
    grown.load_state_dict(grown.fit_init_state(state))
    room = scenes.RoomConfig(image_size=32)
    x = torch.stack([torch.from_numpy(scenes.generate(room, 7, i).image).permute(2, 0, 1).float() / 255 for i in range(4)])
    with torch.no_grad():
        m_old, m_new = old.attention(x).exp(), grown.attention(x).exp()
    # new slots 4 and 5 split slots 3 and 2 (the last foreground slots first); slots 0 and 1 unchanged
    torch.testing.assert_close(m_new[:, :2], m_old[:, :2], atol=0.02, rtol=0)
    torch.testing.assert_close(m_new[:, 3] + m_new[:, 4], m_old[:, 3], atol=0.02, rtol=0)
    torch.testing.assert_close(m_new[:, 2] + m_new[:, 5], m_old[:, 2], atol=0.02, rtol=0)
    assert (m_new[:, 4] - m_new[:, 3]).abs().max() > 0  # the halves differ a little: they can part
    grown.train()
    grown(x)["loss"].backward()
    assert grown.attention.head.weight.grad[4:].abs().sum() > 0
    # fewer slots: nothing is fitted, the caller's shape check refuses it
    fewer = Monet(dataclasses.replace(cfg, slots=3))
    assert fewer.fit_init_state(state)["attention.head.weight"].shape[0] == 4
    # and through the trainer, as `train --init` loads it: the difference is named, the weights fit
    config = Path(__file__).resolve().parents[1] / "config" / "train_monet_rn18.yaml"
    tiny = ["model.image_size=32", "data.image_size=32", "model.upsampling=transposed", "model.decoder_size=0", "model.slots=6"]
    run = trainer.load_run_config(config, tiny)
    info = trainer.load_init_weights(Monet(run.model), run, weights)
    assert "slots: 4 in the checkpoint, 6 in the config" in info["differences"]
