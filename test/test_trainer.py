"""The training command as a user runs it: stop it (SIGTERM / Ctrl-C), run it again, it resumes."""
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
TINY = ["model.image_size=24", "model.hidden=32", "model.z_what=8", "model.z_local=4", "model.z_bg=4",
        "data.image_size=24", "train.batch_size=2", "train.threads=1", "train.log_every=1", "train.checkpoint_every=3"]


def train_cmd(out: Path, steps: int, extra=()) -> list[str]:
    sets = [a for kv in TINY + [f"train.steps={steps}", *extra] for a in ("--set", kv)]
    return [sys.executable, "-m", "split_perception.cli", "train", str(ROOT / "config" / "train_split_spair.yaml"),
            "--out", str(out), *sets]


def saved_step(out: Path) -> int:
    return json.loads((out / "checkpoint.json").read_text())["step"]


def test_sigterm_saves_and_the_same_command_resumes(tmp_path):
    out = tmp_path / "run"
    proc = subprocess.Popen(train_cmd(out, 100_000), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            env=dict(os.environ, OMP_NUM_THREADS="1"))
    deadline = time.time() + 120
    while not (out / "checkpoint.json").is_file() and time.time() < deadline and proc.poll() is None:
        time.sleep(0.2)
    assert (out / "checkpoint.json").is_file(), proc.communicate(timeout=30)
    time.sleep(1.0)  # a few steps past the first checkpoint
    proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 130, err[-2000:]
    assert "checkpoint saved" in err and "Traceback" not in err, err[-2000:]
    stopped_at = saved_step(out)
    assert stopped_at >= 3
    rows_before = (out / "metrics.csv").read_text().count("\n")

    res = subprocess.run(train_cmd(out, stopped_at + 2), capture_output=True, text=True, timeout=120,
                         env=dict(os.environ, OMP_NUM_THREADS="1"))
    assert res.returncode == 0, res.stderr[-2000:]
    assert f"from step {stopped_at}" in res.stderr
    assert saved_step(out) == stopped_at + 2
    assert (out / "metrics.csv").read_text().count("\n") == rows_before + 2  # appended, not restarted


@pytest.mark.parametrize("cut_short", ["optimizer", "card"])
def test_a_save_cut_short_by_a_full_disk_says_what_is_kept_and_the_same_command_resumes(tmp_path, monkeypatch, capsys, cut_short):
    """The disk fills up while the step-6 checkpoint is written, after its weights file and before the
    optimizer state (or the weights' .json card): the run stops with a message that names the step kept
    and how to go on; the same command then resumes from the step-6 weights, Adam afresh (its saved state
    is step 3's)."""
    import errno

    from split_perception import cli
    from split_perception.models import checkpoint as ckpt

    out = tmp_path / "run"
    args = train_cmd(out, 9)[3:]  # the arguments after `python -m split_perception.cli`
    real_optimizer, real_write = ckpt.save_optimizer, ckpt.atomic_write
    saves = []

    def full_disk():
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    def save_optimizer(path, optimizer, extra):
        saves.append(extra["step"])
        if cut_short == "optimizer" and extra["step"] == 6:
            full_disk()
        real_optimizer(path, optimizer, extra)

    def atomic_write(path, write, **kw):
        if cut_short == "card" and Path(path).suffix == ".json" and len(saves) == 1:  # the step-6 card
            full_disk()
        real_write(path, write, **kw)

    monkeypatch.setattr(ckpt, "save_optimizer", save_optimizer)
    monkeypatch.setattr(ckpt, "atomic_write", atomic_write)
    assert cli.main(args) == 2
    err = capsys.readouterr().err
    assert "could not save step 6" in err and "No space left on device" in err, err[-2000:]
    assert "the checkpoint of step 6 is kept" in err and "run the same command to resume" in err, err[-2000:]
    assert ckpt.saved_step(out / "checkpoint.safetensors") == 6  # written whole before the disk filled
    assert not list(out.glob(".*")), list(out.iterdir())  # no temp file left behind

    monkeypatch.setattr(ckpt, "save_optimizer", real_optimizer)
    monkeypatch.setattr(ckpt, "atomic_write", real_write)
    assert cli.main(args) == 0
    err = capsys.readouterr().err
    assert "Adam restarts from the step-6 weights" in err and "resuming" in err and "from step 6" in err, err[-2000:]
    assert saved_step(out) == 9 and ckpt.saved_step(out / "checkpoint.safetensors") == 9
    # a first save that fails has nothing to keep, and says so
    from split_perception.training.trainer import kept_checkpoint
    assert kept_checkpoint(tmp_path / "never_written.safetensors") == "no checkpoint"


def test_resuming_with_another_model_config_is_refused(tmp_path):
    out = tmp_path / "run"
    assert subprocess.run(train_cmd(out, 3), capture_output=True, timeout=120).returncode == 0
    res = subprocess.run(train_cmd(out, 6, ["model.z_what=16"]), capture_output=True, text=True, timeout=120)
    assert res.returncode == 2 and "another model config" in res.stderr, res.stderr[-2000:]
    assert saved_step(out) == 3  # the old run is untouched


def test_numbers_are_read_as_written_in_set_values_and_yaml_files(tmp_path):
    from split_perception.training.trainer import load_run_config

    cfg = tmp_path / "run.yaml"
    cfg.write_text("model:\n  type: split_spair\n  max_box: 24\ndata:\n  backgrounds: [solid]\n"
                   "train:\n  steps: 1e5\n  lr: 3e-4\n  grad_clip: .5\n  amp: false\n")
    run = load_run_config(cfg)
    assert run.train.steps == 100_000 and isinstance(run.train.steps, int)
    assert run.train.lr == 3e-4 and run.train.grad_clip == 0.5 and run.train.amp is False
    assert run.model.max_box == 24.0 and isinstance(run.model.max_box, float)
    assert run.data.backgrounds == ("solid",)
    run = load_run_config(cfg, ["train.lr=1E-3", "train.steps=20", "model.pres_init_bias=-2", "train.amp=true"])
    assert (run.train.lr, run.train.steps, run.model.pres_init_bias, run.train.amp) == (1e-3, 20, -2.0, True)


def test_train_glimpses_must_leave_room_above_the_most_objects_of_a_scene():
    from split_perception.training.trainer import load_run_config

    cfg = ROOT / "config" / "train_split_spair.yaml"
    assert load_run_config(cfg, ["model.train_glimpses=7", "data.max_objects=6"]).model.train_glimpses == 7
    assert load_run_config(cfg, ["model.train_glimpses=0", "data.max_objects=30"]).model.train_glimpses == 0
    with pytest.raises(ValueError, match="train_glimpses 6 draws too few cells for scenes of up to data.max_objects 6"):
        load_run_config(cfg, ["model.train_glimpses=6", "data.max_objects=6"])


def test_a_value_of_the_wrong_type_names_the_key_and_the_type(tmp_path):
    from split_perception.training.trainer import load_run_config

    cfg = ROOT / "config" / "train_split_spair.yaml"
    for override, message in [("train.steps=abc", "train.steps: expected int, got 'abc'"),
                              ("train.steps=1.5", "train.steps: expected int, got 1.5"),
                              ("train.lr=fast", "train.lr: expected float, got 'fast'"),
                              ("train.amp=2", "train.amp: expected bool"),
                              ("model.z_what=", "model.z_what: expected int, got None"),
                              ("data.backgrounds=solid", "data.backgrounds: expected a list of str"),
                              # a key without its section: the message names the section that has it
                              ("steps=100", "--set steps: keys are SECTION.KEY (sections model, data, train); did you mean train.steps?"),
                              ("pixel_std=0.2", "did you mean model.pixel_std?")]:
        with pytest.raises(ValueError) as err:
            load_run_config(cfg, [override])
        assert message in str(err.value), (override, str(err.value))
    res = subprocess.run(train_cmd(tmp_path / "run", 1, ["train.steps=abc"]), capture_output=True, text=True, timeout=120)
    assert res.returncode == 2 and "train.steps: expected int, got 'abc'" in res.stderr, res.stderr[-2000:]
    assert not (tmp_path / "run").exists()


def test_learning_rate_decays_linearly_over_the_last_steps_and_the_config_wins_on_resume(tmp_path):
    from safetensors import safe_open

    from split_perception.training.trainer import TrainConfig, learning_rate

    tc = TrainConfig(steps=100, lr=1e-3, lr_decay_steps=40, lr_decay_to=0.1)
    assert learning_rate(tc, 0) == learning_rate(tc, 59) == 1e-3
    assert learning_rate(tc, 60) < 1e-3
    assert learning_rate(tc, 99) == pytest.approx(1e-4)
    lrs = [learning_rate(tc, s) for s in range(60, 100)]
    assert all(a > b for a, b in zip(lrs, lrs[1:]))
    assert learning_rate(TrainConfig(steps=100, lr=1e-3), 99) == 1e-3  # no decay by default
    short = TrainConfig(steps=10, lr=1e-3, lr_decay_steps=3500)  # a short run decays over all its steps
    assert learning_rate(short, 0) < 1e-3 and learning_rate(short, 9) == pytest.approx(1e-4)
    with pytest.raises(ValueError, match="lr_decay_steps"):
        TrainConfig(lr_decay_steps=-1)
    with pytest.raises(ValueError, match="lr_decay_to"):
        TrainConfig(lr_decay_to=1.5)

    # a run resumed with another lr trains with it (the optimizer state's stored lr does not win)
    out = tmp_path / "run"
    assert subprocess.run(train_cmd(out, 3), capture_output=True, timeout=120).returncode == 0
    assert subprocess.run(train_cmd(out, 5, ["train.lr=2.5e-5", "train.lr_decay_steps=0"]), capture_output=True,
                          timeout=120).returncode == 0
    with safe_open(str(out / "optimizer.safetensors"), "pt") as f:
        groups = json.loads(f.metadata()["param_groups"])
    assert {g["lr"] for g in groups} == {2.5e-5}


def test_multi_object_data_settings_reach_every_scene_config():
    from split_perception.training.trainer import SceneStream, load_run_config

    run = load_run_config(ROOT / "config" / "train_split_spair.yaml",
                          ["data.touching_prob=0.5", "data.overlap_prob=0.3", "data.min_visible_fraction=0.4",
                           "data.sprites=varied_parts", "data.palette=train_wide", "data.object_colours=mixed",
                           "data.object_shading=0.3", "data.camera_blur=0.8"])
    configs = SceneStream(run.data, batch_size=2).configs
    assert len(configs) == len(run.data.backgrounds)
    for c in configs:
        assert (c.touching_prob, c.overlap_prob, c.min_visible_fraction, c.sprites) == (0.5, 0.3, 0.4, "varied_parts")
        assert (c.palette, c.object_colours, c.object_shading, c.camera_blur) == ("train_wide", "mixed", 0.3, 0.8)
        assert (c.min_objects, c.max_objects, c.sprite_size_jitter) == (0, 6, 3)  # the shipped recipe's last stage


FLUSH_PROBE = """
import sys, torch
from pathlib import Path
from split_perception.training.trainer import train_from_config
train_from_config(Path(sys.argv[1]), overrides=sys.argv[3:], out_dir=sys.argv[2])
# 1e-30 * 1e-10 is denormal in float32: count the products that were not flushed, over a tensor
# large enough for torch to split the multiplication among its threads
print(int((torch.full((1_000_000,), 1e-30) * 1e-10).count_nonzero()))
"""


@pytest.mark.parametrize("flush", [True, False])
def test_training_flushes_denormal_floats_in_every_torch_thread(tmp_path, flush):
    """train.flush_denormals: a trained model's absent glimpses get denormal gradients, slow on x86;
    the trainer must set the flush before torch's threads exist, or only the main thread gets it."""
    sets = [kv for kv in TINY if not kv.startswith("train.threads")] + [
        "train.threads=2", "train.steps=1", f"train.flush_denormals={str(flush).lower()}"]
    res = subprocess.run([sys.executable, "-c", FLUSH_PROBE, str(ROOT / "config" / "train_split_spair.yaml"),
                          str(tmp_path / "run"), *sets], capture_output=True, text=True, timeout=300, cwd=ROOT)
    assert res.returncode == 0, res.stderr[-2000:]
    not_flushed = int(res.stdout.strip().splitlines()[-1])
    assert not_flushed == (0 if flush else 1_000_000)
