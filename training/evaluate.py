"""`split-perception eval CHECKPOINT`: metrics on held-out procedural test sets + a figure.

Detector (SPLIT-SPAIR / SPAIR): count accuracy, object count error, AP over IoU 0.1:0.9 and
reconstruction MSE, scenes from a seed training never uses, on: solid backgrounds in training
colours; every training background kind in unseen colours; each held-out background kind
(scenes.HELD_OUT_BACKGROUNDS, never trained on); held-out object shapes (scenes.HELD_OUT_SPRITES). The figure shows inputs, reconstructions
and boxes, as the SPLIT paper's fig. 9.
"""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import torch

from split_perception.models import checkpoint as ckpt

from . import metrics, scenes
from .dataset import atomic_write_bytes, to_tensor

TEST_SEED = 10_000  # training streams use seeds < TEST_SEED


def detector_test_sets(image_size: int) -> dict[str, scenes.MultiObjectConfig]:
    """name -> scene config. `_unseen`: background colours from the palette training never sees."""
    sprite = max(6, round(14 * image_size / 48))

    def config(background, palette="test", sprites=scenes.TRAIN_SPRITES):
        return scenes.MultiObjectConfig(
            image_size=image_size, background=background, palette=palette, sprite_size=sprite, sprites=sprites
        )

    sets = {"solid_train": config("solid", "train")}
    sets.update({f"{bg}_unseen": config(bg) for bg in scenes.TRAIN_BACKGROUNDS})
    sets.update({f"heldout_{bg}": config(bg) for bg in scenes.HELD_OUT_BACKGROUNDS})
    sets["heldout_shapes"] = config("solid", sprites=scenes.HELD_OUT_SPRITES)
    return sets


@torch.no_grad()
def evaluate_detector(
    model, n_images: int, batch_size: int = 50, threshold: float = 0.5, nms_iou: float | None = None, seed: int = TEST_SEED,
    duplicate_overlap: float | None = None, duplicate_colour: float = 0.0,
) -> tuple[dict, dict]:
    """Returns (metrics per test set, a few examples per set for the figure).

    Boxes are kept by the runtime's own post-processing (split_perception.detector.postprocess) of
    the inference graph's outputs: presence above `threshold`, then NMS at `nms_iou` if given, then
    boxes that redraw a better box's object dropped if `duplicate_overlap` is given. `seed` other than
    TEST_SEED gives a validation set (for choosing settings without looking at the test scenes)."""
    from split_perception.detector import postprocess
    from split_perception.models.spair import SpairInference

    model.eval()
    inference = SpairInference(model)
    cfg = model.cfg
    report, examples = {}, {}
    for name, scfg in detector_test_sets(cfg.image_size).items():
        pred_counts, true_counts, pred_boxes, pred_scores, true_boxes, sq_err = [], [], [], [], [], []
        for start in range(0, n_images, batch_size):
            batch = [scenes.generate(scfg, seed, i) for i in range(start, min(start + batch_size, n_images))]
            x = torch.stack([to_tensor(s.image) for s in batch])
            out = model(x)  # reconstruction and background for the MSE and the figure
            graph = dict(zip(inference.output_names, (o.numpy() for o in inference(x))))  # as the runtime gets them
            for k, s in enumerate(batch):
                one = {name: value[k : k + 1] for name, value in graph.items()}
                det = postprocess(one, (cfg.image_size, cfg.image_size), cfg.image_size, threshold, nms_iou,
                                  duplicate_overlap, duplicate_colour)
                pred_boxes.append(det.boxes)
                pred_scores.append(det.scores)
                pred_counts.append(len(det))
                true_counts.append(s.count)
                true_boxes.append(s.boxes)
            sq_err.append(((out["recon"] - x) ** 2).mean((1, 2, 3)).numpy())
            if start == 0:
                examples[name] = {
                    "images": x[:8].numpy(), "recon": out["recon"][:8].numpy(), "background": out["background"][:8].numpy(),
                    "boxes": pred_boxes[:8], "true_counts": true_counts[:8],
                }
        report[name] = {
            "count_accuracy": metrics.count_accuracy(pred_counts, true_counts),
            "count_error": metrics.count_error(pred_counts, true_counts),
            "ap_iou_0.1_0.9": metrics.mean_average_precision(pred_boxes, pred_scores, true_boxes),
            "reconstruction_mse": float(np.mean(np.concatenate(sq_err))),
            "images": n_images,
        }
    return report, examples


def detector_figure(examples: dict, path: Path) -> None:
    """Rows per test set: input with boxes, reconstruction, background."""
    import cv2

    rows = []
    for name, ex in examples.items():
        tiles = []
        for img, rec, bg, boxes in zip(ex["images"], ex["recon"], ex["background"], ex["boxes"]):
            up = lambda a: cv2.resize((np.clip(a.transpose(1, 2, 0), 0, 1) * 255).astype(np.uint8), None, fx=2, fy=2, interpolation=cv2.INTER_NEAREST)  # noqa: E731
            inp = np.ascontiguousarray(up(img))
            for x1, y1, x2, y2 in (boxes * 2).astype(int):
                cv2.rectangle(inp, (x1, y1), (x2 - 1, y2 - 1), (255, 255, 255), 1)
            tiles.append(np.concatenate([inp, up(rec), up(bg)], 0))
        row = np.concatenate(tiles, 1)
        label = np.zeros((14, row.shape[1], 3), np.uint8)
        cv2.putText(label, f"{name}: input+boxes / reconstruction / background", (2, 11), cv2.FONT_HERSHEY_PLAIN, 0.8, (255, 255, 255), 1)
        rows.append(np.concatenate([label, row], 0))
    ok, png = cv2.imencode(".png", np.concatenate(rows, 0)[..., ::-1])
    atomic_write_bytes(path, png.tobytes())


def evaluate_checkpoint(
    path: Path, out_dir: Path | None = None, n_images: int = 500, nms_iou: float | None = None,
    duplicate_overlap: float | None = None, duplicate_colour: float = 0.0,
) -> dict:
    model, cfg, model_type = ckpt.load_checkpoint(path)
    if model_type == "split_spair":
        report, examples = evaluate_detector(model, n_images, nms_iou=nms_iou, duplicate_overlap=duplicate_overlap,
                                             duplicate_colour=duplicate_colour)
        figure = detector_figure
    else:
        from .evaluate_slots import evaluate_segmenter, segmenter_figure

        report, examples = evaluate_segmenter(model, n_images)
        figure = segmenter_figure
    report = {"checkpoint": str(path), "model_type": model_type, "split": getattr(cfg, "split", None), "test_sets": report}
    swap_images = None
    if model_type == "split_spair" and cfg.split:
        from .latent_swap import latent_swap

        x = torch.stack([to_tensor(scenes.generate(scfg, TEST_SEED, i).image) for i, scfg in
                         enumerate(list(detector_test_sets(cfg.image_size).values())[:8])])
        report["latent_swap"], swap_images = latent_swap(model, x)
    if out_dir:
        out_dir = Path(out_dir)
        atomic_write_bytes(out_dir / "metrics.json", json.dumps(report, indent=2).encode())
        figure(examples, out_dir / "figure.png")
        if swap_images is not None:
            from .latent_swap import latent_swap_figure

            latent_swap_figure(swap_images, out_dir / "latent_swap.png")
    return report
