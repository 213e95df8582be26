"""torchvision classification networks truncated at a graph node."""

from __future__ import annotations

import contextlib
import os
from pathlib import Path

import torch
import torchvision
from torch import nn

from .adapter import LayerModel, check_node
from .weights import load_state_file, parse_weights, seeded_init

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
#: Weights values torchvision models take.
ALLOWED = ("imagenet", "random", "file")


def torchvision_names() -> list[str]:
    """Names of torchvision's classification models (``resnet18``, ``vgg16``, ...)."""
    return sorted(torchvision.models.list_models(module=torchvision.models))


def load_torchvision(model: str, layer: str, weights: str) -> nn.Module:
    """Build torchvision's ``model`` with ``weights`` and cut it at node ``layer``.

    ``imagenet`` uses the model's default weights enum, read from the torch hub
    cache (nothing is downloaded); ``random:<seed>`` is the constructor with
    ``weights=None`` under :func:`seeded_init`; a path is a state-dict file.
    """
    parsed = parse_weights(weights, model, ALLOWED)
    with seeded_init(parsed.seed) if parsed.kind == "random" else contextlib.nullcontext():
        body = torchvision.models.get_model(model, weights=None)
    if parsed.kind == "named":
        body.load_state_dict(_imagenet_state(torchvision.models.get_model_weights(model).DEFAULT))
    elif parsed.kind == "file":
        load_state_file(parsed.path, body, model)
    body.eval()
    check_node(body, layer, model)
    return LayerModel(body, layer, IMAGENET_MEAN, IMAGENET_STD, family=model)


def _imagenet_state(enum) -> dict:
    """The ImageNet state dict from the torch hub cache; a clear error when it is not there."""
    hub = Path(torch.hub.get_dir()) / "checkpoints"
    file = hub / os.path.basename(enum.url)
    if not file.is_file():
        raise FileNotFoundError(
            f"ImageNet weights {enum} are not on this machine: put {os.path.basename(enum.url)} "
            f"(from {enum.url}) into {hub}"
        )
    return torch.load(file, map_location="cpu", weights_only=True)
