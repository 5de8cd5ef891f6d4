"""Fine-tuning (`train CONFIG --init CHECKPOINT`) on dataset folders: weights taken from the init
checkpoint (and nothing else), incompatible checkpoints refused by name, several folders mixed with
procedural scenes, a deterministic held-out split validated on (validation.csv)."""
import csv
import json
from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors.torch import load_file

from split_perception import cli
from split_perception.frames.dataset_folder import DatasetWriter
from split_perception.models import checkpoint as ckpt
from split_perception.training import dataset, scenes, trainer

ROOT = Path(__file__).resolve().parents[1]
CONFIG = ROOT / "config" / "train_split_spair.yaml"
SHIPPED = ROOT / "split_perception" / "weights" / "split_spair.safetensors"
SMALL = ["train.batch_size=4", "train.threads=1", "train.log_every=1", "train.data_workers=0", "train.seed=3"]
TINY_MODEL = ["model.image_size=24", "model.hidden=32", "model.z_what=8", "model.z_local=4", "model.z_bg=4",
              "data.image_size=24"]


def write_scenes(root: Path, n: int, background: str, size: int = 48) -> Path:
    """A labelled dataset folder of procedural scenes (as `dataset generate` writes it)."""
    return dataset.write_generated_dataset(root, scenes.MultiObjectConfig(image_size=size, background=background), n, seed=5)


def write_coded(root: Path, n: int, channel: int, size: int = 24) -> Path:
    """Unlabelled frames whose pixels say where they come from: colour `channel` = 10 * (frame + 1)."""
    with DatasetWriter(root) as w:
        for i in range(n):
            img = np.zeros((size, size, 3), np.uint8)
            img[..., channel] = 10 * (i + 1)
            w.add(img)
    return root


def run_config(out: Path, sets: list[str]):
    return trainer.load_run_config(CONFIG, sets, out_dir=str(out))


def rows(path: Path) -> list[dict]:
    with open(path, newline="") as f:
        return list(csv.DictReader(f))


@pytest.fixture(scope="module")
def folders(tmp_path_factory):
    d = tmp_path_factory.mktemp("finetune_data")
    return write_scenes(d / "solid", 20, "solid"), write_scenes(d / "stripes", 10, "stripes")


def test_init_loads_exactly_the_checkpoint_weights_and_nothing_else(tmp_path):
    # drawing every cell instead of the 12 the shipped weights were trained with: a training-only
    # setting that every weight fits, so it is reported, not refused
    run = run_config(tmp_path / "run", SMALL + ["model.train_glimpses=0"])
    model = ckpt.model_registry()[run.model_type][1](run.model)
    info = trainer.load_init_weights(model, run, SHIPPED)
    shipped = load_file(str(SHIPPED))
    own = model.state_dict()
    assert set(own) == set(shipped)
    for k, v in shipped.items():
        assert torch.equal(own[k], v.to(own[k].dtype)), k
    assert info == {"step": json.loads(SHIPPED.with_suffix(".json").read_text())["step"],
                    "differences": ["train_glimpses: 12 in the checkpoint, 0 in the config"]}


def test_init_into_another_glimpse_size_loads_and_names_the_difference(tmp_path):
    run = run_config(tmp_path / "run", SMALL + ["model.glimpse_size=24"])
    model = ckpt.model_registry()[run.model_type][1](run.model)
    info = trainer.load_init_weights(model, run, SHIPPED)
    assert info["differences"] == ["glimpse_size: 16 in the checkpoint, 24 in the config"]
    shipped = load_file(str(SHIPPED))
    own = model.state_dict()
    resized = {k for k in own if own[k].shape != shipped[k].shape}
    assert resized == {"glimpse_encoder.2.0.weight", "glimpse_decoder.fc.0.weight", "glimpse_decoder.fc.0.bias"}
    for k in set(own) - resized:  # every other weight is the checkpoint's
        assert torch.equal(own[k], shipped[k].to(own[k].dtype)), k


def test_finetuning_starts_from_the_init_weights_and_validates_on_held_out_frames(tmp_path, folders):
    sets = SMALL + ["data.kind=folder", f"data.folder=[{folders[0]}, {folders[1]}]", "train.steps=1"]
    tuned, scratch = tmp_path / "tuned", tmp_path / "scratch"
    trainer.train(run_config(tuned, sets), quiet=True, init=SHIPPED)
    trainer.train(run_config(scratch, sets), quiet=True)

    # the held-out frames: 9 and 19 of the first folder, 9 of the second (every 10th)
    val = rows(tuned / "validation.csv")
    assert [int(r["step"]) for r in val] == [0, 1] and all(int(r["images"]) == 3 for r in val)
    for r in val:
        assert np.isfinite([float(r["loss"]), float(r["mse"])]).all() and 0 < float(r["mse"]) < 0.1
        assert 0.0 <= float(r["count_acc"]) <= 1.0  # labelled frames: count accuracy too
    # step 0 is the init checkpoint itself: the same loss as the shipped model on those frames
    model, _, _ = ckpt.load_checkpoint(SHIPPED)
    model.eval()
    x = torch.stack([dataset.to_tensor(dataset.DatasetFolder(f).image(i), 48)
                     for f, i in ((folders[0], 9), (folders[0], 19), (folders[1], 9))])
    with torch.no_grad():
        out = model(x, step=json.loads(SHIPPED.with_suffix(".json").read_text())["step"])
    assert float(val[0]["loss"]) == pytest.approx(float(out["loss"]), rel=1e-4)
    assert float(val[0]["mse"]) == pytest.approx(float(((out["recon"] - x) ** 2).mean()), rel=1e-4)

    # the same first batch: the trained checkpoint explains it far better than random weights
    loss_tuned = float(rows(tuned / "metrics.csv")[0]["loss"])
    loss_scratch = float(rows(scratch / "metrics.csv")[0]["loss"])
    assert loss_tuned < loss_scratch - 1000, (loss_tuned, loss_scratch)
    assert float(rows(scratch / "validation.csv")[0]["loss"]) > float(val[0]["loss"])

    saved = json.loads((tuned / "checkpoint.json").read_text())
    assert saved["step"] == 1 and saved["init"]["checkpoint"] == str(SHIPPED.resolve())
    assert saved["data"]["folder"] == [str(folders[0]), str(folders[1])]


def test_optimizer_state_is_fresh_and_the_run_counts_its_own_steps(tmp_path, monkeypatch):
    first = tmp_path / "first"
    trainer.train(run_config(first, SMALL + TINY_MODEL + ["train.steps=2"]), quiet=True)
    assert (first / "optimizer.safetensors").is_file()

    def no_optimizer_state(*a, **k):
        raise AssertionError("the init checkpoint's optimizer state must not be loaded")

    monkeypatch.setattr(ckpt, "load_optimizer", no_optimizer_state)
    second = tmp_path / "second"
    trainer.train(run_config(second, SMALL + TINY_MODEL + ["train.steps=1"]), quiet=True,
                  init=first / "checkpoint.safetensors")
    saved = json.loads((second / "checkpoint.json").read_text())
    assert saved["step"] == 1 and saved["schedule_offset"] == 2  # annealing continues from the init's step 2


def test_a_run_folder_with_its_own_checkpoint_resumes_and_ignores_init(tmp_path, capsys, tiny_detector_files):
    out = tmp_path / "run"
    trainer.train(run_config(out, SMALL + TINY_MODEL + ["train.steps=2"]), quiet=True)
    before = load_file(str(out / "checkpoint.safetensors"))
    # an init checkpoint that would not even fit: resuming wins, so it is never read
    trainer.train(run_config(out, SMALL + TINY_MODEL + ["train.steps=3"]), init=tiny_detector_files[0])
    err = capsys.readouterr().err
    assert "resuming" in err and f"--init {tiny_detector_files[0]} ignored" in err
    assert json.loads((out / "checkpoint.json").read_text())["step"] == 3
    assert set(load_file(str(out / "checkpoint.safetensors"))) == set(before)


def test_an_incompatible_init_checkpoint_is_refused_naming_what_differs(tmp_path, capsys, tiny_detector_files,
                                                                       tiny_segmenter_files):
    damaged = tmp_path / "damaged.safetensors"
    damaged.write_bytes(SHIPPED.read_bytes()[:5000])
    cases = [
        (tiny_segmenter_files[0], ["holds a 'monet' model", "trains 'split_spair'"]),
        # the tiny detector: hidden 32, z_what 8, ... against the shipped config's 128, 32
        (tiny_detector_files[0], ["do not fit", "hidden: 32 in the checkpoint, 128 in the config",
                                  "z_what: 8 in the checkpoint, 32 in the config", "of another shape"]),
        (damaged, [str(damaged)]),
        (tmp_path / "missing.safetensors", ["not found", "missing.safetensors"]),
    ]
    for init, words in cases:
        out = tmp_path / f"run_{init.stem}"
        args = ["train", str(CONFIG), "--out", str(out), "--init", str(init)]
        args += [a for kv in SMALL + ["train.steps=1"] for a in ("--set", kv)]
        assert cli.main(args) == 2
        err = capsys.readouterr().err
        assert "split-perception train: error: " in err and "Traceback" not in err
        for word in words:
            assert word in err, (word, err)
        assert not (out / "checkpoint.safetensors").exists()


def test_several_folders_and_procedural_scenes_share_every_batch(tmp_path):
    a, b = write_coded(tmp_path / "a", 20, channel=0), write_coded(tmp_path / "b", 20, channel=1)
    data = trainer.DataConfig(kind="folder", folder=(str(a), str(b)), image_size=24, procedural_fraction=0.5,
                              procedural_kind="multi_object", backgrounds=("solid",))
    stream = trainer.make_stream(data, batch_size=4)
    seen = {0: set(), 1: set()}
    for step in range(30):
        x = stream.batch(step)
        assert x.shape == (4, 3, 24, 24)
        for img in x[:2]:  # folder frames first: one colour channel, the others zero
            channel = int(img.sum((1, 2)).argmax())
            assert img[[c for c in range(3) if c != channel]].abs().max() == 0
            seen[channel].add(round(float(img[channel].mean()) * 255 / 10) - 1)
        for img in x[2:]:  # procedural scenes: anything but a single coded colour
            assert (img > 0).sum(0).max() > 1 or img.std() > 0
        assert torch.equal(x, stream.batch(step))  # a pure function of the step (resumable)
    assert seen[0] and seen[1], "batches must draw from both folders"
    # frames 9 and 19 of each folder are held out: never trained on
    assert not {9, 19} & (seen[0] | seen[1]) and len(seen[0] | seen[1]) > 10
    assert [tuple(r) for r in stream.frames.held_out] == [(0, 9), (0, 19), (1, 9), (1, 19)]
    # made in a data worker process (decoding off the training thread), the batches are the same
    made = list(trainer.batches(stream, 0, 3, workers=1))
    assert all(torch.equal(x, stream.batch(step)) for step, x, _ in made)


def test_one_folder_as_a_plain_path_still_works_and_bad_mixes_are_refused(tmp_path):
    a = write_coded(tmp_path / "a", 12, channel=2)
    run = run_config(tmp_path / "run", [f"data.folder={a}", "data.kind=folder"])
    assert run.data.folders() == (str(a),)
    stream = trainer.make_stream(run.data, 3)
    assert stream.n_procedural == 0 and len(stream.frames.train) == 11
    assert stream.batch(0).shape == (3, 3, 48, 48)
    for sets, words in [
        (["data.procedural_fraction=0.5"], ["procedural_fraction", "data.kind folder"]),
        (["data.kind=folder", f"data.folder={a}", "data.procedural_fraction=1.0"], ["procedural_fraction", "[0, 1)"]),
        (["data.kind=folder"], ["data.folder names no folder"]),
        (["data.kind=folder", f"data.folder={a}", "data.procedural_kind=bag"], ["procedural_kind"]),
    ]:
        with pytest.raises(ValueError) as e:
            run_config(tmp_path / "bad", sets)
        for word in words:
            assert word in str(e.value), (word, str(e.value))
    with pytest.raises(FileNotFoundError, match="no_such_folder"):
        trainer.make_stream(run_config(tmp_path / "r", ["data.kind=folder", f"data.folder=[{a}, {tmp_path}/no_such_folder]"]).data, 2)
