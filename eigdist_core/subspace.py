"""One subspace shared by several Fisher operators: the engine of the layer-comparison solvers.

Generalized eigendistortions (:mod:`eigdist_core.generalized`) and principal
distortions (:mod:`eigdist_core.principal`) compare the Fisher matrices F_m
of several layers at one image. Both only need the quadratic forms vᵀF_m v
and the products F_m v, so both run on one orthonormal basis S (float64 rows)
that stores every operator's products on it: the projected d × d matrices
H_m = S F_m Sᵀ cost no product, the small problem is solved densely in the
subspace (Rayleigh-Ritz, or a small optimisation), and the subspace grows by
the residuals or gradients of its solution, which are combinations of stored
products. Each new direction costs one product per operator.

Every F_m is regularised the same documented way, F_m + ε·λ_max(F_m)·I
(:data:`REGULARIZATION`), so that a null space of one layer, where ratios and
logarithms of vᵀF v are unbounded, gives finite, reproducible answers.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass

import torch

from .block_iteration import F64, Trace, apply, iterate, orthonormalize
from .fisher import FisherOperator
from .nullspace import seeded_block

#: ε of the regularisation F + ε·λ_max(F)·I: the ratio below which eigdist calls an eigenvalue null
#: (:data:`eigdist_core.nullspace.DEGENERATE_RATIO`), and 10× float32's rounding of a Fisher product.
REGULARIZATION = 1e-6

#: Relative residual of the Lanczos estimate of each λ_max (its value is then exact to about tol²: 1e-6, ample
#: for the shift ε·λ_max it sets).
SCALE_TOL = 1e-3


@dataclass(frozen=True)
class SolveSettings:
    """How a layer-comparison solve runs and when it stops (checked by the caller).

    Attributes
    ----------
    exact
        Form every F_m (small inputs) and solve densely, instead of iterating.
    tol
        Relative residual every wanted vector must reach.
    max_iter
        Iterations (subspace growths) at most.
    seed
        Seed of the starting block (and of the λ_max estimates).
    time_budget
        Seconds for the whole solve; ``None``: no limit.
    regularization
        ε of F + ε·λ_max(F)·I; 0 for none.
    """

    exact: bool
    tol: float
    max_iter: int
    seed: int = 0
    time_budget: float | None = None
    regularization: float = REGULARIZATION

    def deadline(self, start: float) -> float:
        """The ``time.perf_counter()`` reading after which a solve begun at ``start`` stops."""
        return start + (float("inf") if self.time_budget is None else self.time_budget)

    def converged(self, residuals: torch.Tensor) -> bool:
        """Whether a solution with these relative residuals is done: exact, or every residual ≤ ``tol``."""
        return self.exact or bool((residuals <= self.tol).all())

    def done(self, residuals: torch.Tensor, iterations: int, deadline: float) -> bool:
        """Whether to stop iterating: converged, ``max_iter`` reached, or past the deadline."""
        return self.converged(residuals) or iterations >= self.max_iter or time.perf_counter() > deadline


@dataclass(frozen=True)
class Scales:
    """λ_max of every operator and the relative residual each estimate reached (0 when formed densely, nan when
    not estimated). An estimate stopped by the time budget or its iteration cap before :data:`SCALE_TOL` is a
    lower bound: the regularisation is then ε·(that bound), not ε·λ_max, and the record says so."""

    values: list[float]
    residuals: list[float]

    @property
    def converged(self) -> bool:
        """Every estimate reached :data:`SCALE_TOL` (or none was needed)."""
        return all(not r > SCALE_TOL for r in self.residuals)


def largest_eigenvalues(ops: list[FisherOperator], seed: int, trace: Trace, deadline: float) -> Scales:
    """λ_max of every operator by block Lanczos with one vector per step, to :data:`SCALE_TOL` (or the deadline)."""
    values, residuals = [], []
    for i, op in enumerate(ops):
        start = seeded_block(op.n, 1, seed + i, F64, op.device)
        phase = iterate(op, start=(start, None), k=1, block=1, largest=True, mode="lanczos", tol=SCALE_TOL,
                        max_iter=500, deadline=deadline, lam_max=None, max_basis=40, trace=trace,
                        desc=f"λ_max of layer {i}")
        values.append(float(phase.rayleigh()[0]))
        residuals.append(trace.entries[-1]["residual"])  # the last iteration's, this operator's
    return Scales(values, residuals)


def dense_fisher(op: FisherOperator) -> torch.Tensor:
    """F = JᵀJ formed in float64 from the exact Jacobian (small inputs only)."""
    jac = op.jacobian().to(F64)
    return jac.T @ jac


class Subspace:
    """Orthonormal rows S and, for every operator m, the rows (F_m + shift_m·I)·S.

    Parameters
    ----------
    ops
        The Fisher operators (same input size n).
    shifts
        ε·λ_max of each operator, added to its products (0: none).
    """

    def __init__(self, ops: list[FisherOperator], shifts: list[float]) -> None:
        n, device = ops[0].n, ops[0].device
        self.ops, self.shifts = ops, shifts
        self.S = torch.zeros(0, n, dtype=F64, device=device)
        self.FS = [self.S.clone() for _ in ops]

    @classmethod
    def whole(cls, ops: list[FisherOperator], matrices: list[torch.Tensor], shifts: list[float]) -> "Subspace":
        """The whole space (S = I) with dense matrices F_m: the small problem is then the exact one."""
        space = cls(ops, shifts)
        eye = torch.eye(ops[0].n, dtype=F64, device=ops[0].device)
        space.S = eye
        space.FS = [F + s * eye for F, s in zip(matrices, shifts)]
        return space

    @property
    def size(self) -> int:
        return self.S.shape[0]

    def grow(self, W: torch.Tensor) -> int:
        """Add the rows of W, orthonormalised against S; returns how many were added (one product per operator each)."""
        W = orthonormalize(W, [self.S])
        if W.shape[0]:
            self.S = torch.cat([self.S, W])
            self.FS = [torch.cat([FS, apply(op, W) + s * W]) for FS, op, s in zip(self.FS, self.ops, self.shifts)]
        return W.shape[0]

    def projected(self) -> torch.Tensor:
        """The (M, d, d) symmetric matrices H_m = S (F_m + shift_m I) Sᵀ."""
        H = torch.stack([self.S @ FS.T for FS in self.FS])
        return (H + H.transpose(1, 2)) / 2

    def vectors(self, C: torch.Tensor) -> tuple[torch.Tensor, list[torch.Tensor]]:
        """Rows Cᵀ S for coefficient columns C, and each operator's products on them (no product)."""
        return C.T @ self.S, [C.T @ FS for FS in self.FS]

    def restart(self, C: torch.Tensor) -> None:
        """Keep only the span of the coefficient columns C (orthonormalised): a thick restart, no product."""
        Q = orthonormalize(C.T, [])
        self.S, self.FS = Q @ self.S, [Q @ FS for FS in self.FS]


def scales(
    ops: list[FisherOperator], regularization: float, exact: bool, seed: int, trace: Trace, deadline: float,
) -> tuple[Scales, list[torch.Tensor] | None]:
    """λ_max of every operator, and the dense F_m when ``exact`` (else ``None``).

    With ``regularization`` 0 and an iterative solve no λ_max is needed: nans.
    """
    if exact:
        matrices = [dense_fisher(op) for op in ops]
        return Scales([float(torch.linalg.eigvalsh(F)[-1]) for F in matrices], [0.0] * len(ops)), matrices
    if regularization == 0:
        return Scales([float("nan")] * len(ops), [float("nan")] * len(ops)), None
    return largest_eigenvalues(ops, seed, trace, deadline), None


def start_space(
    ops: list[FisherOperator], settings: SolveSettings, deadline: float, block: int,
) -> tuple[Subspace, Scales]:
    """The regularised operators' starting subspace (the whole space when ``settings.exact``) and their λ_max.

    The λ_max estimates' iterations are not part of the caller's history (their products are counted).
    """
    eps, exact = settings.regularization, settings.exact
    lam, matrices = scales(ops, eps, exact, settings.seed, Trace(ops[0], time.perf_counter()), deadline)
    shifts = [eps * value if eps else 0.0 for value in lam.values]
    if exact:
        return Subspace.whole(ops, matrices, shifts), lam
    space = Subspace(ops, shifts)
    space.grow(seeded_block(ops[0].n, min(block, ops[0].n), settings.seed, F64, ops[0].device))
    return space, lam


def regularization_record(regularization: float, lam_max: Scales) -> dict:
    """What the result says of the regularisation rule (JSON-ready): the rule, ε, each λ_max, the residual of each
    estimate and whether all reached :data:`SCALE_TOL` (false: the time budget or the cap stopped one first)."""
    def finite(values: list[float]) -> list[float | None]:  # JSON has no NaN or ±inf: null
        return [value if math.isfinite(value) else None for value in values]

    return {
        "rule": "F + epsilon * lambda_max(F) * I" if regularization else "none",
        "epsilon": regularization,
        "lambda_max": finite(lam_max.values),
        "lambda_max_residual": finite(lam_max.residuals),
        "lambda_max_converged": lam_max.converged,
    }
