"""Would the model's own objective take one box for a large object? Split vs one box, in nats.

    python benchmarks/detector_one_box.py [--checkpoint PATH] [--sizes 14 21] [-n 24] [--seed 7]

One object per scene (solid backgrounds, the training sprites), object side = size +- 1 px. Per size it
prints three reconstructions' Gaussian NLL (nats per image, the model's own pixel_std), and the
prior costs that differ between them:
* the model as it runs (presence >= 0.5, deterministic latents): its boxes, however many;
* one box forced onto the object's bounding box, z_what from the model's own glimpse encoder;
* the same box with z_what optimised by gradient (300 Adam steps on the NLL + its N(0, 1) prior):
  what the glimpse decoder can draw in one box, whatever the encoder proposes;
* per box: the box-size prior's cost (the KL's mean part, both sides) and, for every box beyond the
  first, the cost of a present cell (-log pres_prior_floor, what the count prior charges at the floor).
If one box (encoded) plus its costs is below the model's split plus its costs, the objective prefers one
box and the split is the box network's habit; if not, the objective itself asks for the split.
"""
from __future__ import annotations

import argparse
import math
import sys
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from split_perception.models import checkpoint as ckpt  # noqa: E402
from split_perception.models.blocks import gaussian_nll, shuffle_patches  # noqa: E402
from training import scenes  # noqa: E402
from training.dataset import to_tensor  # noqa: E402


def size_cost(model, side: torch.Tensor) -> torch.Tensor:
    """Mean part of the box-size KL for a square box of `side` px (both sides), nats."""
    cfg = model.cfg
    logit = torch.logit(side / cfg.max_box, eps=1e-4)
    return 2 * 0.5 * ((logit - cfg.size_prior_mean) / cfg.size_prior_std) ** 2


def optimised_what(image_nll, what: torch.Tensor, steps: int) -> torch.Tensor:
    """z_what after `steps` Adam steps on image_nll(z_what) (per-image NLL) + its N(0, 1) prior: what the
    glimpse decoder can draw in the given boxes, whatever the encoder proposes."""
    what = what.detach().clone().requires_grad_(True)
    opt = torch.optim.Adam([what], lr=0.05)
    for _ in range(steps):
        loss = image_nll(what).sum() + 0.5 * (what**2).sum()
        opt.zero_grad()
        loss.backward()
        opt.step()
    return what.detach()


@torch.no_grad()
def scene_latents(model, x: torch.Tensor) -> tuple:
    """z_bg, z_local, spectral estimate: everything but the boxes, as forward() computes them at inference."""
    cfg = model.cfg
    _, _, z_bg = model.encode_background(x, False)
    estimate = model.batch_extras(cfg, x).get("bg_estimate")
    z_local = None
    if cfg.split:
        _, _, z_local = model.encode_local(shuffle_patches(x, cfg.patch_size, model.inference_perm), False)
    return z_bg, z_local, estimate


def compare(model, size: int, n: int, seed: int) -> str:
    cfg = model.cfg
    sc_cfg = scenes.MultiObjectConfig(sprite_size=size, sprite_size_jitter=1, min_objects=1, max_objects=1,
                                      sprites="varied", background="solid")
    sc = [scenes.generate(sc_cfg, seed, i) for i in range(n)]
    x = torch.stack([to_tensor(s.image) for s in sc])
    z_bg, z_local, est = scene_latents(model, x)
    nll = lambda recon: gaussian_nll(x, recon, cfg.pixel_std)  # noqa: E731  (per image)
    box_cost = -math.log(cfg.pres_prior_floor)
    with torch.no_grad():
        cells = model.infer_cells(x, sample=False)
        boxes = model.boxes_from_where(cells["z_where"])
        _, _, z_what = model.encode_what(x, boxes, False)
        on = (torch.sigmoid(cells["pres_logit"]) > 0.5).float()
        own = nll(model.render(z_what, z_local, z_bg, boxes, cells["z_depth"], on, est)[0])
        count = on.sum(1)
        own_prior = (size_cost(model, boxes[..., 2:].mean(-1)) * on).sum(1) + (count - 1).clamp(min=0) * box_cost
        sides = []
        for s in sc:
            ys, xs = np.nonzero(s.labels > 0)
            side = min(cfg.max_box - 0.5, max(ys.max() - ys.min(), xs.max() - xs.min()) + 1.0)
            sides.append([(xs.min() + xs.max() + 1) / 2, (ys.min() + ys.max() + 1) / 2, side, side])
        one_box = torch.tensor(sides, dtype=torch.float32)[:, None]  # (B, 1, 4)
        depth, present = torch.zeros(n, 1, 1), torch.ones(n, 1)
        _, _, what_one = model.encode_what(x, one_box, False)
        encoded = nll(model.render(what_one, z_local, z_bg, one_box, depth, present, est)[0])
        one_prior = size_cost(model, one_box[:, 0, 2])
    one_box_nll = lambda what: nll(model.render(what, z_local, z_bg, one_box, depth, present, est)[0])  # noqa: E731
    what = optimised_what(one_box_nll, what_one, 300)
    with torch.no_grad():
        optimised = one_box_nll(what)
    return (f"{size:5d} {count.mean():6.2f} {(count > 1).float().mean():6.2f} | {own.mean():8.0f} {own_prior.mean():6.1f} "
            f"{(own + own_prior).mean():8.0f} | {encoded.mean():8.0f} {optimised.mean():8.0f} {one_prior.mean():6.1f} "
            f"{(encoded + one_prior).mean():8.0f}")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--checkpoint", default=str(Path(__file__).resolve().parents[1] / "split_perception/weights/split_spair.safetensors"))
    ap.add_argument("--sizes", type=int, nargs="+", default=[14, 21])
    ap.add_argument("-n", type=int, default=24, help="scenes per size")
    ap.add_argument("--seed", type=int, default=7)
    args = ap.parse_args()
    model, cfg, _ = ckpt.load_checkpoint(Path(args.checkpoint), expected_type="split_spair")
    model.eval()
    print(f"{args.checkpoint}: max_box {cfg.max_box}, size prior N({cfg.size_prior_mean}, {cfg.size_prior_std}) on "
          f"logit(side / max_box), a present cell beyond the first {-math.log(cfg.pres_prior_floor):.1f} nats; per image:")
    print(f"{'side':>5s} {'boxes':>6s} {'>1':>6s} | {'own nll':>8s} {'prior':>6s} {'sum':>8s} | "
          f"{'1box enc':>8s} {'1box opt':>8s} {'prior':>6s} {'sum enc':>8s}")
    for size in args.sizes:
        print(compare(model, size, args.n, args.seed), flush=True)


if __name__ == "__main__":
    main()
