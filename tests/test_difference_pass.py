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


@pytest.mark.parametrize("layer", ["ln", "lg", "lgg", "onoff"])
def test_front_ends_match_float64_passes(layer):
    """The traced front ends (filters on the difference in float32, divisive normalisation and softplus in
    float64): s equal and ρ within 1e-6 of float64 passes at every α from 1e-6 to 4; the difference itself
    within 1e-5 of float64 where plain float32 passes are off by more than 10 × RHO_RTOL. The last item is
    uniform light, to which a centre-surround filter barely responds: frontend:ln's float32 J·v of it
    fails the check and its ρ takes other passes, still equal to float64."""
    front = models.load(f"frontend:{layer}", "published")
    front64 = as_float64(front)
    image, items = _items(3, 24, 3)
    items = np.concatenate([items, np.full((1, 1, 24, 24), 1 / 24)])
    x = torch.from_numpy(image)[None]
    difference = difference_pass(front, front64, x)
    assert difference is not None and difference.checked
    alphas = list(np.geomspace(1e-6, 4.0, 9))
    exact = layer_values(front64, None, image, items, [4.0] * 4, alphas)
    fast = layer_values(front64, None, image, items, [4.0] * 4, alphas, front)
    np.testing.assert_array_equal(fast[0], exact[0])
    np.testing.assert_allclose(fast[1], exact[1], rtol=1e-6)
    np.testing.assert_allclose(fast[2], exact[2], rtol=1e-6)
    v = torch.from_numpy(items[:3])
    with torch.no_grad():
        want = {a: (front64(x + a * v) - front64(x)).flatten(1) for a in (1e-6, 4.0)}
        for alpha, d in want.items():
            assert ((difference(alpha * v).double() - d).norm(dim=1) / d.norm(dim=1)).max() < 1e-5
        single = (front(x.float() + 1e-6 * v.float()) - front(x.float())).double().flatten(1)
        assert ((single - want[1e-6]).norm(dim=1) / want[1e-6].norm(dim=1)).max() > 10 * RHO_RTOL
    jv = difference.jvp(torch.from_numpy(items)).double()
    error = (jv ** 2).sum(dim=1).numpy() / exact[0][:, 0] - 1
    assert np.abs(error[:3]).max() < 1e-6
    if layer == "ln":  # no gain control: its response to uniform light is rounding, and the check refuses the float32 J·v
        assert abs(error[3]) > 1


@pytest.mark.parametrize("pool", [nn.MaxPool2d(3, 2, 1), nn.MaxPool2d(2), nn.MaxPool2d((3, 2), (1, 2), (1, 0), dilation=2),
                                  nn.MaxPool2d(3, 2, 1, ceil_mode=True)])
def test_max_pooling_differences_match_float64(pool):
    """Max pooling by its windows' offsets from their maxima (padding, dilation, uneven windows; ceil mode
    by the float64 rule): f(x + δ) − f(x) within 1e-6 of float64 at δ from 1e-7 to 1, ties included (the
    image has plateaus)."""
    torch.manual_seed(1)
    model = LayerModel(nn.Sequential(nn.Conv2d(3, 2, 3, padding=1), pool).eval(), "1", [0.4] * 3, [0.3] * 3, "pool")
    model64 = as_float64(model)
    image, items = _items(2, 12, 4)
    image[:, :6, :6] = 0.5
    x, v = torch.from_numpy(image)[None], torch.from_numpy(items)
    difference = difference_pass(model, model64, x)
    with torch.no_grad():
        for alpha in (1e-7, 1e-3, 1.0):
            want = (model64(x + alpha * v) - model64(x)).flatten(1)
            got = difference(alpha * v).double()
            assert ((got - want).norm(dim=1) / want.norm(dim=1)).max() < 1e-6


def test_models_without_a_known_graph_take_plain_passes():
    """A graph with a value that depends on the image but is no tensor (x.size(0)): no difference pass, and
    ρ still comes out (plain passes). Front ends have a graph but are not stacked."""

    class Flat(nn.Module):
        def forward(self, z):
            return torch.tanh(z.view(z.size(0), -1)) * 2

    model = LayerModel(Flat().eval(), "mul", [0.5] * 3, [0.25] * 3, "flat")
    image, items = _items(2, 4, 2)
    assert difference_pass(model, copy.deepcopy(model).double(), torch.from_numpy(image)[None]) is None
    s, rho, _ = layer_values(as_float64(model), None, image, items, [1.0, 1.0], [1e-3, 1.0], model)
    assert rho[:, 0, 0] == pytest.approx(1.0, abs=1e-2) and (s > 0).all()
