"""Two detectors counted on the same scenes, with how sure their difference is.

    python benchmarks/compare_detectors.py CANDIDATE [BASELINE] [-n 300] [--seed 40000]
                                           [--outside-n 150] [--outside-seeds 11 12]

Both run through `load_detector()` (BASELINE: the shipped detector by default) on
  * the project's 11 test kinds (training/evaluate.detector_test_sets, objects 12-16 px) drawn at
    --seed: 40000 by default, a seed no tuning has used (20000 is the validation seed, 10000 the test
    seed, which earlier choices were made on);
  * the outside generator's five backgrounds (benchmarks/outside_scenes.py) at each --outside-seeds.
Each row prints both count accuracies, their difference, its 95% interval (a bootstrap over the
scenes, both models on the same resampled scenes: training.metrics.paired_difference_interval) and
how many scenes only one of the two counts right; then the mean over the project's kinds and over
the outside rows, each kind weighing the same (pooled_difference_interval). A difference is evidence
only where its interval leaves out 0: with 300 scenes a kind, one model's lead of 0.01 on the mean
of 11 kinds is within the draw (docs/RESULTS.md, issue 12, session 2026-12-05 (5)).
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))

import outside_scenes  # noqa: E402

from split_perception.detector import load_detector  # noqa: E402
from training import metrics, scenes  # noqa: E402
from training.evaluate import detector_test_sets  # noqa: E402


def project_rows(n: int, seed: int, size: int) -> dict:
    """{kind: [(image, true count)]} for the project's test kinds at `seed`."""
    rows = {}
    for kind, cfg in detector_test_sets(size).items():
        drawn = (scenes.generate(cfg, seed, i) for i in range(n))
        rows[kind] = [(s.image, len(s.boxes)) for s in drawn]
    return rows


def outside_rows(n: int, seeds: list[int]) -> dict:
    """{"outside SEED BACKGROUND": [(image, true count)]} from the independent generator."""
    rows = {}
    for seed in seeds:
        sets = outside_scenes.scene_sets(outside_scenes.scene, outside_scenes.BACKGROUNDS, n, seed, 384)
        for kind, items in sets.items():
            rows[f"outside {seed} {kind}"] = [(img, len(objects)) for img, objects in items]
    return rows


def counted_right(detector, items) -> np.ndarray:
    return np.array([len(detector(img)) == count for img, count in items], float)


def print_row(name: str, a: np.ndarray, b: np.ndarray, interval: tuple[float, float, float]) -> None:
    mean, lo, hi = interval
    only_a, only_b = int(((a == 1) & (b == 0)).sum()), int(((a == 0) & (b == 1)).sum())
    sure = "" if lo <= 0 <= hi else "  *"
    print(f"{name:28s} {a.mean():6.3f} {b.mean():6.3f} {mean:+7.3f} [{lo:+.3f}, {hi:+.3f}] {only_a:5d} {only_b:5d}{sure}")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("candidate", help="ONNX export or checkpoint")
    ap.add_argument("baseline", nargs="?", default=None, help="default: the shipped detector")
    ap.add_argument("-n", type=int, default=300, help="project scenes per test kind")
    ap.add_argument("--seed", type=int, default=40_000, help="project scenes' seed")
    ap.add_argument("--outside-n", type=int, default=150, help="outside scenes per background and seed (0: none)")
    ap.add_argument("--outside-seeds", type=int, nargs="+", default=[11, 12])
    args = ap.parse_args()

    a_det = load_detector(args.candidate)
    b_det = load_detector(args.baseline) if args.baseline else load_detector()
    groups = {"project": project_rows(args.n, args.seed, a_det.input_size)}
    if args.outside_n:
        groups["outside"] = outside_rows(args.outside_n, args.outside_seeds)
    print(f"a = {args.candidate}\nb = {args.baseline or 'shipped'}\n"
          f"project scenes: {args.n} per kind, seed {args.seed}; outside: {args.outside_n} per background, "
          f"seeds {args.outside_seeds}")
    print(f"{'scenes':28s} {'a':>6s} {'b':>6s} {'a - b':>7s} {'95% interval':>16s} {'a only':>5s} {'b only':>5s}")
    for group, rows in groups.items():
        pairs = []
        for name, items in rows.items():
            a, b = counted_right(a_det, items), counted_right(b_det, items)
            pairs.append((a, b))
            print_row(name, a, b, metrics.paired_difference_interval(a, b))
        # every row of a group has the same number of scenes: the pooled accuracy is the mean of the rows'
        a_all, b_all = (np.concatenate(x) for x in zip(*pairs))
        print_row(f"mean, {group} ({len(rows)} rows)", a_all, b_all, metrics.pooled_difference_interval(pairs))
    print("* the interval leaves out 0")


if __name__ == "__main__":
    main()
