"""The deterministic inference graph of each model type (what gets exported and served)."""
from __future__ import annotations

from torch import nn


def inference_graph(model: nn.Module) -> nn.Module:
    from . import spair

    if isinstance(model, spair.SplitSpair):
        return spair.SpairInference(model)
    try:
        from . import monet

        if isinstance(model, monet.Monet):
            return monet.MonetInference(model)
    except ImportError:  # pragma: no cover
        pass
    raise TypeError(f"no inference graph for {type(model).__name__}")
