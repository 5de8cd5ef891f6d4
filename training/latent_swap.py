"""What SPLIT's two object latents carry: objects re-drawn with another scene's z_l or z_what.

SPLIT-SPAIR decodes every glimpse from [z_what, z_l]: z_what comes from the object's own
glimpse (identity), z_l from the patch-shuffled image (local statistics: style). Keeping an
image's boxes, depths and presences and swapping one latent at a time shows which one a
property of the drawn objects follows:

* shape: IoU of the drawn object masks (alpha > 0.5) with the unswapped ones;
* colour: mean absolute RGB change on the drawn objects' pixels.

`split-perception eval` writes the figure (`latent_swap.png`) and these numbers for split models.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from split_perception.models.blocks import shuffle_patches

from .dataset import atomic_write_bytes


@torch.no_grad()
def _latents(model, x: torch.Tensor) -> dict:
    cfg = model.cfg
    cells = model.infer_cells(x, sample=False)
    boxes = model.boxes_from_where(cells["where_mean"])
    z_local = model.encode_local(shuffle_patches(x, cfg.patch_size, model.inference_perm), False)[2]
    return {
        "z_what": model.encode_what(x, boxes, False)[2], "z_local": z_local, "z_bg": model.encode_background(x, False)[2],
        "boxes": boxes, "z_depth": cells["depth_mean"], "z_pres": torch.sigmoid(cells["pres_logit"]),
        "bg_estimate": model.batch_extras(cfg, x).get("bg_estimate"),
    }


def _draw(model, lat: dict, z_what=None, object_local=None):
    return model.render(
        lat["z_what"] if z_what is None else z_what, lat["z_local"], lat["z_bg"], lat["boxes"], lat["z_depth"],
        lat["z_pres"], lat["bg_estimate"], object_local=object_local,
    )


@torch.no_grad()
def latent_swap(model, x: torch.Tensor) -> tuple[dict, dict]:
    """x: (B, 3, H, W), B >= 2. Scene i's objects are drawn with scene i+1's z_l, and with z_what
    taken from the next present cell (another object). Returns (numbers, images for the figure)."""
    model.eval()
    if not model.cfg.split:
        raise ValueError("latent swap needs a SPLIT model (split=True)")
    lat = _latents(model, x)
    recon, _, alpha = _draw(model, lat)
    recon_l, _, alpha_l = _draw(model, lat, object_local=lat["z_local"].roll(1, 0))
    present = lat["z_pres"] > 0.5  # (B, G)
    flat_what = lat["z_what"][present]
    other_what = lat["z_what"].clone()
    other_what[present] = flat_what.roll(1, 0)  # each object gets another object's identity
    recon_w, _, alpha_w = _draw(model, lat, z_what=other_what)

    def compare(rec2, alpha2):
        mask = alpha[present][:, 0] > 0.5
        mask2 = alpha2[present][:, 0] > 0.5
        iou = (mask & mask2).flatten(1).sum(1) / (mask | mask2).flatten(1).sum(1).clamp(min=1)
        drawn = (alpha.sum(1)[:, 0] * lat["z_pres"].amax(1)[:, None, None]) > 0.5  # (B, H, W)
        colour = (rec2 - recon).abs().mean(1)[drawn]
        return float(iou.mean()), float(colour.mean()) if colour.numel() else 0.0

    iou_l, colour_l = compare(recon_l, alpha_l)
    iou_w, colour_w = compare(recon_w, alpha_w)
    numbers = {
        "objects": int(present.sum()),
        "swap_z_local": {"shape_iou": iou_l, "colour_change": colour_l},
        "swap_z_what": {"shape_iou": iou_w, "colour_change": colour_w},
    }
    images = {"input": x, "recon": recon, "z_l of next scene": recon_l, "z_what of another object": recon_w,
              "next scene (z_l source)": x.roll(1, 0)}
    return numbers, {k: v.numpy() for k, v in images.items()}


def latent_swap_figure(images: dict, path: Path, scale: int = 2) -> None:
    """One row per image kind (labelled), one column per scene."""
    import cv2

    rows = []
    for name, batch in images.items():
        tiles = [cv2.resize((np.clip(im.transpose(1, 2, 0), 0, 1) * 255).astype(np.uint8), None, fx=scale, fy=scale,
                            interpolation=cv2.INTER_NEAREST) for im in batch]
        row = np.concatenate(tiles, 1)
        label = np.zeros((14, row.shape[1], 3), np.uint8)
        cv2.putText(label, name, (2, 11), cv2.FONT_HERSHEY_PLAIN, 0.8, (255, 255, 255), 1)
        rows += [label, row]
    ok, png = cv2.imencode(".png", np.concatenate(rows, 0)[..., ::-1])
    atomic_write_bytes(path, png.tobytes())
