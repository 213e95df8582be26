"""Small models for the tests, whose Jacobians are known or cheap (one home; fixtures in conftest.py)."""

from __future__ import annotations

import torch
from torch import nn


class LinearModel(nn.Module):
    """The seed tutorial's linear model: y = Mx, so J = M and F = MᵀM."""

    def __init__(self, n: int = 25, m: int = 10, seed: int = 0) -> None:
        super().__init__()
        torch.manual_seed(seed)
        self.M = nn.Linear(n, m, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.M(x)


class _TwoConvNet(nn.Module):
    """conv 3×3 to 4 channels, softplus, the subclass's ``last`` conv, tanh; torch seeded with ``seed`` first."""

    def __init__(self, channels: int = 1, seed: int = 0) -> None:
        super().__init__()
        torch.manual_seed(seed)
        self.net = nn.Sequential(nn.Conv2d(channels, 4, 3, padding=1), nn.Softplus(), self.last(channels), nn.Tanh())

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)


class SmallConvNet(_TwoConvNet):
    """A small nonlinear conv net on (1, C, H, W) images."""

    @staticmethod
    def last(channels: int) -> nn.Conv2d:
        return nn.Conv2d(4, 3, 3, stride=2)


class SmoothNet(_TwoConvNet):
    """A smooth nonlinear net with as many outputs as inputs, so F has no null space."""

    @staticmethod
    def last(channels: int) -> nn.Conv2d:
        return nn.Conv2d(4, 2 * channels, 3, padding=1)


#: A lab's ``python:`` file of models eigdist refuses (``python:bad_models.py:<factory>``), one per rule of
#: ``eigdist_core.validate.validate_model``: written into a working folder by the tests that need it.
BAD_MODELS = '''\
import torch
from torch import nn
import torch.nn.functional as F


class Conv(nn.Module):
    def __init__(self, bias=None):
        super().__init__()
        torch.manual_seed(0)
        self.conv = nn.Conv2d(1, 2, 3, padding=1)
        if bias is not None:
            nn.init.constant_(self.conv.bias, bias)
        self.calls = 0

    def forward(self, x):
        return self.conv(x)


class Dead(Conv):  # a ReLU dead at every pixel of a [0, 1] image: response 0, Jacobian 0
    def forward(self, x):
        return torch.relu(self.conv(x))


class Dropout(Conv):  # dropout active in forward: a stochastic model
    def forward(self, x):
        return F.dropout(self.conv(x), 0.5, training=True)


class Growing(Conv):  # an output size that changes between calls
    def forward(self, x):
        self.calls += 1
        return self.conv(x).flatten(1)[:, : 100 + self.calls]


class NanOut(Conv):
    def forward(self, x):
        return self.conv(x) * float("nan")


class NanGrad(Conv):  # a finite response whose gradient is NaN (sqrt of the negative, unselected branch)
    def forward(self, x):
        y = self.conv(x)
        return torch.where(y > 0, torch.sqrt(y), torch.zeros_like(y))


def dead():
    return Dead(bias=-100.0)


def dropout():
    return Dropout()


def growing():
    return Growing()


def nan_out():
    return NanOut()


def nan_grad():
    return NanGrad(bias=0.0)
'''
