"""Test operators with known spectra, the explicit Jacobian, and the check of an iterative result against exact."""

from __future__ import annotations

import functools

import torch

from eigdist_core.fisher import FisherOperator
from eigdist_core.solvers import EigenResult, solve_exact
from tests.nets import SmallConvNet, SmoothNet

#: (net, image shape): a conv net whose bottom is a null space (fewer outputs
#: than inputs) and a smooth net with as many outputs as inputs (no null space).
CASES = {
    "conv-1x24x24": (SmallConvNet, (1, 1, 24, 24)),
    "smooth-1x24x24": (SmoothNet, (1, 1, 24, 24)),
    "conv-3x16x16": (SmallConvNet, (1, 3, 16, 16)),
    "smooth-3x16x16": (SmoothNet, (1, 3, 16, 16)),
}


def explicit_jacobian(model, image: torch.Tensor) -> torch.Tensor:
    """J = ∂f/∂x of ``model`` at ``image`` (m × n), by torch's own dense Jacobian: the reference for products."""
    x = image.reshape(-1)
    return torch.autograd.functional.jacobian(lambda v: model(v.view(image.shape)).reshape(-1), x)


def net_and_image(case: str) -> tuple[torch.nn.Module, torch.Tensor]:
    """The case's net and a seeded image of its shape."""
    net, shape = CASES[case]
    return net(channels=shape[1]), torch.rand(*shape, generator=torch.Generator().manual_seed(0))


class Spectrum(torch.nn.Module):
    """y = diag(√λ)·Qx: F = Qᵀ diag(λ) Q with chosen eigenvalues λ (gaps that power iteration can cross)."""

    def __init__(self, eigenvalues: list[float]) -> None:
        super().__init__()
        n = len(eigenvalues)
        q, _ = torch.linalg.qr(torch.randn(n, n, generator=torch.Generator().manual_seed(0), dtype=torch.float64))
        self.register_buffer("M", torch.tensor(eigenvalues, dtype=torch.float64).sqrt()[:, None] * q.T)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.M.to(x.dtype) @ x


def operator(case: str, dtype: torch.dtype = torch.float32) -> FisherOperator:
    net, image = net_and_image(case)
    return FisherOperator(net, image, dtype=dtype)


@functools.cache
def exact(case: str, k: int) -> EigenResult:
    return solve_exact(operator(case), k)


def check_against_exact(result: EigenResult, reference: EigenResult, k: int) -> None:
    """Top |cos| ≥ 0.999; bottom Rayleigh quotients ≤ exact's + 1e-3·λ_max; diagnostics honest."""
    lam_max = float(reference.eigenvalues[0])
    cos = (result.eigenvectors[:k] * reference.eigenvectors[:k]).sum(1).abs()
    assert cos.min() >= 0.999, cos
    bottom = result.eigenvalues[k:].double()
    assert (bottom <= reference.eigenvalues[k:].double() + 1e-3 * lam_max).all()
    # an iterative bottom within tol·λ_max of 0 cannot be told from null: possibly degenerate (docs/solvers.md)
    assert result.degenerate == (reference.degenerate or result.possibly_degenerate)
    assert all(d.converged for d in result.diagnostics)
    # the reported Rayleigh quotients are the eigenvalues, and close to the true ones
    assert torch.allclose(
        torch.tensor([d.rayleigh for d in result.diagnostics], dtype=torch.float64),
        result.eigenvalues.double(),
    )
    assert abs(float(result.eigenvalues[0]) - lam_max) <= 1e-4 * lam_max
