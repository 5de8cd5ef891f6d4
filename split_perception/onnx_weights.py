"""Weight storage of exported ONNX files (torch-free): float16 on disk, float32 in the graph.

`store_weights_as_fp16` halves a file for shipping; `restore_fp32_weights` undoes it before a
TensorRT build, so the parser sees plain float32 initializers (which it requires for
convolution weights) and the engine's precision is chosen by the builder flags alone.
"""
from __future__ import annotations

FP16_SUFFIX = "__fp16"


def store_weights_as_fp16(proto, min_elements: int = 1024) -> None:
    """Halve the file: large float32 initializers stored as float16, each behind a Cast to float32.

    Computation stays float32 (ONNX Runtime folds the casts when it loads the session), so
    outputs equal a torch model holding the same fp16-rounded weights. Small tensors stay
    float32.
    """
    import numpy as np
    from onnx import TensorProto, helper, numpy_helper

    casts = []
    for init in proto.graph.initializer:
        if init.data_type != TensorProto.FLOAT or int(np.prod(init.dims)) < min_elements:
            continue
        half = numpy_helper.to_array(init).astype(np.float16)
        name = init.name
        init.CopyFrom(numpy_helper.from_array(half, name + FP16_SUFFIX))
        casts.append(helper.make_node("Cast", [name + FP16_SUFFIX], [name], to=TensorProto.FLOAT, name=f"{name}__cast"))
    for i, node in enumerate(casts):
        proto.graph.node.insert(i, node)


def restore_fp32_weights(proto) -> bool:
    """Turn float16-stored initializers back into float32 ones; True if anything changed."""
    import numpy as np
    from onnx import numpy_helper

    inits = {i.name: i for i in proto.graph.initializer}
    casts = [n for n in proto.graph.node if n.op_type == "Cast" and n.input[0].endswith(FP16_SUFFIX) and n.input[0] in inits]
    for node in casts:
        init = inits[node.input[0]]
        init.CopyFrom(numpy_helper.from_array(numpy_helper.to_array(init).astype(np.float32), node.output[0]))
        proto.graph.node.remove(node)
    return bool(casts)
