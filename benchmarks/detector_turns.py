"""Does the detector count the same scene the same way when it is mirrored or turned by 90 degrees?

    python benchmarks/detector_turns.py [--model PATH] [-n 200] [--seed 20000] [--sprite-size 14] [--sprite-turns]

Runs `load_detector()` on each validation scene (seed 20000 by default: never the test seed 10000)
in the eight orientations of the square (identity, left-right and up-down mirrors, both, and the
same four after a transpose, i.e. turned by 90 degrees) and prints, per test kind, the count
accuracy of each orientation, of a majority vote over the four mirrors and over all eight (ties go
to the unturned frame), and the oracle (some orientation counts right). A detector that learnt
objects' shapes rather than their usual orientation counts alike in all eight; the oracle says how
much a perfect choice among them could gain.
"""
from __future__ import annotations

import argparse
import sys
from collections import Counter
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from detector_errors import add_scene_options, chosen_sets  # noqa: E402  (this folder)
from split_perception.detector import load_detector  # noqa: E402
from training import scenes  # noqa: E402

# (transpose, mirror left-right, mirror up-down); the first is the frame as it is
ORIENTATIONS = [(t, h, v) for t in (False, True) for h, v in ((False, False), (True, False), (False, True), (True, True))]


def orient(image: np.ndarray, transpose: bool, mirror_lr: bool, mirror_ud: bool) -> np.ndarray:
    """(H, W, 3) -> the same frame transposed and/or mirrored (a view)."""
    out = image.transpose(1, 0, 2) if transpose else image
    out = out[:, ::-1] if mirror_lr else out
    return out[::-1] if mirror_ud else out


def vote(counts: list[int]) -> int:
    """Most frequent count; a tie goes to counts[0] (the unturned frame) when it is among the tied."""
    tally = Counter(counts)
    best = max(tally.values())
    tied = sorted(k for k, v in tally.items() if v == best)
    return counts[0] if counts[0] in tied else tied[len(tied) // 2]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_scene_options(ap)
    args = ap.parse_args()

    det = load_detector(args.model)
    sets = chosen_sets(args, det.input_size)
    names = ["as is", "mirror lr", "mirror ud", "both", "turned", "turned lr", "turned ud", "turned both"]
    print(f"model {det.runner.source}, {args.n} scenes per kind, seed {args.seed}")
    print(f"{'kind':22s} " + " ".join(f"{n:>11s}" for n in names) + f" {'vote 4':>7s} {'vote 8':>7s} {'oracle':>7s}")
    table = []
    for name, cfg in sets.items():
        counts, truth = [], []
        for i in range(args.n):
            s = scenes.generate(cfg, args.seed, i)
            counts.append([len(det(np.ascontiguousarray(orient(s.image, *o)))) for o in ORIENTATIONS])
            truth.append(s.count)
        c, t = np.array(counts), np.array(truth)
        row = [np.mean(c[:, k] == t) for k in range(len(ORIENTATIONS))]
        row += [np.mean([vote(list(x[:4])) for x in c] == t), np.mean([vote(list(x)) for x in c] == t),
                np.mean((c == t[:, None]).any(1))]
        table.append(row)
        print(f"{name:22s} " + " ".join(f"{a:11.3f}" for a in row[:8]) + " " + " ".join(f"{a:7.3f}" for a in row[8:]), flush=True)
    mean = np.mean(table, 0)
    print(f"{'mean':22s} " + " ".join(f"{a:11.3f}" for a in mean[:8]) + " " + " ".join(f"{a:7.3f}" for a in mean[8:]))


if __name__ == "__main__":
    main()
