"""The front-end models' FFT filtering against direct convolution (torch.nn.functional.conv2d)."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from eigdist_core import models
from eigdist_core.models import frontend
from eigdist_core.models.frontend import filter_valid


@pytest.mark.parametrize("channels", [1, 2])
@pytest.mark.parametrize("shape", [(46, 46), (61, 50)])
def test_filter_valid_is_conv2d(channels, shape):
    """Valid correlation, one input channel for every kernel or one per kernel (grouped); non-square too."""
    gen = torch.Generator().manual_seed(0)
    x = torch.rand(3, channels, *shape, generator=gen, dtype=torch.float64)
    kernels = torch.randn(2, 1, 31, 31, generator=gen, dtype=torch.float64)  # not symmetric: catches a flip
    expected = F.conv2d(x, kernels, groups=channels if channels > 1 else 1)
    got = filter_valid(x, kernels)
    assert got.shape == expected.shape == (3, 2, shape[0] - 30, shape[1] - 30)
    assert torch.allclose(got, expected, rtol=0, atol=1e-12)


def _direct(x: torch.Tensor, kernels: torch.Tensor) -> torch.Tensor:
    return F.conv2d(x, kernels, groups=x.shape[1] if x.shape[1] > 1 else 1)


@pytest.mark.parametrize("layer", list(frontend.PUBLISHED))
def test_models_with_fft_give_the_direct_convolutions_outputs(layer, monkeypatch):
    """float32 outputs within 1e-6 of the direct-convolution model run in float64 (the reference)."""
    x = 0.2 + 0.6 * torch.rand(1, 1, 40, 52, generator=torch.Generator().manual_seed(1))
    model = models.load(f"frontend:{layer}")
    fft32 = model(x)
    with monkeypatch.context() as patch:
        patch.setattr(frontend, "filter_valid", _direct)
        direct64 = model.double()(x.double())
    assert float((fft32.double() - direct64).abs().max()) <= 1e-6
    assert float((model(x.double()) - direct64).abs().max()) <= 1e-12  # float64 FFT: the same to rounding



@pytest.mark.parametrize("channels", [1, 2])
def test_gaussian_valid_is_conv2d_with_the_gaussian(channels):
    gen = torch.Generator().manual_seed(2)
    x = torch.rand(1, channels, 45, 52, generator=gen, dtype=torch.float64)
    r = torch.arange(31, dtype=torch.float64) - 15
    profiles = torch.exp(-r**2 / (2 * torch.tensor([[1.5], [4.0]], dtype=torch.float64) ** 2))
    profiles /= profiles.sum(1, keepdim=True)
    kernels = (profiles[:, :, None] * profiles[:, None, :])[:, None]  # (2, 1, 31, 31), each summing to 1
    expected = F.conv2d(x, kernels, groups=channels if channels > 1 else 1)
    assert torch.allclose(frontend.gaussian_valid(x, kernels), expected, rtol=0, atol=1e-12)
    model_kernels = frontend.gaussian_filters((1.5, 4.0))  # float32, as the models hold them
    assert torch.allclose(frontend.gaussian_valid(x.float(), model_kernels), expected.float(), rtol=0, atol=1e-6)


def test_a_uniform_region_gives_a_finite_response_and_fisher_products():
    """A clipped highlight: the contrast energy there is ~0, which FFT rounding made negative (NaN root)."""
    from eigdist_core.fisher import FisherOperator

    x = 0.2 + 0.6 * torch.rand(1, 1, 96, 96, generator=torch.Generator().manual_seed(3))
    x[..., :, 40:] = 0.8
    model = models.load("frontend:onoff")
    assert torch.isfinite(model(x)).all()
    op = FisherOperator(model, x)
    assert torch.isfinite(op @ torch.ones(op.n)).all() and torch.isfinite(op @ torch.ones(2, op.n)).all()
