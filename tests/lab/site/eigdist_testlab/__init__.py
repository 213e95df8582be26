"""A tiny installed package that registers a model family ``testlab`` through the ``eigdist.models`` entry point.

``testlab:<width>`` is a one-layer conv net with ``width`` output channels;
weights ``random:<seed>`` (its default, ``random:0``) or ``zeros``.
"""

import torch
from torch import nn


def load(layer: str, weights: str) -> nn.Module:
    """The family's loader: eigdist calls it as ``load(layer, weights)``."""
    if not layer.isdigit():
        raise ValueError(f"testlab layers are output widths such as '3', got {layer!r}")
    seed = int(weights.removeprefix("random:")) if weights.startswith("random:") else None
    if seed is None and weights != "zeros":
        raise ValueError(f"testlab takes weights random:<seed> or zeros, got {weights!r}")
    gen = torch.Generator().manual_seed(seed or 0)
    conv = nn.Conv2d(1, int(layer), 3, padding=1)
    with torch.no_grad():
        for p in conv.parameters():
            p.copy_(torch.randn(p.shape, generator=gen) * 0.3 if seed is not None else 0)
    return nn.Sequential(conv, nn.Tanh())


load.default_weights = "random:0"
