"""The bottom's Jacobi preconditioner: F's diagonal estimated from Jᵀz probes, and what it saves."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from eigdist_core.eigendistortion import Eigendistortion
from eigdist_core.fisher import FisherOperator
from eigdist_core.preconditioner import estimate_diagonal, jacobi
from eigdist_core.solvers import IterativeSettings, solve_exact, solve_iterative
from tests.nets import LinearModel
from tests.spectra import Spectrum

pytestmark = pytest.mark.usefixtures("one_thread")

F64 = torch.float64


class Sensitivities(nn.Module):
    """y = C·diag(s)·x: a well-conditioned mixing C after pixel sensitivities s spread over two decades.

    F = diag(s) CᵀC diag(s): its bottom is a dense cluster set by the pixels that matter little, the
    structure of a network's min eigendistortions, and Jacobi's diag(F)⁻¹ undoes most of the spread.
    """

    def __init__(self, n: int = 400, seed: int = 0) -> None:
        super().__init__()
        gen = torch.Generator().manual_seed(seed)
        q, _ = torch.linalg.qr(torch.randn(n, n, generator=gen, dtype=F64))
        mixing = q * torch.linspace(1.0, 2.0, n, dtype=F64)
        self.register_buffer("M", mixing * 10 ** (-2 * torch.rand(n, generator=gen, dtype=F64)))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.M.to(x.dtype) @ x


def test_a_diagonal_jacobian_gives_the_exact_diagonal_unshrunk():
    # J = diag(a): (Jᵀz)_i² = a_i² z_i² = a_i² for any ±1 vector z, so the probes agree: no noise, no shrinkage
    a = torch.linspace(-3.0, 2.0, 50, dtype=F64)
    op = FisherOperator(lambda x: a * x, torch.ones(50, dtype=F64), dtype=F64)
    assert torch.allclose(estimate_diagonal(op, probes=2), a**2, rtol=1e-12)
    assert op.products == 0  # probes are vector-Jacobian products, not Fisher products


def test_the_estimate_converges_to_the_diagonal_of_a_dense_fisher_matrix():
    net = LinearModel(n=30, m=40).double()
    op = FisherOperator(net, torch.ones(30, dtype=F64), dtype=F64)
    M = net.M.weight.detach()
    truth = (M * M).sum(0)  # diag(MᵀM): the squared column norms
    coarse = (estimate_diagonal(op, probes=8) - truth).abs().div(truth).mean()
    fine = (estimate_diagonal(op, probes=4000) - truth).abs().div(truth).mean()
    assert fine < 0.05 and fine < coarse / 4, (float(fine), float(coarse))  # error ~ 1/sqrt(probes)


def test_the_probes_are_seeded():
    op = FisherOperator(LinearModel(n=30, m=40).double(), torch.ones(30, dtype=F64), dtype=F64)
    first, again, other = (estimate_diagonal(op, probes=12, seed=s) for s in (3, 3, 4))
    assert torch.equal(first, again) and not torch.equal(first, other)


def test_jacobi_inverts_the_shifted_diagonal_at_mean_one():
    d = torch.tensor([0.0, 1.0, 3.0], dtype=F64)  # mean 4/3: a zero entry is bounded by the shift
    T = jacobi(d, shift=0.75)
    expected = 1 / (d + 1.0)
    assert torch.allclose(T, expected / expected.mean())
    assert float(T.mean()) == pytest.approx(1.0)


def test_the_preconditioned_bottom_finds_the_exact_min_in_fewer_products():
    net, x = Sensitivities(), torch.ones(400, dtype=F64)
    truth = solve_exact(FisherOperator(net, x, dtype=F64), 1)
    runs = {p: solve_iterative(FisherOperator(net, x, dtype=F64), 1,
                               IterativeSettings("lanczos", "lobpcg", tol=1e-7, max_iter=5000, diagonal_probes=p))
            for p in (0, 32)}
    for result in runs.values():
        assert result.diagnostics[1].converged
        assert float(result.eigenvalues[1]) == pytest.approx(float(truth.eigenvalues[1]), rel=1e-6)
        assert abs(float(result.eigenvectors[1] @ truth.eigenvectors[1])) > 0.9999
    plain, preconditioned = (runs[p].diagnostics[1] for p in (0, 32))
    assert preconditioned.products < plain.products / 2, (preconditioned.products, plain.products)
    assert (plain.diagonal_probes, preconditioned.diagonal_probes) == (0, 32)
    assert runs[32].diagnostics[0].diagonal_probes == 0  # the top is not preconditioned


@pytest.mark.filterwarnings("ignore:.*possibly degenerate:RuntimeWarning")  # a bottom below tol, beside the point
def test_synthesize_passes_the_probes_on_and_refuses_bad_counts():
    net, x = Sensitivities(n=100), torch.ones(100, dtype=F64)
    eig = Eigendistortion(x, net, dtype=F64).synthesize(method="lobpcg", k=1, diagonal_probes=0)
    assert eig.diagnostics["vectors"][1]["diagonal_probes"] == 0
    eig.synthesize(method="lobpcg", k=1)
    assert eig.diagnostics["vectors"][1]["diagonal_probes"] == 32
    for bad in (-1, 2.5, True):
        with pytest.raises((ValueError, TypeError), match=rf"diagonal_probes must be an int >= 0.*got {bad!r}"):
            eig.synthesize(method="lobpcg", diagonal_probes=bad)
    with pytest.raises(ValueError, match=r"diagonal_probes must be 0 \(no preconditioner\) or >= 2.*got 1"):
        eig.synthesize(method="lobpcg", diagonal_probes=1)
    with pytest.raises(ValueError, match=r"estimate_diagonal needs probes >= 2.*got 1"):
        estimate_diagonal(eig.operator, probes=1)


def test_one_eigenvalue_far_above_a_dense_bottom_does_not_steer_the_preconditioner():
    # diag(F) ≈ λ_max·q², the max eigendistortion's pixels, unless the max is taken out: then what is left is
    # nearly uniform, the noise of 32 probes is shrunk away, and the bottom costs what it costs unpreconditioned
    # (95 products against 20 before the max was taken out)
    values = torch.linspace(1e-3, 2e-2, 199).tolist() + [100.0]
    net, x = Spectrum(values), torch.rand(200, dtype=F64, generator=torch.Generator().manual_seed(1))
    settings = [IterativeSettings("lanczos", "lobpcg", tol=1e-6, max_iter=5000, diagonal_probes=p) for p in (0, 32)]
    runs = [solve_iterative(FisherOperator(net, x, dtype=F64), 1, s).diagnostics[1] for s in settings]
    assert runs[1].products <= runs[0].products, [r.products for r in runs]
    assert runs[1].rayleigh == pytest.approx(runs[0].rayleigh, rel=1e-3)


def test_noise_alone_is_shrunk_to_a_uniform_diagonal():
    # an orthogonal J: F = I, every entry of the diagonal is 1, and 8 probes only see noise around it
    q, _ = torch.linalg.qr(torch.randn(60, 60, dtype=F64, generator=torch.Generator().manual_seed(3)))
    op = FisherOperator(lambda x: q @ x, torch.ones(60, dtype=F64), dtype=F64)
    d = estimate_diagonal(op, probes=8)  # unshrunk, each entry would be off by about sqrt(2 / 8) = 0.5
    assert float(d.mean()) == pytest.approx(1.0, rel=0.1)
    assert float(d.std()) < 0.1 and float((jacobi(d) - 1).abs().max()) < 0.2


@pytest.mark.parametrize("method", ["lanczos", "power"])
def test_only_lobpcg_bottoms_are_preconditioned(method):
    net, x = Sensitivities(n=100), torch.ones(100, dtype=F64)
    settings = IterativeSettings(method, method, tol=1e-3, max_iter=3000)
    result = solve_iterative(FisherOperator(net, x, dtype=F64), 1, settings)
    assert result.diagnostics[1].diagonal_probes == 0
