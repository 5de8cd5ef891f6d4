"""`make train-detector`, the one command that reproduces the shipped detector: its stages chain (each
starts from the previous stage's checkpoint), every stage config trains, and the last stage writes the
model and data settings the shipped weights' card records."""
import json
import shlex
import subprocess
import sys
from pathlib import Path

import numpy as np

from split_perception import load_detector
from split_perception.preprocessing import WEIGHTS_DIR

ROOT = Path(__file__).resolve().parents[1]
# a few steps of every stage: the chain and the configs are under test, not the training
SHORT = ("--set train.steps=2 --set train.batch_size=2 --set train.threads=1 --set train.data_workers=0 "
         "--set train.lr_decay_steps=0 --set train.log_every=1 --set train.checkpoint_every=2")


def recipe_commands(runs: Path) -> list[list[str]]:
    """The training commands `make train-detector` would run (make -n: printed, not run)."""
    out = subprocess.run(["make", "-n", "-s", "train-detector", f"RUNS={runs}", f"TRAIN_ARGS={SHORT}", "PY=python"],
                         cwd=ROOT, capture_output=True, text=True, check=True).stdout
    return [shlex.split(line) for line in out.splitlines() if " split_perception.cli train " in line]


def test_make_train_detector_chains_its_stages_into_the_shipped_models_settings(tmp_path):
    commands = recipe_commands(tmp_path)
    assert len(commands) == 6
    previous = None
    for cmd in commands:
        subprocess.run([sys.executable] + cmd[1:], cwd=ROOT, check=True, capture_output=True, timeout=300)
        out = Path(cmd[cmd.index("--out") + 1])
        card = json.loads((out / "checkpoint.json").read_text())
        assert card["step"] == 2
        if previous is None:
            assert "--init" not in cmd
        else:  # each stage starts from the one before it
            assert Path(card["init"]["checkpoint"]) == previous
        previous = out / "checkpoint.safetensors"
    shipped = json.loads((WEIGHTS_DIR / "split_spair.json").read_text())
    last = json.loads((previous.parent / "checkpoint.json").read_text())
    assert last["config"] == shipped["config"]
    assert last["data"] == shipped["data"]
    # the recipe's output is a detector the public API loads and runs
    detections = load_detector(previous, backend="torch")(np.full((48, 48, 3), 128, np.uint8))
    assert detections.boxes.shape[1:] == (4,)
