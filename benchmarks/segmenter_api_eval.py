"""Slot segmenters through the public API, as a user calls them: FG-ARI and MSC of
`load_segmenter(path)(rgb).labels` (one label per slot) and of `.segments` (each slot's connected
regions apart) on every room test kind (held-out scenes, seed 10000).

    python benchmarks/segmenter_api_eval.py [MODEL.onnx ...] [-n 300]

No path: the shipped default. Prints one row per model and test kind.
"""
from __future__ import annotations

import argparse
import time

import numpy as np

from split_perception import load_segmenter
from split_perception.training import metrics, scenes
from split_perception.training.evaluate_slots import TEST_SEED


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("models", nargs="*", default=[None])
    ap.add_argument("-n", type=int, default=300)
    args = ap.parse_args(argv)
    print("| model | output | input px | K | " + " | ".join(f"{k} FG-ARI / MSC" for k in scenes.ROOM_TEST_KINDS) + " |")
    print("| --- " * (4 + len(scenes.ROOM_TEST_KINDS)) + "|")
    for path in args.models:
        seg = load_segmenter(path, backend="onnxruntime")
        cells, k = {"labels": [], "segments": []}, None
        t = time.perf_counter()
        for kind in scenes.ROOM_TEST_KINDS:
            cfg = scenes.room_kind_config(kind, 64)
            scores = {name: ([], []) for name in cells}
            for i in range(args.n):
                s = scenes.generate(cfg, TEST_SEED, i)
                out = seg(s.image)
                k = out.slots
                for name, (aris, mscs) in scores.items():
                    pred = getattr(out, name)
                    aris.append(metrics.foreground_ari(s.labels, pred))
                    mscs.append(metrics.mean_segmentation_covering(s.labels, pred))
            for name, (aris, mscs) in scores.items():
                cells[name].append(f"{np.nanmean(aris):.3f} / {np.nanmean(mscs):.3f}")
        for name, row in cells.items():
            print(f"| {path or 'shipped default'} | {name} | {seg.input_size} | {k} | " + " | ".join(row) + " |", flush=True)
        print(f"  ({len(scenes.ROOM_TEST_KINDS) * args.n} frames in {time.perf_counter() - t:.0f} s)")


if __name__ == "__main__":
    main()
