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
    if not _reaches(node, nodes):
        raise EigdistError(f"unknown node {node!r} of {model}; valid nodes: {_summary(nodes)}")


def _reaches(node: str, nodes: Sequence[str]) -> bool:
    """Whether ``node`` is one of the graph's ``nodes`` or a module holding some of them."""
    return node in nodes or any(n.startswith(node + ".") for n in nodes)


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
        return self.extractor(self.network_input(image))["out"]

    def network_input(self, image: torch.Tensor) -> torch.Tensor:
        """The image as the network sees it: checked, grey repeated to three channels, normalised."""
        check_input(image, self.family, channels=(1, 3))
        if image.shape[1] == 1:  # grey sets: the network needs three channels
            image = image.expand(-1, 3, -1, -1)
        return (image - self.mean) / self.std


class LayerStack(nn.Module):
    """Several layers of one network in one forward pass: each layer's response flattened, concatenated.

    Made by :func:`stack_layers`; the responses are those of the layers' own :class:`LayerModel` (the
    same operations on the same weights), so one pass serves every layer of a network.
    """

    def __init__(self, deepest: LayerModel, nodes: Sequence[str]) -> None:
        super().__init__()
        self.deepest = deepest
        with _quiet_tracing():
            self.stack = create_feature_extractor(deepest.extractor, return_nodes={n: str(i) for i, n in enumerate(nodes)})

    def forward(self, image: torch.Tensor) -> torch.Tensor:
        return torch.cat([r.flatten(1) for r in self._responses(image)], dim=1)

    def sizes(self, image: torch.Tensor) -> list[int]:
        """The number of values of each layer's response to one image (1, C, H, W)."""
        with torch.no_grad():
            return [r.numel() for r in self._responses(image)]

    def _responses(self, image: torch.Tensor) -> list[torch.Tensor]:
        out = self.stack(self.deepest.network_input(image))
        return [out[str(i)] for i in range(len(out))]


def stack_layers(layers: Sequence[nn.Module], nodes: Sequence[str]) -> LayerStack | None:
    """One module for ``layers`` (loaded :class:`LayerModel` s of one network at ``nodes``), or ``None``.

    ``None`` unless they are LayerModels, one of them reaches every other's node and holds the same
    weights at the shared parameters (so a layer's response cannot depend on which module computes it).
    """
    if len(layers) < 2 or not all(isinstance(m, LayerModel) for m in layers):
        return None
    for deepest in reversed(layers):  # the deepest is usually listed last
        with _quiet_tracing():
            _, reached = get_graph_node_names(deepest.extractor)
        own = deepest.state_dict()
        if all(_reaches(node, reached) for node in nodes) and all(
                k in own and torch.equal(v, own[k]) for m in layers for k, v in m.state_dict().items()):
            return LayerStack(deepest, nodes)
    return None


