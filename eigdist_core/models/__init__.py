"""Models by name: a spec ``<model>:<layer>`` plus weights → a module image → response.

Every loaded model owns its preprocessing, takes a (1, C, H, W) image in
[0, 1] with C = 1 or 3, and returns one tensor.
"""

from __future__ import annotations

from dataclasses import dataclass

from torch import nn


@dataclass(frozen=True)
class ModelSpec:
    """A parsed model spec: ``model`` is the text before the first ``:``, ``layer`` the rest."""

    model: str
    layer: str

    def __str__(self) -> str:
        return f"{self.model}:{self.layer}"


def parse_spec(spec: str) -> ModelSpec:
    """Split ``<model>:<layer>``; both parts must be non-empty."""
    if not isinstance(spec, str) or ":" not in spec:
        raise ValueError(f"model spec must look like '<model>:<layer>' (e.g. 'resnet18:layer2'), got {spec!r}")
    model, layer = spec.split(":", 1)
    if not model or not layer:
        raise ValueError(f"model spec must look like '<model>:<layer>' (e.g. 'resnet18:layer2'), got {spec!r}")
    return ModelSpec(model, layer)


def load(spec: str, weights: str = "random:0") -> nn.Module:
    """Load the model layer named by ``spec`` with ``weights``, frozen, in eval mode.

    Parameters
    ----------
    spec
        ``<model>:<layer>``, e.g. ``resnet18:layer2``.
    weights
        ``imagenet``, ``random:<seed>``, or a path to a state-dict file.
    """
    parsed = parse_spec(spec)
    from .torchvision_models import load_torchvision

    return load_torchvision(parsed, weights)
