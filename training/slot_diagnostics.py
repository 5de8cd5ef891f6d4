"""Why do objects merge? Per-slot numbers for a MONet checkpoint on scenes with ground truth.

`python -m split_perception.training.slot_diagnostics CHECKPOINT [--kind room_rich] [-n 200]`

For every scene the predicted segmentation (argmax over the attention masks) is compared with
the true objects:

* per slot: how often it is used (holds >= 1% of the image), its mean area, its mean
  KL(q(z_k) || N(0, 1)), and how far the attention mask and the component VAE's own mask
  disagree (mean KL(m_k || m_hat_k) over pixels, the loss's gamma term per slot);
* per object: its main slot (the slot holding most of its pixels) and purity (the share of
  its pixels there); an object is *merged* when its main slot is also the main slot of
  another object, and *absorbed* when its main slot holds more background than object.
"""
from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
import torch

from split_perception.models import checkpoint as ckpt
from split_perception.models.blocks import gaussian_kl

from . import scenes
from .dataset import to_tensor


@torch.no_grad()
def slot_statistics(model, scene_list: list) -> dict:
    """Numbers above for `scene_list` (scenes.Scene with labels); deterministic (posterior means)."""
    model.eval()
    x = torch.stack([to_tensor(s.image) for s in scene_list])
    parts = model.decompose(x)
    log_masks = parts["log_masks"]
    k = log_masks.shape[1]
    masks = log_masks.exp()
    disagreement = (masks * (log_masks - parts["log_masks_hat"])).mean((2, 3))  # (B, K) nats per pixel
    kl = gaussian_kl(parts["mean"], parts["logstd"]).sum(2)  # (B, K)
    pred = masks.argmax(1).numpy()
    area = np.stack([(pred == j).mean((1, 2)) for j in range(k)], 1)  # (B, K)

    purities, merged, absorbed, n_objects = [], 0, 0, 0
    for s, p in zip(scene_list, pred):
        main_slots = []
        for obj in s.masks:
            if not obj.any():
                continue
            counts = np.bincount(p[obj], minlength=k)
            slot = int(counts.argmax())
            main_slots.append(slot)
            purities.append(counts[slot] / obj.sum())
            in_slot = p == slot
            if (in_slot & (s.labels == 0)).sum() > (in_slot & obj).sum():
                absorbed += 1
        n_objects += len(main_slots)
        _, per_slot = np.unique(main_slots, return_counts=True)
        merged += int(per_slot[per_slot > 1].sum())
    return {
        "scenes": len(scene_list),
        "objects": n_objects,
        "per_slot": {
            "used_fraction": (area >= 0.01).mean(0).round(3).tolist(),
            "mean_area": area.mean(0).round(3).tolist(),
            "kl_nats": kl.mean(0).numpy().round(2).tolist(),
            "mask_disagreement_nats_per_pixel": disagreement.mean(0).numpy().round(4).tolist(),
        },
        "object_purity": float(np.mean(purities)) if purities else float("nan"),
        "merged_fraction": merged / max(n_objects, 1),
        "absorbed_by_background_fraction": absorbed / max(n_objects, 1),
    }


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("checkpoint", type=Path)
    ap.add_argument("--kind", default="room", help=f"room test kind, one of {scenes.ROOM_TEST_KINDS}")
    ap.add_argument("-n", type=int, default=200)
    ap.add_argument("--seed", type=int, default=10_000)
    args = ap.parse_args(argv)
    model, cfg, model_type = ckpt.load_checkpoint(args.checkpoint)
    if model_type != "monet":
        raise SystemExit(f"{args.checkpoint}: a {model_type} checkpoint, not a slot model")
    scfg = scenes.room_kind_config(args.kind, cfg.image_size)
    stats = slot_statistics(model, [scenes.generate(scfg, args.seed, i) for i in range(args.n)])
    print(json.dumps(stats, indent=2))


if __name__ == "__main__":
    main()
