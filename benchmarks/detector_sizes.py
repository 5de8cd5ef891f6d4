"""How the detector counts one object as the object grows: does it split large objects?

    python benchmarks/detector_sizes.py [--model PATH] [-n 20] [--seed 20000] [--sizes 8 10 ... 22]

One object per scene (the test kinds' backgrounds, palettes and sprites; seed 20000 by default: never
the test seed 10000), object side drawn from each size +- 1 px. Per size, over all kinds, through
`load_detector()`: the count accuracy of the API as shipped (NMS and redrawn-object removal), the
share of scenes where presence alone (threshold 0.5, nothing removed) finds more than one box, and
the ratio of the largest raw box's side to the object's own bounding-box side (median). A detector
whose boxes stop growing with the object while the split share rises covers large objects with
several boxes: the sizes it never learnt to draw with one.
"""
from __future__ import annotations

import argparse
import dataclasses
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from split_perception.detector import load_detector  # noqa: E402
from training import scenes  # noqa: E402
from training.evaluate import detector_test_sets  # noqa: E402


def object_side(labels: np.ndarray) -> float:
    """Longer side of the bounding box of the object's visible pixels."""
    ys, xs = np.nonzero(labels)
    return float(max(ys.max() - ys.min(), xs.max() - xs.min()) + 1)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", default=None, help="ONNX export or checkpoint (default: the shipped detector)")
    ap.add_argument("-n", type=int, default=20, help="scenes per test kind and size")
    ap.add_argument("--seed", type=int, default=20_000, help="20000: validation scenes (the test seed is 10000)")
    ap.add_argument("--sizes", type=int, nargs="+", default=[8, 10, 12, 14, 16, 18, 20, 22])
    args = ap.parse_args()

    shipped = load_detector(args.model)
    raw = load_detector(args.model, nms_iou=None, duplicate_overlap=None)
    sets = detector_test_sets(shipped.input_size)
    print(f"model {shipped.runner.source}, one object per scene, {args.n} scenes x {len(sets)} kinds per size")
    print(f"{'side px':>8s} {'count acc':>10s} {'raw > 1 box':>12s} {'box / object side':>18s}")
    for size in args.sizes:
        right, split, ratios = [], [], []
        for cfg in sets.values():
            one = dataclasses.replace(cfg, sprite_size=size, sprite_size_jitter=1, min_objects=1, max_objects=1)
            for i in range(args.n):
                s = scenes.generate(one, args.seed, i)
                right.append(len(shipped(s.image)) == 1)
                found = raw(s.image)
                split.append(len(found) > 1)
                if len(found):
                    sides = np.maximum(found.boxes[:, 2] - found.boxes[:, 0], found.boxes[:, 3] - found.boxes[:, 1])
                    ratios.append(sides.max() / object_side(s.labels > 0))
        print(f"{size:8d} {np.mean(right):10.3f} {np.mean(split):12.3f} {np.median(ratios):18.2f}", flush=True)


if __name__ == "__main__":
    main()
