"""training/weight_average.py and `split-perception average`: the mean of fine-tunes' weights."""
import json

import pytest
import torch
from safetensors.torch import load_file

from split_perception import cli
from split_perception.models.checkpoint import CheckpointError, load_checkpoint, save_checkpoint
from split_perception.models.spair import SpairConfig, SplitSpair
from split_perception.training.weight_average import average_checkpoints

TINY = dict(z_what=8, z_local=4, z_bg=4, hidden=32)


def fine_tune(path, cfg, seed, step, colours):
    torch.manual_seed(seed)
    save_checkpoint(path, SplitSpair(cfg), "split_spair", cfg, extra={"step": step, "data": {"object_colours": colours}})
    return path


def test_the_mean_of_two_checkpoints_is_their_weights_mean_and_its_card_names_them(tmp_path):
    cfg = SpairConfig(split=True, **TINY)
    a = fine_tune(tmp_path / "a.safetensors", cfg, 0, 3000, "bright")
    b = fine_tune(tmp_path / "b.safetensors", cfg, 1, 3000, "mixed")
    out = tmp_path / "mean" / "checkpoint.safetensors"
    assert cli.main(["average", str(a), str(b), "-o", str(out)]) == 0
    wa, wb, mean = load_file(str(a)), load_file(str(b)), load_file(str(out))
    assert set(mean) == set(wa) and any(not torch.equal(wa[k], wb[k]) for k in wa)  # two different models
    for k in wa:
        torch.testing.assert_close(mean[k], (wa[k] + wb[k]) / 2 if wa[k].is_floating_point() else wa[k])
    model, loaded_cfg, model_type = load_checkpoint(out)  # a checkpoint like any other
    assert (loaded_cfg, model_type) == (cfg, "split_spair")
    card = json.loads(out.with_suffix(".json").read_text())
    assert card["step"] == 3000
    assert card["averaged"] == {"checkpoints": [str(a), str(b)], "steps": [3000, 3000],
                                "data": [{"object_colours": "bright"}, {"object_colours": "mixed"}]}


def test_fine_tunes_that_differ_only_in_their_objective_average_and_the_card_keeps_each_objective(tmp_path):
    """The shipped detector's camera branch trains with another pixel_std: that weighs the loss,
    not the weights, so the branches still average; the card says which input had which."""
    bright = fine_tune(tmp_path / "a.safetensors", SpairConfig(split=True, **TINY), 0, 3000, "bright")
    camera = fine_tune(tmp_path / "b.safetensors", SpairConfig(split=True, pixel_std=0.2, beta_what=0.2, **TINY), 1, 3000, "camera")
    out = tmp_path / "mean.safetensors"
    averaged = average_checkpoints([bright, camera], out)
    assert averaged["objective"] == [{"beta_what": 0.1, "pixel_std": 0.3}, {"beta_what": 0.2, "pixel_std": 0.2}]
    _, cfg, _ = load_checkpoint(out)
    assert cfg == SpairConfig(split=True, **TINY)  # the first input's config
    wa, wb, mean = load_file(str(bright)), load_file(str(camera)), load_file(str(out))
    key = next(k for k in wa if wa[k].is_floating_point() and not torch.equal(wa[k], wb[k]))
    torch.testing.assert_close(mean[key], (wa[key] + wb[key]) / 2)
    # a field that shapes the network still refuses, and the message names it
    wide = fine_tune(tmp_path / "c.safetensors", SpairConfig(split=True, pixel_std=0.2, **{**TINY, "z_what": 16}), 2, 1, "bright")
    with pytest.raises(CheckpointError, match="config differs: z_what"):
        average_checkpoints([bright, wide], tmp_path / "no.safetensors")


def test_checkpoints_of_other_models_or_a_single_one_are_refused_with_the_reason(tmp_path, capsys):
    a = fine_tune(tmp_path / "a.safetensors", SpairConfig(split=True, **TINY), 0, 1, "bright")
    other = fine_tune(tmp_path / "b.safetensors", SpairConfig(split=True, cell_size=8, **TINY), 1, 1, "bright")
    out = tmp_path / "mean.safetensors"
    with pytest.raises(CheckpointError, match="config differs"):
        average_checkpoints([a, other], out)
    with pytest.raises(CheckpointError, match="at least two"):
        average_checkpoints([a], out)
    broken = tmp_path / "broken.safetensors"
    broken.write_bytes(b"not a checkpoint")
    assert cli.main(["average", str(a), str(broken), "-o", str(out)]) == 2  # a clear error, no traceback
    assert "broken.safetensors" in capsys.readouterr().err
    assert not out.exists()  # nothing half-written
