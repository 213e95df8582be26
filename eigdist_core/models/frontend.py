"""The front-end models of Berardino et al. (2017): LN, LG, LGG and OnOff, published parameters.

Each is a difference-of-Gaussians centre-surround filter (31 × 31, reflect
padding, output the size of the input), optionally divided by local luminance
and then by local contrast, followed by a softplus. The parameters are those of
Berardino's thesis (2018, Table 2), as plenoptic ships them; the outputs match
plenoptic's ``LinearNonlinear``, ``LuminanceGainControl``,
``LuminanceContrastGainControl`` and ``OnOff`` (``pretrained=True``,
``apply_mask=False``) to 1e-5 (tests/test_models.py). The models were fitted to
grey images, so they take one channel only.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from .adapter import check_input
from .weights import parse_weights

NAME = "frontend"
KERNEL_SIZE = 31
#: Reflect padding of 15 pixels needs at least 16 pixels per side.
MIN_SIZE = KERNEL_SIZE // 2 + 1
#: Weights values front-end models take.
ALLOWED = ("published",)


@dataclass(frozen=True)
class FrontEndParams:
    """Standard deviations (pixels) and gains of one front-end model; one entry per output channel."""

    center_std: tuple[float, ...]
    surround_std: tuple[float, ...]
    on_center: tuple[bool, ...]
    amplitude_ratio: float = 1.25
    luminance_std: tuple[float, ...] | None = None
    luminance_scalar: tuple[float, ...] | None = None
    contrast_std: tuple[float, ...] | None = None
    contrast_scalar: tuple[float, ...] | None = None


#: Berardino (2018), Table 2; the layer names of ``frontend:<layer>``.
PUBLISHED = {
    "ln": FrontEndParams((0.5339,), (6.148,), (True,)),
    "lg": FrontEndParams((1.962,), (4.235,), (True,), luminance_std=(4.235,), luminance_scalar=(14.95,)),
    "lgg": FrontEndParams(
        (0.7363,), (48.37,), (True,),
        luminance_std=(170.99,), luminance_scalar=(2.94,), contrast_std=(2.658,), contrast_scalar=(34.03,),
    ),
    "onoff": FrontEndParams(
        (1.237, 0.3233), (30.12, 2.184), (True, False),
        luminance_std=(76.4, 2.184), luminance_scalar=(3.2637, 14.3961),
        contrast_std=(7.49, 2.43), contrast_scalar=(7.3405, 16.7423),
    ),
}


def gaussian_filters(stds: tuple[float, ...], size: int = KERNEL_SIZE) -> torch.Tensor:
    """Circular Gaussians, one per standard deviation, each summing to 1: (len(stds), 1, size, size)."""
    r = torch.arange(size, dtype=torch.float64) - (size - 1) / 2
    r2 = r[None, :] ** 2 + r[:, None] ** 2
    std = torch.tensor(stds, dtype=torch.float64).view(-1, 1, 1, 1)
    g = torch.exp(-r2 / (2 * std**2))
    return (g / g.sum(dim=(1, 2, 3), keepdim=True)).float()


class FrontEnd(nn.Module):
    """One front-end model: centre-surround, optional luminance and contrast gain control, softplus.

    Takes a grey (1, 1, H, W) image with H, W ≥ :data:`MIN_SIZE` and returns
    (1, channels, H, W). It has no parameters, only fixed filters (buffers).
    """

    def __init__(self, params: FrontEndParams, layer: str) -> None:
        super().__init__()
        self.family = f"{NAME}:{layer}"
        sign = torch.tensor([1.0 if on else -1.0 for on in params.on_center]).view(-1, 1, 1, 1)
        dog = gaussian_filters(params.center_std) - gaussian_filters(params.surround_std)
        self.register_buffer("center_surround", params.amplitude_ratio * sign * dog)
        self.channels = len(params.center_std)
        self._add_gain("luminance", params.luminance_std, params.luminance_scalar)
        self._add_gain("contrast", params.contrast_std, params.contrast_scalar)

    def _add_gain(self, name: str, std, scalar) -> None:
        self.register_buffer(name, None if std is None else gaussian_filters(std))
        self.register_buffer(f"{name}_scalar", None if scalar is None else torch.tensor(scalar).view(1, -1, 1, 1))

    def forward(self, image: torch.Tensor) -> torch.Tensor:
        check_input(image, self.family, channels=(1,), min_size=MIN_SIZE)
        x = _pad(image)
        y = F.conv2d(x, self.center_surround)
        if self.luminance is not None:
            y = y / (1 + self.luminance_scalar * F.conv2d(x, self.luminance))
        if self.contrast is not None:
            # local contrast: root of the Gaussian-weighted mean square, per channel
            contrast = F.conv2d(_pad(y.pow(2)), self.contrast, groups=self.channels).sqrt() + 1e-6
            y = y / (1 + self.contrast_scalar * contrast)
        return F.softplus(y)


def _pad(x: torch.Tensor) -> torch.Tensor:
    half = KERNEL_SIZE // 2
    return F.pad(x, [half, half, half, half], mode="reflect")


def load_frontend(layer: str, weights: str) -> nn.Module:
    """``frontend:<layer>`` with ``layer`` in :data:`PUBLISHED` and ``weights='published'``."""
    if layer not in PUBLISHED:
        raise ValueError(f"unknown front-end model {layer!r}; valid: {', '.join(PUBLISHED)} (e.g. 'frontend:onoff')")
    parse_weights(weights, NAME, ALLOWED)
    return FrontEnd(PUBLISHED[layer], layer)
