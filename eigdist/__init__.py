"""eigdist: eigendistortions of vision models, a calibrated noticeability experiment, and a
ranking of model layers against human data.

The public API, imported lazily so that ``import eigdist`` (and ``eigdist --help``)
does not import torch or PsychoPy:

- ``eigdist.Eigendistortion``: max and min eigendistortions of one image through one model.
- ``eigdist.GeneralizedEigendistortion``, ``eigdist.PrincipalDistortion``: the changes that tell two
  layers, or several, apart at one image.
- ``eigdist.models``: ``eigdist.models.load("resnet18:layer2", weights="random:0")`` and friends.
- ``eigdist.StimulusSet``: read and verify a built stimulus set; ``eigdist.build_set`` builds one.
- ``eigdist.analyze``: trial files → thresholds, D per layer, ranking, report.

The three stages live in ``eigdist_core`` (synthesis), ``experiments`` (the PsychoPy session)
and ``analysis``; ``eigdist.cli`` is the ``eigdist`` command.
"""

from __future__ import annotations

import importlib
from typing import Any

from eigdist_core import __version__

# name → (module, attribute or None for the module itself)
_API = {
    "Eigendistortion": ("eigdist_core.eigendistortion", "Eigendistortion"),
    "GeneralizedEigendistortion": ("eigdist_core.comparison", "GeneralizedEigendistortion"),
    "PrincipalDistortion": ("eigdist_core.comparison", "PrincipalDistortion"),
    "models": ("eigdist_core.models", None),
    "StimulusSet": ("eigdist_core.stimulus_set", "StimulusSet"),
    "build_set": ("eigdist_core.build", "build_set"),
    "analyze": ("analysis.pipeline", "analyze"),
}

__all__ = ["__version__", *_API]


def __getattr__(name: str) -> Any:
    if name not in _API:
        raise AttributeError(f"module 'eigdist' has no attribute {name!r}")
    module, attribute = _API[name]
    loaded = importlib.import_module(module)
    return loaded if attribute is None else getattr(loaded, attribute)


def __dir__() -> list[str]:
    return sorted(__all__)
