"""Slot segmenters through the public API, as a user calls them: FG-ARI and MSC of
`load_segmenter(path, refine_edges=..., split_touching=..., slot_per_object=...)(rgb).labels` (one
label per slot) and of `.segments` (each slot's connected regions apart) on every room test kind
(held-out scenes, seed 10000), with the post-processing of the masks off (all False: the model's
masks, plain connected regions), on but with the model's own slots (slot_per_object=False), and all
on (the defaults).

    python benchmarks/segmenter_api_eval.py [MODEL.onnx ...] [-n 300] [--seed 20000] [--figure PNG]
                                            [--render-size 256 --min-objects 2]

No path: the shipped default. Prints one row per model, refinement setting and output; --seed
20000 gives the validation scenes (for choosing settings; the default seed is the test scenes).
--render-size: the rooms drawn at that many pixels (objects scaled with it; the model sees them
shrunk to its input, as a camera frame), scored at that resolution. --min-objects: scenes with
fewer objects skipped (with one object, FG-ARI is 1 for a perfect mask and 0 for any pixel
wrong, which at camera resolution measures the edge, not the separation of objects).
Then the API's latency per 640 x 480 frame (rich rooms scaled up) for each setting, and with the
segments computed, interleaved call by call in this process. --figure: one column per scene (the first test scenes of
each kind, drawn at --render-size): input, ground truth, slot labels unrefined, refined, segments refined
(first model).
"""
from __future__ import annotations

import argparse
import time
from pathlib import Path

import cv2
import numpy as np

from split_perception import load_segmenter
from split_perception.training import metrics, scenes
from split_perception.training.evaluate_slots import TEST_SEED


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("models", nargs="*", default=[None])
    ap.add_argument("-n", type=int, default=300)
    ap.add_argument("--seed", type=int, default=TEST_SEED)
    ap.add_argument("--figure", type=Path, default=None)
    ap.add_argument("--render-size", type=int, default=64)
    ap.add_argument("--min-objects", type=int, default=0)
    args = ap.parse_args(argv)
    if args.figure:
        save_figure(args.models[0], args.seed, args.figure, args.render_size)
    print(f"rooms drawn at {args.render_size} px, scenes with >= {args.min_objects} objects")
    print("| model | post-processing | output | input px | K | " + " | ".join(f"{k} FG-ARI / MSC" for k in scenes.ROOM_TEST_KINDS) + " |")
    print("| --- " * (5 + len(scenes.ROOM_TEST_KINDS)) + "|")
    for path in args.models:
        for setting, options in SETTINGS.items():
            seg = load_segmenter(path, backend="onnxruntime", **options)
            cells, k = {"labels": [], "segments": []}, None
            t = time.perf_counter()
            for kind in scenes.ROOM_TEST_KINDS:
                cfg = room_config(kind, args.render_size)
                scores = {name: ([], []) for name in cells}
                for i in range(args.n):
                    s = scenes.generate(cfg, args.seed, i)
                    if s.count < args.min_objects:
                        continue
                    out = seg(s.image)
                    k = out.slots
                    for name, (aris, mscs) in scores.items():
                        pred = getattr(out, name)
                        aris.append(metrics.foreground_ari(s.labels, pred))
                        mscs.append(metrics.mean_segmentation_covering(s.labels, pred))
                for name, (aris, mscs) in scores.items():
                    cells[name].append(f"{np.nanmean(aris):.3f} / {np.nanmean(mscs):.3f}")
            for name, row in cells.items():
                print(f"| {path or 'shipped default'} | {setting} | {name} | {seg.input_size} | {k} | "
                      + " | ".join(row) + " |", flush=True)
            print(f"  ({len(scenes.ROOM_TEST_KINDS) * args.n} frames in {time.perf_counter() - t:.0f} s)")
        print_latency(path, args.seed)


SETTINGS = {  # post-processing of the API: name -> load_segmenter options
    "none": dict(refine_edges=False, split_touching=False, slot_per_object=False),
    "model's slots": dict(refine_edges=True, split_touching=True, slot_per_object=False),
    "default": dict(refine_edges=True, split_touching=True, slot_per_object=True),
}


def room_config(kind: str, size: int) -> scenes.RoomConfig:
    """The test rooms of `kind` drawn at `size` px: the same scenes as at 64 px, objects scaled (the
    legacy kind's object sizes do not scale by themselves)."""
    if kind == "room" and size != 64:
        lo, hi = scenes.RoomConfig().object_size
        return scenes.room_kind_config(kind, size, object_size=(round(lo * size / 64), round(hi * size / 64)))
    return scenes.room_kind_config(kind, size)


def print_latency(path, seed: int, frames: int = 50, rounds: int = 6) -> None:
    cfg = scenes.room_kind_config("room_rich", 64)
    vga = [cv2.resize(scenes.generate(cfg, seed, i).image, (640, 480), interpolation=cv2.INTER_LINEAR) for i in range(frames)]
    apis = {name: load_segmenter(path, backend="onnxruntime", **options) for name, options in SETTINGS.items()}
    calls = {"unrefined": apis["none"], "refined, model's slots": apis["model's slots"],
             "refined, model's slots + .segments": lambda f: apis["model's slots"](f).segments,
             "default": apis["default"], "default + .segments": lambda f: apis["default"](f).segments}
    times = {name: [] for name in calls}
    for r in range(rounds + 1):  # round 0 warms up
        for frame in vga:
            for name, call in calls.items():
                t0 = time.perf_counter()
                call(frame)
                if r:
                    times[name].append(time.perf_counter() - t0)
    p50 = {name: 1000 * float(np.median(t)) for name, t in times.items()}
    base = p50["unrefined"]
    print("  API latency, 640 x 480 rgb8 frames, p50 (interleaved call by call): "
          + ", ".join(f"{name} {ms:.2f} ms (x{ms / base:.2f})" for name, ms in p50.items()), flush=True)


def save_figure(path, seed: int, out: Path, render_size: int = 64, per_kind: int = 3, side: int = 192) -> None:
    from split_perception.atomic_io import atomic_write_bytes
    from split_perception.demo import slot_colours

    apis = [load_segmenter(path, backend="onnxruntime", **SETTINGS[name]) for name in ("none", "default")]
    columns = []
    for kind in scenes.ROOM_TEST_KINDS:
        cfg = room_config(kind, render_size)
        for i in range(per_kind):
            s = scenes.generate(cfg, seed, i)
            raw, refined = (api(s.image) for api in apis)
            tiles = [s.image] + [slot_colours(int(lab.max()) + 1)[lab] for lab in (s.labels, raw.labels, refined.labels, refined.segments)]
            tiles = [cv2.resize(t.astype(np.uint8), (side, side), interpolation=cv2.INTER_NEAREST) for t in tiles]
            columns.append(np.concatenate([np.pad(t, ((2, 2), (2, 2), (0, 0)), constant_values=255) for t in tiles], axis=0))
    sheet = np.concatenate(columns, axis=1)
    header = np.full((24, sheet.shape[1], 3), 255, np.uint8)
    cv2.putText(header, f"rooms drawn at {render_size} px; rows: input | ground truth | slot labels | labels, edges refined | segments, edges refined;  "
                + " | ".join(f"{k} x{per_kind}" for k in scenes.ROOM_TEST_KINDS), (4, 16), cv2.FONT_HERSHEY_SIMPLEX, 0.45, (0, 0, 0), 1, cv2.LINE_AA)
    ok, png = cv2.imencode(".png", cv2.cvtColor(np.concatenate([header, sheet], axis=0), cv2.COLOR_RGB2BGR))
    atomic_write_bytes(out, png.tobytes())
    print(f"figure: {out}")


if __name__ == "__main__":
    main()
