"""``plenoptic:<ModelName>``: plenoptic's own front-end models, to compare with eigdist's ``frontend:`` ones.

Built as plenoptic's tests build them: ``(31, pretrained=True, cache_filt=True)``,
weights ``published`` only. Their ``forward`` writes to the model's own tensors
(it caches filters and takes ``std.abs()``), so eigdist differentiates them by
plain autograd (``diagnostics["fisher"]``). Grey images of at least 16 × 16.
"""

from __future__ import annotations

import warnings

import torch
from torch import nn

from .adapter import check_input
from .frontend import MIN_SIZE
from .weights import parse_weights
from ..errors import EigdistError

NAME = "plenoptic"
#: plenoptic's front-end models, by the class name a spec uses.
MODELS = ("LinearNonlinear", "LuminanceGainControl", "LuminanceContrastGainControl", "OnOff")
ALLOWED = ("published",)


class PlenopticModel(nn.Module):
    """One of plenoptic's front-end models behind eigdist's input check (grey, ≥ 16 × 16)."""

    def __init__(self, model: nn.Module, name: str) -> None:
        super().__init__()
        self.model, self.family = model, f"{NAME}:{name}"

    def forward(self, image: torch.Tensor) -> torch.Tensor:
        check_input(image, self.family, channels=(1,), min_size=MIN_SIZE)
        return self.model(image)


def load_plenoptic(name: str, weights: str) -> nn.Module:
    """``plenoptic:<name>`` with the published parameters; a clear error when plenoptic is not installed."""
    if name not in MODELS:
        raise EigdistError(f"unknown plenoptic model {name!r}; valid: {', '.join(MODELS)} (e.g. 'plenoptic:OnOff')")
    parse_weights(weights, f"{NAME}:{name}", ALLOWED)
    try:
        import plenoptic
    except ImportError:
        raise ImportError(f"{NAME}:{name} needs the package 'plenoptic' (pip install plenoptic)") from None
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # plenoptic notes that its OnOff values were reverse-engineered
        model = getattr(plenoptic.models, name)(31, pretrained=True, cache_filt=True)
    return PlenopticModel(model, name)
