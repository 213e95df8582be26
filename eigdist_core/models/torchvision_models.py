"""torchvision classification networks truncated at a graph node."""

from __future__ import annotations

import os
from pathlib import Path

import torch
import torchvision
from torch import nn
from torchvision.models.feature_extraction import create_feature_extractor, get_graph_node_names

from ..validate import freeze

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


class LayerModel(nn.Module):
    """Preprocess a (1, C, H, W) image in [0, 1], run the network up to one node, return that tensor."""

    def __init__(self, body: nn.Module, node: str, mean=IMAGENET_MEAN, std=IMAGENET_STD) -> None:
        super().__init__()
        self.extractor = create_feature_extractor(body, return_nodes={node: "out"})
        self.register_buffer("mean", torch.tensor(mean).view(1, 3, 1, 1))
        self.register_buffer("std", torch.tensor(std).view(1, 3, 1, 1))

    def forward(self, image: torch.Tensor) -> torch.Tensor:
        if image.shape[-3] == 1:  # grey sets: the network needs three channels
            image = image.expand(*image.shape[:-3], 3, *image.shape[-2:])
        return self.extractor((image - self.mean) / self.std)["out"]


def load_torchvision(spec, weights: str) -> nn.Module:
    """Build ``spec.model`` from torchvision with ``weights`` and cut it at node ``spec.layer``."""
    names = torchvision.models.list_models(module=torchvision.models)
    if spec.model not in names:
        raise ValueError(f"unknown model {spec.model!r}; torchvision models: {', '.join(sorted(names))}")
    if weights.startswith("random:"):
        seed = _seed(weights)
        torch.manual_seed(seed)
        body = torchvision.models.get_model(spec.model, weights=None)
    elif weights == "imagenet":
        enum = torchvision.models.get_model_weights(spec.model).DEFAULT
        body = torchvision.models.get_model(spec.model, weights=None)
        body.load_state_dict(_imagenet_state(enum))
    else:
        path = Path(weights)
        if not path.is_file():
            raise FileNotFoundError(
                f"weights {weights!r} are not 'imagenet', 'random:<seed>' or an existing file"
            )
        body = torchvision.models.get_model(spec.model, weights=None)
        body.load_state_dict(torch.load(path, map_location="cpu", weights_only=True))
    body.eval()
    _, nodes = get_graph_node_names(body)
    if spec.layer not in nodes and not any(n.startswith(spec.layer + ".") for n in nodes):
        raise ValueError(f"unknown node {spec.layer!r} of {spec.model}; valid nodes: {', '.join(nodes)}")
    return freeze(LayerModel(body, spec.layer))


def _seed(weights: str) -> int:
    try:
        return int(weights.split(":", 1)[1])
    except ValueError:
        raise ValueError(f"weights {weights!r}: 'random:<seed>' needs an integer seed") from None


def _imagenet_state(enum) -> dict:
    """The ImageNet state dict from the torch hub cache; a clear error when it is not there."""
    hub = Path(torch.hub.get_dir()) / "checkpoints"
    file = hub / os.path.basename(enum.url)
    if not file.is_file():
        raise FileNotFoundError(
            f"ImageNet weights {enum} are not on this machine: put {os.path.basename(enum.url)} "
            f"(from {enum.url}) into {hub}, or run once with internet access"
        )
    return torch.load(file, map_location="cpu", weights_only=True)
