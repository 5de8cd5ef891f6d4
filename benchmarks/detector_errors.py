"""Where the shipped detector miscounts, and what post-processing would change, through the public API.

    python benchmarks/detector_errors.py [--model PATH] [-n 200] [--seed 20000] [--kinds a,b]
                                         [--sprite-size 18 [--sprite-jitter 2]] [--sprite-turns]

Runs `load_detector()`'s graph once per validation scene (seed 20000 by default: never the test seed)
and prints, per test kind:
  * count accuracy, over- and under-count rates, AP (IoU 0.1:0.9);
  * count accuracy by the scene's number of objects (0, 1, ... up to the most in the set);
  * error kinds per scene: `duplicate` (two kept boxes whose best ground-truth match is the same
    object), `spurious` (a kept box overlapping no object, IoU < 0.1), `merged` (an object left
    unmatched while a kept box overlaps it and another object), `missed` (an object no kept box
    overlaps);
  * count accuracy under alternative post-processing of the same graph outputs (presence
    threshold, NMS IoU, containment suppression, dropping redrawn objects: detector.drop_redrawn),
    so a change of default is chosen on validation scenes, never on the test seed.
"""
from __future__ import annotations

import argparse
import dataclasses
import sys
from collections import Counter
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from split_perception.box_ops import box_iou  # noqa: E402
from split_perception.detector import load_detector, postprocess  # noqa: E402
from split_perception.preprocessing import preprocess  # noqa: E402
from training import metrics, scenes  # noqa: E402
from training.evaluate import detector_test_sets  # noqa: E402


def error_kinds(pred: np.ndarray, truth: np.ndarray) -> Counter:
    """Count error kinds of one scene's kept boxes against its true boxes (x1 y1 x2 y2)."""
    kinds: Counter = Counter()
    if len(truth) == 0:
        kinds["spurious"] += len(pred)
        return kinds
    if len(pred) == 0:
        kinds["missed"] += len(truth)
        return kinds
    iou = box_iou(pred, truth)
    best = iou.argmax(1)
    overlapping = iou.max(1) >= 0.1
    kinds["spurious"] += int((~overlapping).sum())
    matched = Counter(best[overlapping].tolist())
    kinds["duplicate"] += sum(c - 1 for c in matched.values())
    for j in range(len(truth)):
        if j in matched:
            continue
        if (iou[:, j] >= 0.1).any():
            kinds["merged"] += 1
        else:
            kinds["missed"] += 1
    return kinds


def suppress_contained(boxes: np.ndarray, fraction: float) -> int:
    """How many of `boxes` (best score first) remain when a box lying more than `fraction` inside a
    better kept box (intersection over its own area, or the other's if smaller) is dropped."""
    kept: list[int] = []
    area = np.prod(np.clip(boxes[:, 2:] - boxes[:, :2], 0, None), axis=1)
    for i in range(len(boxes)):
        if kept:
            k = np.asarray(kept)
            wh = np.clip(np.minimum(boxes[i, 2:], boxes[k, 2:]) - np.maximum(boxes[i, :2], boxes[k, :2]), 0, None)
            if (np.prod(wh, axis=1) > fraction * np.maximum(np.minimum(area[i], area[k]), 1e-9)).any():
                continue
        kept.append(i)
    return len(kept)


def add_scene_options(ap: argparse.ArgumentParser) -> None:
    """The options that choose the model and the validation scenes (shared with detector_turns.py)."""
    ap.add_argument("--model", default=None, help="ONNX export or checkpoint (default: the shipped detector)")
    ap.add_argument("-n", type=int, default=200, help="scenes per test kind")
    ap.add_argument("--seed", type=int, default=20_000, help="20000: validation scenes (the test seed is 10000)")
    ap.add_argument("--sprite-size", type=int, default=0, help="object side in px (default: the test sets' 14 +- 2)")
    ap.add_argument("--sprite-jitter", type=int, default=2, help="with --sprite-size: side drawn from size +- this")
    ap.add_argument("--sprite-turns", action="store_true",
                    help="each object turned by a random multiple of 90 degrees (the test sprites are mostly upright digits)")
    ap.add_argument("--kinds", default="", help="comma-separated test kinds (default: all)")


def chosen_sets(args: argparse.Namespace, size: int) -> dict:
    """The test kinds' scene configs as the options of add_scene_options change them."""
    sets = detector_test_sets(size)
    if args.kinds:
        sets = {k: sets[k] for k in args.kinds.split(",")}
    if args.sprite_size:  # the same scenes' kinds with objects of another size: does counting hold up?
        sets = {k: dataclasses.replace(c, sprite_size=args.sprite_size, sprite_size_jitter=args.sprite_jitter)
                for k, c in sets.items()}
        print(f"object sides {args.sprite_size} +- {args.sprite_jitter} px")
    if args.sprite_turns:
        sets = {k: dataclasses.replace(c, sprite_turns=True) for k, c in sets.items()}
        print("objects turned by random multiples of 90 degrees")
    return sets


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_scene_options(ap)
    args = ap.parse_args()

    det = load_detector(args.model)
    size = det.input_size
    # (threshold, NMS IoU, containment, (duplicate overlap, colour distance) or None); the first
    # nine leave redrawn objects in, as the API did before drop_redrawn
    variants = {f"thr {t} nms {n}": (t, n, None, None) for t in (0.3, 0.5, 0.7) for n in (None, 0.3, 0.5)}
    variants.update({f"nms 0.5 contain {c}": (0.5, 0.5, c, None) for c in (0.6, 0.7, 0.8, 0.9)})
    variants.update({f"nms 0.5 redrawn {o} {c}": (0.5, 0.5, None, (o, c)) for o in (0.1, 0.2) for c in (0.1, 0.15, 0.2, 0.25, 0.3)})
    print(f"model {det.runner.source}, backend {det.backend}, {args.n} scenes per kind, seed {args.seed}")
    header = (f"{'kind':22s} {'acc':>5s} {'over':>5s} {'under':>5s} {'AP':>5s} | {'dup':>4s} {'spur':>4s} {'merge':>5s} {'miss':>4s} "
              "(per 100 scenes) | acc with 0 / 1 / ... objects")
    print(header)
    outputs_by_kind, accs_default = {}, []
    sets = chosen_sets(args, size)
    for name, cfg in sets.items():
        raw, truths = [], []
        for i in range(args.n):
            s = scenes.generate(cfg, args.seed, i)
            raw.append(det.runner.run(preprocess(s.image, size)))
            truths.append(s.boxes)
        outputs_by_kind[name] = (raw, truths)
        dets = [postprocess(o, (size, size), size, det.threshold, det.nms_iou, det.duplicate_overlap, det.duplicate_colour) for o in raw]
        pred_n = np.array([len(d) for d in dets])
        true_n = np.array([len(t) for t in truths])
        accs_default.append(float(np.mean(pred_n == true_n)))
        kinds = sum((error_kinds(d.boxes, t) for d, t in zip(dets, truths)), Counter())
        per100 = {k: 100 * v / args.n for k, v in kinds.items()}
        ap = metrics.mean_average_precision([d.boxes for d in dets], [d.scores for d in dets], truths)
        print(
            f"{name:22s} {accs_default[-1]:5.3f} {np.mean(pred_n > true_n):5.3f} {np.mean(pred_n < true_n):5.3f} {ap:5.3f} | "
            f"{per100.get('duplicate', 0):4.0f} {per100.get('spurious', 0):4.0f} {per100.get('merged', 0):5.0f} {per100.get('missed', 0):4.0f}"
            "                  | " + " / ".join(f"{np.mean(pred_n[true_n == k] == k):.2f}" if (true_n == k).any() else "-"
                                                for k in range(true_n.max() + 1))
        )
    print(f"{'mean':22s} {np.mean(accs_default):5.3f}   (min {np.min(accs_default):.3f})")
    print("\ncount accuracy by post-processing (mean over kinds; presence threshold, NMS IoU, containment, redrawn)")
    for label, (thr, nms_iou, contained, redrawn) in variants.items():
        accs = []
        for raw, truths in outputs_by_kind.values():
            dets = [postprocess(o, (size, size), size, thr, nms_iou, *(redrawn or (None, 0.0))) for o in raw]
            counts = [len(d) if contained is None else suppress_contained(d.boxes, contained) for d in dets]
            accs.append(np.mean(np.array(counts) == np.array([len(t) for t in truths])))
        print(f"  {label:18s} {np.mean(accs):.3f}   min {np.min(accs):.3f}")


if __name__ == "__main__":
    main()
