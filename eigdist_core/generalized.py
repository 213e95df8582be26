"""Generalized eigendistortions: the extremes of vᵀF_A v / vᵀF_B v for two layers at one image.

The top k are the changes layer A sees best *relative to* layer B, the bottom
k the changes B sees best relative to A (Zhou, Chun, Subramanian & Simoncelli
2023): the generalized eigenvectors of F_A v = λ F_B v.

**Singular F_B.** A direction that B cannot see (a null space of F_B) makes
the ratio unbounded. eigdist solves the regularised pair

    (F_A + ε·λ_max(F_A)·I) v = λ (F_B + ε·λ_max(F_B)·I) v,   ε = 1e-6,

both layers alike, so that swapping A and B swaps the top and the bottom
(λ ↦ 1/λ) and a null direction of B gets the finite ratio
vᵀF_A v / (ε·λ_max(F_B)). ε is :data:`eigdist_core.subspace.REGULARIZATION`
(``regularization=`` changes it; 0 solves the plain pair, which needs F_B
non-singular); the result's ``regularization`` says which rule ran.

**Solver.** ``exact`` forms both matrices and solves the small problem
densely. The iterative method is a Davidson (Rayleigh-Ritz) iteration on one
subspace shared by both operators (:mod:`eigdist_core.subspace`): the top k
and the bottom k are taken together from the projected pair (H_A, H_B) by a
Cholesky-reduced ``eigh``, and the subspace grows by their residuals
A x − θ B x (one product per layer per residual), restarted thick on the
wanted Ritz vectors. A vector is converged when its relative residual
‖A v − λ B v‖ / (‖A v‖ + λ‖B v‖) (A, B regularised) is ≤ ``tol``.
"""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass, field

import torch

from .block_iteration import Trace
from .errors import EigdistError
from .fisher import FisherOperator
from .solvers import VectorDiagnostics, fix_sign
from .subspace import SolveSettings, regularization_record, start_space

#: Vectors of the starting block and Ritz vectors kept per end at a restart beyond the k wanted.
GUARDS = 3

#: The subspace restarts when it would outgrow this many rows.
MAX_BASIS = 60


def ritz(H: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Ritz values (descending) and H_B-orthonormal coefficient columns of the projected pair H = (H_A, H_B)."""
    try:
        L = torch.linalg.cholesky(H[1])
    except RuntimeError:
        raise EigdistError(
            "F_B is singular at this image (a direction layer B cannot see): use regularization > 0 "
            "(the default, 1e-6) to solve the regularised pair"
        ) from None
    C = torch.linalg.solve_triangular(L, torch.linalg.solve_triangular(L, H[0], upper=False).T, upper=False)
    theta, Z = torch.linalg.eigh((C + C.T) / 2)
    Y = torch.linalg.solve_triangular(L.T, Z, upper=True)
    return theta.flip(0), Y.flip(1)


@dataclass
class GeneralizedResult:
    """Top-k and bottom-k generalized eigenpairs of (F_A, F_B) with diagnostics.

    Attributes
    ----------
    eigenvalues : torch.Tensor
        (2k,) ratios vᵀA v / vᵀB v of the regularised pair, descending.
    eigenvectors : torch.Tensor
        (2k, n) unit rows (largest entry positive): top k, then bottom k (the
        last is the change B sees best relative to A).
    diagnostics : list[VectorDiagnostics]
        One per row; ``rayleigh`` is the ratio, ``residual`` the relative
        residual ‖A v − λ B v‖ / (‖A v‖ + λ‖B v‖).
    method : str
        ``exact`` or ``davidson``.
    regularization : dict
        The rule (``F + epsilon * lambda_max(F) * I`` or ``none``), ε and λ_max of A and B.
    history : list of dict
        One entry per iteration (products, seconds, largest and smallest ratio, largest residual).
    """

    eigenvalues: torch.Tensor
    eigenvectors: torch.Tensor
    diagnostics: list[VectorDiagnostics]
    method: str
    regularization: dict
    history: list[dict] = field(default_factory=list, repr=False)

    @property
    def converged(self) -> bool:
        return all(d.converged for d in self.diagnostics)

    def diagnostics_dicts(self) -> list[dict]:
        return [asdict(d) for d in self.diagnostics]


def solve_generalized(op_a: FisherOperator, op_b: FisherOperator, k: int, settings: SolveSettings) -> GeneralizedResult:
    """The top k and bottom k generalized eigenvectors of the (regularised) pair (F_A, F_B).

    Parameters
    ----------
    op_a, op_b
        Fisher operators of layers A and B at the same image.
    k
        Vectors per end.
    settings
        Exact or iterative, the stopping rule, the seed and ε of the rule in the module's docstring.
    """
    t0, p0 = time.perf_counter(), op_a.products + op_b.products
    trace = Trace(op_a, t0)
    deadline = settings.deadline(t0)
    space, lam = start_space([op_a, op_b], settings, deadline, 2 * (k + GUARDS))
    iterations = 0
    while True:
        theta, Y = ritz(space.projected())
        d = theta.numel()
        wanted = torch.cat([torch.arange(k), torch.arange(d - k, d)])
        X, (AX, BX) = space.vectors(Y[:, wanted])
        values = theta[wanted]
        R = AX - values[:, None] * BX
        scale = torch.linalg.vector_norm(AX, dim=1) + values.abs() * torch.linalg.vector_norm(BX, dim=1)
        res = torch.linalg.vector_norm(R, dim=1) / scale.clamp(min=1e-300)
        history_entry(trace, iterations, op_a, op_b, theta, res)
        if settings.done(res, iterations, deadline):
            break
        iterations += 1
        active = R[res > settings.tol]
        if space.size + active.shape[0] > MAX_BASIS:
            guards = min(k + GUARDS, d // 2)
            space.restart(torch.cat([Y[:, :guards], Y[:, d - guards:]], dim=1))
        if not space.grow(active):
            break
    products = op_a.products + op_b.products - p0
    seconds = time.perf_counter() - t0
    rq = (X * AX).sum(1) / (X * BX).sum(1)
    norms = torch.linalg.vector_norm(X, dim=1)
    diagnostics = [VectorDiagnostics(float(r), float(e), iterations, products, settings.converged(e), seconds)
                   for r, e in zip(rq, res)]
    return GeneralizedResult(
        eigenvalues=rq.to(op_a.dtype),
        eigenvectors=fix_sign(X / norms[:, None]).to(op_a.dtype),
        diagnostics=diagnostics,
        method="exact" if settings.exact else "davidson",
        regularization=regularization_record(settings.regularization, lam),
        history=trace.entries,
    )


def history_entry(trace: Trace, iteration: int, op_a: FisherOperator, op_b: FisherOperator,
                  theta: torch.Tensor, res: torch.Tensor) -> None:
    """One iteration of the history: the extreme ratios and the largest residual, products of both layers."""
    trace.entries.append({
        "iteration": iteration, "products": op_a.products + op_b.products,
        "seconds": time.perf_counter() - trace.origin,
        "top": float(theta[0]), "bottom": float(theta[-1]), "residual": float(res.max()),
    })

