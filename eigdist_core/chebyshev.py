"""The bottom of the spectrum of F by Chebyshev-filtered subspace iteration.

The top phase gives λ_max, so the whole spectrum of F lies in [0, λ_max]. A
Chebyshev polynomial of degree d on [a, λ_max] stays within ±1 there and grows
fast below a, so applying it to a block damps every eigendirection above the
cut a and amplifies those below it (Zhou & Saad 2007). Each outer iteration
filters the current block of Ritz vectors X (d − 1 block products: the first
step reuses F·X), orthonormalises the filtered block against X and takes the
Rayleigh-Ritz pairs of [X, filtered] (one more block of products). The cut is the
first Ritz value left out of the block, so the filter sharpens as the block
converges.

The recurrence is the scaled one of Zhou & Saad, which keeps p(θ_min) = 1 and
so the filtered vectors O(1) in float32 products; Rayleigh-Ritz, residuals and
orthogonalisation run in float64 as in :mod:`eigdist_core.block_iteration`.

References
----------
Zhou, Y., & Saad, Y. (2007). A Chebyshev–Davidson algorithm for large
symmetric eigenproblems. *SIAM Journal on Matrix Analysis and Applications*,
29(3), 954–971.
"""

from __future__ import annotations

import time

import torch
from tqdm.auto import tqdm

from .block_iteration import Phase, Trace, _ritz, apply, orthonormalize
from .fisher import FisherOperator

#: Default polynomial degree: products per outer iteration are degree × block.
DEGREE = 8
#: λ_max from the top phase is a Ritz value, a lower bound; the filter's upper end sits this factor above it.
UPPER_MARGIN = 1.01


def chebyshev_filter(
    op: FisherOperator, X: torch.Tensor, FX: torch.Tensor, degree: int, cut: float, upper: float, low: float,
) -> torch.Tensor:
    """p(F)·X for the degree-``degree`` Chebyshev polynomial on [cut, upper], scaled so p(low) = 1.

    Parameters
    ----------
    X, FX
        Float64 rows and their Fisher products (the first step reuses FX).
    degree
        ≥ 1; costs degree − 1 block products.
    cut, upper
        The damped interval (|p| ≤ 1/|T_d(ℓ)| there, ℓ the image of ``low``).
    low
        An estimate of the smallest eigenvalue wanted, low < cut (the scaling point).
    """
    e, c = (upper - cut) / 2, (upper + cut) / 2
    sigma = e / (low - c)
    tau = 2 / sigma
    prev, Y = X, (FX - c * X) * (sigma / e)
    for _ in range(degree - 1):
        sigma_next = 1 / (tau - sigma)
        prev, Y = Y, (apply(op, Y) - c * Y) * (2 * sigma_next / e) - (sigma * sigma_next) * prev
        sigma = sigma_next
    return Y


def filtered_bottom(
    op: FisherOperator,
    *,
    start: tuple[torch.Tensor, torch.Tensor],
    k: int,
    block: int,
    tol: float,
    max_iter: int,
    deadline: float,
    lam_max: float,
    trace: Trace,
    degree: int = DEGREE,
    desc: str = "bottom (chebyshev)",
) -> Phase:
    """The k smallest eigenpairs of F by Chebyshev-filtered subspace iteration.

    Parameters
    ----------
    start
        ``(S, FS)``: orthonormal float64 rows and their products, e.g. the top
        phase's final subspace (reused without a product).
    k, block
        Wanted vectors and block size b ≥ k.
    tol, max_iter, deadline
        Stop when every wanted ‖Fv − θv‖ / λ_max ≤ ``tol``, after ``max_iter``
        outer iterations, or at ``time.perf_counter()`` = ``deadline``.
    lam_max
        The top phase's largest Ritz value: the spectral bound and the residual scale.
    degree
        Chebyshev degree per outer iteration.

    Returns
    -------
    Phase
        The k vectors in ascending Rayleigh quotient, with their products.
    """
    if degree < 1:
        raise ValueError(f"chebyshev degree must be >= 1, got {degree!r}")
    t0, p0 = time.perf_counter(), op.products
    S, FS = start
    upper = UPPER_MARGIN * lam_max
    iterations = 0
    bar = tqdm(total=max_iter, desc=desc, leave=False, disable=None)
    while True:
        theta_all, Y = _ritz(S, FS, largest=False)
        Yx = Y[:, :block]
        X, FX, theta = Yx.T @ S, Yx.T @ FS, theta_all[:block]
        res = torch.linalg.vector_norm(FX - theta[:, None] * X, dim=1) / max(abs(lam_max), 1e-300)
        trace.record("bottom", iterations, float(theta[0]), float(res[:k].max()))
        bar.set_postfix(residual=f"{float(res[:k].max()):.1e}", refresh=False)
        if bool((res[:k] <= tol).all()) or iterations >= max_iter or time.perf_counter() > deadline:
            break
        iterations += 1
        bar.update()
        cut = float(theta_all[min(block, theta_all.numel() - 1)])  # the first Ritz value left out
        W = orthonormalize(chebyshev_filter(op, X, FX, degree, cut, upper, float(theta[0])), [X])
        if W.shape[0] == 0:
            break
        S, FS = torch.cat([X, W]), torch.cat([FX, apply(op, W)])
    bar.close()
    return Phase.ended(X, FX, k, iterations, op.products - p0, t0, (S, FS))
