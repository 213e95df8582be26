"""Chebyshev-filtered subspace iteration for the bottom: the filter in closed form, the solver against exact."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from eigdist_core.block_iteration import Trace
from eigdist_core.chebyshev import chebyshev_filter, filtered_bottom
from eigdist_core.fisher import FisherOperator
from eigdist_core.solvers import IterativeSettings, solve_exact, solve_iterative
from tests.spectra import Spectrum, check_against_exact, exact, operator

pytestmark = pytest.mark.usefixtures("one_thread")


def test_filter_is_the_scaled_chebyshev_polynomial():
    """On an eigenvector with eigenvalue λ the filter multiplies by T_d(ℓ(λ)) / T_d(ℓ(low))."""
    eigenvalues = [9.0, 6.0, 3.0, 1.0, 0.5, 0.1]
    op = FisherOperator(Spectrum(eigenvalues), torch.ones(6, dtype=torch.float64), dtype=torch.float64)
    vectors = solve_exact(op, 3).eigenvectors.double()  # rows: eigenvectors of 9, 6, 3, then 1, 0.5, 0.1
    lam = torch.tensor([9.0, 6.0, 3.0, 1.0, 0.5, 0.1], dtype=torch.float64)
    degree, cut, upper, low = 5, 2.0, 9.5, 0.1
    before = op.products
    got = chebyshev_filter(op, vectors, lam[:, None] * vectors, degree, cut, upper, low)
    ell = lambda x: (2 * x - upper - cut) / (upper - cut)  # [cut, upper] → [-1, 1]
    t = np.polynomial.chebyshev.Chebyshev.basis(degree)
    expected = torch.tensor([t(ell(float(x))) / t(ell(low)) for x in lam], dtype=torch.float64)
    assert torch.allclose((got * vectors).sum(1), expected, rtol=1e-10, atol=1e-12)
    assert torch.allclose(got, expected[:, None] * vectors, atol=1e-10)
    assert op.products - before == (degree - 1) * 6  # the first step reuses F·X


@pytest.mark.parametrize("k", [1, 4])
@pytest.mark.parametrize("case", ["conv-1x24x24", "smooth-1x24x24", "smooth-3x16x16"])
def test_chebyshev_bottom_matches_exact(case, k):
    result = solve_iterative(operator(case), k, IterativeSettings("lanczos", "chebyshev", tol=1e-3, max_iter=2000))
    check_against_exact(result, exact(case, k), k)
    assert result.method == "lanczos+chebyshev"


def test_chebyshev_bottom_with_float64_products_and_block_one():
    settings = IterativeSettings("lanczos", "chebyshev", tol=1e-3, block=1)
    result = solve_iterative(operator("smooth-3x16x16", torch.float64), 1, settings)
    check_against_exact(result, exact("smooth-3x16x16", 1), 1)


def test_bad_degree_is_refused():
    op = operator("smooth-1x24x24")
    start = torch.eye(2, op.n, dtype=torch.float64)
    with pytest.raises(ValueError, match="chebyshev degree must be >= 1, got 0"):
        filtered_bottom(op, start=(start, start), k=1, block=1, tol=1e-3, max_iter=5, deadline=float("inf"),
                        lam_max=1.0, trace=Trace(op, 0.0), degree=0)


def test_chebyshev_serves_the_bottom_only():
    with pytest.raises(ValueError, match=r"iterative method must be one of lanczos, lobpcg, power; got 'chebyshev' \(the bottom may also be chebyshev\)"):
        solve_iterative(operator("smooth-1x24x24"), 1, IterativeSettings("chebyshev", "chebyshev"))
