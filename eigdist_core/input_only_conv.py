"""Convolutions differentiated with respect to their input only, with a cheap double backward.

A Fisher product by the double-vjp trick differentiates the backward pass of
the model: for each convolution, the gradient of its input gradient
(a transposed convolution of the output gradient) with respect to that output
gradient, which is the convolution itself. torch's ``convolution_backward``
has its own double-backward rule, and that rule also computes the weight's
gradient, which nobody asked for: two convolutions where one is needed, half
of the J·v pass of a ResNet layer, and 3–6× the product of EfficientNet's
depthwise layers (docs/solvers.md). Under :class:`InputOnlyConvolution` a
convolution by fixed weights (leaf tensors: parameters and buffers) has an
input-only backward, :class:`_Transposed`, whose own derivative is the one
convolution. The response and its derivatives with respect to the input are
unchanged; the weights get no gradient, which the Fisher operator never takes.

The transposed convolution of a network's strided stem (a few image channels
to many) runs as a stride-1 convolution to s²·C channels and a pixel shuffle,
the sub-pixel form (Shi et al. 2016): oneDNN's transposed kernel vectorises
over those few channels and ran 2–8× slower on CPU (resnet18's 7×7 stem, 128
and 256 px).
"""

from __future__ import annotations

from typing import Sequence

import torch
import torch.nn.functional as F
from torch.overrides import TorchFunctionMode

_CONVOLUTIONS = {F.conv1d: 1, F.conv2d: 2, F.conv3d: 3}
_BY_DIMS = {1: (F.conv1d, F.conv_transpose1d), 2: (F.conv2d, F.conv_transpose2d), 3: (F.conv3d, F.conv_transpose3d)}

#: A strided 2-d convolution from at most this many channels (an RGB or grey image: a network's stem)
#: takes its transposed convolution in the sub-pixel form on CPU. (At stride 1 the form is a convolution
#: by the flipped kernel, which ran 1.7× slower than oneDNN's transposed kernel on the front ends'
#: one-channel Gaussians.)
STEM_CHANNELS = 4


class InputOnlyConvolution(TorchFunctionMode):
    """A torch function mode: ``F.conv{1,2,3}d`` by fixed weights get an input-only, twice-differentiable backward.

    Calls whose weight or bias is computed from other tensors (not a leaf),
    whose padding is given as a string, or whose input does not require a
    gradient pass through unchanged.

    Attributes
    ----------
    replaced : int
        Convolutions computed with the input-only backward so far.
    """

    def __init__(self) -> None:
        super().__init__()
        self.replaced = 0

    def __torch_function__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        dims = _CONVOLUTIONS.get(func)
        if dims is None:
            return func(*args, **kwargs)
        return self._convolution(func, dims, *args, **kwargs)

    def _convolution(self, func, dims: int, input: torch.Tensor, weight: torch.Tensor,
                     bias: torch.Tensor | None = None, stride=1, padding=0, dilation=1, groups: int = 1) -> torch.Tensor:
        fixed = weight.grad_fn is None and (bias is None or bias.grad_fn is None)
        if not fixed or isinstance(padding, str) or not input.requires_grad:
            return func(input, weight, bias, stride, padding, dilation, groups)
        self.replaced += 1
        geometry = _Geometry(_tuple(stride, dims), _tuple(padding, dims), _tuple(dilation, dims), groups)
        return _InputOnly.apply(input, weight.detach(), None if bias is None else bias.detach(), geometry)


def _tuple(value: int | Sequence[int], dims: int) -> tuple[int, ...]:
    return tuple(value) if isinstance(value, (tuple, list)) else (value,) * dims


class _Geometry:
    """Stride, padding, dilation and groups of one convolution, and its sub-pixel weights once built."""

    def __init__(self, stride: tuple[int, ...], padding: tuple[int, ...], dilation: tuple[int, ...], groups: int):
        self.stride, self.padding, self.dilation, self.groups = stride, padding, dilation, groups
        self.subpixel: tuple[torch.Tensor, int, int] | None = None

    def convolve(self, x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None = None) -> torch.Tensor:
        return _BY_DIMS[weight.ndim - 2][0](x, weight, bias, self.stride, self.padding, self.dilation, self.groups)

    def is_stem(self, grad: torch.Tensor, weight: torch.Tensor) -> bool:
        return (weight.ndim == 4 and grad.ndim == 4 and self.groups == 1 and weight.shape[1] <= STEM_CHANNELS
                and self.dilation == (1, 1) and self.stride[0] == self.stride[1] > 1 and grad.device.type == "cpu")


# Both functions use the ctx-in-forward style: with a separate ``setup_context`` torch binds the
# arguments through ``inspect.signature`` on every call, 0.6 ms per Fisher product of resnet18's layer1.
class _InputOnly(torch.autograd.Function):
    """y = conv(x, w, b); its backward is :class:`_Transposed`, differentiable with respect to the gradient."""

    @staticmethod
    def forward(ctx, x, weight, bias, geometry):
        ctx.save_for_backward(weight)
        ctx.shape, ctx.geometry = x.shape, geometry
        return geometry.convolve(x, weight, bias)

    @staticmethod
    def backward(ctx, grad):
        (weight,) = ctx.saved_tensors
        return _Transposed.apply(grad, weight, ctx.shape, ctx.geometry), None, None, None


class _Transposed(torch.autograd.Function):
    """The input gradient conv_transpose(g, w) of a convolution; its derivative is that convolution."""

    @staticmethod
    def forward(ctx, grad, weight, shape, geometry):
        ctx.save_for_backward(weight)
        ctx.geometry = geometry
        if geometry.is_stem(grad, weight):
            return _subpixel_transposed(grad, weight, shape, geometry)
        dims = weight.ndim - 2
        # the rows and columns a strided convolution skipped at the far edge come back as output padding
        output_padding = tuple(
            shape[-dims + i] - ((grad.shape[-dims + i] - 1) * geometry.stride[i] - 2 * geometry.padding[i]
                                + geometry.dilation[i] * (weight.shape[2 + i] - 1) + 1)
            for i in range(dims)
        )
        return _BY_DIMS[dims][1](grad, weight, None, geometry.stride, geometry.padding, output_padding,
                                 geometry.groups, geometry.dilation)

    @staticmethod
    def backward(ctx, v):
        (weight,) = ctx.saved_tensors
        return ctx.geometry.convolve(v, weight), None, None, None


def _subpixel_transposed(grad: torch.Tensor, weight: torch.Tensor, shape: torch.Size, geometry: _Geometry) -> torch.Tensor:
    """conv_transpose2d(grad, weight) of a stride-s convolution as a stride-1 convolution and a pixel shuffle.

    Output pixel s·Y + p gathers the taps k with (p + padding − k) divisible by s, from grad at
    Y + (p + padding − k) / s: per phase p a small kernel over grad, all s² phases of all channels in
    one convolution to s²·C channels.
    """
    s = geometry.stride[0]
    if geometry.subpixel is None:
        geometry.subpixel = _subpixel_weights(weight, s, geometry.padding)
    kernel, low, high = geometry.subpixel
    rows, cols = -(-shape[-2] // s), -(-shape[-1] // s)  # phase grid covering the input
    padded = F.pad(grad, (-low, max(0, cols - grad.shape[-1] + high), -low, max(0, rows - grad.shape[-2] + high)))
    phases = F.conv2d(padded, kernel)[..., :rows, :cols]
    return F.pixel_shuffle(phases, s)[..., : shape[-2], : shape[-1]]


def _subpixel_weights(weight: torch.Tensor, s: int, padding: tuple[int, int]) -> tuple[torch.Tensor, int, int]:
    """The (s²·C, O, T_h, T_w) stride-1 kernel of the sub-pixel form, and its offset range over grad."""
    out, channels, kh, kw = weight.shape

    def taps(size: int, pad: int) -> list[tuple[int, int, int]]:  # (phase, tap, offset into grad)
        return [(p, k, (p + pad - k) // s) for p in range(s) for k in range(size) if (p + pad - k) % s == 0]

    rows, cols = taps(kh, padding[0]), taps(kw, padding[1])
    low = min(d for *_, d in rows + cols)
    high = max(d for *_, d in rows + cols)
    kernel = weight.new_zeros(channels, s, s, out, high - low + 1, high - low + 1)
    for py, ky, dy in rows:
        for px, kx, dx in cols:
            kernel[:, py, px, :, dy - low, dx - low] = weight[:, :, ky, kx].T
    return kernel.reshape(channels * s * s, out, high - low + 1, high - low + 1), low, high
