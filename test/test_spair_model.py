"""SPLIT-SPAIR: shapes, the ELBO's pieces against closed forms, and that training learns."""
import math

import numpy as np
import pytest
import torch

from split_perception.models import blocks
from split_perception.models.spair import (
    SpairConfig,
    SplitSpair,
    annealed_rho,
    count_prior_table,
    footprint_overlap_and_colour,
    strongest_cells,
)
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
    model.render = lambda *a: drawn.append(a[5]) or render(*a)  # the z_pres each glimpse is drawn with
    x = torch.rand(2, 3, 48, 48)
    during, after = model(x, step=9), model(x, step=10)
    torch.testing.assert_close(drawn[0], during["pres_prob"])
    assert (drawn[1] - after["pres_prob"]).abs().max() > 0.05  # relaxed Bernoulli samples again


def test_train_glimpses_draws_only_the_cells_with_the_largest_presence_samples():
    torch.manual_seed(0)
    cfg = SpairConfig(split=True, bg_warmup_steps=0, cell_size=8, train_glimpses=5, **TINY)  # 6x6 grid: 36 cells
    model = SplitSpair(cfg)
    seen = {}
    render = model.render
    model.render = lambda *a: seen.update(boxes=a[3], z_pres=a[5]) or render(*a)
    infer = model.infer_cells
    model.infer_cells = lambda *a, **k: seen.setdefault("cells", infer(*a, **k))
    out = model(torch.rand(3, 3, 48, 48), step=0)
    assert seen["boxes"].shape == (3, 5, 4) and seen["z_pres"].shape == (3, 5)
    strongest = seen["cells"]["z_pres"].topk(5, dim=1).values
    torch.testing.assert_close(seen["z_pres"], strongest)
    assert out["boxes"].shape == (3, 36, 4) and out["pres_prob"].shape == (3, 36)  # logging sees every cell
    out["loss"].backward()
    trained = {n.split(".")[0] for n, p in model.named_parameters() if p.grad is not None and p.grad.abs().sum() > 0}
    assert {"glimpse_encoder", "glimpse_decoder", "box_net"} <= trained
    model.eval()  # inference draws every cell: train_glimpses is for training alone
    seen.clear()
    model(torch.rand(3, 3, 48, 48))
    assert seen["boxes"].shape == (3, 36, 4)
    with pytest.raises(ValueError, match="train_glimpses"):
        SpairConfig(train_glimpses=-1)


def test_strongest_cells_gathers_every_per_cell_tensor_alike():
    z_pres = torch.tensor([[0.1, 0.9, 0.0, 0.5], [0.7, 0.0, 0.8, 0.2]])
    boxes = torch.arange(32.0).reshape(2, 4, 4)
    depth = torch.arange(8.0).reshape(2, 4, 1)
    got_pres, got_boxes, got_depth = strongest_cells(z_pres, 2, (z_pres[..., None], boxes, depth))
    torch.testing.assert_close(got_pres[..., 0], torch.tensor([[0.9, 0.5], [0.8, 0.7]]))
    torch.testing.assert_close(got_boxes, torch.stack([boxes[0, [1, 3]], boxes[1, [2, 0]]]))
    torch.testing.assert_close(got_depth, torch.tensor([[[1.0], [3.0]], [[6.0], [4.0]]]))


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


def test_gaussian_nll_matches_torch_distributions_for_a_number_and_a_tensor_std():
    x, mean = torch.rand(3, 2, 4, 4), torch.rand(3, 2, 4, 4)
    for std in (0.3, torch.full((3, 2, 4, 4), 0.3), 1):
        expected = -torch.distributions.Normal(mean, torch.as_tensor(std, dtype=torch.float32)).log_prob(x).flatten(1).sum(1)
        torch.testing.assert_close(blocks.gaussian_nll(x, mean, std), expected, rtol=1e-5, atol=1e-4)


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


def test_a_present_cell_costs_the_prior_floor_once_rho_is_below_it():
    """With rho far below the floor every rho charges the same -log(floor) nats per present cell
    (why stages 3-5's rho 1e-6 and 1e-7 trained alike); a lower floor charges more."""
    pres = torch.tensor([[1.0] + [0.0] * 35])  # one present cell, the first, of a 6x6 grid

    def cost(rho, floor):
        cfg = SpairConfig(cell_size=8, count_prior_start=rho, count_prior_end=rho, pres_prior_floor=floor, **TINY)
        return float(SplitSpair(cfg).pres_kl(pres, pres, step=0))

    at_floor = cost(1e-7, 1e-6)
    assert at_floor == pytest.approx(-math.log(1e-6), abs=1e-3)
    assert cost(1e-9, 1e-6) == pytest.approx(at_floor, abs=1e-6)
    assert cost(1e-9, 1e-8) == pytest.approx(-math.log(1e-8), abs=1e-3)
    assert cost(1e-9, 1e-12) > cost(1e-9, 1e-8) + 2.0  # the table itself (2.8e-11 for the first cell) applies
    with pytest.raises(ValueError, match="pres_prior_floor"):
        SpairConfig(pres_prior_floor=0.0)


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
    with pytest.raises(ValueError, match="cell_size must be one of"):
        SpairConfig(cell_size=6)


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


def _raster_order_cells(model: SplitSpair, x: torch.Tensor) -> dict:
    """SPAIR's cell-by-cell raster-order inference, written plainly: the reference for the
    wavefront implementation (posterior means, so both are deterministic)."""
    cfg = model.cfg
    g, c = cfg.grid, cfg.cell_size
    feats = model.backbone(x)
    ctx, colour, outs = {}, {}, {k: [] for k in ("where_mean", "depth_mean", "pres_logit")}
    zero, no_colour = x.new_zeros(x.shape[0], 6), x.new_zeros(x.shape[0], 3)
    for i in range(g):
        for j in range(g):
            around = [(i + di, j + dj) for di, dj in ((-1, -1), (-1, 0), (-1, 1), (0, -1))]
            inputs = [feats[:, :, i, j]] + [ctx.get(cell, zero) for cell in around]
            if cfg.context_colour:
                own = x[:, :, i * c:(i + 1) * c, j * c:(j + 1) * c].mean((2, 3))
                inputs += [colour.get(cell, no_colour) for cell in around] + [own]
            h = model.box_net(torch.cat(inputs, 1))
            where, _ = model.where_head(h)
            depth, _ = model.depth_head(h)
            logit = model.pres_head(h)[:, 0]
            ctx[(i, j)] = torch.cat([where, depth, torch.sigmoid(logit)[:, None]], 1)
            if cfg.context_colour:  # mean of a 4 x 4 crop of the box's middle half
                box = model.boxes_from_where(where[:, None], model.cell_centres[i * g + j][None])[:, 0]
                box = box * box.new_tensor([1, 1, 0.5, 0.5])
                colour[(i, j)] = blocks.crop_glimpses(x, box, 4).mean((2, 3))
            for k, v in zip(outs, (where, depth, logit)):
                outs[k].append(v)
    return {k: torch.stack(v, 1) for k, v in outs.items()}


@pytest.mark.parametrize("image_size,cell_size,context_colour", [(48, 12, False), (72, 12, False), (48, 8, False), (48, 8, True)])
def test_wavefront_inference_equals_raster_order(image_size, cell_size, context_colour):
    torch.manual_seed(0)
    cfg = SpairConfig(image_size=image_size, cell_size=cell_size, pres_init_bias=0.0, context_colour=context_colour, **TINY)
    model = SplitSpair(cfg).eval()
    assert model.backbone(torch.rand(1, 3, image_size, image_size)).shape[-1] == image_size // cell_size
    x = torch.rand(3, 3, image_size, image_size)
    with torch.no_grad():
        fast, reference = model.infer_cells(x, sample=False), _raster_order_cells(model, x)
    for k, v in reference.items():
        torch.testing.assert_close(fast[k], v, rtol=1e-4, atol=1e-5)


def test_count_prior_table_is_cached_and_follows_rho():
    a, b = count_prior_table(16, 1e-3), count_prior_table(16, 1e-3)
    torch.testing.assert_close(a, b)
    assert count_prior_table(16, 0.9)[0, 0] > a[0, 0]  # a larger rho expects more objects


def _scenes_with_truth(kind: str, n: int = 16):
    from split_perception.training import scenes

    cfg = scenes.MultiObjectConfig(background=kind, min_objects=2)
    sc = [scenes.generate(cfg, 3, i) for i in range(n)]
    to = lambda a: torch.from_numpy(np.ascontiguousarray(a)).permute(2, 0, 1).float() / 255  # noqa: E731
    x = torch.stack([to(s.image) for s in sc])
    truth = torch.stack([to(scenes.background_image(cfg, 3, i)) for i in range(n)])
    objects = torch.stack([torch.from_numpy(s.labels > 0) for s in sc])
    return x, truth, objects


@pytest.mark.parametrize("kind", ["solid", "gradient", "checkerboard", "stripes", "plaid"])
def test_spectral_background_draws_the_background_and_not_the_objects(kind):
    x, truth, objects = _scenes_with_truth(kind)
    estimate = blocks.spectral_background(x)
    err_bg = ((estimate - truth) ** 2).mean(1)
    residual = ((estimate - x) ** 2).mean(1)
    # the background is drawn (measured: MSE 0.001-0.01 per kind) ...
    assert err_bg[~objects].mean() < 0.015
    # ... and the objects are not: they stay in the residual, ~10x the background's error
    assert residual[objects].mean() > 5 * err_bg[~objects].mean()
    assert residual[objects].mean() > 0.04


def test_robust_fit_keeps_objects_out_better_than_a_single_fit():
    x, truth, objects = _scenes_with_truth("solid")
    robust = blocks.spectral_background(x)
    single = blocks.spectral_background(x, keep=(48,))
    under = lambda e: ((e - truth) ** 2).mean(1)[objects].mean()  # noqa: E731
    assert under(robust) < 0.5 * under(single)


def test_pixel_refiner_starts_as_the_identity_and_cannot_draw_structure():
    torch.manual_seed(0)
    refiner = blocks.PixelRefiner(latent=5)
    logits = torch.randn(2, 3, 8, 8)
    torch.testing.assert_close(refiner(logits, torch.randn(2, 5)), logits)
    torch.nn.init.normal_(refiner.out[-1].weight)
    flat = torch.zeros(1, 3, 8, 8)  # a flat input stays flat: a 1x1 map adds no spatial structure
    out = refiner(flat, torch.randn(1, 5))
    assert float(out.detach().std((2, 3)).max()) < 1e-6


def test_spectral_background_model_trains_and_precomputed_extras_match():
    torch.manual_seed(0)
    cfg = SpairConfig(background="spectral", colour_path=True, bg_warmup_steps=0, **TINY)
    model = SplitSpair(cfg)
    x = torch.rand(2, 3, 48, 48)
    extras = SplitSpair.batch_extras(cfg, x)
    assert extras["bg_estimate"].shape == x.shape
    model.eval()
    with torch.no_grad():
        torch.testing.assert_close(model(x, **extras)["recon"], model(x)["recon"])
    model.train()
    out = model(x, step=0, **extras)
    out["loss"].backward()
    assert model.bg_decoder.inp.weight.grad is not None
    assert SplitSpair.batch_extras(SpairConfig(**TINY), x) == {}  # the VAE background needs nothing


def test_object_boxes_shrink_windows_to_the_drawn_object():
    torch.manual_seed(0)
    model = SplitSpair(SpairConfig(**TINY)).eval()
    gs = model.cfg.glimpse_size
    alpha = torch.zeros(2, 4, gs, gs)
    alpha[0, 3, 4:12, 2:6] = 1.0  # glimpse 0: object in rows 4..11, columns 2..5
    model._decoded_patches = lambda z_what, z_local: alpha  # glimpse 1 draws nothing
    windows = torch.tensor([[[24.0, 20.0, 16.0, 32.0], [10.0, 10.0, 8.0, 8.0]]])
    boxes = model.object_boxes(windows, torch.zeros(1, 2, 8), None)
    # window x from 16 to 32 (1 px per glimpse column), y from 4 to 36 (2 px per glimpse row)
    x1, x2, y1, y2 = 16 + 2, 16 + 6, 4 + 4 * 2, 4 + 12 * 2
    torch.testing.assert_close(boxes[0, 0], torch.tensor([(x1 + x2) / 2, (y1 + y2) / 2, x2 - x1, y2 - y1]))
    torch.testing.assert_close(boxes[0, 1], windows[0, 1])


def test_one_hue_glimpses_keep_shading_and_lose_a_second_colour():
    from split_perception.models.spair import one_hue

    alpha = torch.ones(2, 1, 8, 8)
    red = torch.tensor([0.8, 0.1, 0.1])[:, None, None]
    shaded = (red * torch.linspace(0.5, 1.0, 8)[None, None, :]).expand(3, 8, 8)  # one object, brightness ramp
    two = torch.cat([red.expand(3, 8, 4), torch.tensor([0.1, 0.1, 0.8])[:, None, None].expand(3, 8, 4)], dim=2)  # red | blue
    out = one_hue(torch.stack([shaded, two]), alpha)
    torch.testing.assert_close(out[0], shaded, atol=1e-4, rtol=0)  # one hue, any brightness: unchanged
    mean = two.mean((1, 2))
    cos = (out[1] * mean[:, None, None]).sum(0) / (out[1].norm(dim=0) * mean.norm() + 1e-9)
    assert (cos > 0.999).all()  # every pixel of the two-colour glimpse now has the mean's hue
    assert (out[1] - two).abs().max() > 0.3  # so it cannot draw red and blue: a second glimpse must
    # pixels outside the object (alpha 0) do not pull the hue
    alpha_left = torch.cat([torch.ones(1, 1, 8, 4), torch.zeros(1, 1, 8, 4)], dim=3)
    torch.testing.assert_close(one_hue(two[None], alpha_left)[0, :, :, :4], two[:, :, :4], atol=1e-4, rtol=0)


def test_one_hue_model_gives_finite_gradients():
    torch.manual_seed(0)
    cfg = SpairConfig(image_size=24, cell_size=12, z_what=4, z_local=4, hidden=16, glimpse_size=8, glimpse_colour="one_hue")
    model = SplitSpair(cfg)
    out = model(torch.rand(2, 3, 24, 24), step=10)
    assert torch.isfinite(out["loss"])
    out["loss"].backward()
    assert all(torch.isfinite(p.grad).all() for p in model.parameters() if p.grad is not None)
    with pytest.raises(ValueError, match="glimpse_colour"):
        SpairConfig(glimpse_colour="rainbow")


def test_alphas_pasted_by_matrix_products_equal_grid_sample():
    torch.manual_seed(0)
    alpha = torch.rand(2, 5, 16, 16)
    boxes = torch.cat([torch.rand(2, 5, 2) * 48, 4 + torch.rand(2, 5, 2) * 20], -1)  # some reach off the image
    by_grid = blocks.paste_glimpses(alpha.reshape(10, 1, 16, 16), boxes.reshape(10, 4), 48, 40).reshape(2, 5, 48, 40)
    torch.testing.assert_close(blocks.paste_alphas(alpha, boxes, 48, 40), by_grid, atol=1e-5, rtol=0)


def test_footprint_overlap_is_one_inside_zero_apart_and_colour_is_the_mean_under_it():
    x = torch.zeros(1, 3, 8, 8)
    x[0, 0, :, :4] = 1.0  # left half red
    x[0, 2, :, 4:] = 1.0  # right half blue
    f = torch.zeros(1, 3, 8, 8)
    f[0, 0, 2:6, 0:4] = 1.0  # in the red half
    f[0, 1, 3:5, 1:3] = 1.0  # inside glimpse 0
    f[0, 2, :, 5:] = 0.5  # in the blue half, soft
    overlap, colour = footprint_overlap_and_colour(x, f)
    assert overlap[0, 0, 1] == overlap[0, 1, 0] == 1.0
    assert overlap[0, 0, 2] == overlap[0, 1, 2] == 0.0
    torch.testing.assert_close(colour[0], torch.tensor([[1.0, 0, 0], [1.0, 0, 0], [0, 0, 1.0]]))


def test_context_colour_is_the_mean_colour_in_the_middle_of_a_neighbours_box():
    torch.manual_seed(0)
    model = SplitSpair(SpairConfig(cell_size=8, context_colour=True, **TINY))
    x = torch.zeros(1, 3, 48, 48)
    x[0, 0, 8:24, 8:24] = 1.0  # a red square of 16 px, centre (16, 16): in cell (1, 1) of the 6 x 6 grid
    x[0, 2, 8:24, 24:40] = 1.0  # a blue one touching it on the right, centre (32, 16): cell (1, 3)
    z_where = torch.zeros(2, 4)  # rows (cell, image): centred boxes of 12 px (max_box / 2)
    colour = model._box_middle_colour(x, z_where, torch.tensor([1 * 6 + 1, 1 * 6 + 3]))
    torch.testing.assert_close(colour, torch.tensor([[1.0, 0.0, 0.0], [0.0, 0.0, 1.0]]))


def _shipped_config_and_weights() -> tuple[dict, dict]:
    """The shipped detector checkpoint's model config (as a dict) and its weights as float32."""
    import json
    from pathlib import Path

    from safetensors.torch import load_file

    from split_perception.models import checkpoint as ckpt

    path = Path(__file__).resolve().parents[1] / "split_perception" / "weights" / "split_spair.safetensors"
    cfg = json.loads(ckpt.read_metadata(path)["config"])
    return cfg, {k: v.float() for k, v in load_file(str(path)).items()}


def test_a_checkpoint_without_colour_context_fine_tunes_from_exactly_its_model():
    """--init from the shipped checkpoint into a context_colour model: the colour inputs start at
    zero weight, so the cells' outputs are the shipped model's (to float rounding: the wider matrix product
    may sum in another order, as MKL does on AMD EPYC), and they still get gradients."""
    cfg, state = _shipped_config_and_weights()
    shipped = SplitSpair(SpairConfig(**cfg)).eval()
    shipped.load_state_dict(state)
    widened = SplitSpair(SpairConfig(**{**cfg, "context_colour": True})).eval()
    widened.load_state_dict(widened.fit_init_state(state))
    x = torch.rand(2, 3, 48, 48)
    with torch.no_grad():
        a, b = shipped.infer_cells(x, sample=False), widened.infer_cells(x, sample=False)
    for k in a:
        torch.testing.assert_close(a[k], b[k], rtol=1e-5, atol=1e-6)
    widened.train()
    widened(x, step=5000)["loss"].backward()
    assert widened.box_net[0].weight.grad[:, -15:].abs().sum() > 0
    # a checkpoint with another first layer is left for the caller to refuse
    odd = {**state, "box_net.0.weight": state["box_net.0.weight"][:, :-1]}
    assert widened.fit_init_state(odd)["box_net.0.weight"].shape == odd["box_net.0.weight"].shape


@pytest.mark.parametrize("glimpse_size", [24, 32])
def test_a_checkpoint_fine_tunes_into_a_larger_glimpse_from_about_its_model(glimpse_size):
    """--init from the shipped 16 x 16 glimpse into a larger one: the two size-bound layers are
    resampled, not restarted, so the new model explains scenes nearly as the shipped one does
    (measured on these 16 scenes at 24 px: nll_x -1892 shipped, -1738 resized, -1383 with those two
    layers restarted) and every cell's box and presence are the shipped ones."""
    cfg, state = _shipped_config_and_weights()
    x, _, _ = _scenes_with_truth("solid")

    def nll_and_cells(model):
        torch.manual_seed(0)
        with torch.no_grad():
            return model.eval()(x, step=10**6)["nll_x"].mean().item(), model.infer_cells(x, sample=False)

    shipped = SplitSpair(SpairConfig(**cfg))
    shipped.load_state_dict(state)
    larger_cfg = SpairConfig(**{**cfg, "glimpse_size": glimpse_size})
    resized = SplitSpair(larger_cfg)
    resized.load_state_dict(resized.fit_init_state(state))
    restarted = SplitSpair(larger_cfg)
    bound = ("glimpse_encoder.2.", "glimpse_decoder.fc.")
    restarted.load_state_dict({k: v for k, v in state.items() if not k.startswith(bound)}, strict=False)
    (nll_shipped, cells_shipped), (nll_resized, cells_resized) = nll_and_cells(shipped), nll_and_cells(resized)
    nll_restarted, _ = nll_and_cells(restarted)
    # nll is negative: the resized model keeps >= 60% of the shipped model's lead over a restart
    assert nll_resized - nll_shipped < 0.4 * (nll_restarted - nll_shipped)
    for k in ("where_mean", "pres_logit"):
        torch.testing.assert_close(cells_resized[k], cells_shipped[k], rtol=0, atol=0)


@pytest.mark.parametrize("context_colour", [False, True])
def test_export_with_a_symbolic_batch_equals_torch_at_another_batch(tmp_path, context_colour):
    """The wavefront loop indexes (cell, image) rows: an export with dynamic_batch must not bake in
    the batch it was traced with."""
    import onnxruntime as ort

    from split_perception.export import export_onnx
    from split_perception.models import checkpoint as ckpt
    from split_perception.models.spair import MODEL_TYPE, SpairInference

    torch.manual_seed(0)
    cfg = SpairConfig(cell_size=8, pres_init_bias=0.0, context_colour=context_colour, **TINY)
    model = SplitSpair(cfg)
    weights = tmp_path / "checkpoint.safetensors"
    ckpt.save_checkpoint(weights, model, MODEL_TYPE, cfg, {"step": 0})
    session = ort.InferenceSession(str(export_onnx(weights, tmp_path / "model.onnx", dynamic_batch=True)))
    x = torch.rand(3, 3, 48, 48)
    with torch.no_grad():
        expected = SpairInference(model)(x)
    got = session.run(None, {session.get_inputs()[0].name: x.numpy()})
    for e, g in zip(expected, got):
        np.testing.assert_allclose(g, e.numpy(), rtol=1e-4, atol=1e-4)


def test_inference_decodes_only_the_most_present_cells_and_gives_them_the_full_values():
    """SpairInference(max_objects=K) encodes and decodes K glimpses, not one per cell: the K cells
    of highest presence get what every cell gets from the per-cell computation (the old
    graph), the other cells report presence 0, their window as box and zeros."""
    from split_perception.models.spair import SpairInference, footprint_overlap_and_colour, paste_alphas, shuffle_patches

    torch.manual_seed(0)
    model = SplitSpair(SpairConfig(cell_size=8, pres_init_bias=0.0, **TINY)).eval()
    x = torch.rand(2, 3, 48, 48)
    k = 5
    with torch.no_grad():
        boxes, scores, what, depth, _, _, overlap, colour = SpairInference(model, max_objects=k)(x)
        cells = model.infer_cells(x, sample=False)
        windows = model.boxes_from_where(cells["where_mean"])
        every_what, _, _ = model.encode_what(x, windows, sample=False)
        z_local, _ = model.local_head(model.local_encoder(shuffle_patches(x, 4, model.inference_perm)))
        alpha = model.glimpse_alphas(every_what, z_local)
        every_overlap, every_colour = footprint_overlap_and_colour(x, paste_alphas(alpha, windows, 48, 48))
        every_box = model.object_boxes(windows, every_what, z_local, alpha)
    presence = torch.sigmoid(cells["pres_logit"])
    for i in range(2):
        top = (scores[i] > 0).nonzero().flatten()
        rest = (scores[i] == 0).nonzero().flatten()
        assert len(top) == k  # the k most present, to 1/1024 (backends agree on rounded values)
        assert torch.floor(presence[i, top] * 1024).min() >= torch.floor(presence[i, rest] * 1024).max()
        exact = dict(rtol=0, atol=0)
        close = dict(rtol=1e-5, atol=1e-6)  # convolutions over 5 glimpses instead of 36 round differently
        torch.testing.assert_close(scores[i, top], presence[i, top], **exact)
        torch.testing.assert_close(boxes[i, top], every_box[i, top], **close)
        torch.testing.assert_close(what[i, top], every_what[i, top], **close)
        torch.testing.assert_close(colour[i, top], every_colour[i, top], **close)
        torch.testing.assert_close(overlap[i][top][:, top], every_overlap[i][top][:, top], **close)
        assert (scores[i, rest] == 0).all() and (what[i, rest] == 0).all() and (colour[i, rest] == 0).all()
        assert (overlap[i, rest] == 0).all() and (overlap[i][:, rest] == 0).all()
        torch.testing.assert_close(boxes[i, rest], windows[i, rest], **exact)
        torch.testing.assert_close(depth[i], cells["depth_mean"][i, :, 0], **exact)
    with pytest.raises(ValueError, match="max_objects"):
        SpairInference(model, max_objects=0)
