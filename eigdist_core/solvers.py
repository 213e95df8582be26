"""Eigen-solvers for the top k and bottom k eigenvectors of a Fisher operator.

Every method returns one :class:`EigenResult`: eigenvalues in descending order
(top k, then bottom k, plenoptic's ``eigenindex`` ``[0..k-1, n-k..n-1]``), unit
eigenvectors with a fixed sign, and per-vector diagnostics.

``exact`` forms JᵀJ and calls ``eigh``. The iterative methods share one
engine (:func:`eigdist_core.block_iteration.iterate`): ``lanczos`` is block
Lanczos with full reorthogonalisation and thick restart, ``lobpcg`` is block
LOBPCG, ``power`` is plenoptic's orthogonal iteration (shifted by λ_max for the
bottom). A degenerate bottom (a null space, of any size relative to k) follows
one seeded rule for every method (:mod:`eigdist_core.nullspace`).

References
----------
Knyazev, A. V. (2001). Toward the optimal preconditioned eigensolver: locally
optimal block preconditioned conjugate gradient method. *SIAM Journal on
Scientific Computing*, 23(2), 517–541.

Duersch, J. A., Shao, M., Yang, C., & Gu, M. (2018). A robust and efficient
implementation of LOBPCG. *SIAM Journal on Scientific Computing*, 40(5),
C655–C676.
"""

from __future__ import annotations

import time
import warnings
from dataclasses import asdict, dataclass, field

import torch

from .block_iteration import F64, Phase, Trace, apply, iterate, orthonormalize
from .chebyshev import filtered_bottom
from .fisher import FisherOperator
from .nullspace import (
    choice_coefficients, fisher_is_zero, null_count, null_projection, seeded_block, split_bottom,
    whole_space_choice,
)
from .preconditioner import PROBES, estimate_diagonal, jacobi


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
    diagonal_probes : int
        Products Jᵀz (each about half a Fisher product) spent estimating F's
        diagonal for this end's preconditioner (0: none).
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
    diagonal_probes: int = 0


@dataclass
class EigenResult:
    """Top-k and bottom-k eigenpairs with diagnostics.

    Attributes
    ----------
    eigenvalues : torch.Tensor
        (2k,) descending: top k then bottom k; Rayleigh quotients clipped at 0
        (F is positive semi-definite; rounding gives values like −6e-18).
    eigenvectors : torch.Tensor
        (2k, n) unit rows, each with its largest-magnitude entry positive.
    eigenindex : torch.Tensor
        (2k,) positions in the full spectrum: ``[0..k-1, n-k..n-1]``.
    diagnostics : list[VectorDiagnostics]
        One per row of ``eigenvectors``.
    degenerate : bool
        The bottom k include null directions (m < n, or λ ≤ 1e-6·λ_max), or
        directions that cannot be told from null (``possibly_degenerate``):
        those min eigendistortions are one choice among many. F = 0 (a dead
        layer) is degenerate, with all eigenvalues 0.
    method : str
        The solver that produced the result (``top+bottom`` when they differ).
    jacobian : torch.Tensor or None
        The m × n Jacobian (``exact`` only).
    possibly_degenerate : bool
        Iterative methods: a bottom eigenvalue that is not null by the rule is
        still within the solver's tolerance of 0 (ρ ≤ tol·λ_max; the solver
        promised its eigenvalues only to tol·λ_max), so it cannot be told from
        null; its vector is the solver's, not the seeded choice. A smaller
        ``tol`` or ``exact`` resolves it.
    history : list of dict
        Iterative methods: one entry per iteration, ``phase`` (``top`` or
        ``bottom``), ``iteration``, ``products`` and ``seconds`` since the
        start, ``rayleigh`` of the extreme vector (largest at the top,
        smallest at the bottom) and the largest ``residual`` of the k vectors.
    """

    eigenvalues: torch.Tensor
    eigenvectors: torch.Tensor
    eigenindex: torch.Tensor
    diagnostics: list[VectorDiagnostics]
    degenerate: bool
    method: str
    jacobian: torch.Tensor | None = field(default=None, repr=False)
    history: list[dict] = field(default_factory=list, repr=False)
    possibly_degenerate: bool = False

    def diagnostics_dicts(self) -> list[dict]:
        """Diagnostics as plain dicts (for JSON)."""
        return [asdict(d) for d in self.diagnostics]


def fix_sign(vectors: torch.Tensor) -> torch.Tensor:
    """Flip each row so that its largest-magnitude entry is positive."""
    idx = vectors.abs().argmax(dim=1, keepdim=True)
    signs = torch.sign(vectors.gather(1, idx))
    signs[signs == 0] = 1
    return vectors * signs


def solve_exact(op: FisherOperator, k: int, seed: int = 0) -> EigenResult:
    """Exact eigenpairs from the full Jacobian and ``eigh`` of JᵀJ (float64).

    For small inputs only: the n × n matrix is formed (once).
    """
    start = time.perf_counter()
    jac = op.jacobian()
    j64 = jac.to(F64)
    fisher = j64.T @ j64
    evals, evecs = torch.linalg.eigh(fisher)  # ascending
    evals = evals.flip(0)
    evecs = evecs.flip(1).T  # rows, descending
    n = op.n
    lam_max = float(evals[0])
    if fisher_is_zero(lam_max, op.dtype):
        return _zero_result(op, k, seed, "exact", (1, 0, time.perf_counter() - start), jacobian=jac)
    null_all = null_count(evals, lam_max, n - op.m)  # the whole null space, maybe more than k
    d = min(null_all, k)
    top = evecs[:k]
    bottom = evecs[n - k: n - null_all] if null_all < k else evecs[:0]
    if d:
        bottom = torch.cat([bottom, choice_coefficients(evecs[n - null_all:], d, k, seed) @ evecs[n - null_all:]])
    vectors = fix_sign(torch.cat([top, bottom]))
    seconds = time.perf_counter() - start
    fv = vectors @ fisher
    rq = (vectors * fv).sum(dim=1)
    res = torch.linalg.vector_norm(fv - rq[:, None] * vectors, dim=1) / max(lam_max, 1e-300)
    diags = [
        VectorDiagnostics(float(r), float(e), 1, 0, True, seconds) for r, e in zip(rq, res)
    ]
    return EigenResult(
        eigenvalues=rq.clamp(min=0).to(op.dtype),
        eigenvectors=vectors.to(op.dtype),
        eigenindex=_eigenindex(n, k),
        diagnostics=diags,
        degenerate=d > 0,
        method="exact",
        jacobian=jac,
    )


def warn_about(result: EigenResult, tol: float) -> None:
    """Warn of what a result cannot promise: vectors short of ``tol`` (each named), a bottom that may be null, F = 0."""
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
    if not float(result.eigenvalues[0]) > 0:
        warnings.warn(
            f"{result.method}: the Fisher matrix is 0 at this image (the response does not change with it): every "
            "direction is null, the eigenvalues are 0 and the eigendistortions a seeded choice (docs/solvers.md)",
            RuntimeWarning,
            stacklevel=3,
        )
    elif result.possibly_degenerate:
        k = len(result.eigenvalues) // 2
        lam_max = float(result.eigenvalues[0])
        low = min(result.diagnostics[k:], key=lambda d: d.rayleigh)
        warnings.warn(
            f"{result.method}: possibly degenerate: the bottom eigenvalue {low.rayleigh / lam_max:.2g}·λ_max cannot "
            f"be told from 0 at tol={tol:g} (residual {low.residual:.2g}), so the min eigendistortion may be one of "
            "many null directions; use a smaller tol or method='exact' to resolve it",
            RuntimeWarning,
            stacklevel=3,
        )


#: Iterative methods.
ITERATIVE = ("lanczos", "lobpcg", "power")

#: Default block sizes (at least k). At the bottom, a dense cluster of tiny eigenvalues, extra vectors
#: did not speed convergence per iteration, so each cost its products for nothing (docs/solvers.md).
TOP_BLOCK, BOTTOM_BLOCK = 4, 1

#: Bottom-only methods: ``chebyshev`` filters with the top's λ_max (:mod:`eigdist_core.chebyshev`).
BOTTOM_ONLY = ("chebyshev",)

#: ``auto``'s pair for inputs too large for ``exact``: (top, bottom) (see docs/solvers.md).
AUTO_PAIR = ("lanczos", "lobpcg")


@dataclass(frozen=True)
class IterativeSettings:
    """How :func:`solve_iterative` searches the two ends of the spectrum, and when it stops.

    Attributes
    ----------
    top, bottom
        Methods from :data:`ITERATIVE` for each end (the bottom also
        :data:`BOTTOM_ONLY`). The top runs first; the bottom starts from the
        top's final subspace (a warm start that costs no product) except for
        ``power``, which starts from the seeded block.
    tol
        Target relative residual ‖Fv − λv‖ / λ_max of every vector.
    max_iter
        Iterations per end.
    seed
        Seeds the starting block and the choice within a null space.
    time_budget
        Seconds for both ends (the top may use half); ``None`` for no limit.
    block
        Block size b ≥ k for both ends; default ``max(k, 4)`` at the top and
        ``k`` at the bottom (:data:`TOP_BLOCK`, :data:`BOTTOM_BLOCK`; ``k``
        for ``power``).
    diagonal_probes
        Products Jᵀz that estimate F's diagonal for the bottom's Jacobi
        preconditioner (:mod:`eigdist_core.preconditioner`; LOBPCG only);
        0 for none.
    """

    top: str
    bottom: str
    tol: float = 1e-4
    max_iter: int = 1000
    seed: int = 0
    time_budget: float | None = None
    block: int | None = None
    diagonal_probes: int = PROBES

    @property
    def name(self) -> str:
        """The result's method: ``top``, or ``top+bottom`` when they differ."""
        return self.top if self.top == self.bottom else f"{self.top}+{self.bottom}"


def solve_iterative(
    op: FisherOperator, k: int, settings: IterativeSettings, bottom_start: torch.Tensor | None = None,
) -> EigenResult:
    """Top k and bottom k eigenpairs of F by iterative methods, never forming F.

    Parameters
    ----------
    op
        The Fisher operator.
    k
        Eigenvectors per end.
    settings
        The methods of the two ends and when they stop.
    bottom_start
        c × n rows added to the bottom's warm start (the top's subspace), e.g.
        the min eigendistortions of a shallower layer of the same network at
        the same image, which that layer's insensitive directions start close
        to (docs/solvers.md); not for ``power``, which starts from the seeded
        block. Unused where the bottom is a null space (fewer outputs than
        inputs), whose vectors the seeded rule chooses.

    Returns
    -------
    EigenResult
        With ``converged`` false for every vector that stopped short of ``tol``.
    """
    s = settings
    _check_methods(s.top, s.bottom, bottom_start)
    plan = _plan(op, k, s)
    seeded = seeded_block(op.n, max(plan.blocks), s.seed, F64, op.device)
    hi = iterate(op, start=(seeded[:plan.blocks[0]], None), k=k, block=plan.blocks[0], largest=True, mode=s.top,
                 deadline=plan.deadlines[0], lam_max=None, desc=f"top ({s.top})", **plan.common())
    lam_max = float(hi.rayleigh()[0])
    if fisher_is_zero(lam_max, op.dtype):
        result = _zero_result(op, k, s.seed, s.name, (hi.iterations, hi.products, hi.seconds))
    else:
        lo, d = _search_bottom(plan, hi, seeded[:k], lam_max, bottom_start)
        result = _assemble(op, hi, lo, k, s.tol, lam_max, d, s.name)
    result.history = plan.trace.entries
    return result


def _check_methods(top: str, bottom: str, bottom_start: torch.Tensor | None) -> None:
    """Refuse a method that cannot search its end, and a ``bottom_start`` for ``power``."""
    if bottom_start is not None and bottom == "power":
        raise ValueError("bottom_start needs lanczos, lobpcg or chebyshev at the bottom; power starts from the "
                         "seeded block, as plenoptic's does")
    for name, allowed in ((top, ITERATIVE), (bottom, ITERATIVE + BOTTOM_ONLY)):
        if name not in allowed:
            raise ValueError(f"iterative method must be one of {', '.join(ITERATIVE)}; got {name!r} "
                             f"(the bottom may also be {', '.join(BOTTOM_ONLY)})")


@dataclass(frozen=True)
class _Plan:
    """What one :func:`solve_iterative` call shares between its ends: its settings and what follows from them."""

    op: FisherOperator
    k: int
    settings: IterativeSettings
    blocks: tuple[int, int]  # (top, bottom)
    deadlines: tuple[float, float]  # the top may use half the time budget, both ends all of it
    trace: Trace

    def common(self) -> dict:
        """:func:`~eigdist_core.block_iteration.iterate`'s settings for either end."""
        s = self.settings
        return dict(tol=s.tol, max_iter=s.max_iter, max_basis=12 * max(self.blocks) + 24, trace=self.trace)

    def projection(self, lam_max: float) -> dict:
        """:func:`~eigdist_core.nullspace.null_projection`'s settings."""
        s = self.settings
        return dict(k=self.k, seed=s.seed, tol=s.tol, max_iter=s.max_iter, deadline=self.deadlines[1],
                    lam_max=lam_max, trace=self.trace)


def _plan(op: FisherOperator, k: int, settings: IterativeSettings) -> _Plan:
    """Block sizes (``k`` for ``power``, else at least k: :data:`TOP_BLOCK`, :data:`BOTTOM_BLOCK` by default) and
    deadlines counted from now."""
    start = time.perf_counter()
    budget = float("inf") if settings.time_budget is None else settings.time_budget

    def size(method: str, default: int) -> int:
        return k if method == "power" else max(k, settings.block or default)

    blocks = (size(settings.top, TOP_BLOCK), size(settings.bottom, BOTTOM_BLOCK))
    return _Plan(op, k, settings, blocks, (start + budget / 2, start + budget), Trace(op, start))


def _search_bottom(plan: _Plan, hi: Phase, seeded: torch.Tensor, lam_max: float,
                   bottom_start: torch.Tensor | None) -> tuple[Phase, int]:
    """The bottom k, and d: how many of them are the null-space rule's choice.

    A layer with at least k fewer outputs than inputs goes straight to the seeded choice; otherwise the
    solver searches from its warm start, and where all k it found are null the null space may hold more,
    so the choice is made in the whole of it (counting what the search spent).
    """
    op, k, power = plan.op, plan.k, plan.settings.bottom == "power"
    structural = op.n - op.m  # null directions a layer with fewer outputs than inputs must have
    if structural >= k and not power:  # all k are null: skip straight to the seeded choice
        return null_projection(op, **plan.projection(lam_max)), k
    warm = (seeded, None) if power else _warm_start(op, hi.subspace, bottom_start)
    found = _bottom_phase(plan, hi, warm, lam_max)
    lo, d = split_bottom(found, k, plan.settings.seed, lam_max, at_least=min(structural, k))
    if d == k and not power:  # the null space may hold more than the k vectors found
        lo = null_projection(op, **plan.projection(lam_max))
        lo.products += found.products
        lo.diagonal_probes += found.diagonal_probes
        lo.seconds += found.seconds
        lo.iterations += found.iterations
    return lo, d


def _warm_start(op: FisherOperator, subspace: tuple[torch.Tensor, torch.Tensor],
                bottom_start: torch.Tensor | None) -> tuple[torch.Tensor, torch.Tensor]:
    """The top's final subspace (rows S and their products FS), with the rows of ``bottom_start`` added."""
    if bottom_start is None:
        return subspace
    S, FS = subspace
    W = orthonormalize(bottom_start.to(device=op.device, dtype=F64), [S])
    return torch.cat([S, W]), torch.cat([FS, apply(op, W)])


def _bottom_phase(plan: _Plan, hi: Phase, warm: tuple, lam_max: float) -> Phase:
    """The bottom's search from ``warm``: Chebyshev filtering, or the block iteration (LOBPCG preconditioned
    with F's diagonal outside the max eigendistortions, where the bottom lives)."""
    op, k, s, block = plan.op, plan.k, plan.settings, plan.blocks[1]
    method = s.bottom
    if method == "chebyshev":
        return filtered_bottom(op, start=warm, k=k, block=block, tol=s.tol, max_iter=s.max_iter,
                               deadline=plan.deadlines[1], lam_max=lam_max, trace=plan.trace)
    t0, used = time.perf_counter(), s.diagonal_probes if method == "lobpcg" else 0
    preconditioner = jacobi(estimate_diagonal(op, used, s.seed, (hi.vectors, hi.products_of))) if used else None
    found = iterate(op, start=warm, k=k, block=k if method == "power" else block, largest=False, mode=method,
                    deadline=plan.deadlines[1], lam_max=lam_max, desc=f"bottom ({method})",
                    preconditioner=preconditioner, **plan.common())
    found.diagonal_probes, found.seconds = used, time.perf_counter() - t0
    return found


def _assemble(
    op: FisherOperator, hi: Phase, lo: Phase, k: int, tol: float, lam_max: float, d: int, method: str,
) -> EigenResult:
    """One :class:`EigenResult` from the two phases, each sorted by Rayleigh quotient, descending.

    The bottom's last ``d`` rows are the rule's null directions; rows within
    tol·λ_max of 0 keep the rule's order (their values are rounding), any row
    above it is sorted, so a stopped solver's bottom comes out sorted too.
    """
    vectors, diags, values = [], [], []
    possibly = False
    for phase in (hi, lo):
        rq = phase.rayleigh()
        res = torch.linalg.vector_norm(phase.products_of - rq[:, None] * phase.vectors, dim=1) / max(lam_max, 1e-300)
        if phase is hi:
            order = torch.argsort(rq, descending=True, stable=True)
        else:
            order = torch.argsort(torch.where(rq > tol * lam_max, rq, 0), descending=True, stable=True)
            # not null by the rule, yet within the solver's tolerance of 0: cannot be told from null
            possibly = bool((rq[: k - d] <= tol * lam_max).any())
        for i in order.tolist():
            vectors.append(phase.vectors[i])
            values.append(rq[i])
            diags.append(VectorDiagnostics(float(rq[i]), float(res[i]), phase.iterations, phase.products,
                                           float(res[i]) <= tol, phase.seconds, phase.diagonal_probes))
    return EigenResult(
        eigenvalues=torch.stack(values).clamp(min=0).to(op.dtype),
        eigenvectors=fix_sign(torch.stack(vectors)).to(op.dtype),
        eigenindex=_eigenindex(op.n, k),
        diagnostics=diags,
        degenerate=d > 0 or possibly,
        method=method,
        possibly_degenerate=possibly,
    )


def _zero_result(
    op: FisherOperator, k: int, seed: int, method: str, spent: tuple[int, int, float],
    jacobian: torch.Tensor | None = None,
) -> EigenResult:
    """Every method's answer for F = 0 (:func:`~eigdist_core.nullspace.fisher_is_zero`): all eigenvalues 0, degenerate.

    The bottom k are the null-space rule's choice in the whole space (the
    seeded block, orthonormalised); the top k, which no direction deserves more
    than another, are the block of seed + 1 made orthogonal to them.
    ``spent`` = (iterations, products, seconds) of the top's search.
    """
    bottom = whole_space_choice(op.n, k, seed, F64, op.device)
    top = seeded_block(op.n, k, seed + 1, F64, op.device)
    for _ in range(2):
        top = top - (top @ bottom.T) @ bottom
    top = torch.linalg.qr(top.T)[0].T
    iterations, products, seconds = spent
    diags = [VectorDiagnostics(0.0, 0.0, iterations, products, True, seconds)] * k
    diags += [VectorDiagnostics(0.0, 0.0, 0, 0, True, 0.0)] * k
    return EigenResult(
        eigenvalues=torch.zeros(2 * k, dtype=op.dtype, device=op.device),
        eigenvectors=fix_sign(torch.cat([top, bottom])).to(op.dtype),
        eigenindex=_eigenindex(op.n, k),
        diagnostics=diags,
        degenerate=True,
        method=method,
        jacobian=jacobian,
    )


def _eigenindex(n: int, k: int) -> torch.Tensor:
    return torch.cat([torch.arange(k), torch.arange(n - k, n)])
