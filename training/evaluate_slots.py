"""Slot models (MONet, MONet-RN50*): FG-ARI, MSC and reconstruction MSE on held-out room scenes
of every test kind (scenes.ROOM_TEST_KINDS).

The figure follows the thesis's fig. 5.3: per example a column of input, reconstruction
(the mask-weighted mixture), segmentation (most likely slot per pixel) and each slot's
component (its mask times its decoded image).
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from . import metrics, scenes
from .dataset import atomic_write_bytes, to_tensor

TEST_SEED = 10_000  # training streams use seeds < TEST_SEED (same convention as the detector)
# distinct slot colours for the segmentation panel (RGB)
SLOT_COLOURS = np.array(
    [[230, 25, 75], [60, 180, 75], [255, 225, 25], [0, 130, 200], [245, 130, 48], [145, 30, 180], [70, 240, 240],
     [240, 50, 230], [210, 245, 60], [250, 190, 212], [0, 128, 128], [220, 190, 255], [170, 110, 40], [255, 250, 200],
     [128, 0, 0], [170, 255, 195], [128, 128, 0], [255, 215, 180]], np.uint8)


@torch.no_grad()
def evaluate_segmenter(model, n_images: int, batch_size: int = 25, kinds: tuple[str, ...] = scenes.ROOM_TEST_KINDS) -> tuple[dict, dict]:
    """Returns ({kind: metrics}, {kind: examples for the figure}) for the room test kinds
    (scenes.ROOM_TEST_KINDS: the legacy rooms, the training distribution's unseen scenes and
    the held-out surface and shape kinds). Deterministic (posterior means)."""
    model.eval()
    report, examples = {}, {}
    for kind in kinds:
        scfg = scenes.room_kind_config(kind, model.cfg.image_size)
        aris, mscs, mses = [], [], []
        for start in range(0, n_images, batch_size):
            batch = [scenes.generate(scfg, TEST_SEED, i) for i in range(start, min(start + batch_size, n_images))]
            x = torch.stack([to_tensor(s.image) for s in batch])
            out = model(x)
            pred = out["masks"].argmax(1).numpy()
            for k, s in enumerate(batch):
                aris.append(metrics.foreground_ari(s.labels, pred[k]))
                mscs.append(metrics.mean_segmentation_covering(s.labels, pred[k]))
            mses.append(((out["recon"] - x) ** 2).mean((1, 2, 3)).numpy())
            if start == 0:
                examples[kind] = {k: v[:6].numpy() for k, v in (("images", x), ("recon", out["recon"]), ("masks", out["masks"]), ("components", out["components"]))}
        report[kind] = {
            "fg_ari": float(np.nanmean(aris)),
            "msc": float(np.nanmean(mscs)),
            "reconstruction_mse": float(np.mean(np.concatenate(mses))),
            "images": n_images,
        }
    return report, examples


def segmenter_figure(examples: dict, path: Path, scale: int = 2) -> None:
    """One block per test kind; in each, one column per example: input, reconstruction,
    segmentation, then each slot's component (its mask times its decoded image)."""
    import cv2

    to_u8 = lambda a: (np.clip(a, 0, 1) * 255).astype(np.uint8)  # noqa: E731
    blocks = []
    for kind, ex in examples.items():
        columns = []
        for img, rec, masks, comps in zip(ex["images"], ex["recon"], ex["masks"], ex["components"]):
            tiles = [to_u8(img.transpose(1, 2, 0)), to_u8(rec.transpose(1, 2, 0)), SLOT_COLOURS[masks.argmax(0) % len(SLOT_COLOURS)]]
            tiles += [to_u8((m[None] * c).transpose(1, 2, 0)) for m, c in zip(masks, comps)]
            col = np.concatenate([np.pad(t, ((1, 1), (1, 1), (0, 0)), constant_values=255) for t in tiles], 0)
            columns.append(col)
        grid = cv2.resize(np.concatenate(columns, 1), None, fx=scale, fy=scale, interpolation=cv2.INTER_NEAREST)
        label = np.zeros((16, grid.shape[1], 3), np.uint8)
        cv2.putText(label, f"{kind}: input / reconstruction / segmentation / slot 1..K", (2, 12), cv2.FONT_HERSHEY_PLAIN, 0.9, (255, 255, 255), 1)
        blocks += [label, grid]
    width = max(b.shape[1] for b in blocks)
    blocks = [np.pad(b, ((0, 0), (0, width - b.shape[1]), (0, 0))) for b in blocks]
    ok, png = cv2.imencode(".png", np.concatenate(blocks, 0)[..., ::-1])
    atomic_write_bytes(path, png.tobytes())
