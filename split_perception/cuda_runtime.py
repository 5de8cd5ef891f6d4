"""cuda-python's runtime API, found under whichever module name the installed version uses.

Its own module because both the engine builder (tensorrt_engine) and the INT8 calibrator
(tensorrt_calibration), which the builder loads, need device memory: neither imports the other
for it. Nothing here imports torch or TensorRT.
"""
from __future__ import annotations


def cuda_runtime():
    """cuda-python's runtime API module (device memory, copies, streams), or None."""
    try:
        from cuda.bindings import runtime as cudart  # cuda-python >= 12.6
    except ImportError:
        try:
            from cuda import cudart  # older cuda-python
        except ImportError:
            return None
    return cudart
