"""SPLIT-SPAIR: shapes, the ELBO's pieces against closed forms, and that training learns."""
import math

import numpy as np
import pytest
import torch

from split_perception.models import blocks
from split_perception.models.spair import SpairConfig, SplitSpair, annealed_rho, count_prior_table
from split_perception.training.evaluate import TEST_SEED

TINY = dict(z_what=8, z_local=4, z_bg=4, hidden=32)


@pytest.mark.parametrize("split", [True, False])
def test_forward_shapes_and_finite_elbo(split):
    torch.manual_seed(0)
    model = SplitSpair(SpairConfig(split=split, bg_warmup_steps=0, **TINY))
    out = model(torch.rand(3, 3, 48, 48), step=0)
    assert torch.isfinite(out["loss"])
    assert out["recon"].shape == (3, 3, 48, 48) and out["boxes"].shape == (3, 16, 4)
    assert ("nll_x_hat" in out) == split and ("kl_local" in out) == split
    terms = [k for k in out if k.startswith(("nll", "kl"))]
    assert out["loss"].item() == pytest.approx(sum(out[k].item() for k in terms), rel=1e-5)
    out["loss"].backward()
    assert all(p.grad is not None for n, p in model.named_parameters() if "local" not in n or split)


def test_background_warmup_trains_only_the_background():
    torch.manual_seed(0)
    model = SplitSpair(SpairConfig(split=True, bg_warmup_steps=10, **TINY))
    x = torch.rand(2, 3, 48, 48)
    out = model(x, step=3)
    out["loss"].backward()
    trained = {n.split(".")[0] for n, p in model.named_parameters() if p.grad is not None}
    assert trained == {"bg_encoder", "bg_head", "bg_decoder", "local_encoder", "local_head", "local_decoder"}
    assert out["kl_pres"].item() == 0 and out["count"].item() == 0
    assert torch.allclose(out["recon"], out["background"])
    after = model(x, step=10)  # warm-up over: the object terms are back
    assert after["kl_pres"].item() > 0 and after.keys() == out.keys()


def test_expected_presence_phase_draws_glimpses_by_their_probability():
    torch.manual_seed(0)
    model = SplitSpair(SpairConfig(split=True, bg_warmup_steps=0, expected_presence_steps=10, pres_init_bias=0.0, **TINY))
    drawn = []
    render = model.render
    model.render = lambda *a: drawn.append(a[-1]) or render(*a)  # the z_pres each glimpse is drawn with
    x = torch.rand(2, 3, 48, 48)
    during, after = model(x, step=9), model(x, step=10)
    torch.testing.assert_close(drawn[0], during["pres_prob"])
    assert (drawn[1] - after["pres_prob"]).abs().max() > 0.05  # relaxed Bernoulli samples again


def test_shuffle_keeps_patches_and_permutes_them():
    x = torch.arange(2 * 3 * 8 * 8, dtype=torch.float32).reshape(2, 3, 8, 8)
    perm = torch.tensor([3, 0, 2, 1])
    y = blocks.shuffle_patches(x, 4, perm)
    tiles = lambda t: [t[:, :, i : i + 4, j : j + 4] for i in (0, 4) for j in (0, 4)]  # noqa: E731
    src, dst = tiles(x), tiles(y)
    for k, p in enumerate(perm.tolist()):
        assert torch.equal(dst[k], src[p])
    # per-image permutations
    perms = torch.stack([torch.tensor([1, 0, 3, 2]), torch.tensor([0, 1, 2, 3])])
    y2 = blocks.shuffle_patches(x, 4, perms)
    assert torch.equal(y2[1], x[1]) and not torch.equal(y2[0], x[0])
    assert torch.equal(torch.sort(y2.flatten(1))[0], torch.sort(x.flatten(1))[0])  # same pixels
    with pytest.raises(ValueError, match="divisible"):
        blocks.shuffle_patches(torch.zeros(1, 3, 10, 10), 4, perm)


def test_gaussian_kl_matches_torch_distributions():
    mean, logstd = torch.randn(50), torch.randn(50) * 0.5
    q = torch.distributions.Normal(mean, logstd.exp())
    for pm, ps in [(0.0, 1.0), (-0.6, 0.5)]:
        expected = torch.distributions.kl_divergence(q, torch.distributions.Normal(pm, ps))
        torch.testing.assert_close(blocks.gaussian_kl(mean, logstd, pm, ps), expected, rtol=1e-5, atol=1e-5)


def test_bernoulli_kl_closed_form():
    q, p = torch.tensor([0.9, 0.1, 0.5]), torch.tensor([0.2, 0.2, 0.5])
    expected = q * torch.log(q / p) + (1 - q) * torch.log((1 - q) / (1 - p))
    torch.testing.assert_close(blocks.bernoulli_kl(q, p), expected)


def test_count_prior_table_is_consistent_with_the_count_distribution():
    cells, rho = 6, 0.4
    table = count_prior_table(cells, rho).double()
    # probability of every presence pattern under the sequential priors ...
    from itertools import product

    p_count = np.zeros(cells + 1)
    for pattern in product([0, 1], repeat=cells):
        p, k = 1.0, 0
        for t, z in enumerate(pattern):
            q1 = float(table[t, k])
            p *= q1 if z else 1 - q1
            k += z
        p_count[k] += p
    # ... must give back the geometric count prior
    expected = rho ** np.arange(cells + 1)
    np.testing.assert_allclose(p_count, expected / expected.sum(), atol=1e-6)


def test_count_prior_anneals_from_exploration_to_sparse():
    cfg = SpairConfig(count_prior_start=0.9, count_prior_end=0.05, count_prior_anneal_steps=100)
    assert annealed_rho(cfg, 0) == pytest.approx(0.9)
    assert annealed_rho(cfg, 100) == pytest.approx(0.05) and annealed_rho(cfg, 10**6) == pytest.approx(0.05)
    assert 0.05 < annealed_rho(cfg, 50) < 0.9


def test_glimpse_crop_and_paste_are_inverse_on_the_box():
    img = torch.rand(1, 3, 48, 48)
    box = torch.tensor([[20.0, 24.0, 16.0, 16.0]])  # centre x, y, w, h: pixels 12..27 x 16..31
    g = blocks.crop_glimpses(img, box, 16)
    torch.testing.assert_close(g[0], img[0, :, 16:32, 12:28])
    back = blocks.paste_glimpses(g, box, 48, 48)
    torch.testing.assert_close(back[0, :, 16:32, 12:28], img[0, :, 16:32, 12:28])
    assert back[0, :, :10].abs().max() == 0


def test_config_validation():
    with pytest.raises(ValueError, match="multiple"):
        SpairConfig(image_size=50)
    with pytest.raises(ValueError, match="z_local"):
        SpairConfig(split=True, z_local=0)


def _single_object_scenes(seed: int, n: int):
    from split_perception.training import scenes

    cfg = scenes.MultiObjectConfig(background="solid", min_objects=1, max_objects=1)
    return [scenes.generate(cfg, seed, i) for i in range(n)]


def _evaluate_single_objects(model, test_scenes) -> tuple[float, float, float]:
    """Negative ELBO (posterior means, final count prior), mean |count - truth|, and the
    fraction of detected boxes whose centre lies inside the object."""
    from split_perception.training import metrics
    from split_perception.training.dataset import to_tensor

    model.eval()
    with torch.no_grad():
        out = model(torch.stack([to_tensor(s.image) for s in test_scenes]), step=10**9)
    model.train()
    on = out["pres_prob"] > 0.5
    centred = []
    for scene, keep, boxes in zip(test_scenes, on, out["boxes"]):
        x1, y1, x2, y2 = scene.boxes[0]
        centred += [bool(x1 <= cx <= x2 and y1 <= cy <= y2) for cx, cy in boxes[keep][:, :2].tolist()]
    error = metrics.count_error(on.sum(1).tolist(), [s.count for s in test_scenes])
    return out["loss"].item(), error, float(np.mean(centred)) if centred else 0.0


def test_short_training_lowers_the_loss_and_moves_the_count_to_the_truth():
    """500 steps on single-object solid-background scenes: the negative ELBO falls, and the
    object count on held-out scenes goes from 0 (cells start off) to about one box, on the object.

    Glimpses are drawn with their presence probability for the whole run (expected_presence_steps)
    and the decoders have their colour path. Without the first every cell stays off; without the
    second cells tile the image (docs/RESULTS.md, benchmarks/count_dynamics.py).
    """
    from split_perception.training import trainer

    torch.manual_seed(0)
    cfg = SpairConfig(
        split=True, bg_warmup_steps=0, expected_presence_steps=500, count_prior_anneal_steps=200,
        count_prior_end=1e-5, colour_path=True, **TINY,
    )
    model = SplitSpair(cfg)
    opt = torch.optim.Adam(model.parameters(), lr=1e-3)
    stream = trainer.SceneStream(trainer.DataConfig(backgrounds=("solid",), min_objects=1, max_objects=1), batch_size=16)
    held_out = _single_object_scenes(seed=TEST_SEED, n=48)
    loss_before, error_before, _ = _evaluate_single_objects(model, held_out)
    for step in range(500):
        out = model(stream.batch(step), step=step)
        opt.zero_grad()
        out["loss"].backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
    loss_after, error_after, centred = _evaluate_single_objects(model, held_out)
    assert loss_after < loss_before - 0.3 * abs(loss_before), (loss_before, loss_after)
    assert error_before >= 0.9, error_before  # cells start switched off
    assert error_after < 0.5, (error_before, error_after)
    assert centred >= 0.8, centred
