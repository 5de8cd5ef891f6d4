"""The segmenter's post-processing settings, swept on validation rooms (seed 20000, never the test seed).

    python benchmarks/segment_postprocessing.py [MODEL.onnx] [-n 120] [--noise SIGMA]

Per room kind, FG-ARI of the segments:
  * the rim check: all object pixels vs each object eroded by one pixel, masks as the model gives them;
  * joining threshold (mask_refinement.join_segments_without_edges; none, 0.03, 0.06, 0.10), edges refined;
  * neck splitting core fraction (touching_objects.split_at_necks; none, 0.5, 0.6, 0.7) after joining,
    with the share of objects that had a segment of their own and are newly split, and of the objects
    sharing a segment with another that come apart;
  * colour-edge step (touching_objects.split_at_colour_edges; none, 15, 25, 40, 60) after joining and
    the neck split at 0.5.
--noise: Gaussian noise of that standard deviation (0-255) added to every frame, as a camera's sensor.
"""
from __future__ import annotations

import argparse

import cv2
import numpy as np

from split_perception import load_segmenter, mask_refinement, touching_objects
from split_perception.segmenter import object_segments
from split_perception.training import metrics, scenes

VALIDATION_SEED = 20000


def interior(labels: np.ndarray) -> np.ndarray:
    """Each object's pixels more than one pixel from its edge (the rest become background)."""
    out = np.zeros_like(labels)
    for o in np.unique(labels[labels > 0]):
        out[cv2.erode((labels == o).astype(np.uint8), np.ones((3, 3), np.uint8)) > 0] = o
    return out


def segments_with(labels: np.ndarray, frame: np.ndarray, join_below: float | None, core: float | None) -> np.ndarray:
    """Segments of `labels` with this joining threshold and core fraction (None: that step off)."""
    return object_segments(labels, frame if join_below else None, core is not None,
                           join_below=join_below or mask_refinement.DEFAULT_JOIN_BELOW,
                           core_fraction=core or touching_objects.DEFAULT_CORE_FRACTION)[0]


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("model", nargs="?", default=None)
    ap.add_argument("-n", type=int, default=120)
    ap.add_argument("--noise", type=float, default=0.0)
    args = ap.parse_args(argv)
    raw = load_segmenter(args.model, backend="onnxruntime", refine_edges=False, split_touching=False)
    refined = load_segmenter(args.model, backend="onnxruntime", refine_edges=True, split_touching=False)
    joins, cores, steps = (None, 0.03, 0.06, 0.10), (None, 0.5, 0.6, 0.7), (None, 15.0, 25.0, 40.0, 60.0)
    for kind in scenes.ROOM_TEST_KINDS:
        cfg = scenes.room_kind_config(kind, 64)
        rim = ([], [])
        by_join = {j: [] for j in joins}
        by_core = {c: [] for c in cores}
        by_step = {e: [] for e in steps}
        split_single = {c: [0, 0] for c in cores[1:]}  # newly split, objects with a segment of their own
        apart = {c: [0, 0] for c in cores[1:]}  # come apart, objects sharing a segment
        for i in range(args.n):
            s = scenes.generate(cfg, VALIDATION_SEED, i)
            if args.noise:
                noise = np.random.default_rng(i).normal(0.0, args.noise, s.image.shape)
                s.image = np.clip(s.image + noise, 0, 255).astype(np.uint8)
            plain = raw(s.image).segments
            rim[0].append(metrics.foreground_ari(s.labels, plain))
            inner = interior(s.labels)
            rim[1].append(metrics.foreground_ari(inner, plain) if inner.any() else np.nan)
            labels = refined(s.image).labels
            for j in joins:
                by_join[j].append(metrics.foreground_ari(s.labels, segments_with(labels, s.image, j, None)))
            joined = segments_with(labels, s.image, mask_refinement.DEFAULT_JOIN_BELOW, None)
            objects = [o for o in np.unique(s.labels) if o]
            main = {o: np.bincount(joined[s.labels == o]).argmax() for o in objects}
            necked = touching_objects.split_at_necks(joined, touching_objects.DEFAULT_CORE_FRACTION)[0]
            for e in steps:
                parts = necked if e is None else touching_objects.split_at_colour_edges(necked, s.image, e)[0]
                by_step[e].append(metrics.foreground_ari(s.labels, parts))
            for c in cores:
                split = joined if c is None else touching_objects.split_at_necks(joined, c)[0]
                by_core[c].append(metrics.foreground_ari(s.labels, split))
                if c is None:
                    continue
                for o in objects:
                    partners = [p for p in objects if p != o and main[p] == main[o]]
                    pixels = s.labels == o
                    if not partners:  # whole before (80% in one segment) and not after: newly split
                        split_single[c][1] += 1
                        whole = np.bincount(joined[pixels]).max() >= 0.8 * pixels.sum()
                        split_single[c][0] += whole and np.bincount(split[pixels]).max() < 0.8 * pixels.sum()
                    else:
                        apart[c][1] += 1
                        mine = np.bincount(split[pixels]).argmax()
                        apart[c][0] += all(np.bincount(split[s.labels == p]).argmax() != mine for p in partners)
        mean = lambda v: f"{np.nanmean(v):.3f}"  # noqa: E731
        print(f"{kind}: rim check {mean(rim[0])} all pixels, {mean(rim[1])} rims left out")
        print("  join threshold " + ", ".join(f"{j or 'none'}: {mean(v)}" for j, v in by_join.items()))
        print("  neck core fraction " + ", ".join(f"{c or 'none'}: {mean(v)}" for c, v in by_core.items()))
        print("  colour-edge step " + ", ".join(f"{e or 'none'}: {mean(v)}" for e, v in by_step.items()))
        print("  newly split / own segment " + ", ".join(f"{c}: {a}/{b}" for c, (a, b) in split_single.items())
              + "; apart / sharing " + ", ".join(f"{c}: {a}/{b}" for c, (a, b) in apart.items()), flush=True)


if __name__ == "__main__":
    main()
