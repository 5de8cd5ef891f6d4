"""`split-perception export CHECKPOINT -o model.onnx`: the inference graph as ONNX.

Opset 17: grid_sample needs >= 16, and 17 is what TensorRT 8.6 (JetPack 5) and 10.x both
parse. The graph uses no affine_grid (the glimpse grid is plain arithmetic), so the
TorchScript exporter handles it at this opset. Batch 1 static by default (TensorRT builds
its best engine for fixed shapes); `dynamic_batch=True` marks the batch axis symbolic.

The file carries its own metadata (model type, input size, normalisation, output names and
shapes, latent sizes, checkpoint hash) so a node needs nothing else to run it.
"""
from __future__ import annotations

import json
import os
import tempfile
import warnings
from pathlib import Path

import torch

from split_perception.atomic_io import file_sha256
from split_perception.models import checkpoint as ckpt
from split_perception.models.inference import inference_graph
from split_perception.onnx_weights import store_weights_as_fp16

OPSET = 17



def export_onnx(checkpoint: Path, out: Path, dynamic_batch: bool = False, opset: int = OPSET, fp16_weights: bool = False) -> Path:
    import onnx

    checkpoint, out = Path(checkpoint), Path(out)
    model, cfg, model_type = ckpt.load_checkpoint(checkpoint)
    graph = inference_graph(model).eval()
    size = cfg.image_size
    dummy = torch.rand(1, 3, size, size)
    with torch.no_grad():
        example_outputs = graph(dummy)
    names = graph.output_names
    dynamic_axes = None
    if dynamic_batch:
        dynamic_axes = {"image": {0: "batch"}, **{n: {0: "batch"} for n in names}}
    out.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{out.name}.", suffix=".onnx", dir=out.parent)
    os.close(fd)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # tracer warnings about python ints in the raster loop
            torch.onnx.export(
                graph, (dummy,), tmp, input_names=["image"], output_names=names,
                opset_version=opset, dynamic_axes=dynamic_axes, dynamo=False, do_constant_folding=True,
            )
        proto = onnx.load(tmp)
        meta = {
            "model_type": model_type,
            "input_size": json.dumps(size),
            "input_format": "RGB float32 NCHW in [0, 1] (pixel / 255)",
            "output_names": json.dumps(names),
            "output_shapes": json.dumps({n: list(o.shape) for n, o in zip(names, example_outputs)}),
            "latent_sizes": json.dumps(latent_sizes(cfg, model_type)),
            "config": json.dumps(cfg.to_dict()),
            "checkpoint_sha256": file_sha256(checkpoint),
            "opset": str(opset),
        }
        if hasattr(graph, "max_objects"):  # SPLIT-SPAIR: cells beyond the most present are not decoded
            meta["max_objects"] = json.dumps(graph.max_objects)
        if fp16_weights:
            store_weights_as_fp16(proto)
            meta["weights_storage"] = "float16, cast to float32 at load"
        del proto.metadata_props[:]
        for k, v in meta.items():
            proto.metadata_props.add(key=k, value=v)
        onnx.checker.check_model(proto)
        onnx.save(proto, tmp)
        os.chmod(tmp, 0o644)
        os.replace(tmp, out)
    finally:
        Path(tmp).unlink(missing_ok=True)
    return out


def latent_sizes(cfg, model_type: str) -> dict:
    if model_type == "split_spair":
        return {"what": cfg.z_what, "local": cfg.local_dims, "background": cfg.z_bg, "grid_cells": cfg.grid**2}
    return {"slot": getattr(cfg, "z_dim", 0), "slots": getattr(cfg, "slots", 0)}

