"""Every validation error names the bad value and what is allowed."""

import pytest
import torch
from torch import nn

from eigdist_core import validate
from eigdist_core.eigendistortion import Eigendistortion
from eigdist_core.fisher import FisherOperator


@pytest.mark.parametrize(
    "image, exc, message",
    [
        ([1.0, 2.0], TypeError, "must be a torch.Tensor, got list"),
        (torch.ones(3, dtype=torch.int64), TypeError, "floating-point tensor .* got dtype torch.int64"),
        (torch.ones(1, 1, 1, 2, 2), ValueError, "got 5-D with shape \\(1, 1, 1, 2, 2\\)"),
        (torch.ones(2, 1, 4, 4), ValueError, "batch size must be 1.*\\(2, 1, 4, 4\\)"),
        (torch.ones(0), ValueError, "must not be empty"),
        (torch.tensor([1.0, float("nan"), float("inf")]), ValueError,
         r"image must be finite; it has NaN or infinite values \(2 of 3\)"),
    ],
)
def test_bad_images(image, exc, message):
    with pytest.raises(exc, match=message):
        validate.validate_image(image)


def test_value_range_checks():
    with pytest.raises(ValueError, match="0 <= low < high <= 1, got \\[0.8, 0.2\\]"):
        validate.validate_value_range((0.8, 0.2))
    with pytest.raises(ValueError, match="two numbers \\[low, high\\], got 'ab'"):
        validate.validate_value_range("ab")
    assert validate.validate_value_range([0.2, 0.8]) == (0.2, 0.8)


class DictModel(nn.Module):
    def forward(self, x):
        return {"out": x * 2}


class CastModel(nn.Module):
    def forward(self, x):
        return x.double()


class NanModel(nn.Module):
    def forward(self, x):
        return x * float("nan")


class EmptyModel(nn.Module):
    def forward(self, x):
        return x[:0]


@pytest.mark.parametrize(
    "model, exc, message",
    [
        ("not a model", TypeError, "must be callable.*got str"),
        (DictModel(), TypeError, "must return a torch.Tensor, got dict \\(a dict with keys \\['out'\\]"),
        (CastModel(), ValueError, "keep the image dtype: image is torch.float32, response is torch.float64"),
        (NanModel(), ValueError, "response must be finite"),
        (EmptyModel(), ValueError, "model response must not be empty, got shape \\(0,\\)"),
    ],
)
def test_bad_models(model, exc, message):
    with pytest.raises(exc, match=message):
        validate.validate_model(model, torch.ones(4))


def test_model_device_must_match():
    class MetaModel(nn.Module):
        def forward(self, x):
            return torch.ones(2, device="meta")

    with pytest.raises(ValueError, match="keep the image device: image is on cpu, response is on meta"):
        validate.validate_model(MetaModel(), torch.ones(4))


def test_freeze_stops_parameter_gradients(conv_net):
    conv_net.train()
    validate.freeze(conv_net)
    assert not conv_net.training
    assert not any(p.requires_grad for p in conv_net.parameters())


@pytest.mark.parametrize(
    "kwargs, exc, message",
    [
        ({"method": "svd"}, ValueError, "method must be one of auto, exact, lanczos, lobpcg, power; got 'svd'"),
        ({"k": 0}, ValueError, "1 <= k <= n/2 = 12 \\(n = 25 input values\\), got k=0"),
        ({"k": 13}, ValueError, "got k=13"),
        ({"k": 1.5}, TypeError, "k must be an int, got 1.5"),
        ({"tol": -1.0}, ValueError, "tol must be a number > 0, got -1.0"),
        ({"stop_criterion": 0}, ValueError, "tol must be a number > 0, got 0"),
        ({"max_iter": 2.5}, TypeError, "max_iter must be an int > 0, got 2.5"),
        ({"time_budget": float("inf")}, ValueError, "time_budget must be a number > 0, got inf"),
        ({"seed": "a"}, TypeError, "seed must be an int, got 'a'"),
    ],
)
def test_bad_synthesize_arguments(linear_model, kwargs, exc, message):
    eig = Eigendistortion(torch.ones(25), linear_model)
    with pytest.raises(exc, match=message):
        eig.synthesize(**kwargs)


def test_bad_dtype(linear_model):
    with pytest.raises(ValueError, match="dtype must be torch.float32 or torch.float64, got torch.float16"):
        FisherOperator(linear_model, torch.ones(25), dtype=torch.float16)
