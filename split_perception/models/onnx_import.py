"""Rebuild a torch model from one of this project's ONNX exports, for the torch backend.

Why: a model may ship as an ONNX file only (the slot segmenter does), and the torch backend
(CUDA graphs, fp16 on a GPU) should still run it. An export carries its model type and config
in its metadata and most weights under their state-dict names, so the model is rebuilt from
the config and the weights copied back. Two things the exporter changed are undone:

* weights stored as float16 (`onnx_weights.store_weights_as_fp16`, name + "__fp16") are read
  as float32, which is what the ONNX graph computes with; equal constants stored once are found
  through the Identity nodes that pass them on;
* a convolution followed by BatchNorm was folded into one convolution with a bias (eval-mode
  constant folding; the folded weights get anonymous names). Such a pair is rebuilt as the
  folded convolution followed by an identity BatchNorm that adds the bias; the pairs are
  matched in graph order against the model's (conv, BatchNorm) pairs, shapes checked.

The result is an inference model only: the folded BatchNorm statistics and parameters are
gone, and parts the inference graph does not use (e.g. MONet's slot decoder) stay at their
initial values, so fine-tuning needs a training checkpoint. The caller checks the rebuilt
model against the ONNX file itself (`verify_against_onnx`) before trusting it.
"""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import torch
from torch import nn

from split_perception.onnx_weights import FP16_SUFFIX

from . import checkpoint as ckpt


class OnnxImportError(ValueError):
    """An ONNX file that cannot be rebuilt as a torch model; the message says why."""


def model_from_onnx(path: Path):
    """(model, config, model_type) rebuilt from an export's metadata and weights (eval mode)."""
    import onnx
    from onnx import numpy_helper

    path = Path(path)
    try:
        proto = onnx.load(str(path))
    except Exception as e:  # onnx raises DecodeError, OSError, ... for damaged files
        raise OnnxImportError(f"{path}: not a readable ONNX file ({type(e).__name__})") from None
    meta = {p.key: p.value for p in proto.metadata_props}
    registry = ckpt.model_registry()
    model_type = meta.get("model_type")
    if model_type not in registry or "config" not in meta:
        raise OnnxImportError(f"{path}: no split_perception model type and config in its metadata; re-export it")
    cfg_cls, model_cls = registry[model_type]
    try:
        cfg = ckpt.config_from_dict(cfg_cls, json.loads(meta["config"]))
    except (json.JSONDecodeError, TypeError, ValueError) as e:
        raise OnnxImportError(f"{path}: bad model config in its metadata ({e})") from None
    model = model_cls(cfg).eval()

    weights = {
        init.name.removesuffix(FP16_SUFFIX): torch.from_numpy(numpy_helper.to_array(init).astype(np.float32))
        for init in proto.graph.initializer
    }
    # the exporter stores equal constants once (e.g. the zero biases of untrained BatchNorms) and
    # passes the copies through Identity nodes; graph order puts a chain's source first
    for node in proto.graph.node:
        if node.op_type == "Identity" and node.input[0] in weights:
            weights[node.output[0]] = weights[node.input[0]]
    prefix = "model."  # the inference graphs hold the model as `self.model`
    state = model.state_dict()
    named = {}
    for key, target in state.items():
        value = weights.get(prefix + key)
        if value is not None:
            if value.shape != target.shape:
                raise OnnxImportError(f"{path}: {key} has shape {tuple(value.shape)}, the config makes {tuple(target.shape)}")
            named[key] = value
    model.load_state_dict(named, strict=False)
    _unfold_conv_batchnorm(path, proto, weights, model)
    return model, cfg, model_type


def _unfold_conv_batchnorm(path: Path, proto, weights: dict, model: nn.Module) -> None:
    anonymous = []
    for node in proto.graph.node:
        if node.op_type == "Conv" and not node.input[1].startswith("model."):
            stored = [name in weights for name in node.input[1:]]
            if not all(stored):
                raise OnnxImportError(f"{path}: convolution {node.name} takes weights the graph computes, not stored "
                                      f"ones; use the .safetensors checkpoint for the torch backend")
            anonymous.append((weights[node.input[1]], weights[node.input[2]] if len(node.input) > 2 else None))
    pairs = _conv_batchnorm_pairs(model)
    if len(anonymous) != len(pairs):
        raise OnnxImportError(
            f"{path}: {len(anonymous)} folded convolutions in the file, {len(pairs)} conv + BatchNorm pairs in the model"
        )
    with torch.no_grad():
        for (name, conv, bn), (w, b) in zip(pairs, anonymous):
            if w.shape != conv.weight.shape or b is None or b.shape != bn.bias.shape:
                raise OnnxImportError(f"{path}: the folded convolution for {name} does not fit its shape")
            conv.weight.copy_(w)
            # identity BatchNorm that adds the folded bias: (x - 0) / sqrt((1 - eps) + eps) * 1 + b
            bn.weight.fill_(1.0)
            bn.bias.copy_(b)
            bn.running_mean.zero_()
            bn.running_var.fill_(1.0 - bn.eps)


def _conv_batchnorm_pairs(model: nn.Module) -> list[tuple[str, nn.Conv2d, nn.BatchNorm2d]]:
    """Each bias-free conv directly followed (in registration order) by a BatchNorm: what
    eval-mode export folds. Registration order is the forward order in torchvision's ResNets
    (conv1, conv2, then the downsample branch), which the graph order follows."""
    modules = [(n, m) for n, m in model.named_modules() if isinstance(m, (nn.Conv2d, nn.BatchNorm2d))]
    return [
        (name, m, nxt)
        for (name, m), (_, nxt) in zip(modules, modules[1:])
        if isinstance(m, nn.Conv2d) and m.bias is None and isinstance(nxt, nn.BatchNorm2d)
    ]


def verify_against_onnx(path: Path, graph: nn.Module, input_size: int, atol: float = 1e-3) -> None:
    """Run the rebuilt inference graph and the ONNX file on the same random frames; raise when
    any output differs by more than atol (a rebuild that silently computed something else
    would be worse than a refusal). Skipped when ONNX Runtime is not installed."""
    try:
        import onnxruntime as ort
    except ImportError:
        return
    x = np.random.default_rng(0).random((1, 3, input_size, input_size), dtype=np.float32)
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    want = session.run(None, {session.get_inputs()[0].name: x})
    with torch.inference_mode():
        got = graph.cpu()(torch.from_numpy(x))
    for name, a, b in zip(graph.output_names, want, got):
        err = float(np.abs(a - b.float().numpy()).max())
        if not err <= atol:
            raise OnnxImportError(
                f"{path}: rebuilt as a torch model, its '{name}' output differs from the ONNX file by {err:.2g}; "
                f"use the .safetensors checkpoint for the torch backend"
            )
