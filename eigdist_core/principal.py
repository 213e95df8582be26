"""Principal distortions: the pair of changes whose relative visibility a set of layers disagrees on most.

For M ≥ 2 layers with Fisher matrices F_m at one image, the principal
distortions (Feather, Lipshutz, Harvey, Williams & Simoncelli, ICLR 2025) are
the unit directions (a, b) that maximise

    V(a, b) = (1/M) Σ_m (r_m − r̄)²,   r_m = log aᵀF_m a − log bᵀF_m b,

the variance across layers (natural logarithms, as the authors' code) of
the log ratio of the two changes' Fisher information. Each layer's unknown
scale cancels in r_m − r̄. For two layers V = ¼ (log ρ(a) − log ρ(b))² with
ρ = aᵀF_1 a / aᵀF_2 a, so the optimum is the top and bottom generalized
eigenvector pair. The F_m are regularised as the generalized
eigendistortions' (:mod:`eigdist_core.subspace`): V is unbounded where a
layer has a null direction that another sees.

**Order.** a is the change the first layer finds more visible, relative to
the others, than b (r_1 ≥ r̄); for two layers a is the top generalized
eigenvector of (F_1, F_2).

**Solver.** A subspace method on one basis shared by all layers. It
starts from cosine modes of the image plane on a coarse grid of frequencies
(:mod:`eigdist_core.cosine_start`: the Fisher matrices of vision models are
nearly shift-invariant and layers differ most in the frequency bands they
see, which random vectors do not single out). The projected problem (M
matrices d × d) is solved densely by BFGS from the previous optimum and from
the best top/bottom generalized eigenvector pair of any two layers (the
two-layer optima; all of them at the start); the subspace then grows by the
gradients of V at a and at b,

    ∇_a V ∝ Σ_m (r_m − r̄) F_m a / aᵀF_m a,

which are combinations of stored products (and tangent to the sphere). Each
iteration costs 2M Fisher products and re-evaluates the objective for free;
the authors' plain gradient steps cost 4M (products for the step and again
for the objective).

**Residual: a backward error.** With s_m = aᵀF_m a, c_m = r_m − r̄ and
g = Σ_m c_m F_m a / s_m (∝ ∇_a V; aᵀg = Σ c_m = 0, so g ⟂ a), the residual of
a is

    η_a = ‖g‖ / Σ_m |c_m| ‖F_m‖ / s_m      (‖a‖ = 1, ‖F_m‖ = λ_max of the regularised F_m),

and that of b likewise. It is the relative size of the change of the layers'
Fisher matrices that makes a an exact stationary point (b fixed): with
u = g/‖g‖, δF_m = −η_a ‖F_m‖ sign(c_m) (u aᵀ + a uᵀ) has ‖δF_m‖ = η_a ‖F_m‖,
leaves every s_m (so every c_m and V) unchanged, and turns g into
g − η_a Σ |c_m| ‖F_m‖/s_m u = 0 (tested). For two layers it is the normwise
backward error of the generalized eigenpair, ‖F_1 a − λF_2 a‖ / (‖F_1‖ + λ‖F_2‖)
with λ = s_1/s_2. A relative gradient scaled by ‖F_m a‖ instead of ‖F_m‖
cannot fall below the rounding of the products: where a layer barely sees a
or b (s_m near the floor ε·λ_max, as front-end layers blind to the mean), a
float32 product's rounding, ~10⁻⁷·λ_max, is ~0.1 of F_m a (that ratio read
0.88 and 0.23 where the backward error read 2·10⁻⁴ and 4·10⁻⁶: docs/solvers.md). The
iteration stops when η_a and η_b are ≤ ``tol``; with ε = 0 and an iterative
solve (no λ_max estimated) ‖F_m‖ is the largest Ritz value, a lower bound
(the residual then errs large).
"""

from __future__ import annotations

import itertools
import time
from dataclasses import dataclass, field

import numpy as np
import torch
from scipy.optimize import minimize

from .block_iteration import Trace
from .cosine_start import cosine_start
from .fisher import FisherOperator
from .generalized import GUARDS, MAX_BASIS, ritz
from .solvers import fix_sign
from .subspace import Scales, SolveSettings, Subspace, regularization_record, start_space


def objective(s_a: np.ndarray, s_b: np.ndarray) -> float:
    """V from the sensitivities aᵀF_m a and bᵀF_m b of every layer (population variance of the log ratios)."""
    r = np.log(s_a) - np.log(s_b)
    return float(np.mean((r - r.mean()) ** 2))


def _negative_objective(x: np.ndarray, H: np.ndarray) -> tuple[float, np.ndarray]:
    """−V and its gradient at x = (a, b) in the subspace's coefficients (V does not depend on their norms)."""
    d = H.shape[1]
    a, b = x[:d], x[d:]
    Ha, Hb = H @ a, H @ b  # (M, d)
    s_a, s_b = Ha @ a, Hb @ b
    if (s_a <= 0).any() or (s_b <= 0).any():
        return np.inf, np.zeros_like(x)
    r = np.log(s_a) - np.log(s_b)
    c = r - r.mean()
    M = len(c)
    grad_a = (4 / M) * ((c / s_a) @ Ha)
    grad_b = -(4 / M) * ((c / s_b) @ Hb)
    return -float(np.mean(c**2)), -np.concatenate([grad_a, grad_b])


def best_pair(H: torch.Tensor, warm: tuple[np.ndarray, np.ndarray] | None) -> tuple[np.ndarray, np.ndarray, float]:
    """The best (a, b) found in the subspace of the projected matrices H (M, d, d): coefficients and V.

    Starts: the top/bottom generalized eigenvectors of every two layers (all
    of them without ``warm``, else the best one) and ``warm`` (the previous
    optimum, zero-padded: V cannot fall); each is refined by BFGS (d is small).
    """
    d, Hn = H.shape[1], H.numpy()
    pairs = []
    for i, j in itertools.combinations(range(H.shape[0]), 2):
        _, Y = ritz(H[[i, j]])
        pairs.append(np.concatenate([Y[:, 0].numpy(), Y[:, -1].numpy()]))
    starts = [min(pairs, key=lambda x: _negative_objective(x, Hn)[0])] if warm is not None else pairs
    if warm is not None:
        starts.append(np.concatenate([np.pad(w, (0, d - len(w))) for w in warm]))
    best = None
    for x0 in starts:
        x0 = np.concatenate([x0[:d] / np.linalg.norm(x0[:d]), x0[d:] / np.linalg.norm(x0[d:])])
        found = minimize(_negative_objective, x0, args=(Hn,), jac=True, method="BFGS",
                         options={"maxiter": 1000, "gtol": 1e-10})
        if best is None or found.fun < best.fun:
            best = found
    a, b = best.x[:d], best.x[d:]
    return a / np.linalg.norm(a), b / np.linalg.norm(b), -float(best.fun)


@dataclass
class PrincipalResult:
    """Principal distortions of M layers with diagnostics.

    Attributes
    ----------
    vectors : torch.Tensor
        (2, n) unit rows a, b (largest entry positive).
    objective : float
        V(a, b) (regularised F_m).
    log_sensitivities : list[list[float]]
        log aᵀF_m a and log bᵀF_m b per layer.
    residuals : tuple[float, float]
        Backward errors of a and b (the module's docstring).
    converged : bool
        Both residuals ≤ ``tol`` (always true for ``exact``, which optimises over the whole space).
    iterations, products : int
        Subspace iterations and Fisher products of all layers (λ_max estimates included).
    seconds : float
    method : str
        ``exact`` or ``subspace``.
    regularization : dict
        The rule, ε and each layer's λ_max.
    history : list of dict
        Per iteration: products, seconds, objective, largest residual (the objective trace).
    """

    vectors: torch.Tensor
    objective: float
    log_sensitivities: list[list[float]]
    residuals: tuple[float, float]
    converged: bool
    iterations: int
    products: int
    seconds: float
    method: str
    regularization: dict
    history: list[dict] = field(default_factory=list, repr=False)

    def diagnostics(self) -> dict:
        """The JSON-ready diagnostics."""
        return {
            "objective": self.objective, "log_sensitivities": self.log_sensitivities,
            "residuals": list(self.residuals), "converged": self.converged, "iterations": self.iterations,
            "products": self.products, "seconds": self.seconds, "method": self.method,
            "regularization": self.regularization,
        }


def _gradients(X: torch.Tensor, FX: list[torch.Tensor], norms: torch.Tensor,
               ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Gradient directions of V at the rows a, b of X, their backward errors, and the sensitivities (M, 2).

    ``norms`` are ‖F_m‖ (λ_max of the regularised F_m), the scale of the
    backward error (the module's docstring).
    """
    P = torch.stack(FX)  # (M, 2, n)
    s = (P * X).sum(2)  # (M, 2)
    r = s[:, 0].log() - s[:, 1].log()
    c = r - r.mean()
    terms = P / s[:, :, None]  # F_m v / s_m
    G = torch.stack([(c[:, None] * terms[:, 0]).sum(0), -(c[:, None] * terms[:, 1]).sum(0)])
    scale = (c.abs()[:, None] * norms[:, None] / s).sum(0) * torch.linalg.vector_norm(X, dim=1)
    return G, torch.linalg.vector_norm(G, dim=1) / scale.clamp(min=1e-300), s


def _norms(lam: Scales, eps: float, H: torch.Tensor) -> torch.Tensor:
    """‖F_m + ε·λ_max·I‖ = (1 + ε)·λ_max per layer; where λ_max was not estimated (ε = 0), the largest Ritz value."""
    known = torch.tensor(lam.values, dtype=H.dtype, device=H.device) * (1 + eps)
    return torch.where(known.isnan(), torch.linalg.eigvalsh(H)[:, -1], known)


def solve_principal(ops: list[FisherOperator], settings: SolveSettings) -> PrincipalResult:
    """Principal distortions of the layers whose Fisher operators are ``ops`` (same image).

    ``settings`` as for :func:`eigdist_core.generalized.solve_generalized`; the
    iteration stops when both relative residuals are ≤ ``settings.tol``, or before an
    iteration that would end past the time budget (judged by the last one).
    """
    t0, p0 = time.perf_counter(), sum(op.products for op in ops)
    trace = Trace(ops[0], t0)
    deadline = settings.deadline(t0)
    space, lam = start_space(ops, settings, deadline, 0)
    if not settings.exact:  # cosine modes, not random vectors: the bands the layers tell apart
        space.grow(cosine_start(ops[0].image_shape).to(ops[0].device))
    a = b = None
    iterations = 0
    while True:
        H = space.projected()
        a, b, value = best_pair(H, None if a is None else (a, b))
        C = torch.from_numpy(np.stack([a, b], axis=1))
        X, FX = space.vectors(C)
        G, res, s = _gradients(X, FX, _norms(lam, settings.regularization, H))
        trace.entries.append({"iteration": iterations, "products": sum(op.products for op in ops) - p0,
                              "seconds": time.perf_counter() - t0, "objective": value, "residual": float(res.max())})
        step = trace.entries[-1]["seconds"] - trace.entries[-2]["seconds"] if iterations else 0.0
        if settings.done(res, iterations, deadline - step):  # no iteration that would end past the budget
            break
        iterations += 1
        if space.size + 2 > MAX_BASIS:  # thick restart on a, b and every two layers' extreme Ritz vectors
            space.restart(_keep(space, C))
            a, b = (space.S @ X.T).T.numpy()  # a, b lie in the kept span: their new coefficients
        if not space.grow(G[res > settings.tol]):
            break
    r = s[:, 0].log() - s[:, 1].log()
    if r[0] < r.mean():  # a is the change the first layer sees better than the rest do
        X, s, res = X.flip(0), s.flip(1), res.flip(0)
    return PrincipalResult(
        vectors=fix_sign(X).to(ops[0].dtype),
        objective=float(objective(s[:, 0].numpy(), s[:, 1].numpy())),
        log_sensitivities=s.log().tolist(),
        residuals=(float(res[0]), float(res[1])),
        converged=settings.converged(res),
        iterations=iterations,
        products=sum(op.products for op in ops) - p0,
        seconds=time.perf_counter() - t0,
        method="exact" if settings.exact else "subspace",
        regularization=regularization_record(settings.regularization, lam),
        history=trace.entries,
    )


def _keep(space: Subspace, C: torch.Tensor) -> torch.Tensor:
    """Coefficient columns of a thick restart: a, b and the top/bottom Ritz vectors of every two layers."""
    H = space.projected()
    columns = [C]
    for i, j in itertools.combinations(range(H.shape[0]), 2):
        _, Y = ritz(H[[i, j]])
        columns.append(torch.cat([Y[:, :GUARDS], Y[:, -GUARDS:]], dim=1))
    return torch.cat(columns, dim=1)
