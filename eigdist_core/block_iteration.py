"""The engine of the iterative eigensolvers: one end of the spectrum of F by block iteration.

Fisher products run in the operator's dtype on orthonormal blocks; everything
else (orthogonalisation, Rayleigh-Ritz) runs in float64. :func:`iterate` is
block Lanczos with full reorthogonalisation and thick restart, block LOBPCG
with the search directions kept orthonormal in coefficient space (Duersch et
al. 2018), or plenoptic's orthogonal (power) iteration.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field

import torch
from tqdm.auto import tqdm

from .fisher import FisherOperator

F64 = torch.float64

#: Largest |entry| of S Sᵀ − I that one SVQB pass may leave before a second runs.
ORTHONORMAL = 1e-12


@dataclass
class Phase:
    """What one end of the spectrum cost and produced (float64 rows)."""

    vectors: torch.Tensor
    products_of: torch.Tensor  # F·vectors
    iterations: int
    products: int
    seconds: float
    subspace: tuple[torch.Tensor, torch.Tensor] | None = None  # (S, FS) for a warm start
    diagonal_probes: int = 0  # products Jᵀz spent on a preconditioner

    def rayleigh(self) -> torch.Tensor:
        """vᵀFv of every row."""
        return (self.vectors * self.products_of).sum(1)

    @classmethod
    def ended(cls, X: torch.Tensor, FX: torch.Tensor, k: int, iterations: int, products: int, t0: float,
              subspace: tuple[torch.Tensor, torch.Tensor]) -> "Phase":
        """The phase that ends now, keeping the first ``k`` rows of ``X`` (``t0``: its start time)."""
        return cls(vectors=X[:k], products_of=FX[:k], iterations=iterations, products=products,
                   seconds=time.perf_counter() - t0, subspace=subspace)


@dataclass
class Trace:
    """Collects the solver history: one entry per iteration of either end."""

    op: FisherOperator
    origin: float
    entries: list[dict] = field(default_factory=list)

    def record(self, phase: str, iteration: int, rayleigh: float, residual: float) -> None:
        self.entries.append({
            "phase": phase, "iteration": iteration, "products": self.op.products,
            "seconds": time.perf_counter() - self.origin, "rayleigh": rayleigh, "residual": residual,
        })


def apply(op: FisherOperator, X: torch.Tensor) -> torch.Tensor:
    """F·X for float64 rows X: the product in the operator's dtype, the result in float64."""
    return (op @ X.to(op.dtype)).to(F64)


def _svqb(W: torch.Tensor, floor: float, room: int) -> torch.Tensor:
    """Orthonormal rows spanning W's directions whose Gram eigenvalue exceeds ``floor``, at most ``room``, strongest first."""
    gram = W @ W.T
    evals, evecs = torch.linalg.eigh((gram + gram.T) / 2)
    evals, evecs = evals.flip(0)[:room], evecs.flip(1)[:, :room]
    keep = evals > floor
    return (evecs[:, keep].T @ W) / evals[keep].sqrt()[:, None]


def orthonormalize(W: torch.Tensor, against: list[torch.Tensor], drop: float = 1e-8) -> torch.Tensor:
    """Rows of ``W`` made orthonormal and orthogonal to the (orthonormal) rows in ``against``.

    Classical Gram-Schmidt twice against ``against``, then SVQB within the
    block; directions that lose more than a factor ``1/drop`` of their norm
    (numerically inside the span already) are dropped, and so are the weakest
    beyond the room left in the space (n minus the rows in ``against``: a
    subspace that spans everything cannot grow), so the result may have fewer
    rows. SVQB runs again where one pass left the rows short of orthonormal:
    the Gram eigenvectors of directions near the drop threshold (eigenvalues
    near drop² = 10⁻¹⁶ of the largest, as of rows of very different norms or
    nearly dependent, like a thick restart's B-normalised Ritz vectors) carry
    errors of order one, and a basis that is not orthonormal breaks every
    projected problem on it (eigenvalues outside F's range, the regularised
    F_B no longer positive definite).
    """
    room = W.shape[1] - sum(B.shape[0] for B in against)
    if W.shape[0] == 0 or room <= 0:
        return W[:0]
    before = torch.linalg.vector_norm(W, dim=1).max()
    for _ in range(2):
        W = _project_out(W, against)
    W = _svqb(W, (drop * before) ** 2, room)
    eye = torch.eye(W.shape[0], dtype=W.dtype, device=W.device)
    if W.shape[0] and (W @ W.T - eye).abs().max() > ORTHONORMAL:
        W = _svqb(_project_out(W, against), drop**2, room)
    W = _project_out(W, against)  # one more pass: SVQB can reintroduce rounding along B
    return W / torch.linalg.vector_norm(W, dim=1, keepdim=True)


def _project_out(W: torch.Tensor, against: list[torch.Tensor]) -> torch.Tensor:
    """W less its components along the orthonormal rows of every block in ``against`` (one Gram-Schmidt pass)."""
    for B in against:
        if B.shape[0]:
            W = W - (W @ B.T) @ B
    return W


def _ritz(S: torch.Tensor, FS: torch.Tensor, largest: bool) -> tuple[torch.Tensor, torch.Tensor]:
    """Rayleigh-Ritz on the orthonormal rows S: values (wanted end first) and coefficient columns."""
    H = S @ FS.T
    theta, Y = torch.linalg.eigh((H + H.T) / 2)  # ascending
    if largest:
        theta, Y = theta.flip(0), Y.flip(1)
    return theta, Y


def _estimate(
    S: torch.Tensor, FS: torch.Tensor, block: int, largest: bool, mode: str
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor | None]:
    """The current block of approximate eigenvectors drawn from the subspace S.

    Returns
    -------
    X, FX, theta, Y
        At most ``block`` rows X, their products, the values (wanted end
        first), and the Ritz coefficients of all of S (``None`` for
        ``power``, whose block is S itself).
    """
    if mode == "power":  # plenoptic's orthogonal iteration: QR only, no Rayleigh-Ritz rotation
        return S, FS, (S * FS).sum(1), None
    theta, Y = _ritz(S, FS, largest)
    Yx = Y[:, :block]
    return Yx.T @ S, Yx.T @ FS, theta, Y


def _residuals(
    X: torch.Tensor, FX: torch.Tensor, theta: torch.Tensor, lam_max: float | None
) -> tuple[torch.Tensor, torch.Tensor]:
    """Residual rows FX − θX and their norms relative to ``lam_max`` (``None``: to ``theta[0]``).

    Returns
    -------
    R, relative
        The residual block and one relative norm per row.
    """
    R = FX - theta[:, None] * X
    scale = lam_max if lam_max is not None else float(theta[0])
    return R, torch.linalg.vector_norm(R, dim=1) / max(abs(scale), 1e-300)


def _report(trace: Trace, bar: tqdm, iteration: int, theta: torch.Tensor, res: torch.Tensor, largest: bool) -> None:
    """Record one iteration of the wanted values ``theta`` and residuals ``res`` in the trace and on the bar."""
    worst = float(res.max())
    trace.record("top" if largest else "bottom", iteration, float(theta.max() if largest else theta.min()), worst)
    bar.set_postfix(residual=f"{worst:.1e}", refresh=False)


def _power_block(X: torch.Tensor, FX: torch.Tensor, largest: bool, lam_max: float | None) -> torch.Tensor:
    """The next orthonormal block of orthogonal iteration on F (top) or on λ_max·I − F (bottom)."""
    W = FX if largest else lam_max * X - FX
    q, r = torch.linalg.qr(W.T)
    return (q * torch.sign(torch.diagonal(r))).T  # nested spans kept in order


def _with_directions(
    S: torch.Tensor, FS: torch.Tensor, X: torch.Tensor, FX: torch.Tensor, Y: torch.Tensor, block: int
) -> tuple[torch.Tensor, torch.Tensor]:
    """LOBPCG's [X, P] and products: P spans the move from the previous X (the first rows of S).

    ``Y`` holds the Ritz coefficients of X in S; P is kept orthonormal and ⟂ X
    in coefficient space, so it costs no product.
    """
    Yx = Y[:, :block]
    C = Yx.clone()
    C[: min(block, S.shape[0])] = 0
    C = orthonormalize(C.T, [Yx.T]).T
    return torch.cat([X, C.T @ S]), torch.cat([FX, C.T @ FS])


def _restarted(
    S: torch.Tensor, FS: torch.Tensor, Y: torch.Tensor, keep: int, limit: int
) -> tuple[torch.Tensor, torch.Tensor]:
    """S unchanged up to ``limit`` rows, else restarted thick on its ``keep`` wanted Ritz vectors (Y's columns)."""
    if S.shape[0] <= limit:
        return S, FS
    Yk = Y[:, :keep]
    return Yk.T @ S, Yk.T @ FS


def iterate(
    op: FisherOperator,
    *,
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
    trace: Trace,
    desc: str,
    preconditioner: torch.Tensor | None = None,
) -> Phase:
    """The k extreme eigenpairs at one end of the spectrum of F.

    Parameters
    ----------
    start
        ``(S, FS)``: orthonormal rows to start from and their products (``FS``
        ``None`` means not computed yet). A warm start passes another phase's
        subspace here, whose products are reused.
    k, block
        Wanted vectors, and vectors per iteration (b ≥ k); the extra ones speed
        convergence.
    largest
        The top of the spectrum (else the bottom).
    mode
        ``lanczos`` (the subspace grows by the residual block, restarted thick
        at ``max_basis`` rows), ``lobpcg`` (subspace [X, P, W]) or ``power``
        (orthogonal iteration on F, or on λ_max·I − F for the bottom).
    tol, max_iter, deadline
        Stop when every wanted relative residual is ≤ ``tol``, after
        ``max_iter`` iterations, or at ``time.perf_counter()`` = ``deadline``.
    lam_max
        Scale of the relative residual; ``None`` at the top (its own estimate).
    trace, desc
        Where each iteration is recorded, and the progress bar's label.
    preconditioner
        A length-n diagonal T (float64) by which the residuals are scaled
        before they join the subspace (LOBPCG's preconditioner;
        :mod:`eigdist_core.preconditioner`); ``None`` for none. Not for ``power``.

    Returns
    -------
    Phase
        The k vectors, wanted end first (descending at the top, ascending at
        the bottom; ``power`` keeps its QR order), with their products.
    """
    t0, p0 = time.perf_counter(), op.products
    S, FS = start
    if FS is None:
        S = orthonormalize(S, [])
        FS = apply(op, S)
    iterations = 0
    bar = tqdm(total=max_iter, desc=desc, leave=False, disable=None)
    while True:
        X, FX, theta, Y = _estimate(S, FS, block, largest, mode)
        R, res = _residuals(X, FX, theta[:block], lam_max)
        _report(trace, bar, iterations, theta[:k], res[:k], largest)
        done = bool((res[:k] <= tol).all())
        if done or iterations >= max_iter or time.perf_counter() > deadline:
            break
        iterations += 1
        bar.update()
        if mode == "power":
            S = _power_block(X, FX, largest, lam_max)
            FS = apply(op, S)
            continue
        R = R[res > tol]  # converged residuals would be noise
        if preconditioner is not None:
            R = R * preconditioner
        if mode == "lobpcg":
            S, FS = _with_directions(S, FS, X, FX, Y, block)
        else:  # lanczos: thick restart on the wanted Ritz vectors before the basis outgrows max_basis
            S, FS = _restarted(S, FS, Y, keep=max(block, max_basis // 2), limit=max_basis - R.shape[0])
        W = orthonormalize(R, [S])
        if W.shape[0] == 0:  # R lies in S already: the subspace cannot grow
            break
        S, FS = torch.cat([S, W]), torch.cat([FS, apply(op, W)])
    bar.close()
    return Phase.ended(X, FX, k, iterations, op.products - p0, t0, (S, FS))
