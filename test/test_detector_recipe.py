"""`make train-detector`, the one command that reproduces the shipped detector: its stages chain (each
starts from the previous stage's checkpoint, both branches of stage 6 from stage 5), every stage config
trains, and the mean of the two branches has the model config, and its branches the data settings, that
the shipped weights' card records."""
import json
import shlex
import subprocess
import sys
from pathlib import Path

import numpy as np

from split_perception import load_detector
from split_perception.models import checkpoint as ckpt
from split_perception.preprocessing import WEIGHTS_DIR
from split_perception.training.trainer import DataConfig

ROOT = Path(__file__).resolve().parents[1]
# a few steps of every stage: the chain and the configs are under test, not the training
SHORT = ("--set train.steps=2 --set train.batch_size=2 --set train.threads=1 --set train.data_workers=0 "
         "--set train.lr_decay_steps=0 --set train.log_every=1 --set train.checkpoint_every=2")


def recipe_commands(runs: Path) -> list[list[str]]:
    """The split-perception commands `make train-detector` would run (make -n: printed, not run)."""
    out = subprocess.run(["make", "-n", "-s", "train-detector", f"RUNS={runs}", f"TRAIN_ARGS={SHORT}", "PY=python"],
                         cwd=ROOT, capture_output=True, text=True, check=True).stdout
    return [shlex.split(line) for line in out.splitlines() if " split_perception.cli " in line]


def run(cmd: list[str]) -> None:
    subprocess.run([sys.executable] + cmd[1:], cwd=ROOT, check=True, capture_output=True, timeout=300)


def test_make_train_detector_chains_its_stages_into_the_shipped_models_settings(tmp_path):
    *stages, average = recipe_commands(tmp_path)
    assert len(stages) == 7 and average[3] == "average"
    cards = {}
    for cmd in stages:
        run(cmd)
        out = Path(cmd[cmd.index("--out") + 1])
        cards[out.name] = json.loads((out / "checkpoint.json").read_text())
        assert cards[out.name]["step"] == 2
    # stages 1-5 in a row, then both branches of stage 6 from stage 5
    inits = [Path(c["init"]["checkpoint"]).parent.name if "init" in c else None for c in cards.values()]
    assert inits == [None] + [f"split_spair_stage{i}" for i in (1, 2, 3, 4, 5, 5)]
    run(average)
    result = Path(average[average.index("-o") + 1])
    assert result.parent == tmp_path / "split_spair"
    mean_card = json.loads(result.with_suffix(".json").read_text())
    shipped = json.loads((WEIGHTS_DIR / "split_spair.json").read_text())
    assert mean_card["config"] == shipped["config"]
    branches = [cards["split_spair_stage6_bright"]["data"], cards["split_spair_stage6_camera"]["data"]]
    # a data field added after the shipped weights were trained ran at its default there
    defaults = ckpt.field_defaults(DataConfig)
    shipped_data = [{**{k: v for k, v in defaults.items() if k in branch}, **card}
                    for branch, card in zip(branches, shipped["averaged"]["data"])]
    assert mean_card["averaged"]["data"] == branches == shipped_data
    # the camera branch's objective (pixel_std) differs, and the shipped card records the same
    assert mean_card["averaged"]["objective"] == shipped["averaged"]["objective"] == [{"pixel_std": 0.3}, {"pixel_std": 0.2}]
    # the recipe's output is a detector the public API loads and runs
    detections = load_detector(result, backend="torch")(np.full((48, 48, 3), 128, np.uint8))
    assert detections.boxes.shape[1:] == (4,)
