"""A diagonal (Jacobi) preconditioner for the bottom of F = JᵀJ, from a stochastic estimate of its diagonal.

The min eigendistortions of a network are localised: they live where the
image's pixels matter little to the layer (dead units, the losers of a max
pool). F's diagonal, each pixel's own sensitivity ‖J e_i‖², varies over the
image by two orders of magnitude on resnet18, and LOBPCG preconditioned by
its inverse (Knyazev 2001) reaches the bottom in far fewer Fisher products
than unpreconditioned; a shift-invariant (Fourier) preconditioner cannot see
where the pixels are and did not pay (docs/solvers.md).

F's diagonal is not formed: diag(JᵀJ)_i = E[(Jᵀz)_i²] for z with independent
±1 entries over the outputs (Bekas, Kokiopoulou & Saad 2007), so ``probes``
vector-Jacobian products, each about half a Fisher product, estimate it.

References
----------
Bekas, C., Kokiopoulou, E., & Saad, Y. (2007). An estimator for the diagonal
of a matrix. *Applied Numerical Mathematics*, 57(11–12), 1214–1229.
"""

from __future__ import annotations

import torch

from .fisher import GRAPH_BLOCK, FisherOperator

#: Probes of F's diagonal: the estimate's relative error per pixel is about sqrt(2 / probes) (25 % at 32),
#: ample for a preconditioner, at the cost of 16 Fisher products (docs/solvers.md).
PROBES = 32

#: The preconditioner is 1 / (d + SHIFT · mean(d)): the shift bounds the step in pixels whose estimated
#: sensitivity is tiny or underestimated (docs/solvers.md, where 0.001–0.1 were measured).
SHIFT = 0.01

#: The estimated diagonal is used when at least this share of its variance across entries is not the probes'
#: noise (measured at 128 px: resnet18 0.63–0.84; frontend:ln 0.15–0.28); below, it is treated as uniform.
SIGNAL = 0.5


def estimate_diagonal(
    op: FisherOperator, probes: int = PROBES, seed: int = 0,
    outside: tuple[torch.Tensor, torch.Tensor] | None = None,
) -> torch.Tensor:
    """F's diagonal, estimated from ``probes`` ≥ 2 products Jᵀz with seeded ±1 vectors z (float64, length n).

    ``outside`` = (S, FS), orthonormal rows and their products (the max
    eigendistortions): the diagonal is then that of (I − P)F(I − P), P the
    projection on S, where the bottom's eigenvectors live, at no further
    product. One eigenvalue far above the rest would otherwise make the
    diagonal the squared pixels of the max eigendistortion, which say nothing
    of the bottom (a test's spectrum, where it cost 5× the products).

    The estimate is the mean of (Jᵀz)² over the probes, unless the probes'
    sampling noise explains more than 1 − :data:`SIGNAL` of its variance
    across entries: then the diagonal cannot be told from uniform, and a uniform one is
    returned (the preconditioner is the identity) rather than noise, a random
    rescaling that cost a test 160× the products. The vectors are drawn on
    the CPU, so a seed gives the same probes on any device.
    """
    if probes < 2:
        raise ValueError(f"estimate_diagonal needs probes >= 2 (the spread between them measures its noise); "
                         f"got {probes}")
    gen = torch.Generator().manual_seed(seed)
    total = torch.zeros(op.n, dtype=torch.float64, device=op.device)
    total_sq = torch.zeros_like(total)
    for start in range(0, probes, GRAPH_BLOCK):
        rows = min(GRAPH_BLOCK, probes - start)
        signs = torch.randint(0, 2, (rows, op.m), generator=gen, dtype=torch.int8).mul_(2).sub_(1)
        squares = op.vjp(signs.to(dtype=op.dtype, device=op.device)).to(torch.float64).square()
        total += squares.sum(0)
        total_sq += squares.square().sum(0)
    mean = total / probes
    noise = ((total_sq - probes * mean**2) / (probes - 1)).clamp(min=0) / probes  # variance of each mean
    if outside is not None:
        S, FS = outside
        H = S @ FS.T
        mean = (mean - 2 * (S * FS).sum(0) + (((H + H.T) / 2) @ S * S).sum(0)).clamp(min=0)
    spread = mean.var() if mean.numel() > 1 else mean.new_zeros(())
    if spread <= 0 or 1 - noise.mean() / spread < SIGNAL:
        return mean.mean().expand_as(mean).clone()
    return mean


def jacobi(diagonal: torch.Tensor, shift: float = SHIFT) -> torch.Tensor:
    """The preconditioner's diagonal, 1 / (d + shift · mean(d)), scaled to mean 1 (all ones for d = 0)."""
    if not float(diagonal.mean()) > 0:  # F = 0 to the estimate: no pixel is more sensitive than another
        return torch.ones_like(diagonal)
    inverse = 1 / (diagonal + shift * diagonal.mean())
    return inverse / inverse.mean()
