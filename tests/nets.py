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


class SmallConvNet(nn.Module):
    """A small nonlinear conv net on (1, C, H, W) images."""

    def __init__(self, channels: int = 1, seed: int = 0) -> None:
        super().__init__()
        torch.manual_seed(seed)
        self.net = nn.Sequential(
            nn.Conv2d(channels, 4, 3, padding=1), nn.Softplus(),
            nn.Conv2d(4, 3, 3, stride=2), nn.Tanh(),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)


class SmoothNet(nn.Module):
    """A smooth nonlinear net with as many outputs as inputs, so F has no null space."""

    def __init__(self, channels: int = 1, seed: int = 0) -> None:
        super().__init__()
        torch.manual_seed(seed)
        self.net = nn.Sequential(
            nn.Conv2d(channels, 4, 3, padding=1), nn.Softplus(),
            nn.Conv2d(4, 2 * channels, 3, padding=1), nn.Tanh(),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)
