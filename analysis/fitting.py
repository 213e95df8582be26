"""The maximum-likelihood engine behind :mod:`analysis.psychometric`, all conditions at once.

A batch holds C conditions, each as counts (n trials, k correct) at up to K
levels x = ln α. Every condition's parameters are θ = (m = ln threshold,
ln spread, λ), the curve is :mod:`eigdist_core.psychometric_function` at the
project's criterion, and the objective is the binomial log-likelihood plus,
when a prior is set, a normal log-prior on ln spread (a penalised likelihood,
maximised: the posterior mode).

Speed: every condition starts from the best point of a shared grid and is
refined together by projected Levenberg–Marquardt Fisher scoring in numpy (one
(C, 3, 3) solve per step); conditions that have not converged then are
polished one by one with scipy's L-BFGS-B on the same objective. Profiles
(threshold held fixed) and bootstrap refits reuse the same scoring, warm-started.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass, replace

import numpy as np
from scipy import optimize, special

from eigdist_core.psychometric_function import sigmoid_log

P_EPS = 1e-9
#: χ²₁ at 95 %: the likelihood-ratio drop that bounds a 95 % profile interval.
CHI2_95 = 3.841458820694124


@dataclass
class Batch:
    """Counts and parameter bounds of C conditions.

    ``prior`` is (mean, sd) of a normal prior on ln spread, or None.
    """

    x: np.ndarray      # ln α, (C, K), 0 on padding
    n: np.ndarray      # trials per level, 0 on padding
    k: np.ndarray      # correct per level
    guess: np.ndarray  # (C,)
    lower: np.ndarray  # (C, 3) bounds of θ ((C, D) in a subclass with D parameters)
    upper: np.ndarray
    function: str
    prior: tuple[float, float] | None = None

    def take(self, rows: np.ndarray) -> "Batch":
        """The sub-batch of ``rows``."""
        return replace(self, x=self.x[rows], n=self.n[rows], k=self.k[rows], guess=self.guess[rows],
                       lower=self.lower[rows], upper=self.upper[rows])

    def bounded(self, lower: np.ndarray, upper: np.ndarray) -> "Batch":
        """The same counts with other parameter bounds."""
        return replace(self, lower=lower, upper=upper)

    def predict(self, theta: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """p and ∂p/∂θ at every level (:func:`curve`); a subclass with more parameters overrides it."""
        return curve(theta, self.x, self.guess, self.function)


def curve(theta: np.ndarray, x: np.ndarray, guess: np.ndarray, function: str) -> tuple[np.ndarray, np.ndarray]:
    """p and ∂p/∂θ at ``x`` (C, K) for θ (C, 3)."""
    f, df_dm, df_ds = sigmoid_log(x, theta[:, 0, None], theta[:, 1, None], function)
    lam = theta[:, 2, None]
    height = 1.0 - guess[:, None] - lam
    p = guess[:, None] + height * f
    grad = np.stack([height * df_dm, height * df_ds, -f], axis=-1)
    return np.clip(p, P_EPS, 1 - P_EPS), grad


def loglik(p: np.ndarray, n: np.ndarray, k: np.ndarray) -> np.ndarray:
    """Binomial log-likelihood per row (without the constant binomial coefficients)."""
    return (special.xlogy(k, p) + special.xlogy(n - k, 1 - p)).sum(axis=1)


def saturated_loglik(n: np.ndarray, k: np.ndarray) -> np.ndarray:
    """Log-likelihood of the saturated model (one p per level)."""
    return loglik(np.clip(np.divide(k, n, out=np.full(n.shape, 0.5), where=n > 0), P_EPS, 1 - P_EPS), n, k)


def log_prior(batch: Batch, log_spread: np.ndarray) -> np.ndarray:
    """Normal log-density (up to a constant) of ln spread; 0 without a prior."""
    if batch.prior is None:
        return np.zeros_like(log_spread)
    mean, sd = batch.prior
    return -0.5 * ((log_spread - mean) / sd) ** 2


def objective(batch: Batch, theta: np.ndarray) -> np.ndarray:
    """Penalised log-likelihood per condition: log-likelihood + log-prior of the spread."""
    return loglik(batch.predict(theta)[0], batch.n, batch.k) \
        + log_prior(batch, theta[:, 1])


def start(batch: Batch) -> np.ndarray:
    """Best θ of a shared grid over threshold (the tested range), spread and lapse."""
    valid = batch.n > 0
    x_lo = np.where(valid, batch.x, np.inf).min(axis=1)
    x_hi = np.where(valid, batch.x, -np.inf).max(axis=1)
    frac = np.linspace(-0.2, 1.2, 29)
    fixed = np.allclose(batch.lower[:, 1], batch.upper[:, 1])
    spread_frac = [0.5] if fixed else np.linspace(0, 1, 7)
    best_obj = np.full(len(x_lo), -np.inf)
    best = np.zeros((len(x_lo), 3))
    for f, g, h in itertools.product(frac, spread_frac, (0.0, 0.5, 1.0)):
        theta = np.stack([x_lo + f * (x_hi - x_lo),
                          batch.lower[:, 1] + g * (batch.upper[:, 1] - batch.lower[:, 1]),
                          h * batch.upper[:, 2]], axis=1)
        obj = objective(batch, np.clip(theta, batch.lower, batch.upper))
        better = obj > best_obj
        best_obj[better], best[better] = obj[better], theta[better]
    return np.clip(best, batch.lower, batch.upper)


def score(batch: Batch, theta: np.ndarray, max_iter: int):
    """Projected Levenberg–Marquardt Fisher scoring on every condition at once.

    Each step works only on the conditions not yet converged, so the few slow
    ones (flat likelihood ridges) cost little. Returns θ, the objective, a
    converged mask and the iterations used.
    """
    c = len(theta)
    theta = np.clip(theta, batch.lower, batch.upper)
    damping = np.full(c, 1e-3)
    converged = np.zeros(c, bool)
    iterations = np.zeros(c, int)
    obj = objective(batch, theta)
    eye = np.eye(theta.shape[1])
    prior_info = np.zeros_like(eye)
    if batch.prior is not None:
        prior_info[1, 1] = 1.0 / batch.prior[1] ** 2
    for it in range(max_iter):
        a = np.flatnonzero(~converged)
        if not a.size:
            break
        sub = batch.take(a)
        th = theta[a]
        p, dp = sub.predict(th)
        grad = np.einsum("ck,ckj->cj", (sub.k - sub.n * p) / (p * (1 - p)), dp)
        info = np.einsum("ck,cki,ckj->cij", sub.n / (p * (1 - p)), dp, dp) + prior_info
        if batch.prior is not None:
            grad[:, 1] -= (th[:, 1] - batch.prior[0]) / batch.prior[1] ** 2
        # Parameters held at a bound with the gradient pushing out are frozen this step.
        held = ((th <= sub.lower) & (grad < 0)) | ((th >= sub.upper) & (grad > 0)) | (sub.lower == sub.upper)
        grad = np.where(held, 0.0, grad)
        info = np.where(held[:, :, None] | held[:, None, :], 0.0, info) + held[:, :, None] * eye
        diag = np.einsum("cii->ci", info)
        system = info + (damping[a, None] * (diag + 1e-9))[:, :, None] * eye
        step = np.linalg.solve(system, grad[:, :, None])[..., 0]
        trial = np.clip(th + step, sub.lower, sub.upper)
        obj_new = objective(sub, trial)
        accept = obj_new >= obj[a]
        gain = np.where(accept, obj_new - obj[a], 0.0)
        theta[a] = np.where(accept[:, None], trial, th)
        obj[a] = np.where(accept, obj_new, obj[a])
        damping[a] = np.where(accept, np.maximum(damping[a] / 3, 1e-9), damping[a] * 4)
        iterations[a] = it + 1
        # Converged: an accepted step that no longer gains, a vanishing gradient, or a
        # step too small to change anything (damping has grown at an optimum).
        size = np.abs(step).max(axis=1)
        converged[a] = ((accept & (gain < 1e-9) & (size < 1e-4)) | (size < 1e-7)
                        | (np.abs(grad).max(axis=1) < 1e-7))
    return theta, obj, converged, iterations


def _polish(batch: Batch, theta: np.ndarray, rows: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """scipy L-BFGS-B on the conditions Fisher scoring left unconverged."""
    ok = np.zeros(len(rows), bool)
    for j, i in enumerate(rows):
        sub = batch.take(np.array([i]))

        def nll(t: np.ndarray) -> tuple[float, np.ndarray]:
            p, dp = sub.predict(t[None])
            g = np.einsum("ck,ckj->j", (sub.k - sub.n * p) / (p * (1 - p)), dp)
            if batch.prior is not None:
                g[1] -= (t[1] - batch.prior[0]) / batch.prior[1] ** 2
            return -float(objective(sub, t[None])[0]), -g

        result = optimize.minimize(nll, theta[i], jac=True, method="L-BFGS-B",
                                   bounds=list(zip(sub.lower[0], sub.upper[0])))
        theta[i], ok[j] = result.x, result.success
    return theta, ok


def fit(batch: Batch, max_iter: int, theta0: np.ndarray | None = None):
    """Best θ of every condition: grid start (or ``theta0``), Fisher scoring, scipy polish.

    Returns θ, a converged mask and the Fisher-scoring iterations used.
    """
    theta, _, converged, iterations = score(batch, start(batch) if theta0 is None else theta0, max_iter)
    stuck = np.flatnonzero(~converged)
    if stuck.size:
        theta, ok = _polish(batch, theta, stuck)
        converged[stuck] = ok
    return theta, converged, iterations


def shared_spread(batch: Batch, person: np.ndarray, max_iter: int) -> np.ndarray:
    """Per participant, the ln spread maximising the summed objective of their conditions.

    A profile over a grid of spreads (every condition refitted with the spread
    fixed; the spread's log-prior counted once per participant), refined by a
    parabola through the best grid point and its neighbours.
    """
    grid = np.linspace(batch.lower[0, 1], batch.upper[0, 1], 9)
    n_people = person.max() + 1
    profile = np.empty((len(grid), n_people))
    theta = None
    for g, s in enumerate(grid):
        lower, upper = batch.lower.copy(), batch.upper.copy()
        lower[:, 1] = upper[:, 1] = s
        fixed = batch.bounded(lower, upper)
        # Warm start from the neighbouring grid point's fit: the optimum moves little.
        theta, _, _, _ = score(fixed, start(fixed) if theta is None else theta, max_iter)
        ll = loglik(curve(theta, batch.x, batch.guess, batch.function)[0], batch.n, batch.k)
        profile[g] = np.bincount(person, weights=ll, minlength=n_people) + log_prior(batch, np.array([s]))
    best = np.clip(profile.argmax(axis=0), 1, len(grid) - 2)
    cols = np.arange(n_people)
    y0, y1, y2 = profile[best - 1, cols], profile[best, cols], profile[best + 1, cols]
    curvature = y0 - 2 * y1 + y2
    shift = np.where(curvature < 0, 0.5 * (y0 - y2) / np.where(curvature < 0, curvature, -1.0), 0.0)
    step = grid[1] - grid[0]
    return np.clip(grid[best] + np.clip(shift, -1, 1) * step, grid[0], grid[-1])


def held_threshold(batch: Batch, theta: np.ndarray, m: np.ndarray, max_iter: int,
                   at_least: bool = False) -> np.ndarray:
    """Best objective with ln threshold held at ``m`` (or, ``at_least``, at ``m`` or above)."""
    lower, upper = batch.lower.copy(), batch.upper.copy()
    lower[:, 0] = np.clip(m, batch.lower[:, 0], batch.upper[:, 0])
    if not at_least:
        upper[:, 0] = lower[:, 0]
    return score(batch.bounded(lower, upper), theta, max_iter)[1]


def profile_interval(batch: Batch, theta: np.ndarray, best: np.ndarray, max_iter: int,
                     level: float = CHI2_95) -> tuple[np.ndarray, np.ndarray]:
    """Profile-likelihood interval of ln threshold: where the objective drops by ``level`` / 2.

    Each side: steps of 0.05 · 2^j (ln units) out from the fit until the drop
    exceeds the level, then 12 bisections (precision ≈ step / 4000). A side that
    never drops that far within the parameter bounds is unbounded (−inf or +inf).
    """
    out = []
    for sign, limit in ((-1.0, batch.lower[:, 0]), (1.0, batch.upper[:, 0])):
        inside = theta[:, 0].copy()
        outside = np.full(len(theta), np.nan)
        for j in range(9):
            rows = np.flatnonzero(np.isnan(outside) & (inside != limit))
            if not rows.size:
                break
            m = np.clip(theta[rows, 0] + sign * 0.05 * 2.0 ** j, np.minimum(limit[rows], theta[rows, 0]),
                        np.maximum(limit[rows], theta[rows, 0]))
            drop = 2 * (best[rows] - held_threshold(batch.take(rows), theta[rows], m, max_iter))
            crossed = drop > level
            outside[rows[crossed]] = m[crossed]
            inside[rows[~crossed]] = m[~crossed]
        rows = np.flatnonzero(~np.isnan(outside))
        lo, hi = inside[rows], outside[rows]
        for _ in range(12):
            mid = 0.5 * (lo + hi)
            drop = 2 * (best[rows] - held_threshold(batch.take(rows), theta[rows], mid, max_iter))
            crossed = drop > level
            hi, lo = np.where(crossed, mid, hi), np.where(crossed, lo, mid)
        bound = np.full(len(theta), sign * np.inf)
        bound[rows] = 0.5 * (lo + hi)
        out.append(bound)
    return out[0], out[1]


def deviance_p_value(batch: Batch, theta: np.ndarray, deviance: np.ndarray, draws: int, max_iter: int,
                     seed: int, chunk_cells: int = 2_000_000) -> np.ndarray:
    """P(deviance ≥ observed) under the fitted curve, by parametric bootstrap (Wichmann & Hill 2001).

    Each draw redraws every level's count from Binomial(n, p̂) at the α shown,
    refits with the same bounds (a shared slope stays fixed) from the fit, and
    computes the deviance; p = (1 + #{D* ≥ D}) / (1 + draws). Draws are
    stacked into batches of at most ``chunk_cells`` (condition × level) cells.
    """
    rng = np.random.default_rng(seed)
    p, _ = curve(theta, batch.x, batch.guess, batch.function)
    c, k_levels = batch.x.shape
    per_chunk = max(1, chunk_cells // max(1, c * k_levels))
    exceed = np.zeros(c)
    done = 0
    while done < draws:
        d = min(per_chunk, draws - done)
        tile = np.tile(np.arange(c), d)
        stacked = batch.take(tile)
        stacked.k = rng.binomial(stacked.n.astype(np.int64), p[tile]).astype(float)
        refit, _, _, _ = score(stacked, theta[tile], max_iter)
        ll = loglik(curve(refit, stacked.x, stacked.guess, batch.function)[0], stacked.n, stacked.k)
        star = 2 * (saturated_loglik(stacked.n, stacked.k) - ll)
        exceed += (star.reshape(d, c) >= deviance[None] - 1e-9).sum(axis=0)
        done += d
    return (1 + exceed) / (1 + draws)
