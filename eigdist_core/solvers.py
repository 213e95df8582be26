"""Eigen-solvers for the top k and bottom k eigenvectors of a Fisher operator.

Every method returns one :class:`EigenResult`: eigenvalues in descending order
(top k, then bottom k, plenoptic's ``eigenindex`` ``[0..k-1, n-k..n-1]``), unit
eigenvectors with a fixed sign, and per-vector diagnostics.

Iterative methods share one engine (:func:`_iterate`): Fisher products in the
operator's dtype on orthonormal blocks, everything else (orthogonalisation,
Rayleigh-Ritz) in float64. ``lanczos`` is block Lanczos with full
reorthogonalisation and thick restart, ``lobpcg`` is block LOBPCG with the
search directions kept orthonormal in coefficient space, ``power`` is
plenoptic's orthogonal iteration (shifted by λ_max for the bottom). A
degenerate bottom (a null space) is resolved by :func:`_null_projection`, the
iterative form of :func:`null_space_choice`.
"""

from __future__ import annotations

import time
import warnings
from dataclasses import asdict, dataclass, field

import torch
from tqdm.auto import tqdm

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
        The solver that produced the result (``top+bottom`` when they differ).
    jacobian : torch.Tensor or None
        The m × n Jacobian (``exact`` only).
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


# ---------------------------------------------------------------- iterative

#: Iterative methods and what each uses at the top and at a non-degenerate bottom.
ITERATIVE = ("lanczos", "lobpcg", "power")

#: ``auto``'s pair for inputs too large for ``exact``: (top, bottom) (see docs/solvers.md).
AUTO_PAIR = ("lanczos", "lobpcg")

_F64 = torch.float64


@dataclass
class _Phase:
    """What one end of the spectrum cost and produced (float64 rows)."""

    vectors: torch.Tensor
    products_of: torch.Tensor  # F·vectors
    iterations: int
    products: int
    seconds: float
    subspace: tuple[torch.Tensor, torch.Tensor] | None = None  # (S, FS) for a warm start


@dataclass
class _Trace:
    """Collects :attr:`EigenResult.history`: one entry per iteration of either end."""

    op: FisherOperator
    origin: float
    entries: list[dict] = field(default_factory=list)

    def record(self, phase: str, iteration: int, rayleigh: float, residual: float) -> None:
        self.entries.append({
            "phase": phase, "iteration": iteration, "products": self.op.products,
            "seconds": time.perf_counter() - self.origin, "rayleigh": rayleigh, "residual": residual,
        })


def _apply(op: FisherOperator, X: torch.Tensor) -> torch.Tensor:
    """F·X for float64 rows X: the product in the operator's dtype, the result in float64."""
    return (op @ X.to(op.dtype)).to(_F64)


def _orthonormalize(W: torch.Tensor, against: list[torch.Tensor], drop: float = 1e-8) -> torch.Tensor:
    """Rows of ``W`` made orthonormal and orthogonal to the (orthonormal) rows in ``against``.

    Classical Gram-Schmidt twice against ``against``, then SVQB within the
    block; directions that lose more than a factor ``1/drop`` of their norm
    (numerically inside the span already) are dropped, so the result may have
    fewer rows.
    """
    if W.shape[0] == 0:
        return W
    before = torch.linalg.vector_norm(W, dim=1).max()
    for _ in range(2):
        for B in against:
            if B.shape[0]:
                W = W - (W @ B.T) @ B
    gram = W @ W.T
    evals, evecs = torch.linalg.eigh((gram + gram.T) / 2)
    keep = evals > (drop * before) ** 2
    W = (evecs[:, keep].T @ W) / evals[keep].sqrt()[:, None]
    for B in against:  # one more pass: SVQB can reintroduce rounding along B
        if B.shape[0]:
            W = W - (W @ B.T) @ B
    return W / torch.linalg.vector_norm(W, dim=1, keepdim=True)


def _ritz(S: torch.Tensor, FS: torch.Tensor, largest: bool) -> tuple[torch.Tensor, torch.Tensor]:
    """Rayleigh-Ritz on the orthonormal rows S: values (wanted end first) and coefficient columns."""
    H = S @ FS.T
    theta, Y = torch.linalg.eigh((H + H.T) / 2)  # ascending
    if largest:
        theta, Y = theta.flip(0), Y.flip(1)
    return theta, Y


def _iterate(
    op: FisherOperator,
    start: tuple[torch.Tensor, torch.Tensor | None],
    k: int,
    block: int,
    largest: bool,
    mode: str,
    tol: float,
    max_iter: int,
    deadline: float,
    lam_max: float | None,
    max_basis: int,
    trace: _Trace,
    desc: str,
) -> _Phase:
    """The k extreme eigenpairs at one end of the spectrum of F.

    Parameters
    ----------
    start
        ``(S, FS)``: orthonormal rows to start from and their products (``FS``
        ``None`` means not computed yet). A warm start passes another phase's
        subspace here, whose products are reused.
    block
        Vectors per iteration (b ≥ k); the extra ones speed convergence.
    mode
        ``lanczos`` (the subspace grows by the residual block, restarted thick
        at ``max_basis`` rows), ``lobpcg`` (subspace [X, P, W]) or ``power``
        (orthogonal iteration on F, or on λ_max·I − F for the bottom).
    lam_max
        Scale of the relative residual; ``None`` at the top (its own estimate).
    """
    t0, p0 = time.perf_counter(), op.products
    S, FS = start
    if FS is None:
        S = _orthonormalize(S, [])
        FS = _apply(op, S)
    iterations = 0
    bar = tqdm(total=max_iter, desc=desc, leave=False, disable=None)
    while True:
        if mode == "power":  # plenoptic's orthogonal iteration: QR only, no Rayleigh-Ritz rotation
            X, FX, theta = S, FS, (S * FS).sum(1)
        else:
            theta, Y = _ritz(S, FS, largest)
            Yx = Y[:, :block]
            X, FX = Yx.T @ S, Yx.T @ FS
        scale = lam_max if lam_max is not None else float(theta[0])
        res = torch.linalg.vector_norm(FX - theta[:block, None] * X, dim=1) / max(abs(scale), 1e-300)
        done = bool((res[:k] <= tol).all())
        extreme = int(torch.argmax(theta[:k]) if largest else torch.argmin(theta[:k]))
        trace.record("top" if largest else "bottom", iterations, float(theta[extreme]),
                     float(res[:k].max()))
        bar.set_postfix(residual=f"{float(res[:k].max()):.1e}", refresh=False)
        if done or iterations >= max_iter or time.perf_counter() > deadline:
            break
        iterations += 1
        bar.update()
        if mode == "power":
            W = FX if largest else lam_max * X - FX
            q, r = torch.linalg.qr(W.T)
            S = (q * torch.sign(torch.diagonal(r))).T  # nested spans kept in order
            FS = _apply(op, S)
            continue
        R = (FX - theta[:block, None] * X)[res > tol]  # converged residuals would be noise
        if mode == "lobpcg":
            # P spans the move from the previous X, kept orthonormal and ⟂ X in coefficient space
            C = Yx.clone()
            C[: min(block, S.shape[0])] = 0
            C = _orthonormalize(C.T, [Yx.T]).T
            P, FP = C.T @ S, C.T @ FS
            S, FS = torch.cat([X, P]), torch.cat([FX, FP])
        elif S.shape[0] + R.shape[0] > max_basis:  # thick restart on the wanted Ritz vectors
            keep = Y[:, : max(block, max_basis // 2)]
            S, FS = keep.T @ S, keep.T @ FS
        W = _orthonormalize(R, [S])
        if W.shape[0] == 0:
            break
        S, FS = torch.cat([S, W]), torch.cat([FS, _apply(op, W)])
    bar.close()
    return _Phase(
        vectors=X[:k],
        products_of=FX[:k],
        iterations=iterations,
        products=op.products - p0,
        seconds=time.perf_counter() - t0,
        subspace=(S, FS),
    )


def _null_projection(
    op: FisherOperator, k: int, seed: int, tol: float, max_iter: int, deadline: float,
    lam_max: float, trace: _Trace,
) -> _Phase:
    """:func:`null_space_choice` without the n × n matrix: the seeded block projected by CG.

    Conjugate gradients on F y = F g from y = 0 keep y in range(F) and converge
    to the part of g outside the null space, so v = g − y converges to the
    projection of g onto the null space; at each step v minimises vᵀFv over
    g + the Krylov space, and the CG residual F g − F y is exactly F v. Each
    row stops when ‖Fv‖ ≤ tol·λ_max·‖v‖; the rows are then orthonormalised in
    order (QR), as :func:`null_space_choice` does.
    """
    t0, p0 = time.perf_counter(), op.products
    V = seeded_block(op.n, k, seed, _F64, op.device)
    R = _apply(op, V)
    Pd = R.clone()
    rr = (R * R).sum(1)
    iterations = 0
    bar = tqdm(total=max_iter, desc="bottom (null space)", leave=False, disable=None)
    while True:
        norms2 = (V * V).sum(1)
        active = rr > (tol * lam_max) ** 2 * norms2
        trace.record("bottom", iterations, float(((V * R).sum(1) / norms2).min()),
                     float((rr / norms2).sqrt().max()) / lam_max)  # ‖Fv‖ bounds ‖Fv − ρv‖
        if not active.any() or iterations >= max_iter or time.perf_counter() > deadline:
            break
        iterations += 1
        bar.update()
        FP = _apply(op, Pd[active])
        alpha = rr[active] / (Pd[active] * FP).sum(1)
        V[active] -= alpha[:, None] * Pd[active]
        R[active] -= alpha[:, None] * FP
        rr_new = (R[active] * R[active]).sum(1)
        Pd[active] = R[active] + (rr_new / rr[active])[:, None] * Pd[active]
        rr[active] = rr_new
    bar.close()
    Q = torch.linalg.qr(V.T)[0].T
    return _Phase(
        vectors=Q,
        products_of=_apply(op, Q),
        iterations=iterations,
        products=op.products - p0,
        seconds=time.perf_counter() - t0,
    )


def solve_iterative(
    op: FisherOperator,
    k: int,
    top: str,
    bottom: str,
    tol: float = 1e-4,
    max_iter: int = 1000,
    seed: int = 0,
    time_budget: float | None = None,
    block: int | None = None,
) -> EigenResult:
    """Top k and bottom k eigenpairs of F by iterative methods, never forming F.

    Parameters
    ----------
    op
        The Fisher operator.
    k
        Eigenvectors per end.
    top, bottom
        Methods from :data:`ITERATIVE` for each end. The top runs first; the
        bottom starts from the top's final subspace (a warm start that costs
        no product) except for ``power``, which starts from the seeded block.
    tol
        Target relative residual ‖Fv − λv‖ / λ_max of every vector.
    max_iter
        Iterations per end.
    seed
        Seeds the starting block and the choice within a null space.
    time_budget
        Seconds for both ends (the top may use half); ``None`` for no limit.
    block
        Block size b ≥ k; default ``max(k, 4)`` (``k`` for ``power``).

    Returns
    -------
    EigenResult
        With ``converged`` false for every vector that stopped short of ``tol``.
    """
    for name in (top, bottom):
        if name not in ITERATIVE:
            raise ValueError(f"iterative method must be one of {', '.join(ITERATIVE)}; got {name!r}")
    start = time.perf_counter()
    trace = _Trace(op, start)
    budget = float("inf") if time_budget is None else time_budget

    def size(method: str) -> int:
        return k if method == "power" else max(k, block or 4)

    b_top, b_bottom = size(top), size(bottom)
    max_basis = 12 * max(b_top, b_bottom) + 24
    g = seeded_block(op.n, max(b_top, b_bottom), seed, _F64, op.device)
    hi = _iterate(op, (g[:b_top], None), k, b_top, True, top, tol, max_iter,
                  start + budget / 2, None, max_basis, trace, f"top ({top})")
    lam_max = float((hi.vectors[0] * hi.products_of[0]).sum())
    deadline = start + budget
    degenerate = op.m < op.n
    if bottom == "power":  # shifted power from the seeded block also tends to null_space_choice
        lo = _iterate(op, (g[:k], None), k, k, False, "power", tol, max_iter,
                      deadline, lam_max, max_basis, trace, "bottom (power)")
    elif degenerate:
        lo = _null_projection(op, k, seed, tol, max_iter, deadline, lam_max, trace)
    else:
        lo = _iterate(op, hi.subspace, k, b_bottom, False, bottom, tol, max_iter,
                      deadline, lam_max, max_basis, trace, f"bottom ({bottom})")
    rq_min = float((lo.vectors[-1] * lo.products_of[-1]).sum())
    if not degenerate and rq_min <= DEGENERATE_RATIO * lam_max:
        degenerate = True
        if bottom != "power":
            spent = lo
            lo = _null_projection(op, k, seed, tol, max_iter, deadline, lam_max, trace)
            lo.products += spent.products
            lo.seconds += spent.seconds
            lo.iterations += spent.iterations
    result = _assemble(op, hi, lo, k, tol, lam_max, degenerate,
                       top if top == bottom else f"{top}+{bottom}")
    result.history = trace.entries
    return result


def _assemble(
    op: FisherOperator, hi: _Phase, lo: _Phase, k: int, tol: float, lam_max: float,
    degenerate: bool, method: str,
) -> EigenResult:
    """One :class:`EigenResult` from the two phases: sorted, sign-fixed, with diagnostics."""
    vectors, diags, values = [], [], []
    for phase in (hi, lo):
        rq = (phase.vectors * phase.products_of).sum(1)
        order = torch.argsort(rq, descending=True, stable=True)
        if phase is lo and degenerate:
            order = torch.arange(k)  # null_space_choice's order, as in exact
        for i in order.tolist():
            v, fv = phase.vectors[i], phase.products_of[i]
            res = float(torch.linalg.vector_norm(fv - rq[i] * v)) / max(abs(lam_max), 1e-300)
            vectors.append(v)
            values.append(rq[i])
            diags.append(VectorDiagnostics(
                float(rq[i]), res, phase.iterations, phase.products, res <= tol, phase.seconds
            ))
    n = op.n
    return EigenResult(
        eigenvalues=torch.stack(values).to(op.dtype),
        eigenvectors=fix_sign(torch.stack(vectors)).to(op.dtype),
        eigenindex=torch.cat([torch.arange(k), torch.arange(n - k, n)]),
        diagnostics=diags,
        degenerate=degenerate,
        method=method,
    )
