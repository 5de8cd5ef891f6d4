"""benchmarks/detector_merges.py: the objective it compares and the greedy search it runs."""
import sys
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "benchmarks"))

import detector_merges  # noqa: E402

from split_perception.models import checkpoint as ckpt  # noqa: E402
from split_perception.training import scenes  # noqa: E402
from split_perception.training.dataset import to_tensor  # noqa: E402


def _shipped_and_scene():
    model, cfg, _ = ckpt.load_checkpoint(detector_merges.SHIPPED, expected_type="split_spair")
    s = scenes.generate(scenes.MultiObjectConfig(min_objects=3, max_objects=3, palette="test"), 5, 0)
    return model.eval(), to_tensor(s.image)[None], s


def test_greedy_search_keeps_the_models_cells_unless_a_box_pays_and_adds_at_most_three():
    model, x, _ = _shipped_and_scene()
    own = (detector_merges.own_cells(model, x)["presence"][0] > 0.5).numpy()
    np.testing.assert_array_equal(detector_merges.greedy_cells(model, x, margin=1e9), own)
    added = detector_merges.greedy_cells(model, x, margin=-1e9)  # every candidate "pays": three rounds
    assert (added & ~own).sum() == 3 and (added | ~own).all()


def test_merge_costs_price_the_true_boxes_and_optimising_what_lowers_them():
    model, x, s = _shipped_and_scene()
    own, encoded, optimised = detector_merges.merge_costs(model, x, s.boxes)
    assert np.isfinite([own, encoded, optimised]).all()
    # 200 Adam steps on NLL + the N(0, 1) prior of z_what draw the true boxes at least as well as the encoder
    assert optimised < encoded + 1.0, (encoded, optimised)
    torch.testing.assert_close(torch.tensor(own), torch.tensor(detector_merges.merge_costs(model, x, s.boxes)[0]))
