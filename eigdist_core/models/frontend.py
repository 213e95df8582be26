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

from dataclasses import dataclass, fields, replace
from pathlib import Path

import torch
import torch.nn.functional as F
from scipy.fft import next_fast_len
from torch import fx, nn

from .adapter import check_input
from ..io import load_json
from .weights import parse_weights
from ..errors import EigdistError, FileFormatError

#: Calls torch.fx keeps as calls when it traces a front end: a check, the linear filters (which the
#: difference pass applies to differences, eigdist_core/difference_pass.py) and an elementwise root.
for _name in ("check_input", "filter_valid", "gaussian_valid", "_root"):
    fx.wrap(_name)

NAME = "frontend"
KERNEL_SIZE = 31
#: Reflect padding of 15 pixels needs at least 16 pixels per side.
MIN_SIZE = KERNEL_SIZE // 2 + 1
#: Weights values front-end models take: the paper's parameters, or a JSON file of parameters.
ALLOWED = ("published", "file")


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

    Takes grey (N, 1, H, W) images with H, W ≥ :data:`MIN_SIZE` and returns
    (N, channels, H, W). It has no parameters, only fixed filters (buffers).
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
        # torch.fx traces this (check_input, filter_valid, gaussian_valid and _root as calls), so the
        # sensitivity table's difference passes carry f(x + δ) − f(x) through it (eigdist_core/difference_pass.py)
        check_input(image, self.family, channels=(1,), min_size=MIN_SIZE)
        x = _pad(image)
        if self.luminance is None:
            y = filter_valid(x, self.center_surround)
        else:  # both filters see the same input: one transform of it
            both = filter_valid(x, torch.cat([self.center_surround, self.luminance]))
            y, lum = both[:, :self.channels], both[:, self.channels:]
            y = y / (1 + self.luminance_scalar * lum)
        if self.contrast is not None:
            # local contrast: root of the Gaussian-weighted mean square, per channel
            contrast = _root(gaussian_valid(_pad(y.pow(2)), self.contrast))
            y = y / (1 + self.contrast_scalar * contrast)
        return F.softplus(y)


def filter_valid(x: torch.Tensor, kernels: torch.Tensor) -> torch.Tensor:
    """Valid cross-correlation of (N, C, P, Q) ``x`` with (K, 1, s, s) ``kernels``, by FFT.

    C is 1 (every kernel sees the one channel) or K (kernel i sees channel i, a
    grouped convolution). Equal to ``F.conv2d(x, kernels, groups=C)`` to float
    rounding: the circular convolution of size N ≥ P (and ≥ Q) with the flipped
    kernel wraps only into the first s − 1 rows and columns, which are cut. N
    is the next length with small prime factors (``scipy.fft.next_fast_len``):
    a padded image of 64 + 30 = 94 = 2·47 pixels transforms 4× slower than one
    of 96. For the 31 × 31 kernels it is 4–16× faster than direct convolution
    on 64–256 pixel images (docs/solvers.md, "The product").
    """
    P, Q = x.shape[-2:]
    s = kernels.shape[-1]
    size = (next_fast_len(P, real=True), next_fast_len(Q, real=True))
    spectrum = torch.fft.rfft2(x, s=size) * torch.fft.rfft2(kernels.flip(-2, -1)[:, 0], s=size)
    return torch.fft.irfft2(spectrum, s=size)[..., s - 1:P, s - 1:Q]


def gaussian_valid(x: torch.Tensor, kernels: torch.Tensor) -> torch.Tensor:
    """:func:`filter_valid` for separable kernels (the Gaussians), as a column then a row convolution.

    Used for the local contrast energy, the root of a Gaussian-weighted mean
    square: a sum of non-negative terms stays non-negative in floating point,
    where FFT rounding (about 1e-7 of the largest energy in float32) turns the
    energy of a uniform region (a clipped highlight) negative and its square
    root NaN. Two 31-tap passes also cost less than the FFT.
    """
    s = kernels.shape[-1]
    column, row = kernels.sum(-1), kernels.sum(-2)  # outer(column, row) = kernel, for a kernel summing to 1
    y = F.conv2d(x, column.view(-1, 1, s, 1), groups=x.shape[1] if x.shape[1] > 1 else 1)
    return F.conv2d(y, row.view(-1, 1, 1, s), groups=y.shape[1])


def _root(energy: torch.Tensor) -> torch.Tensor:
    """√energy + 1e-6, with a finite slope where the energy is 0."""
    return energy.clamp_min(torch.finfo(energy.dtype).tiny).sqrt() + 1e-6


def _pad(x: torch.Tensor) -> torch.Tensor:
    half = KERNEL_SIZE // 2
    return F.pad(x, [half, half, half, half], mode="reflect")


def load_frontend(layer: str, weights: str) -> nn.Module:
    """``frontend:<layer>`` with the published parameters or parameters read from a JSON file.

    Parameters
    ----------
    layer
        ``ln``, ``lg``, ``lgg`` or ``onoff`` (:data:`PUBLISHED`).
    weights
        ``published``, or a path to a JSON object whose keys are parameters of
        this model (e.g. ``{"center_std": [1.3, 0.3]}``); parameters it leaves
        out keep their published values.

    Raises
    ------
    ValueError
        For an unknown layer, weights other than these, or a bad parameter file.
    """
    if layer not in PUBLISHED:
        raise EigdistError(f"unknown front-end model {layer!r}; valid: {', '.join(PUBLISHED)} (e.g. 'frontend:onoff')")
    parsed = parse_weights(weights, NAME, ALLOWED)
    params = PUBLISHED[layer]
    if parsed.kind == "file":
        params = _params_from_file(parsed.path, params, layer)
    return FrontEnd(params, layer)


def _params_from_file(path: Path, published: FrontEndParams, layer: str) -> FrontEndParams:
    """The published parameters with those in the JSON file at ``path`` replaced, checked."""
    try:
        given = load_json(path)
    except FileFormatError as err:
        raise EigdistError(f"front-end parameter file {str(path)!r} is not JSON: {err.__cause__}") from None
    settable = [f.name for f in fields(FrontEndParams) if f.name != "on_center" and getattr(published, f.name) is not None]
    if not isinstance(given, dict):
        raise EigdistError(f"front-end parameter file {str(path)!r} must hold a JSON object, got {type(given).__name__}")
    if set(given) - set(settable):
        raise EigdistError(
            f"front-end parameter file {str(path)!r}: {sorted(set(given) - set(settable))} are not parameters "
            f"of frontend:{layer}; it has {', '.join(settable)}"
        )
    channels = len(published.center_std)
    for key, value in given.items():
        values = [value] if key == "amplitude_ratio" else value
        ok = isinstance(values, list) and len(values) == (1 if key == "amplitude_ratio" else channels)
        if not ok or not all(isinstance(v, (int, float)) and not isinstance(v, bool) and v > 0 for v in values):
            size = "one number" if key == "amplitude_ratio" else f"a list of {channels} numbers"
            raise EigdistError(f"front-end parameter file {str(path)!r}: {key} must be {size} > 0, got {value!r}")
    return replace(published, **{k: v if k == "amplitude_ratio" else tuple(v) for k, v in given.items()})
