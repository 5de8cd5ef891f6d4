"""TensorRT engines: `split-perception build-engine model.onnx` and the engine cache.

An engine is only valid for the TensorRT version and the GPU (compute capability) that built
it; loading it anywhere else fails with "version tag does not match" at best and silently
wrong results at worst. So engines live in a cache under a key of
    ONNX sha256 + TensorRT version + GPU name + compute capability + precision
and carry a JSON sidecar with the same fields plus the ONNX file's own metadata, which the
runner checks before it deserialises anything. A JetPack upgrade or a new GPU therefore
misses the cache and builds a fresh engine instead of loading a stale one.

Needs `tensorrt` (and `cuda-python` for device memory); nothing here imports torch.
"""
from __future__ import annotations

import json
import logging
import os
import re
import subprocess
from dataclasses import asdict, dataclass
from pathlib import Path

from .atomic_io import atomic_write_bytes, file_sha256
from .cuda_runtime import cuda_runtime

log = logging.getLogger("split_perception")

PRECISIONS = ("fp32", "fp16", "int8")
DEFAULT_CACHE = Path(os.environ.get("SPLIT_PERCEPTION_ENGINE_CACHE", Path.home() / ".cache" / "split_perception" / "engines"))


class EngineError(RuntimeError):
    """An engine that cannot be built or used; the message names the file and the problem."""


@dataclass(frozen=True)
class EngineKey:
    onnx_sha256: str
    tensorrt_version: str
    gpu_name: str
    compute_capability: str
    precision: str

    def filename(self, stem: str) -> str:
        gpu = re.sub(r"[^A-Za-z0-9]+", "-", self.gpu_name).strip("-").lower()
        return f"{stem}.{self.onnx_sha256[:12]}.trt{self.tensorrt_version}.{gpu}.sm{self.compute_capability.replace('.', '')}.{self.precision}.engine"


def gpu_identity(device: int = 0) -> tuple[str, str]:
    """(name, compute capability 'major.minor') of a CUDA device, without torch."""
    cudart = cuda_runtime()
    if cudart is not None:
        err, props = cudart.cudaGetDeviceProperties(device)
        if int(err) == 0:
            name = props.name.decode() if isinstance(props.name, bytes) else str(props.name)
            return name.strip("\x00 "), f"{props.major}.{props.minor}"
    try:
        out = subprocess.run(["nvidia-smi", "--query-gpu=name,compute_cap", "--format=csv,noheader", f"--id={device}"],
                             capture_output=True, text=True, timeout=10, check=True).stdout.strip()
        name, cc = (s.strip() for s in out.split(","))
        return name, cc
    except (OSError, subprocess.SubprocessError, ValueError):
        raise EngineError("no CUDA GPU found (neither cuda-python nor nvidia-smi could describe device 0)") from None


def current_key(onnx_path: Path, precision: str) -> EngineKey:
    import tensorrt as trt

    name, cc = gpu_identity()
    return EngineKey(file_sha256(onnx_path), trt.__version__, name, cc, precision)


def onnx_metadata(onnx_path: Path) -> dict:
    import onnx

    model = onnx.load(str(onnx_path), load_external_data=False)
    return {p.key: p.value for p in model.metadata_props}


def cached_engine(onnx_path: Path, precision: str = "fp16", cache_dir: Path = DEFAULT_CACHE, **build_options) -> Path:
    """The engine for this ONNX file on this GPU and TensorRT, built on a cache miss."""
    onnx_path = Path(onnx_path)
    key = current_key(onnx_path, precision)
    engine = Path(cache_dir) / key.filename(onnx_path.stem)
    if engine.is_file() and engine.with_suffix(".json").is_file():
        log.info("tensorrt: cached engine %s", engine)
        return engine
    return build_engine(onnx_path, engine, precision=precision, key=key, **build_options)


def build_engine(
    onnx_path: Path,
    out: Path,
    precision: str = "fp16",
    workspace_mb: int = 1024,
    calibration_folder: Path | None = None,
    timing_cache: Path | None = None,
    max_batch: int = 8,
    key: EngineKey | None = None,
) -> Path:
    """Parse the ONNX file, build a serialized engine and write it (and its sidecar) atomically."""
    import tensorrt as trt

    if precision not in PRECISIONS:
        raise ValueError(f"precision must be one of {PRECISIONS}, got {precision!r}")
    if precision == "int8" and calibration_folder is None:
        raise ValueError("int8 needs calibration images: pass a dataset folder")
    onnx_path, out = Path(onnx_path), Path(out)
    key = key or current_key(onnx_path, precision)
    logger = trt.Logger(trt.Logger.WARNING)
    builder = trt.Builder(logger)
    flags = 0
    if int(trt.__version__.split(".")[0]) < 10:  # explicit batch is implicit (and the flag deprecated) in 10
        flags = 1 << int(trt.NetworkDefinitionCreationFlag.EXPLICIT_BATCH)
    network = builder.create_network(flags)
    parser = trt.OnnxParser(network, logger)
    if not parser.parse(_parser_bytes(onnx_path)):
        errors = "; ".join(str(parser.get_error(i)) for i in range(parser.num_errors))
        raise EngineError(f"{onnx_path}: TensorRT {trt.__version__} cannot parse it: {errors}")
    config = builder.create_builder_config()
    config.set_memory_pool_limit(trt.MemoryPoolType.WORKSPACE, workspace_mb << 20)
    inp = network.get_input(0)
    if inp.shape[0] == -1:  # dynamic batch export: one profile, tuned for batch 1
        profile = builder.create_optimization_profile()
        rest = tuple(inp.shape)[1:]
        profile.set_shape(inp.name, (1, *rest), (1, *rest), (max_batch, *rest))
        config.add_optimization_profile(profile)
    if precision in ("fp16", "int8"):
        config.set_flag(trt.BuilderFlag.FP16)
    if precision == "int8":
        from .tensorrt_calibration import FolderCalibrator

        config.set_flag(trt.BuilderFlag.INT8)
        config.int8_calibrator = FolderCalibrator(Path(calibration_folder), tuple(inp.shape)[1:], out.with_suffix(".calib"))
    cache = config.create_timing_cache(timing_cache.read_bytes() if timing_cache and timing_cache.is_file() else b"")
    config.set_timing_cache(cache, ignore_mismatch=False)
    serialized = builder.build_serialized_network(network, config)
    if serialized is None:
        raise EngineError(f"{onnx_path}: TensorRT {trt.__version__} failed to build an engine (see the log above)")
    atomic_write_bytes(out, bytes(serialized))
    sidecar = {**asdict(key), "onnx": str(onnx_path), "metadata": onnx_metadata(onnx_path), "workspace_mb": workspace_mb}
    atomic_write_bytes(out.with_suffix(".json"), json.dumps(sidecar, indent=2).encode())
    if timing_cache:
        atomic_write_bytes(Path(timing_cache), bytes(config.get_timing_cache().serialize()))
    log.info("tensorrt: built %s", out)
    return out


def _parser_bytes(onnx_path: Path) -> bytes:
    """The ONNX file as the parser should see it: float16-stored weights back to float32."""
    import onnx

    from .onnx_weights import restore_fp32_weights

    proto = onnx.load(str(onnx_path))
    return proto.SerializeToString() if restore_fp32_weights(proto) else onnx_path.read_bytes()


def check_engine_matches(engine: Path) -> dict:
    """Read an engine's sidecar and refuse it unless this TensorRT and GPU built it."""
    import tensorrt as trt

    engine = Path(engine)
    side = engine.with_suffix(".json")
    if not engine.is_file():
        raise EngineError(f"engine not found: {engine}")
    if not side.is_file():
        raise EngineError(f"{engine}: no {side.name} beside it (build engines with split-perception build-engine)")
    try:
        info = json.loads(side.read_text())
    except (OSError, json.JSONDecodeError) as e:
        raise EngineError(f"{side}: unreadable ({e})") from None
    name, cc = gpu_identity()
    if info.get("tensorrt_version") != trt.__version__:
        raise EngineError(f"{engine}: built with TensorRT {info.get('tensorrt_version')}, this is {trt.__version__}: rebuild it")
    if (info.get("gpu_name"), info.get("compute_capability")) != (name, cc):
        raise EngineError(f"{engine}: built for {info.get('gpu_name')} (sm {info.get('compute_capability')}), this is {name} (sm {cc}): rebuild it")
    return info
