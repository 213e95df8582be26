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


@dataclass
class Phase:
    """What one end of the spectrum cost and produced (float64 rows)."""

    vectors: torch.Tensor
    products_of: torch.Tensor  # F·vectors
    iterations: int
    products: int
    seconds: float
    subspace: tuple[torch.Tensor, torch.Tensor] | None = None  # (S, FS) for a warm start

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


def orthonormalize(W: torch.Tensor, against: list[torch.Tensor], drop: float = 1e-8) -> torch.Tensor:
    """Rows of ``W`` made orthonormal and orthogonal to the (orthonormal) rows in ``against``.

    Classical Gram-Schmidt twice against ``against``, then SVQB within the
    block; directions that lose more than a factor ``1/drop`` of their norm
    (numerically inside the span already) are dropped, and so are the weakest
    beyond the room left in the space (n minus the rows in ``against``: a
    subspace that spans everything cannot grow), so the result may have fewer
    rows.
    """
    room = W.shape[1] - sum(B.shape[0] for B in against)
    if W.shape[0] == 0 or room <= 0:
        return W[:0]
    before = torch.linalg.vector_norm(W, dim=1).max()
    for _ in range(2):
        for B in against:
            if B.shape[0]:
                W = W - (W @ B.T) @ B
    gram = W @ W.T
    evals, evecs = torch.linalg.eigh((gram + gram.T) / 2)
    evals, evecs = evals.flip(0)[:room], evecs.flip(1)[:, :room]  # strongest directions first
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
            FS = apply(op, S)
            continue
        R = (FX - theta[:block, None] * X)[res > tol]  # converged residuals would be noise
        if mode == "lobpcg":
            # P spans the move from the previous X, kept orthonormal and ⟂ X in coefficient space
            C = Yx.clone()
            C[: min(block, S.shape[0])] = 0
            C = orthonormalize(C.T, [Yx.T]).T
            P, FP = C.T @ S, C.T @ FS
            S, FS = torch.cat([X, P]), torch.cat([FX, FP])
        elif S.shape[0] + R.shape[0] > max_basis:  # thick restart on the wanted Ritz vectors
            keep = Y[:, : max(block, max_basis // 2)]
            S, FS = keep.T @ S, keep.T @ FS
        W = orthonormalize(R, [S])
        if W.shape[0] == 0:
            break
        S, FS = torch.cat([S, W]), torch.cat([FS, apply(op, W)])
    bar.close()
    return Phase.ended(X, FX, k, iterations, op.products - p0, t0, (S, FS))
