"""Difference passes (eigdist_core.difference_pass): f(x + δ) − f(x) rounded relative to δ, so ρ needs no float64 pass."""

from __future__ import annotations

import copy

import numpy as np
import pytest
import torch
from torch import nn

from eigdist_core import models
from eigdist_core.difference_pass import difference_pass
from eigdist_core.models.adapter import LayerModel, stack_layers
from eigdist_core.sensitivity_values import RHO_RTOL, as_float64, layer_values


def _items(b: int, size: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    items = rng.standard_normal((b, 1, size, size))
    items /= np.linalg.norm(items.reshape(b, -1), axis=1)[:, None, None, None]
    return rng.uniform(0.2, 0.8, (1, size, size)), items


def _affine_layer() -> LayerModel:
    """Conv → eval-mode batch norm (with non-trivial statistics) → conv: affine in the image."""
    torch.manual_seed(0)
    body = nn.Sequential(nn.Conv2d(3, 4, 3, padding=1), nn.BatchNorm2d(4), nn.Conv2d(4, 2, 3, stride=2))
    body[1].running_mean.uniform_(-1, 1)
    body[1].running_var.uniform_(0.5, 2)
    body[1].weight.data.uniform_(0.5, 2)
    return LayerModel(body.eval(), "2", [0.4] * 3, [0.3] * 3, "affine")


def test_an_affine_network_has_rho_one_at_every_amplitude():
    """Closed form: f affine, so f(x + αv) − f(x) = αJv and ρ = 1 to 1e-6, down to α = 1e-9 where a float32
    pass of x + αv cannot even tell the two images apart."""
    model = _affine_layer()
    image, items = _items(3, 8, 0)
    alphas = list(np.geomspace(1e-9, 4.0, 9))
    s, rho, rho_c = layer_values(as_float64(model), None, image, items, [4.0] * 3, alphas, model)
    x = torch.from_numpy(image)[None]
    jac = torch.autograd.functional.jacobian(lambda z: as_float64(model)(z).flatten(), x).reshape(-1, 64)
    exact = ((torch.from_numpy(items.reshape(3, -1)) @ jac.T) ** 2).sum(dim=1).numpy()
    np.testing.assert_allclose(s[:, 0], exact, rtol=1e-6)
    np.testing.assert_allclose(rho, 1.0, atol=1e-6)
    np.testing.assert_allclose(rho_c, 1.0, atol=1e-6)
    assert torch.equal(x.float() + 1e-9 * torch.from_numpy(items).float(), x.float().expand(3, -1, -1, -1))


def test_resnet_layers_match_float64_passes():
    """resnet18 maxpool and layer1 stacked (ReLU, max pooling, residual sums): s and ρ within 1e-5 of the
    float64 Jacobian-vector products and passes at every α from 1e-5 to 4, where plain float32 passes are off by more than 10 × RHO_RTOL."""
    nodes = ["maxpool", "layer1"]
    stack = stack_layers([models.load(f"resnet18:{n}", "random:0") for n in nodes], nodes)
    image, items = _items(3, 32, 1)
    alphas = list(np.geomspace(1e-5, 4.0, 10))
    sizes = stack.sizes(torch.from_numpy(image).float()[None])
    stack64 = as_float64(stack)
    assert difference_pass(stack, stack64, torch.from_numpy(image)[None]) is not None
    exact = layer_values(stack64, sizes, image, items, [4.0] * 3, alphas)
    fast = layer_values(stack64, sizes, image, items, [4.0] * 3, alphas, stack)
    np.testing.assert_allclose(fast[0], exact[0], rtol=1e-5)
    np.testing.assert_allclose(fast[1], exact[1], rtol=1e-5)
    np.testing.assert_allclose(fast[2], exact[2], rtol=1e-5)
    assert np.abs(exact[1] - 1).max() > 0.01  # the network is not linear over the grid
    x, v = torch.from_numpy(image).float()[None], torch.from_numpy(items).float()
    with torch.no_grad():
        d32 = ((stack(x + alphas[0] * v) - stack(x)).double() ** 2)[:, :sizes[0]].sum(dim=1).numpy()
    assert np.abs(d32 / (alphas[0] ** 2 * exact[0][:, 0]) / exact[1][:, 0, 0] - 1).max() > 10 * RHO_RTOL


def test_models_without_a_known_graph_take_plain_passes():
    """A front end (no fx graph) and a graph with a value that depends on the image but is no tensor
    (x.size(0)): no difference pass, and ρ still comes out (plain passes)."""
    front = models.load("frontend:ln", "published")
    x = torch.full((1, 1, 16, 16), 0.5, dtype=torch.float64)
    assert difference_pass(front, as_float64(front), x) is None

    class Flat(nn.Module):
        def forward(self, z):
            return torch.tanh(z.view(z.size(0), -1)) * 2

    model = LayerModel(Flat().eval(), "mul", [0.5] * 3, [0.25] * 3, "flat")
    image, items = _items(2, 4, 2)
    assert difference_pass(model, copy.deepcopy(model).double(), torch.from_numpy(image)[None]) is None
    s, rho, _ = layer_values(as_float64(model), None, image, items, [1.0, 1.0], [1e-3, 1.0], model)
    assert rho[:, 0, 0] == pytest.approx(1.0, abs=1e-2) and (s > 0).all()
