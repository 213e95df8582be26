"""The adapter shared by the networks: input checks, preprocessing, grey → RGB, cut at one graph node."""

from __future__ import annotations

import contextlib
import warnings
from typing import Sequence

import torch
from torch import nn
from torchvision.models.feature_extraction import create_feature_extractor, get_graph_node_names
from ..errors import EigdistError


def check_input(image: torch.Tensor, family: str, channels: Sequence[int], min_size: int = 1) -> None:
    """Check that ``image`` is (N, C, H, W) with C in ``channels`` and H, W ≥ ``min_size``.

    Models take one image (N = 1) for eigendistortions; batches serve model observers.

    Raises
    ------
    ValueError
        Naming the shape received and what ``family`` takes.
    """
    shape = tuple(image.shape)
    allowed = " or ".join(str(c) for c in channels)
    if image.ndim != 4 or shape[1] not in channels:
        hint = " (convert colour images to grey: load_image(..., channels=1), or `eigdist synth --grey`)" if tuple(channels) == (1,) else ""
        raise EigdistError(f"{family} takes (N, C, H, W) images with C = {allowed}; got shape {shape}{hint}")
    if min(shape[-2:]) < min_size:
        raise EigdistError(f"{family} needs images of at least {min_size}×{min_size} pixels; got {shape[-2]}×{shape[-1]}")


@contextlib.contextmanager
def _quiet_tracing():
    """Hide torchvision's note that eval-mode nodes are a subset of train-mode ones (we only run eval mode)."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="NOTE: The nodes obtained by tracing", category=UserWarning)
        yield


def check_node(body: nn.Module, node: str, model: str) -> None:
    """Check that ``node`` is a graph node (or a module holding nodes) of ``body``; list the valid ones."""
    with _quiet_tracing():
        _, nodes = get_graph_node_names(body)
    if node not in nodes and not any(n.startswith(node + ".") for n in nodes):
        raise EigdistError(f"unknown node {node!r} of {model}; valid nodes: {_summary(nodes)}")


def _summary(nodes: list[str], limit: int = 120) -> str:
    """All node names if few; else the modules two levels deep (each also a valid node) and a count."""
    if len(nodes) <= limit:
        return ", ".join(nodes)
    modules = list(dict.fromkeys(".".join(n.split(".")[:2]) for n in nodes))
    return f"{', '.join(modules)}, and the {len(nodes)} graph nodes inside them (get_graph_node_names lists them)"


class LayerModel(nn.Module):
    """Normalise (N, C, H, W) images in [0, 1], run a network up to one node, return that tensor.

    Parameters
    ----------
    body
        The whole network, in eval mode.
    node
        A graph node or module name (``torchvision``'s ``create_feature_extractor``).
    mean, std
        Per-channel normalisation the weights expect: the network sees ``(x - mean) / std``.
    family
        The model's name, for error messages.
    """

    def __init__(self, body: nn.Module, node: str, mean: Sequence[float], std: Sequence[float], family: str) -> None:
        super().__init__()
        self.family = family
        with _quiet_tracing():
            self.extractor = create_feature_extractor(body, return_nodes={node: "out"})
        self.register_buffer("mean", torch.tensor(mean, dtype=torch.float32).view(1, 3, 1, 1))
        self.register_buffer("std", torch.tensor(std, dtype=torch.float32).view(1, 3, 1, 1))

    def forward(self, image: torch.Tensor) -> torch.Tensor:
        check_input(image, self.family, channels=(1, 3))
        if image.shape[1] == 1:  # grey sets: the network needs three channels
            image = image.expand(-1, 3, -1, -1)
        return self.extractor((image - self.mean) / self.std)["out"]
