"""Is a merge (two overlapping objects taken by one box) the objective's choice or the encoder's miss?

    python benchmarks/detector_merges.py [--checkpoint PATH] [--kinds solid_unseen] [-n 200] [--seed 20000]
                                         [--sprite-size 19] [--margins 0 20 40]

Per validation scene of each kind, the checkpoint's own objective (Gaussian NLL of the full render with
the model's pixel_std, plus the box-size prior and 13.8 nats, -log pres_prior_floor, per box beyond the
first; as detector_one_box.py) is compared two ways:

1. Scenes with a merged object (detector_errors.error_kinds on the API's detections): the model's own
   boxes (presence >= 0.5) against the true objects' boxes (amodal, 5% larger, front to back as painted),
   z_what from the model's glimpse encoder and then optimised (200 Adam steps on NLL + its N(0, 1) prior).
   If the true boxes cost less, the objective asks for the objects the encoder did not turn on.
2. Greedy search by the same objective, every scene: from the cells the model turns on, add the off cell
   (its own box and z_what) that lowers the objective most, while it lowers it by more than `margin`
   nats, at most 3 times; then the API's post-processing (NMS, redrawn objects dropped). Count
   accuracy against the API's own.
"""
from __future__ import annotations

import argparse
import dataclasses
import math
import sys
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from detector_errors import error_kinds  # noqa: E402
from detector_one_box import optimised_what, scene_latents, size_cost  # noqa: E402

from split_perception.detector import load_detector, postprocess  # noqa: E402
from split_perception.models import checkpoint as ckpt  # noqa: E402
from split_perception.models.blocks import gaussian_nll  # noqa: E402
from split_perception.preprocessing import preprocess  # noqa: E402
from training import scenes  # noqa: E402
from training.dataset import to_tensor  # noqa: E402
from training.evaluate import detector_test_sets  # noqa: E402

SHIPPED = Path(__file__).resolve().parents[1] / "split_perception/weights/split_spair.safetensors"


class Objective:
    """The model's objective for one scene as a function of which cells are on (and their latents)."""

    def __init__(self, model, x: torch.Tensor):
        self.model, self.x = model, x
        self.z_bg, self.z_local, self.estimate = scene_latents(model, x)
        self.box_cost = -math.log(model.cfg.pres_prior_floor)

    def nll(self, z_what, boxes, depth, on) -> torch.Tensor:
        """(N,) NLL of N alternatives: z_what (N, G, A), boxes (N, G, 4), depth (N, G, 1), on (N, G)."""
        n, m = on.shape[0], self.model
        expand = lambda t: None if t is None else t.expand(n, *t.shape[1:])  # noqa: E731
        recon = m.render(z_what, expand(self.z_local), expand(self.z_bg), boxes, depth, on, expand(self.estimate))[0]
        return gaussian_nll(self.x.expand(n, -1, -1, -1), recon, m.cfg.pixel_std)

    def priors(self, boxes, on) -> torch.Tensor:
        sizes = size_cost(self.model, boxes[..., 2:]).sum(-1) / 2  # both sides of each box
        return (sizes * on).sum(1) + (on.sum(1) - 1).clamp(min=0) * self.box_cost


@torch.no_grad()
def own_cells(model, x: torch.Tensor) -> dict:
    cells = model.infer_cells(x, sample=False)
    boxes = model.boxes_from_where(cells["z_where"])
    _, _, z_what = model.encode_what(x, boxes, False)
    return {"boxes": boxes, "z_what": z_what, "depth": cells["z_depth"], "presence": torch.sigmoid(cells["pres_logit"])}


def merge_costs(model, x: torch.Tensor, truth: np.ndarray) -> tuple[float, float, float]:
    """Objective of (the model's boxes, the true boxes encoded, the true boxes optimised), nats."""
    obj, own = Objective(model, x), own_cells(model, x)
    with torch.no_grad():
        on = (own["presence"] > 0.5).float()
        own_total = (obj.nll(own["z_what"], own["boxes"], own["depth"], on) + obj.priors(own["boxes"], on)).item()
        b = torch.as_tensor(truth)
        boxes = torch.stack([(b[:, 0] + b[:, 2]) / 2, (b[:, 1] + b[:, 3]) / 2,
                             (b[:, 2] - b[:, 0]) * 1.05, (b[:, 3] - b[:, 1]) * 1.05], 1)[None]
        k = boxes.shape[1]
        depth = -2.0 * torch.arange(k, dtype=torch.float32)[None, :, None]  # painted later = nearer
        all_on = torch.ones(1, k)
        _, _, what = model.encode_what(x, boxes, False)
        priors = obj.priors(boxes, all_on).item()
        encoded = obj.nll(what, boxes, depth, all_on).item() + priors
    what = optimised_what(lambda w: obj.nll(w, boxes, depth, all_on), what, 200)
    with torch.no_grad():
        optimised = obj.nll(what, boxes, depth, all_on).item() + priors
    return own_total, encoded, optimised


@torch.no_grad()
def greedy_cells(model, x: torch.Tensor, margin: float, rounds: int = 3) -> np.ndarray:
    """(G,) bool: the model's cells plus those the objective adds one at a time (see the module doc)."""
    obj, own = Objective(model, x), own_cells(model, x)
    on = (own["presence"] > 0.5).float()
    for _ in range(rounds):
        candidates = torch.nonzero(on[0] == 0).flatten()
        if len(candidates) == 0:
            break
        trials = torch.cat([on, on.repeat(len(candidates), 1)])
        trials[torch.arange(1, len(candidates) + 1), candidates] = 1
        n = trials.shape[0]
        cost = obj.nll(own["z_what"].expand(n, -1, -1), own["boxes"].expand(n, -1, -1), own["depth"].expand(n, -1, -1), trials)
        cost = cost + obj.priors(own["boxes"], trials)
        best = int(cost[1:].argmin()) + 1
        if cost[best] >= cost[0] - margin:
            break
        on = trials[best : best + 1]
    return on[0].numpy() > 0


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--checkpoint", default=str(SHIPPED))
    ap.add_argument("--kinds", default="solid_unseen", help="comma-separated test kinds")
    ap.add_argument("-n", type=int, default=200, help="scenes per kind")
    ap.add_argument("--seed", type=int, default=20_000, help="20000: validation scenes (the test seed is 10000)")
    ap.add_argument("--sprite-size", type=int, default=0, help="object side in px (default: the test sets' 14 +- 2)")
    ap.add_argument("--margins", type=float, nargs="*", default=[0.0, 20.0, 40.0],
                    help="greedy search margins, nats (none: only the merged scenes' costs)")
    args = ap.parse_args()
    torch.set_num_threads(1)
    model, cfg, _ = ckpt.load_checkpoint(Path(args.checkpoint), expected_type="split_spair")
    model.eval()
    det = load_detector(args.checkpoint, backend="torch")  # the same model, the API's post-processing defaults
    size = cfg.image_size
    print(f"{args.checkpoint}, seed {args.seed}, {args.n} scenes per kind; objective in nats per image")
    for kind in args.kinds.split(","):
        tc = detector_test_sets(size)[kind]
        if args.sprite_size:
            tc = dataclasses.replace(tc, sprite_size=args.sprite_size, sprite_size_jitter=2)
        merged, right = [], {m: [] for m in ["api", *args.margins]}

        def post(out):  # the API's post-processing of one frame's graph outputs
            return postprocess(out, (size, size), size, det.threshold, det.nms_iou, det.duplicate_overlap, det.duplicate_colour)

        for i in range(args.n):
            s = scenes.generate(tc, args.seed, i)
            x = to_tensor(s.image)[None]
            raw = det.runner.run(preprocess(s.image, size))
            found = post(raw)
            right["api"].append(len(found.boxes) == len(s.boxes))
            if error_kinds(found.boxes, s.boxes).get("merged", 0):
                merged.append(merge_costs(model, x, s.boxes))
            for margin in args.margins:
                on = greedy_cells(model, x, margin)
                scores = np.where(on, np.maximum(raw["scores"][0], 0.99), raw["scores"][0])[None]
                right[margin].append(len(post({**raw, "scores": scores}).boxes) == len(s.boxes))
        label = f"{kind}" + (f", objects {args.sprite_size} +- 2 px" if args.sprite_size else "")
        if merged:
            m = np.array(merged)
            print(f"{label}: {len(m)} scenes with a merged object; the true boxes cost less than the model's in "
                  f"{np.mean(m[:, 1] < m[:, 0]):.2f} (encoded) / {np.mean(m[:, 2] < m[:, 0]):.2f} (optimised) of them, "
                  f"by a median {np.median(m[:, 0] - m[:, 1]):.0f} / {np.median(m[:, 0] - m[:, 2]):.0f} nats")
        if args.margins:
            print(f"{label}: count accuracy, API {np.mean(right['api']):.3f}; greedy search, margin "
                  + ", ".join(f"{m:g}: {np.mean(right[m]):.3f}" for m in args.margins), flush=True)


if __name__ == "__main__":
    main()
