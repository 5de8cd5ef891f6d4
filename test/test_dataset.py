"""Dataset folders: the generate command, reading back, unlabelled folders, bad files."""
import json
import subprocess
import sys

import numpy as np
import pytest

from split_perception.training import dataset, scenes


def test_generate_command_writes_a_readable_folder(tmp_path):
    out = tmp_path / "ds"
    r = subprocess.run(
        [sys.executable, "-m", "split_perception.cli", "dataset", "generate", str(out), "--count", "12",
         "--background", "checkerboard", "--seed", "5"],
        capture_output=True, text=True,
    )
    assert r.returncode == 0, r.stderr
    meta = json.loads((out / "dataset.json").read_text())
    assert meta["count"] == 12 and meta["generator"]["background"] == "checkerboard"
    folder = dataset.DatasetFolder(out)
    assert len(folder) == 12 and folder.labelled
    cfg = dataset.scene_config_from_dict(meta["generator"])
    for i in (0, 11):
        s = scenes.generate(cfg, 5, i)
        np.testing.assert_array_equal(folder.image(i), s.image)  # PNG is lossless
        t = folder.target(i)
        assert t["count"] == s.count
        np.testing.assert_allclose(t["boxes"], s.boxes, atol=1e-3)
        np.testing.assert_array_equal(t["labels"], s.labels)


def test_generate_command_sets_object_size_and_shading(tmp_path):
    """--sprite-size / --sprite-size-jitter / --object-shading: e.g. a world of objects seen from farther away
    (benchmarks/finetune_proof.py); the scenes are those of the config recorded in dataset.json."""
    out = tmp_path / "far"
    r = subprocess.run([sys.executable, "-m", "split_perception.cli", "dataset", "generate", str(out), "--count", "4",
                        "--sprite-size", "8", "--sprite-size-jitter", "1", "--object-shading", "0.5"],
                       capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    cfg = dataset.scene_config_from_dict(json.loads((out / "dataset.json").read_text())["generator"])
    assert (cfg.sprite_size, cfg.sprite_size_jitter, cfg.object_shading) == (8, 1, 0.5)
    folder = dataset.DatasetFolder(out)
    for i in range(4):
        s = scenes.generate(cfg, 0, i)
        np.testing.assert_array_equal(folder.image(i), s.image)
        sides = s.boxes[:, 2:] - s.boxes[:, :2]
        assert (sides <= 9).all()  # 7-9 px objects
    r = subprocess.run([sys.executable, "-m", "split_perception.cli", "dataset", "generate", str(tmp_path / "bad"),
                        "--sprite-size", "60"], capture_output=True, text=True)
    assert r.returncode == 2 and "does not fit" in r.stderr, r.stderr


def test_unlabelled_image_folder(tmp_path):
    for i in range(3):
        s = scenes.generate(scenes.RoomConfig(), 0, i)
        (tmp_path / "cam").mkdir(exist_ok=True)
        (tmp_path / "cam" / f"frame{i}.png").write_bytes(dataset.encode_png(s.image))
    ds = dataset.FolderImageDataset(tmp_path, size=32)
    assert len(ds) == 3 and not ds.folder.labelled
    img, target = ds[1]
    assert tuple(img.shape) == (3, 32, 32) and target == {}
    assert 0.0 <= float(img.min()) and float(img.max()) <= 1.0


def test_bad_folders_fail_clearly(tmp_path):
    with pytest.raises(FileNotFoundError, match="not found"):
        dataset.DatasetFolder(tmp_path / "missing")
    (tmp_path / "empty").mkdir()
    with pytest.raises(ValueError, match="no images"):
        dataset.DatasetFolder(tmp_path / "empty")
    bad = tmp_path / "bad"
    bad.mkdir()
    (bad / "annotations.jsonl").write_text('{"image": "a.png"}\n{not json\n')
    with pytest.raises(ValueError, match="annotations.jsonl:2"):
        dataset.DatasetFolder(bad)
    (bad / "annotations.jsonl").write_text('{"image": "a.png"}\n')
    (bad / "a.png").write_bytes(b"\x89PNG truncated")
    with pytest.raises(ValueError, match="a.png"):
        dataset.DatasetFolder(bad).image(0)


def test_scene_dataset_items_are_deterministic():
    ds = dataset.SceneDataset(scenes.MultiObjectConfig(), length=10, seed=1)
    a, ta = ds[3]
    b, tb = ds[3]
    assert tuple(a.shape) == (3, 48, 48)
    assert (a == b).all() and ta["count"] == tb["count"]
    with pytest.raises(IndexError):
        ds[10]


def test_atomic_write_leaves_no_temp_files(tmp_path):
    p = tmp_path / "x.bin"
    dataset.atomic_write_bytes(p, b"one")
    dataset.atomic_write_bytes(p, b"two")
    assert p.read_bytes() == b"two"
    assert [f.name for f in tmp_path.iterdir()] == ["x.bin"]
