"""One model from several fine-tunes of one start: the element-wise mean of their weights.

Fine-tunes that started from the same weights and trained on different data usually stay in one
basin of the loss, and their mean keeps much of what each learnt (Wortsman et al. 2022, "model
soups"). The shipped detector is such a mean: one last stage on the project's bright objects, one on
camera-like objects (docs/RESULTS.md, session 2026-12-05). Averaging models that did not share a
start gives a broken model, so the inputs must agree in model type, config and every weight's name,
shape and dtype; that a mean of weights is a good model is for the evaluation to show. Configs may
differ in the fields that only weigh the training objective (the config class's OBJECTIVE_ONLY, e.g.
the shipped camera branch's `pixel_std`): the mean takes the first input's config, and its card keeps
each input's values of the fields that differed.

    split-perception average runs/a/checkpoint.safetensors runs/b/checkpoint.safetensors -o runs/mean/checkpoint.safetensors
"""
from __future__ import annotations

from pathlib import Path

import torch

from split_perception.models.checkpoint import CheckpointError, load_checkpoint, save_checkpoint

from .trainer import saved_extras


def average_checkpoints(paths: list[Path], out: Path) -> dict:
    """Write the mean of the checkpoints' weights to `out` (with its .json card); returns the card's
    `averaged` entry. Integer buffers (counters) must be equal in every input and are copied."""
    if len(paths) < 2:
        raise CheckpointError("averaging needs at least two checkpoints")
    models = [load_checkpoint(path) for path in paths]  # each file read once, its config checked
    model, cfg, model_type = models[0]
    for path, (_, _, other_type) in zip(paths[1:], models[1:]):
        if other_type != model_type:
            raise CheckpointError(f"{path}: a {other_type} model, {paths[0]} a {model_type}; only fine-tunes of one model average into one")
    differ = _differing_fields([c for _, c, _ in models])
    shaping = sorted(differ - getattr(type(cfg), "OBJECTIVE_ONLY", frozenset()))
    if shaping:
        raise CheckpointError(f"another model: config differs: {', '.join(shaping)} between {', '.join(map(str, paths))}; "
                              "only fine-tunes of one model average into one")
    states = [m.state_dict() for m, _, _ in models]
    mean = {}
    for name, first in states[0].items():
        if first.is_floating_point():
            mean[name] = torch.stack([s[name].double() for s in states]).mean(0).to(first.dtype)
        elif all(torch.equal(s[name], first) for s in states):
            mean[name] = first
        else:
            raise CheckpointError(f"integer buffer {name!r} differs between the checkpoints: cannot average it")
    model.load_state_dict(mean)
    cards = [saved_extras(p) for p in paths]
    steps = [c.get("step") for c in cards]
    # what each input was trained on, so the mean's card still says where it came from
    averaged = {"checkpoints": [str(p) for p in paths], "steps": steps, "data": [c.get("data") for c in cards]}
    if differ:  # the training objective each input had where they differed
        averaged["objective"] = [{k: getattr(c, k) for k in sorted(differ)} for _, c, _ in models]
    save_checkpoint(out, model, model_type, cfg, extra={"step": max(s or 0 for s in steps), "averaged": averaged})
    return averaged


def _differing_fields(configs: list) -> set[str]:
    """Names of the dataclass fields whose values are not the same in every config."""
    first = vars(configs[0])
    return {k for k in first if any(vars(c)[k] != first[k] for c in configs[1:])}
