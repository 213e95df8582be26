"""A degenerate bottom: which null directions are the min eigendistortions, chosen reproducibly.

When F has a null space, every direction in it is "least noticeable" and any
eigensolver returns an arbitrary basis of it. eigdist's rule, the same for
every method: let G be the k × n Gaussian block ``seeded_block(n, k, seed)``
and d the number of the bottom k eigenvalues that are null (≤
:data:`DEGENERATE_RATIO` · λ_max, and at least min(n − m, k)). The last d min
eigendistortions are the first d rows of G projected onto the null space and
orthonormalised in order (QR); the first k − d are the smallest non-null
eigenvectors, eigenvalues descending. The projection does not depend on which
basis of the null space a solver found, so the choice is the same for every
method and machine.
"""

from __future__ import annotations

import time

import torch
from tqdm.auto import tqdm

from .block_iteration import F64, Phase, Trace, apply
from .fisher import FisherOperator

#: λ ≤ DEGENERATE_RATIO · λ_max counts as null.
DEGENERATE_RATIO = 1e-6


def fisher_is_zero(lam_max: float, dtype: torch.dtype) -> bool:
    """Whether F counts as zero: λ_max at or below tiny / eps of the products' dtype (≈ 1e-31 in float32).

    Below that level F·v underflows (a dead ReLU layer gives exactly 0), so no
    direction can be told from another: every direction is null.
    """
    info = torch.finfo(dtype)
    return not lam_max > info.tiny / info.eps


def whole_space_choice(n: int, k: int, seed: int, dtype: torch.dtype, device: torch.device) -> torch.Tensor:
    """The rule's k null directions when the null space is everything (F = 0): the seeded block, orthonormalised.

    The same as :func:`choice_coefficients` with the identity as basis, without forming it.
    """
    return torch.linalg.qr(seeded_block(n, k, seed, dtype, device).T)[0].T


def seeded_block(n: int, k: int, seed: int, dtype: torch.dtype, device: torch.device) -> torch.Tensor:
    """A k × n Gaussian block from a private generator (same seed → same block on any device)."""
    gen = torch.Generator().manual_seed(seed)
    return torch.randn(k, n, generator=gen, dtype=torch.float64).to(dtype=dtype, device=device)


def choice_coefficients(basis: torch.Tensor, d: int, k: int, seed: int) -> torch.Tensor:
    """The d × r coefficients C such that ``C @ basis`` are the chosen null directions.

    Parameters
    ----------
    basis
        (r, n) orthonormal rows spanning the null space, r ≥ d.
    d, k, seed
        How many directions, out of the seeded block of k rows (only its first
        d rows are used; drawing k keeps them the same for every d).
    """
    g = seeded_block(basis.shape[1], k, seed, basis.dtype, basis.device)[:d]
    q, _ = torch.linalg.qr((g @ basis.T).T)  # the QR of the projections G·Bᵀ·B is (Bᵀq)·r
    return q.T


def null_count(rayleigh: torch.Tensor, lam_max: float, at_least: int) -> int:
    """How many of the bottom Rayleigh quotients are null: ≤ ratio·λ_max, and at least ``at_least``."""
    found = int((rayleigh <= DEGENERATE_RATIO * lam_max).sum())
    return min(max(found, at_least), rayleigh.numel())


def split_bottom(lo: Phase, k: int, seed: int, lam_max: float, at_least: int) -> tuple[Phase, int]:
    """The bottom k in the rule's order, and d, the number of null directions among them.

    The rows of ``lo`` are eigenvectors found by a solver; the d with the
    smallest Rayleigh quotients span the null space when d < k (all null
    eigenvectors were found), so the seeded choice is taken within them. When
    d = k the null space may be larger than k and the caller decides (a
    solver's basis, or :func:`null_projection`).
    """
    order = torch.argsort(lo.rayleigh(), descending=True, stable=True)
    vectors, products = lo.vectors[order], lo.products_of[order]
    d = null_count(lo.rayleigh(), lam_max, at_least)
    if d:
        C = choice_coefficients(vectors[k - d:], d, k, seed)
        vectors = torch.cat([vectors[: k - d], C @ vectors[k - d:]])
        products = torch.cat([products[: k - d], C @ products[k - d:]])
    return Phase(vectors, products, lo.iterations, lo.products, lo.seconds, lo.subspace, lo.diagonal_probes), d


def null_projection(
    op: FisherOperator, *, k: int, seed: int, tol: float, max_iter: int, deadline: float,
    lam_max: float, trace: Trace,
) -> Phase:
    """The rule's k null directions without the n × n matrix: the seeded block projected by CG.

    Conjugate gradients on F y = F g from y = 0 keep y in range(F) and converge
    to the part of g outside the null space, so v = g − y converges to the
    projection of g onto the null space; at each step v minimises vᵀFv over
    g + the Krylov space, and the CG residual F g − F y is exactly F v. Each
    row stops when ‖Fv‖ ≤ tol·λ_max·‖v‖; the rows are then orthonormalised in
    order (QR), as :func:`choice_coefficients` does. A stop is confirmed with
    true products: where they still exceed the tolerance, CG restarts from v.
    """
    t0, p0 = time.perf_counter(), op.products
    V = seeded_block(op.n, k, seed, F64, op.device)
    R = apply(op, V)
    Pd = R.clone()
    rr = (R * R).sum(1)
    iterations, checked = 0, False
    bar = tqdm(total=max_iter, desc="bottom (null space)", leave=False, disable=None)
    while True:
        norms2 = (V * V).sum(1)
        bound = (tol * lam_max) ** 2 * norms2
        if not (rr > bound).any() and not checked:
            # The recurrence's residual drifts from the true F·v over many float32 products (1.06e-4
            # against tol 1e-4 on a demo item): check it with a product, and restart CG from there.
            R = apply(op, V)
            Pd, rr, checked = R.clone(), (R * R).sum(1), True
        active = rr > bound
        trace.record("bottom", iterations, float(((V * R).sum(1) / norms2).min()),
                     float((rr / norms2).sqrt().max()) / max(lam_max, 1e-300))  # ‖Fv‖ bounds ‖Fv − ρv‖
        if not active.any() or iterations >= max_iter or time.perf_counter() > deadline:
            break
        iterations += 1
        bar.update()
        FP = apply(op, Pd[active])
        alpha = rr[active] / (Pd[active] * FP).sum(1)
        V[active] -= alpha[:, None] * Pd[active]
        R[active] -= alpha[:, None] * FP
        rr_new = (R[active] * R[active]).sum(1)
        Pd[active] = R[active] + (rr_new / rr[active])[:, None] * Pd[active]
        rr[active] = rr_new
        checked = False
    bar.close()
    Q = torch.linalg.qr(V.T)[0].T
    return Phase(
        vectors=Q,
        products_of=apply(op, Q),
        iterations=iterations,
        products=op.products - p0,
        seconds=time.perf_counter() - t0,
    )
