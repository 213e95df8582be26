"""Eigen-solvers for the top k and bottom k eigenvectors of a Fisher operator.

Every method returns one :class:`EigenResult`: eigenvalues in descending order
(top k, then bottom k, plenoptic's ``eigenindex`` ``[0..k-1, n-k..n-1]``), unit
eigenvectors with a fixed sign, and per-vector diagnostics.
"""

from __future__ import annotations

import time
import warnings
from dataclasses import asdict, dataclass, field

import torch

from .fisher import FisherOperator

#: λ_min ≤ DEGENERATE_RATIO · λ_max marks the bottom as a null space.
DEGENERATE_RATIO = 1e-6


@dataclass(frozen=True)
class VectorDiagnostics:
    """How well one eigenvector was found.

    Attributes
    ----------
    rayleigh : float
        vᵀFv for the unit vector v.
    residual : float
        ‖Fv − λv‖ / λ_max.
    iterations, products : int
        Solver iterations and Fisher products spent on this end of the spectrum.
    converged : bool
        Whether ``residual`` reached the requested tolerance.
    seconds : float
        Wall time spent on this end of the spectrum.
    """

    rayleigh: float
    residual: float
    iterations: int
    products: int
    converged: bool
    seconds: float


@dataclass
class EigenResult:
    """Top-k and bottom-k eigenpairs with diagnostics.

    Attributes
    ----------
    eigenvalues : torch.Tensor
        (2k,) descending: top k then bottom k.
    eigenvectors : torch.Tensor
        (2k, n) unit rows, each with its largest-magnitude entry positive.
    eigenindex : torch.Tensor
        (2k,) positions in the full spectrum: ``[0..k-1, n-k..n-1]``.
    diagnostics : list[VectorDiagnostics]
        One per row of ``eigenvectors``.
    degenerate : bool
        The bottom is a null space (m < n, or λ_min ≤ 1e-6·λ_max): the min
        eigendistortions are one reproducible choice among many.
    method : str
        The solver that produced the result.
    jacobian : torch.Tensor or None
        The m × n Jacobian (``exact`` only).
    """

    eigenvalues: torch.Tensor
    eigenvectors: torch.Tensor
    eigenindex: torch.Tensor
    diagnostics: list[VectorDiagnostics]
    degenerate: bool
    method: str
    jacobian: torch.Tensor | None = field(default=None, repr=False)

    def diagnostics_dicts(self) -> list[dict]:
        """Diagnostics as plain dicts (for JSON)."""
        return [asdict(d) for d in self.diagnostics]


def fix_sign(vectors: torch.Tensor) -> torch.Tensor:
    """Flip each row so that its largest-magnitude entry is positive."""
    idx = vectors.abs().argmax(dim=1, keepdim=True)
    signs = torch.sign(vectors.gather(1, idx))
    signs[signs == 0] = 1
    return vectors * signs


def seeded_block(n: int, k: int, seed: int, dtype: torch.dtype, device: torch.device) -> torch.Tensor:
    """A k × n Gaussian block from a private generator (same seed → same block on any device)."""
    gen = torch.Generator().manual_seed(seed)
    return torch.randn(k, n, generator=gen, dtype=torch.float64).to(dtype=dtype, device=device)


def null_space_choice(basis: torch.Tensor, k: int, seed: int) -> torch.Tensor:
    """The reproducible min eigendistortions of a degenerate bottom.

    A seeded Gaussian block is projected onto the null space spanned by the
    rows of ``basis`` and orthonormalised. The projection does not depend on
    which basis of the null space an eigensolver happened to return, so the
    choice is the same on any machine for a given seed.

    Parameters
    ----------
    basis
        (d, n) orthonormal rows spanning the null space, d ≥ k.
    k, seed
        How many vectors, and the seed of the Gaussian block.
    """
    g = seeded_block(basis.shape[1], k, seed, basis.dtype, basis.device)
    projected = (g @ basis.T) @ basis
    q, _ = torch.linalg.qr(projected.T)
    return q.T


def solve_exact(op: FisherOperator, k: int, seed: int = 0) -> EigenResult:
    """Exact eigenpairs from the full Jacobian and ``eigh`` of JᵀJ (float64).

    For small inputs only: the n × n matrix is formed.
    """
    start = time.perf_counter()
    jac = op.jacobian()
    j64 = jac.to(torch.float64)
    evals, evecs = torch.linalg.eigh(j64.T @ j64)  # ascending
    evals = evals.flip(0)
    evecs = evecs.flip(1).T  # rows, descending
    n = op.n
    lam_max = float(evals[0])
    degenerate = op.m < n or float(evals[-1]) <= DEGENERATE_RATIO * lam_max
    top = evecs[:k]
    if degenerate:
        null_dim = max(n - op.m, int((evals <= DEGENERATE_RATIO * lam_max).sum()))
        bottom = null_space_choice(evecs[n - max(null_dim, k):], k, seed)
    else:
        bottom = evecs[n - k:]
    vectors = fix_sign(torch.cat([top, bottom]))
    seconds = time.perf_counter() - start
    f = j64.T @ j64
    fv = vectors @ f
    rq = (vectors * fv).sum(dim=1)
    res = torch.linalg.vector_norm(fv - rq[:, None] * vectors, dim=1) / max(lam_max, 1e-300)
    diags = [
        VectorDiagnostics(float(r), float(e), 1, 0, True, seconds) for r, e in zip(rq, res)
    ]
    eigenindex = torch.cat([torch.arange(k), torch.arange(n - k, n)])
    return EigenResult(
        eigenvalues=rq.to(op.dtype),
        eigenvectors=vectors.to(op.dtype),
        eigenindex=eigenindex,
        diagnostics=diags,
        degenerate=degenerate,
        method="exact",
        jacobian=jac,
    )


def warn_unconverged(result: EigenResult, tol: float) -> None:
    """Warn, naming each vector, when any vector stopped short of ``tol``."""
    bad = [
        f"eigenindex {int(i)} (residual {d.residual:.2e})"
        for i, d in zip(result.eigenindex, result.diagnostics)
        if not d.converged
    ]
    if bad:
        warnings.warn(
            f"{result.method} did not reach tol={tol:g} for " + ", ".join(bad)
            + "; see .diagnostics (raise max_iter or time_budget)",
            RuntimeWarning,
            stacklevel=3,
        )
