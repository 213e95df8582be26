"""A linear model with a known Jacobian, as a ``python:`` factory: f(x) = A·vec(x) + b (``python:tests.lab.linear_model:make``)."""

import torch
from torch import nn


class AffineModel(nn.Module):
    """f(x) = A·vec(x) + b with seeded A (m × n) and b: J = A, F = AᵀA, at every x."""

    def __init__(self, n: int = 64, m: int = 20, seed: int = 0) -> None:
        super().__init__()
        gen = torch.Generator().manual_seed(seed)
        self.A = nn.Parameter(torch.randn(m, n, generator=gen), requires_grad=False)
        self.b = nn.Parameter(torch.randn(m, generator=gen), requires_grad=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x.flatten(1) @ self.A.T + self.b


def make() -> nn.Module:
    """The 8 × 8 grey version: 64 inputs, 20 outputs."""
    return AffineModel()
