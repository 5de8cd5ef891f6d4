"""The public slot-segmentation API, MONet ONNX export parity and clear errors for bad files."""
import json

import cv2
import numpy as np
import onnx
import pytest

from split_perception import load_detector, load_segmenter
from split_perception.backends import ModelLoadError
from split_perception.training import scenes


def test_onnx_matches_torch_on_every_output(tiny_segmenter_files):
    weights, onnx_path = tiny_segmenter_files
    ort, pt = load_segmenter(onnx_path), load_segmenter(weights, backend="torch")
    assert ort.backend == "onnxruntime" and pt.backend == "torch"
    rng = np.random.default_rng(0)
    for _ in range(3):
        x = rng.random((1, 3, 32, 32), dtype=np.float32)
        a, b = ort.runner.run(x), pt.runner.run(x)
        assert set(a) == set(b) == {"masks", "latents"}
        for k in a:
            np.testing.assert_allclose(a[k], b[k], atol=1e-4, err_msg=k)


def test_recurrent_unet_monet_exports_with_parity_at_another_size(tmp_path):
    """The MONet baseline (recurrent U-Net attention) at 48 px: ONNX Runtime equals torch."""
    import torch

    from split_perception.export import export_onnx
    from split_perception.models import checkpoint as ckpt
    from split_perception.models.monet import MODEL_TYPE, Monet, MonetConfig

    torch.manual_seed(0)
    cfg = MonetConfig(image_size=48, slots=3, attention="unet", unet_channels=(8, 8, 8))
    weights = tmp_path / "unet.safetensors"
    ckpt.save_checkpoint(weights, Monet(cfg), MODEL_TYPE, cfg)
    onnx_path = export_onnx(weights, tmp_path / "unet.onnx")
    x = np.random.default_rng(3).random((1, 3, 48, 48), dtype=np.float32)
    a, b = load_segmenter(onnx_path).runner.run(x), load_segmenter(weights, backend="torch").runner.run(x)
    for k in a:
        np.testing.assert_allclose(a[k], b[k], atol=1e-4, err_msg=k)
    np.testing.assert_allclose(a["masks"].sum(1), 1.0, atol=1e-5)


def test_onnx_file_describes_itself(tiny_segmenter_files):
    model = onnx.load(str(tiny_segmenter_files[1]))
    onnx.checker.check_model(model)
    meta = {p.key: p.value for p in model.metadata_props}
    assert meta["model_type"] == "monet" and json.loads(meta["input_size"]) == 32
    assert json.loads(meta["output_shapes"]) == {"masks": [1, 4, 32, 32], "latents": [1, 4, 16]}


@pytest.mark.parametrize("shape", [(32, 32), (17, 203), (480, 640), (1, 1)])
def test_any_input_size_gives_masks_at_input_resolution(tiny_segmenter_files, shape):
    seg = load_segmenter(tiny_segmenter_files[1])
    img = np.random.default_rng(1).integers(0, 256, shape + (3,), dtype=np.uint8)
    out = seg(img)
    assert out.masks.shape == (4,) + shape and out.labels.shape == shape and out.latents.shape == (4, 16)
    np.testing.assert_allclose(out.masks.sum(0), 1.0, atol=1e-5)
    assert out.segments.shape == shape and out.segments.max() + 1 == len(out.segment_slots)
    np.testing.assert_array_equal(out.labels, out.masks.argmax(0))

    def model_labels(seg):  # segments are made at model resolution and resized with nearest neighbours
        return cv2.resize(seg.model_masks.argmax(0).astype(np.uint8), shape[::-1], interpolation=cv2.INTER_NEAREST_EXACT)

    # segments follow the labels, whose edges were refined at input resolution: a pixel's segment has its
    # slot but where two slots' regions were joined into one segment (measured 0.98 at 640 x 480, else 1.0)
    assert (out.segment_slots[out.segments] == out.labels).mean() >= 0.95
    plain = load_segmenter(tiny_segmenter_files[1], refine_edges=False, split_touching=False)(img)
    assert (plain.segment_slots[plain.segments] == model_labels(plain)).all()  # unjoined: one slot per segment


def test_segments_split_a_slot_into_its_separate_regions():
    from split_perception.segmenter import connected_segments

    labels = np.zeros((8, 10), np.uint8)  # slot 0: background
    labels[1:3, 1:3] = 2  # two separate squares in slot 2 ...
    labels[5:7, 6:9] = 2
    labels[4, 0:3] = 1  # ... and one bar in slot 1
    labels[0, 9] = 2  # diagonal neighbour of nothing; 4-connected parts only
    segments, slots = connected_segments(labels)
    assert sorted(slots.tolist()) == [0, 1, 2, 2, 2]
    assert (slots[segments] == labels).all()  # every segment lies inside one slot
    assert len(np.unique(segments)) == len(slots) == segments.max() + 1
    assert segments[1, 1] != segments[5, 6] and segments[1, 1] == segments[2, 2]


def test_backends_agree_after_post_processing(tiny_segmenter_files):
    weights, onnx_path = tiny_segmenter_files
    img = scenes.generate(scenes.RoomConfig(), 0, 3).image  # 64 px into a 32 px model
    a = load_segmenter(onnx_path)(img)
    b = load_segmenter(weights, backend="torch")(img)
    np.testing.assert_allclose(a.masks, b.masks, atol=1e-4)
    # labels may differ only where two slots tie to within float noise
    differ = a.labels != b.labels
    top2 = np.sort(b.masks, axis=0)[-2:]
    assert (np.abs(top2[1] - top2[0])[differ] < 1e-4).all()


def test_models_are_not_confused(tiny_segmenter_files, tiny_detector_files):
    with pytest.raises(ValueError, match="not a slot segmenter"):
        load_segmenter(tiny_detector_files[1])
    with pytest.raises(ValueError, match="not a detector"):
        load_detector(tiny_segmenter_files[1])


def test_bad_files_fail_with_the_file_named(tmp_path, tiny_segmenter_files):
    missing = tmp_path / "nope.onnx"
    with pytest.raises(ModelLoadError, match="nope.onnx"):
        load_segmenter(missing)
    truncated = tmp_path / "cut.onnx"
    truncated.write_bytes(tiny_segmenter_files[1].read_bytes()[:5000])
    with pytest.raises(ModelLoadError, match="cut.onnx"):
        load_segmenter(truncated)
    damaged = tmp_path / "cut.safetensors"
    damaged.write_bytes(tiny_segmenter_files[0].read_bytes()[:3000])
    with pytest.raises(ModelLoadError, match="cut.safetensors"):
        load_segmenter(damaged, backend="torch")


def test_fp16_weight_storage_halves_the_file_and_keeps_parity(tmp_path, tiny_segmenter_files):
    """Shipping format: fp16 on disk; ONNX Runtime equals torch holding the same rounded weights."""
    from split_perception.export import export_onnx
    from split_perception.models import checkpoint as ckpt
    from split_perception.tensorrt_compat import check_tensorrt_compat

    model, cfg, kind = ckpt.load_checkpoint(tiny_segmenter_files[0])
    for p in model.parameters():
        p.data = p.data.half().float()
    rounded = tmp_path / "rounded.safetensors"
    ckpt.save_checkpoint(rounded, model, kind, cfg)
    small = export_onnx(rounded, tmp_path / "small.onnx", fp16_weights=True)
    assert small.stat().st_size < 0.6 * tiny_segmenter_files[1].stat().st_size
    x = np.random.default_rng(2).random((1, 3, 32, 32), dtype=np.float32)
    a, b = load_segmenter(small).runner.run(x), load_segmenter(rounded, backend="torch").runner.run(x)
    for k in a:
        np.testing.assert_allclose(a[k], b[k], atol=1e-4, err_msg=k)
    report = check_tensorrt_compat(small, "8.6")
    assert report.ok and any("float16-stored" in n for n in report.notes)


def test_onnxruntime_path_never_imports_torch(tiny_detector_files, tiny_segmenter_files):
    """What a Jetson runs: both APIs on ONNX files in a fresh process, torch never imported."""
    import subprocess
    import sys

    code = (
        "import sys, numpy as np\n"
        "from split_perception import load_detector, load_segmenter\n"
        f"d = load_detector({str(tiny_detector_files[1])!r}); s = load_segmenter({str(tiny_segmenter_files[1])!r})\n"
        "img = np.zeros((120, 160, 3), np.uint8)\n"
        "d(img); s(img)\n"
        "assert d.backend == s.backend == 'onnxruntime'\n"
        "print('torch' in sys.modules)\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "False"


def _monet_with_trained_batchnorm(tmp_path):
    """A tiny ResNet18 MONet whose BatchNorms are not the identity (as after training), so
    export really folds them and a wrongly matched conv would change the outputs."""
    import torch
    from torch import nn

    from split_perception.models import checkpoint as ckpt
    from split_perception.models.monet import MODEL_TYPE, Monet, MonetConfig

    from conftest import TINY_MONET

    torch.manual_seed(1)
    cfg = MonetConfig(**TINY_MONET)
    model = Monet(cfg)
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, nn.BatchNorm2d):
                m.weight.uniform_(0.5, 1.5)
                m.bias.normal_(0.0, 0.3)
                m.running_mean.normal_(0.0, 0.3)
                m.running_var.uniform_(0.5, 2.0)
    weights = tmp_path / "bn.safetensors"
    ckpt.save_checkpoint(weights, model, MODEL_TYPE, cfg)
    return weights


@pytest.mark.parametrize("fp16_weights", [False, True])
def test_torch_backend_runs_an_onnx_export(tmp_path, fp16_weights):
    from split_perception.export import export_onnx

    weights = _monet_with_trained_batchnorm(tmp_path)
    onnx_path = export_onnx(weights, tmp_path / "bn.onnx", fp16_weights=fp16_weights)
    rebuilt = load_segmenter(onnx_path, backend="torch")
    assert rebuilt.backend == "torch"
    # against the checkpoint it came from (fp16 storage rounds the weights: looser) and the file itself
    reference = load_segmenter(weights, backend="torch") if not fp16_weights else load_segmenter(onnx_path)
    x = np.random.default_rng(5).random((1, 3, 32, 32), dtype=np.float32)
    a, b = rebuilt.runner.run(x), reference.runner.run(x)
    for k in a:
        np.testing.assert_allclose(a[k], b[k], atol=1e-4, err_msg=k)


def test_torch_backend_runs_an_untrained_export(tiny_segmenter_files):
    # untrained BatchNorms fold to equal zero biases, which the exporter stores once behind Identity nodes
    x = np.random.default_rng(8).random((1, 3, 32, 32), dtype=np.float32)
    a = load_segmenter(tiny_segmenter_files[1], backend="torch").runner.run(x)
    b = load_segmenter(tiny_segmenter_files[1]).runner.run(x)
    for k in a:
        np.testing.assert_allclose(a[k], b[k], atol=1e-4, err_msg=k)


@pytest.mark.parametrize("attention", ["unet", "resnet50"])
def test_torch_backend_runs_the_other_monet_exports(tmp_path, attention):
    """MONet's recurrent U-Net and MONet-RN50* (bottleneck blocks, their own downsample convs)."""
    import torch

    from split_perception.export import export_onnx
    from split_perception.models import checkpoint as ckpt
    from split_perception.models.monet import MODEL_TYPE, Monet, MonetConfig

    torch.manual_seed(0)
    cfg = MonetConfig(image_size=32, slots=3, attention=attention, unet_channels=(8, 8, 8))
    weights = tmp_path / f"{attention}.safetensors"
    ckpt.save_checkpoint(weights, Monet(cfg), MODEL_TYPE, cfg)
    onnx_path = export_onnx(weights, tmp_path / f"{attention}.onnx")
    x = np.random.default_rng(9).random((1, 3, 32, 32), dtype=np.float32)
    a, b = load_segmenter(onnx_path, backend="torch").runner.run(x), load_segmenter(onnx_path).runner.run(x)
    for k in a:
        np.testing.assert_allclose(a[k], b[k], atol=1e-4, err_msg=k)


def test_torch_backend_refuses_an_onnx_file_it_cannot_rebuild(tiny_detector_files, tmp_path):
    # the detector's export folds its GroupNorms and transposes its matrices: refused, not guessed
    with pytest.raises(ValueError, match="differs from the ONNX file"):
        load_detector(tiny_detector_files[1], backend="torch")
    truncated = tmp_path / "cut.onnx"
    truncated.write_bytes(tiny_detector_files[1].read_bytes()[:5000])
    with pytest.raises(ModelLoadError, match="cut.onnx"):
        load_detector(truncated, backend="torch")


def test_shipped_segmenter_runs_on_the_torch_backend():
    """The segmenter ships as ONNX only; backend="torch" with no path rebuilds it from the export."""
    from split_perception.preprocessing import WEIGHTS_DIR

    pt, ort = load_segmenter(backend="torch"), load_segmenter(backend="onnxruntime")
    assert pt.backend == "torch" and pt.runner.source.parent == WEIGHTS_DIR
    img = cv2.resize(scenes.generate(scenes.room_kind_config("room_rich", 64), 0, 0).image, (640, 480))
    x = np.random.default_rng(6).random((1, 3, 64, 64), dtype=np.float32)
    a, b = pt.runner.run(x), ort.runner.run(x)
    for k in a:
        np.testing.assert_allclose(a[k], b[k], atol=1e-4, err_msg=k)
    assert (pt(img).labels == ort(img).labels).mean() > 0.999
