"""Static check that an ONNX graph is one TensorRT's ONNX parser can build, run without TensorRT.

TensorRT cannot be installed on the development machine, so this is what stands between an
export and a failed `build-engine` on the robot. It checks, against the operator tables that
onnx-tensorrt publishes (docs/operators.md):

* every node's op type is supported by the parser of each target version;
* every tensor's element type is one TensorRT takes (INT64 and DOUBLE are accepted with a
  note: the 8.x parser casts them down to INT32 / FLOAT);
* the restrictions our graphs could plausibly hit: convolution weights and the `axes` of
  Slice/Squeeze/Unsqueeze/Reduce* must be build-time constants, Resize modes, GridSample on
  4-D input, 2-D pooling, the opset range;
* static shapes: the input must be fully static, or static apart from a symbolic batch axis
  (which then needs an optimisation profile, as `build-engine` makes).

Targets: "8.6" (JetPack 5) and "10" (JetPack 6, current desktop). For 8.6 the table is the
conservative one: the ops of onnx-tensorrt's 8.4 table plus GridSample (added in 8.5), so a
graph that passes builds on 8.6 and later.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

# onnx-tensorrt 8.4 docs/operators.md, rows marked "Y" (a subset of what 8.6 parses)
_TRT84 = frozenset("""
Abs Acos Acosh Add And ArgMax ArgMin Asin Asinh Atan Atanh AveragePool BatchNormalization Cast Ceil
Celu Clip Concat Constant ConstantOfShape Conv ConvTranspose Cos Cosh CumSum DepthToSpace
DequantizeLinear Div Dropout Einsum Elu Equal Erf Exp Expand EyeLike Flatten Floor Gather
GatherElements GatherND Gemm GlobalAveragePool GlobalLpPool GlobalMaxPool Greater GreaterOrEqual GRU
HardSigmoid Identity If ImageScaler InstanceNormalization IsNaN LeakyRelu Less LessOrEqual Log
LogSoftmax Loop LRN LSTM LpNormalization LpPool MatMul Max MaxPool Mean Min Mul Neg
NonMaxSuppression Not Or Pad ParametricSoftplus Pow PRelu QuantizeLinear RandomUniform
RandomUniformLike Range ReduceL1 ReduceL2 ReduceLogSum ReduceLogSumExp ReduceMax ReduceMean ReduceMin
ReduceProd ReduceSum ReduceSumSquare Relu Reshape Resize ReverseSequence RNN Round ScaledTanh Scan
Scatter ScatterElements ScatterND Selu Shape Sigmoid Sign Sin Sinh Size Slice Softmax Softplus
Softsign SpaceToDepth Split Sqrt Squeeze Sub Sum Tan Tanh ThresholdedRelu Tile TopK Transpose
Unsqueeze Upsample Where Xor
""".split())

# what 10.x adds over that (onnx-tensorrt 10.x docs/operators.md, rows marked "Y")
_TRT10_EXTRA = frozenset("""
Attention BlackmanWindow CastLike DeformConv Gelu GridSample GroupNormalization HammingWindow
HannWindow HardSwish Hardmax IsInf LayerNormalization MeanVarianceNormalization Mish Mod NonZero
OneHot RandomNormal RandomNormalLike Reciprocal RMSNormalization RoiAlign RotaryEmbedding Shrink
STFT
""".split())

SUPPORTED_OPS = {
    "8.6": _TRT84 | {"GridSample"},
    "10": _TRT84 | _TRT10_EXTRA,
}
OPSET_RANGE = {"8.6": (7, 17), "10": (9, 24)}

# ONNX TensorProto element types
_FLOAT, _UINT8, _INT8, _INT32, _INT64, _BOOL, _FLOAT16, _DOUBLE, _BFLOAT16 = 1, 2, 3, 6, 7, 9, 10, 11, 16
_TYPE_NAMES = {1: "FLOAT", 2: "UINT8", 3: "INT8", 6: "INT32", 7: "INT64", 9: "BOOL", 10: "FLOAT16", 11: "DOUBLE", 16: "BFLOAT16"}
SUPPORTED_TYPES = {
    "8.6": {_FLOAT, _FLOAT16, _INT8, _INT32, _BOOL},
    "10": {_FLOAT, _FLOAT16, _BFLOAT16, _INT8, _INT32, _INT64, _BOOL, _UINT8},
}
CAST_DOWN = {"8.6": {_INT64: "INT32", _DOUBLE: "FLOAT"}, "10": {_DOUBLE: "FLOAT"}}

# inputs (by position) that TensorRT needs as build-time constants
_CONSTANT_INPUTS = {
    "Conv": {1: "weights"}, "ConvTranspose": {1: "weights"},
    "Slice": {3: "axes"}, "Squeeze": {1: "axes"}, "Unsqueeze": {1: "axes"},
    **{op: {1: "axes"} for op in ("ReduceL1", "ReduceL2", "ReduceLogSum", "ReduceLogSumExp", "ReduceMax",
                                   "ReduceMean", "ReduceMin", "ReduceProd", "ReduceSum", "ReduceSumSquare")},
}
_RESIZE_COORDS = {"half_pixel", "pytorch_half_pixel", "tf_half_pixel_for_nn", "asymmetric", "align_corners"}


@dataclass
class CompatReport:
    path: str
    target: str
    errors: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    op_counts: dict[str, int] = field(default_factory=dict)

    @property
    def ok(self) -> bool:
        return not self.errors

    def summary(self) -> str:
        head = f"{self.path}: TensorRT {self.target}: {'OK' if self.ok else 'NOT BUILDABLE'} ({sum(self.op_counts.values())} nodes, {len(self.op_counts)} op types)"
        return "\n".join([head, *(f"  error: {e}" for e in self.errors), *(f"  note: {n}" for n in self.notes)])


def check_tensorrt_compat(path: str | Path, target: str = "10", dynamic_batch_ok: bool = True) -> CompatReport:
    import onnx
    from onnx import shape_inference

    if target not in SUPPORTED_OPS:
        raise ValueError(f"unknown TensorRT target '{target}' (choose from {', '.join(SUPPORTED_OPS)})")
    from .onnx_weights import restore_fp32_weights

    model = onnx.load(str(path))
    report = CompatReport(str(path), target)
    if restore_fp32_weights(model):  # what build-engine hands the parser
        report.notes.append("float16-stored weights are restored to float32 initializers before parsing")
    _check_opset(model, target, report)
    model = shape_inference.infer_shapes(model, strict_mode=False)
    graph = model.graph
    constants = {t.name for t in graph.initializer} | {o for n in graph.node if n.op_type == "Constant" for o in n.output}
    for node in graph.node:
        report.op_counts[node.op_type] = report.op_counts.get(node.op_type, 0) + 1
        where = f"{node.op_type} '{node.name or node.output[0]}'"
        if node.domain not in ("", "ai.onnx"):
            report.errors.append(f"{where}: custom domain '{node.domain}' needs a plugin")
            continue
        if node.op_type not in SUPPORTED_OPS[target]:
            report.errors.append(f"{where}: operator not supported by the TensorRT {target} ONNX parser")
            continue
        for pos, what in _CONSTANT_INPUTS.get(node.op_type, {}).items():
            if len(node.input) > pos and node.input[pos] and node.input[pos] not in constants:
                report.errors.append(f"{where}: {what} must be a build-time constant")
        _check_node_attributes(node, where, report, _rank_lookup(graph))
    _check_types(graph, target, report)
    _check_static_input(graph, dynamic_batch_ok, report)
    return report


def _check_opset(model, target: str, report: CompatReport) -> None:
    lo, hi = OPSET_RANGE[target]
    for imp in model.opset_import:
        if imp.domain in ("", "ai.onnx") and not lo <= imp.version <= hi:
            report.errors.append(f"opset {imp.version} is outside TensorRT {target}'s range {lo}-{hi}")


def _rank_lookup(graph):
    ranks = {}
    for vi in list(graph.input) + list(graph.value_info) + list(graph.output):
        if vi.type.HasField("tensor_type") and vi.type.tensor_type.HasField("shape"):
            ranks[vi.name] = len(vi.type.tensor_type.shape.dim)
    return ranks


def _attr(node, name, default=None):
    from onnx import helper

    for a in node.attribute:
        if a.name == name:
            v = helper.get_attribute_value(a)
            return v.decode() if isinstance(v, bytes) else v
    return default


def _check_node_attributes(node, where: str, report: CompatReport, ranks: dict) -> None:
    op = node.op_type
    if op == "Resize":
        mode, coords = _attr(node, "mode", "nearest"), _attr(node, "coordinate_transformation_mode", "half_pixel")
        if mode not in ("nearest", "linear"):
            report.errors.append(f"{where}: Resize mode '{mode}' (TensorRT: nearest, linear)")
        if coords not in _RESIZE_COORDS:
            report.errors.append(f"{where}: Resize coordinate_transformation_mode '{coords}'")
        if _attr(node, "antialias", 0):
            report.errors.append(f"{where}: antialiased Resize")
    elif op == "GridSample":
        if ranks.get(node.input[0], 4) != 4:
            report.errors.append(f"{where}: GridSample needs 4-D input")
        if _attr(node, "mode", "bilinear") not in ("bilinear", "nearest", "linear", "bicubic", "cubic"):
            report.errors.append(f"{where}: GridSample mode '{_attr(node, 'mode')}'")
    elif op in ("MaxPool", "AveragePool", "Conv", "ConvTranspose"):
        rank = ranks.get(node.input[0])
        if rank is not None and rank not in (4, 5):
            report.errors.append(f"{where}: only 2-D and 3-D {op} (input rank {rank})")
        if op in ("MaxPool", "AveragePool") and len(node.output) > 1 and node.output[1]:
            report.errors.append(f"{where}: the Indices output of MaxPool is unsupported")


def _check_types(graph, target: str, report: CompatReport) -> None:
    seen: dict[int, str] = {}
    for t in graph.initializer:
        seen.setdefault(t.data_type, t.name)
    for vi in list(graph.input) + list(graph.value_info) + list(graph.output):
        if vi.type.HasField("tensor_type"):
            seen.setdefault(vi.type.tensor_type.elem_type, vi.name)
    for dtype, example in sorted(seen.items()):
        if dtype in SUPPORTED_TYPES[target]:
            continue
        name = _TYPE_NAMES.get(dtype, f"type {dtype}")
        if dtype in CAST_DOWN[target]:
            report.notes.append(f"{name} tensors (e.g. '{example}') are cast down to {CAST_DOWN[target][dtype]} by the parser")
        else:
            report.errors.append(f"{name} tensors (e.g. '{example}') are not supported")


def _check_static_input(graph, dynamic_batch_ok: bool, report: CompatReport) -> None:
    initializers = {t.name for t in graph.initializer}
    for inp in graph.input:
        if inp.name in initializers:
            continue
        dims = inp.type.tensor_type.shape.dim
        symbolic = [i for i, d in enumerate(dims) if not d.HasField("dim_value")]
        if not symbolic:
            continue
        if symbolic == [0] and dynamic_batch_ok:
            report.notes.append(f"input '{inp.name}' has a dynamic batch axis: the engine needs an optimisation profile")
        else:
            report.errors.append(f"input '{inp.name}' has symbolic axes {symbolic}: TensorRT needs static shapes or a profile per axis")
