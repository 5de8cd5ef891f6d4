"""`split-perception` command line: data, training, evaluation, export, and the demo and deployment to running nodes.

Each subcommand imports what it needs when it runs, so `--help` and the data tools stay
fast and never load torch.
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path


def _cmd_dataset_generate(args) -> int:
    from split_perception.training import dataset, scenes

    if args.kind == "room":
        cfg = scenes.RoomConfig(image_size=args.image_size or 64)
    else:
        cfg = scenes.MultiObjectConfig(
            image_size=args.image_size or 48,
            background=args.background,
            palette=args.palette,
            sprites=args.sprites,
            max_objects=args.max_objects,
            min_objects=args.min_objects,
            object_shading=args.object_shading,
            **({"sprite_size": args.sprite_size} if args.sprite_size else {}),
            **({"sprite_size_jitter": args.sprite_size_jitter} if args.sprite_size_jitter is not None else {}),
        )
    t0 = time.perf_counter()
    dataset.write_generated_dataset(Path(args.out), cfg, args.count, args.seed)
    dt = time.perf_counter() - t0
    print(f"wrote {args.count} scenes to {args.out} in {dt:.1f} s ({args.count / max(dt, 1e-9):.0f} scenes/s)")
    return 0


def _cmd_dataset_info(args) -> int:
    from split_perception.training.dataset import DatasetFolder

    folder = DatasetFolder(Path(args.path))
    info = {"path": str(folder.root), "images": len(folder), "labelled": folder.labelled}
    if folder.labelled:
        counts = [r["count"] for r in folder.records]
        info["objects_per_image"] = {str(c): counts.count(c) for c in sorted(set(counts))}
    print(json.dumps(info, indent=2))
    return 0


def _parse_size(text: str) -> tuple[int, int]:
    """'64' -> (64, 64); '64x48' -> (64, 48) (width x height)."""
    w, _, h = text.lower().partition("x")
    try:
        size = (int(w), int(h or w))
    except ValueError:
        raise argparse.ArgumentTypeError(f"size must be S or WxH in pixels, e.g. 64 or 64x48; got '{text}'") from None
    if min(size) < 1 or max(size) > 8192:
        raise argparse.ArgumentTypeError(f"size must be 1..8192 pixels a side; got '{text}'")
    return size


def _cmd_dataset_import(args) -> int:
    """from-bag / from-folder / from-video: frames of a source into a dataset folder. A source that
    breaks off (truncated bag) ends the import with exit status 2 after what was read is written."""
    from split_perception.frames import FrameSourceError, import_frames, open_reader

    kind = {"from-bag": "bag", "from-folder": "folder", "from-video": "video"}[args.dataset_command]
    try:
        reader = open_reader(kind, path=args.source, topic=getattr(args, "topic", "") or "")
    except FrameSourceError as e:
        raise ValueError(str(e)) from None
    source = {"kind": kind, "path": str(Path(args.source).resolve())}
    if kind == "bag":
        source["topic"] = reader.topic
    total = reader.frame_count
    if total and args.max:
        total = min(total, args.max * args.every)
    bar = None
    if not args.quiet:
        from tqdm import tqdm

        bar = tqdm(total=total, unit="frame", desc=f"importing {Path(args.source).name}", file=sys.stderr,
                   disable=None)  # None: no bar when stderr is not a terminal
    try:
        with reader:
            result = import_frames(reader, Path(args.out), every=args.every, size=args.size or (0, 0),
                                   max_frames=args.max, source=source, image_format=args.format,
                                   progress=None if bar is None else bar.update)
    finally:
        if bar is not None:  # not `if bar`: a tqdm with no total (a video's length is unknown) refuses bool()
            bar.close()
    bad = f", {result.bad} undecodable frame(s) skipped" if result.bad else ""
    if result.stopped:
        print(f"split-perception dataset: error: {result.stopped}; the {result.written} frame(s) imported before it "
              f"are in {args.out}", file=sys.stderr)
        return 2
    if not result.written:
        print(f"split-perception dataset: error: no frame imported from {reader.description}{bad}", file=sys.stderr)
        return 2
    print(f"imported {result.written} of {result.read} frames from {reader.description} into {args.out}{bad}")
    return 0


def _cmd_train(args) -> int:
    from split_perception.training.trainer import train_from_config

    train_from_config(Path(args.config), overrides=args.set or [], out_dir=args.out, resume=not args.fresh,
                      init=Path(args.init) if args.init else None)
    return 0


def _cmd_eval(args) -> int:
    from split_perception.training.evaluate import evaluate_checkpoint

    report = evaluate_checkpoint(
        Path(args.checkpoint), out_dir=Path(args.out) if args.out else None, n_images=args.n,
        nms_iou=args.nms_iou if args.nms_iou >= 0 else None,
        duplicate_overlap=args.duplicate_overlap if args.duplicate_overlap >= 0 else None, duplicate_colour=args.duplicate_colour,
    )
    print(json.dumps(report, indent=2))
    return 0


def _cmd_export(args) -> int:
    from split_perception.export import export_onnx

    from split_perception.tensorrt_compat import check_tensorrt_compat

    out = export_onnx(Path(args.checkpoint), Path(args.output), dynamic_batch=args.dynamic_batch, fp16_weights=args.fp16_weights)
    print(f"wrote {out} ({out.stat().st_size / 1e6:.1f} MB)")
    for target in ("8.6", "10"):
        print(check_tensorrt_compat(out, target).summary())
    return 0


def _cmd_average(args) -> int:
    from split_perception.training.weight_average import average_checkpoints

    average_checkpoints([Path(p) for p in args.checkpoints], Path(args.output))
    print(f"wrote {args.output}: the mean of {len(args.checkpoints)} checkpoints' weights")
    return 0


def _cmd_deploy(args) -> int:
    from split_perception.deploy import run_deploy

    try:  # the ROS side (rclpy) is optional: without it a node cannot be asked, and --out says where
        from split_perception.nodes.reload_client import ros_connect
    except ImportError:
        ros_connect = None

    return run_deploy(Path(args.checkpoint), node=args.node, out=Path(args.out) if args.out else None,
                      connect=ros_connect, say=lambda line: print(f"split-perception deploy: {line}", flush=True))


def _cmd_trt_check(args) -> int:
    from split_perception.tensorrt_compat import check_tensorrt_compat

    reports = [check_tensorrt_compat(Path(args.onnx), t) for t in args.target]
    for r in reports:
        print(r.summary())
    return 0 if all(r.ok for r in reports) else 1


def _cmd_build_engine(args) -> int:
    from split_perception.backends import tensorrt_unavailable
    from split_perception.tensorrt_engine import DEFAULT_CACHE, build_engine, cached_engine, current_key

    reason = tensorrt_unavailable()
    if reason:
        print(f"split-perception build-engine: error: {reason}", file=sys.stderr)
        return 2
    options = dict(workspace_mb=args.workspace_mb, calibration_folder=Path(args.calibration) if args.calibration else None,
                   timing_cache=Path(args.timing_cache) if args.timing_cache else None)
    onnx = Path(args.onnx)
    if args.output:
        out = build_engine(onnx, Path(args.output), precision=args.precision, key=current_key(onnx, args.precision), **options)
    else:
        out = cached_engine(onnx, precision=args.precision, cache_dir=Path(args.cache_dir or DEFAULT_CACHE), **options)
    print(out)
    return 0


def _cmd_demo(args) -> int:
    from split_perception.demo import run_demo

    return run_demo(args)


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="split-perception", description=__doc__.splitlines()[0])
    sub = p.add_subparsers(dest="command", required=True)

    ds = sub.add_parser("dataset", help="generate, import or inspect dataset folders")
    ds_sub = ds.add_subparsers(dest="dataset_command", required=True)
    gen = ds_sub.add_parser("generate", help="write procedural scenes with ground truth to a folder")
    gen.add_argument("out", help="output dataset folder")
    gen.add_argument("--kind", choices=["multi_object", "room"], default="multi_object")
    gen.add_argument("--count", type=int, default=1000)
    gen.add_argument("--seed", type=int, default=0)
    gen.add_argument("--image-size", type=int, default=None, help="48 for multi_object, 64 for room by default")
    # the kinds of training/scenes.py (kept literal here: --help must not import the generator)
    gen.add_argument(
        "--background", default="solid",
        choices=["solid", "gradient", "checkerboard", "stripes", "texture", "noise", "vignette", "plaid", "texture_test"],
        help="vignette, plaid and texture_test are the held-out kinds (never used in training)",
    )
    gen.add_argument("--sprites", choices=["mixed", "digits", "shapes", "varied", "varied_parts", "shapes_test"], default="mixed",
                     help="varied: mixed plus procedural random shapes; shapes_test: held-out object shapes")
    gen.add_argument("--palette", choices=["train", "test"], default="train", help="test = unseen colours")
    gen.add_argument("--min-objects", type=int, default=0)
    gen.add_argument("--max-objects", type=int, default=5)
    gen.add_argument("--sprite-size", type=int, default=0,
                     help="multi_object: object side in pixels on the image (default 14: the training size)")
    gen.add_argument("--sprite-size-jitter", type=int, default=None,
                     help="multi_object: side drawn from size +- jitter (default 2)")
    gen.add_argument("--object-shading", type=float, default=0.0,
                     help="multi_object: brightness ramp across each object, 0 (flat, default) to < 2")
    gen.set_defaults(func=_cmd_dataset_generate)
    info = ds_sub.add_parser("info", help="summarise a dataset folder")
    info.add_argument("path")
    info.set_defaults(func=_cmd_dataset_info)
    sources = {"from-bag": ("import an image topic of a rosbag2 MCAP file or folder (no ROS install needed)",
                            "rosbag2 .mcap file or folder"),
               "from-folder": ("import a folder of images (sorted by name)", "folder of images"),
               "from-video": ("import the frames of a video file (OpenCV)", "video file")}
    for name, (help_text, source_help) in sources.items():
        imp = ds_sub.add_parser(name, help=help_text)
        imp.add_argument("source", help=source_help)
        if name == "from-bag":
            imp.add_argument("--topic", default="", help="sensor_msgs/Image or CompressedImage topic; "
                                                         "default: the bag's only image topic")
        imp.add_argument("out", help="dataset folder (created, or continued if it exists)")
        imp.add_argument("--every", type=int, default=1, help="keep every N-th frame (default 1: all)")
        imp.add_argument("--size", type=_parse_size, default=None, help="resize to S x S or WxH pixels (default: as read)")
        imp.add_argument("--max", type=int, default=0, help="import at most N frames (default 0: all)")
        imp.add_argument("--format", choices=["png", "jpg"], default="png", help="image files (default png: lossless)")
        imp.add_argument("--quiet", action="store_true", help="no progress bar")
        imp.set_defaults(func=_cmd_dataset_import)

    tr = sub.add_parser("train", help="train a model from a YAML config (resumes from the last checkpoint)")
    tr.add_argument("config", help="YAML training config, e.g. config/train_split_spair.yaml")
    tr.add_argument("--out", default=None, help="run folder (default: the config's out_dir)")
    tr.add_argument("--set", action="append", metavar="KEY=VALUE", help="override a config value, e.g. --set train.steps=100 (one KEY=VALUE per --set)")
    tr.add_argument("--fresh", action="store_true", help="start over instead of resuming")
    tr.add_argument("--init", metavar="CHECKPOINT", default=None,
                    help="fine-tune: start a new run from this checkpoint's weights (same model type, weights that fit "
                         "the config's model; optimizer fresh). A run folder with its own checkpoint resumes instead")
    tr.set_defaults(func=_cmd_train)

    ev = sub.add_parser("eval", help="evaluate a checkpoint on the procedural test sets")
    ev.add_argument("checkpoint", help="checkpoint .safetensors (its .json config beside it)")
    ev.add_argument("--out", default=None, help="folder for metrics.json and the figure")
    ev.add_argument("-n", type=int, default=500, help="test images per test set")
    from split_perception.detector import DEFAULT_DUPLICATE_COLOUR, DEFAULT_DUPLICATE_OVERLAP, DEFAULT_NMS_IOU  # numpy only

    ev.add_argument("--nms-iou", type=float, default=DEFAULT_NMS_IOU,
                    help=f"detector: NMS IoU threshold as in load_detector (default {DEFAULT_NMS_IOU}; < 0: off)")
    ev.add_argument("--duplicate-overlap", type=float, default=DEFAULT_DUPLICATE_OVERLAP,
                    help=f"detector: drop a box redrawing a better box's object, as in load_detector (default "
                         f"{DEFAULT_DUPLICATE_OVERLAP}; < 0: off)")
    ev.add_argument("--duplicate-colour", type=float, default=DEFAULT_DUPLICATE_COLOUR,
                    help=f"detector: colour distance for --duplicate-overlap (default {DEFAULT_DUPLICATE_COLOUR})")
    ev.set_defaults(func=_cmd_eval)

    ex = sub.add_parser("export", help="export a checkpoint's inference graph to ONNX (with metadata)")
    ex.add_argument("checkpoint")
    ex.add_argument("-o", "--output", required=True, help="output .onnx file")
    ex.add_argument("--dynamic-batch", action="store_true", help="symbolic batch axis (default: batch 1 static)")
    ex.add_argument("--fp16-weights", action="store_true", help="store large weights as float16 (half the file; compute stays float32)")
    ex.set_defaults(func=_cmd_export)

    av = sub.add_parser("average", help="one checkpoint from several fine-tunes of one model: the mean of their weights")
    av.add_argument("checkpoints", nargs="+", help="checkpoints of the same model type and config")
    av.add_argument("-o", "--output", required=True, help="output .safetensors (its .json card beside it)")
    av.set_defaults(func=_cmd_average)

    dp = sub.add_parser("deploy", help="export a checkpoint to ONNX, check it, place it atomically and make a running "
                                       "node hot-swap to it (nothing placed if a check fails)")
    dp.add_argument("checkpoint", help="checkpoint .safetensors, e.g. runs/finetune/checkpoint.safetensors")
    dp.add_argument("--node", default=None, help="the node to reload, e.g. /split_spair_detector: the file goes to its "
                                                 "model_path (unless --out) and its ~/reload is called")
    dp.add_argument("--out", default=None, help="where to place the .onnx file (default: the node's model_path; a node on "
                                                "the shipped default gets ~/.local/share/split_perception/models/NODE.onnx)")
    dp.set_defaults(func=_cmd_deploy)

    tc = sub.add_parser("trt-check", help="static check that an ONNX file builds with TensorRT's ONNX parser (no TensorRT needed)")
    tc.add_argument("onnx")
    tc.add_argument("--target", nargs="+", default=["8.6", "10"], choices=["8.6", "10"])
    tc.set_defaults(func=_cmd_trt_check)

    be = sub.add_parser("build-engine", help="build (or find in the cache) a TensorRT engine for this GPU")
    be.add_argument("onnx")
    be.add_argument("--precision", choices=["fp32", "fp16", "int8"], default="fp16")
    be.add_argument("--calibration", help="int8: dataset folder of calibration images")
    be.add_argument("--workspace-mb", type=int, default=1024)
    be.add_argument("--timing-cache", help="timing cache file, read and updated (speeds up rebuilds)")
    be.add_argument("--cache-dir", help="engine cache (default ~/.cache/split_perception/engines)")
    be.add_argument("-o", "--output", help="write the engine here instead of the cache")
    be.set_defaults(func=_cmd_build_engine)

    from split_perception.demo import add_arguments as add_demo_arguments  # numpy only: --help stays light

    demo = sub.add_parser("demo", help="camera source + detector + slot node as ROS 2 processes on procedural scenes: "
                                       "live status, annotated frames, contact sheet, accuracy vs ground truth")
    add_demo_arguments(demo)
    demo.set_defaults(func=_cmd_demo)
    return p


def main(argv=None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return int(args.func(args) or 0)
    except (FileNotFoundError, ValueError, OSError) as e:
        print(f"split-perception {args.command}: error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130  # the conventional status of a run stopped by Ctrl-C / SIGTERM (state already saved)


if __name__ == "__main__":
    sys.exit(main())
