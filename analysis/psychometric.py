"""Psychometric functions fitted by maximum likelihood, all conditions at once.

P(correct | α) = γ + (1 − γ − λ) F(α), with the guess rate γ = 1 / n_alternatives
fixed, the lapse rate λ free in [0, max_lapse], and F a Weibull
(1 − exp(−(α/a)^β)) or a log-normal (Φ((ln α − ln μ)/σ)) on α.

The threshold is where F = 1/2: the midpoint between guess rate and 1 of a
lapse-free observer (75 % correct in 2AFC). The lapse is a nuisance that keeps
a few careless errors from flattening the slope.

Speed: trials are pooled per (condition, α), every condition is started from
the best point of a shared grid and refined together by projected
Levenberg–Marquardt Fisher scoring in numpy (one (C, 3, 3) solve per step);
conditions that have not converged then are polished one by one with
scipy's L-BFGS-B on the same likelihood.

Slopes: by default one slope per participant (joint maximum likelihood over
their conditions, by a profile over a grid of slopes), which steadies 60-trial
fits; ``slope="free"`` fits one per condition.

Censoring: a threshold is censored (reported as alpha_max, flagged) when the
fit puts it at or above alpha_max, or when the data cannot rule that out: the
best fit with the threshold held at alpha_max or beyond is not worse by a
likelihood ratio of χ²₁(95 %) = 3.84. The data then never passed threshold
measurably below alpha_max, and any number there would be invented. At the
other end, a fitted threshold below the lowest tested α (performance above
threshold everywhere) is flagged ``below_range`` and reported as that lowest
α, an upper bound, instead of an extrapolation.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass

import numpy as np
import pandas as pd
from scipy import optimize, special

from eigdist_core.contract import TRACK_KEY

FUNCTIONS = ("weibull", "lognormal")
SLOPES = ("shared", "free")
# Bounds on the log spread parameter: Weibull slope β, or log-normal σ (in ln α).
_SPREAD_BOUNDS = {"weibull": (np.log(1.0), np.log(10.0)), "lognormal": (np.log(0.03), np.log(3.0))}
_P_EPS = 1e-9
#: Likelihood-ratio statistic below which a threshold ≥ alpha_max is not ruled out
#: (χ²₁ at 95 %): the threshold is then censored.
CENSOR_LR = 3.84


@dataclass(frozen=True)
class FitOptions:
    """Settings of :func:`fit_thresholds`.

    Attributes
    ----------
    function
        ``"weibull"`` or ``"lognormal"``.
    slope
        ``"shared"``: one slope (β or σ) per participant, the joint maximum
        likelihood over all their conditions; ``"free"``: one per condition.
    max_lapse
        Upper bound of the lapse rate λ.
    max_iter
        Fisher-scoring iterations before the scipy polish.
    """

    function: str = "weibull"
    slope: str = "shared"
    max_lapse: float = 0.06
    max_iter: int = 300

    def __post_init__(self) -> None:
        if self.function not in FUNCTIONS:
            raise ValueError(f"function must be one of {', '.join(FUNCTIONS)}, got {self.function!r}")
        if self.slope not in SLOPES:
            raise ValueError(f"slope must be one of {', '.join(SLOPES)}, got {self.slope!r}")
        if not 0.0 <= self.max_lapse < 0.5:
            raise ValueError(f"max_lapse must lie in [0, 0.5), got {self.max_lapse}")
        if int(self.max_iter) < 1:
            raise ValueError(f"max_iter must be >= 1, got {self.max_iter}")


def _curve(theta: np.ndarray, x: np.ndarray, guess: np.ndarray, function: str):
    """p and ∂p/∂θ at log-amplitudes ``x`` (C, K); θ = (ln scale, ln spread, λ) per row (C, 3)."""
    m, s, lam = (theta[:, j, None] for j in range(3))
    spread = np.exp(s)
    if function == "weibull":
        u = spread * (x - m)
        z = np.exp(np.minimum(u, 50.0))
        tail = np.exp(-z)
        f = -np.expm1(-z)
        df_dm = -tail * z * spread
        df_ds = tail * z * u
    else:
        u = (x - m) / spread
        f = special.ndtr(u)
        dens = np.exp(-0.5 * u * u) / np.sqrt(2 * np.pi)
        df_dm = -dens / spread
        df_ds = -dens * u
    height = 1.0 - guess[:, None] - lam
    p = guess[:, None] + height * f
    grad = np.stack([height * df_dm, height * df_ds, -f], axis=-1)
    return np.clip(p, _P_EPS, 1 - _P_EPS), grad


def _loglik(p: np.ndarray, n: np.ndarray, k: np.ndarray) -> np.ndarray:
    return (special.xlogy(k, p) + special.xlogy(n - k, 1 - p)).sum(axis=1)


def psychometric(alpha: np.ndarray, scale: float, slope: float, lapse: float, guess: float,
                 function: str = "weibull") -> np.ndarray:
    """P(correct) at amplitudes ``alpha`` for one fitted curve (parameters as in ``fits.csv``)."""
    theta = np.array([[np.log(scale), np.log(slope), lapse]])
    x = np.log(np.maximum(np.atleast_1d(alpha), 1e-300))[None]
    return _curve(theta, x, np.array([guess]), function)[0][0]


def threshold_of(scale: np.ndarray, slope: np.ndarray, function: str) -> np.ndarray:
    """α where F = 1/2: a·(ln 2)^(1/β) for the Weibull, μ for the log-normal."""
    return scale * np.log(2.0) ** (1.0 / slope) if function == "weibull" else scale


@dataclass
class _Batch:
    x: np.ndarray      # ln α, (C, K), 0 on padding
    n: np.ndarray      # trials per level, 0 on padding
    k: np.ndarray      # correct per level
    guess: np.ndarray  # (C,)
    lower: np.ndarray  # (C, 3) bounds of θ
    upper: np.ndarray


def _start(batch: _Batch, function: str) -> np.ndarray:
    """Best θ of a shared grid over scale (the tested range), spread and lapse."""
    valid = batch.n > 0
    x_lo = np.where(valid, batch.x, np.inf).min(axis=1)
    x_hi = np.where(valid, batch.x, -np.inf).max(axis=1)
    frac = np.linspace(-0.2, 1.2, 29)
    fixed = np.allclose(batch.lower[:, 1], batch.upper[:, 1])
    spread_frac = [0.5] if fixed else np.linspace(0, 1, 7)
    best_ll = np.full(len(x_lo), -np.inf)
    best = np.zeros((len(x_lo), 3))
    for f, g, h in itertools.product(frac, spread_frac, (0.0, 0.5, 1.0)):
        theta = np.stack([x_lo + f * (x_hi - x_lo),
                          batch.lower[:, 1] + g * (batch.upper[:, 1] - batch.lower[:, 1]),
                          h * batch.upper[:, 2]], axis=1)
        ll = _loglik(_curve(theta, batch.x, batch.guess, function)[0], batch.n, batch.k)
        better = ll > best_ll
        best_ll[better], best[better] = ll[better], theta[better]
    return best


def _score(batch: _Batch, theta: np.ndarray, function: str, max_iter: int):
    """Projected Levenberg–Marquardt Fisher scoring on every condition at once.

    Each step works only on the conditions not yet converged, so the few slow
    ones (flat likelihood ridges) cost little.
    """
    c = len(theta)
    theta = theta.copy()
    damping = np.full(c, 1e-3)
    converged = np.zeros(c, bool)
    iterations = np.zeros(c, int)
    ll = _loglik(_curve(theta, batch.x, batch.guess, function)[0], batch.n, batch.k)
    eye = np.eye(3)
    for it in range(max_iter):
        a = np.flatnonzero(~converged)
        if not a.size:
            break
        x, n, k, guess, lower, upper = (batch.x[a], batch.n[a], batch.k[a], batch.guess[a],
                                        batch.lower[a], batch.upper[a])
        th = theta[a]
        p, dp = _curve(th, x, guess, function)
        grad = np.einsum("ck,ckj->cj", (k - n * p) / (p * (1 - p)), dp)
        info = np.einsum("ck,cki,ckj->cij", n / (p * (1 - p)), dp, dp)
        # Parameters held at a bound with the gradient pushing out are frozen this step.
        held = ((th <= lower) & (grad < 0)) | ((th >= upper) & (grad > 0))
        grad = np.where(held, 0.0, grad)
        info = np.where(held[:, :, None] | held[:, None, :], 0.0, info) + held[:, :, None] * eye
        diag = np.einsum("cii->ci", info)
        system = info + (damping[a, None] * (diag + 1e-9))[:, :, None] * eye
        step = np.linalg.solve(system, grad[:, :, None])[..., 0]
        trial = np.clip(th + step, lower, upper)
        ll_new = _loglik(_curve(trial, x, guess, function)[0], n, k)
        accept = ll_new >= ll[a]
        gain = np.where(accept, ll_new - ll[a], 0.0)
        theta[a] = np.where(accept[:, None], trial, th)
        ll[a] = np.where(accept, ll_new, ll[a])
        damping[a] = np.where(accept, np.maximum(damping[a] / 3, 1e-9), damping[a] * 4)
        iterations[a] = it + 1
        # Converged: an accepted step that no longer gains, a vanishing gradient, or a
        # step too small to change anything (damping has grown at an optimum).
        size = np.abs(step).max(axis=1)
        converged[a] = ((accept & (gain < 1e-9) & (size < 1e-4)) | (size < 1e-7)
                        | (np.abs(grad).max(axis=1) < 1e-7))
    return theta, ll, converged, iterations


def _polish(batch: _Batch, theta: np.ndarray, rows: np.ndarray, function: str):
    """scipy L-BFGS-B on the conditions Fisher scoring left unconverged."""
    ok = np.zeros(len(rows), bool)
    for j, i in enumerate(rows):
        sub = _Batch(batch.x[i:i + 1], batch.n[i:i + 1], batch.k[i:i + 1], batch.guess[i:i + 1],
                     batch.lower[i:i + 1], batch.upper[i:i + 1])

        def nll(t: np.ndarray) -> tuple[float, np.ndarray]:
            p, dp = _curve(t[None], sub.x, sub.guess, function)
            g = np.einsum("ck,ckj->j", (sub.k - sub.n * p) / (p * (1 - p)), dp)
            return -float(_loglik(p, sub.n, sub.k)[0]), -g

        result = optimize.minimize(nll, theta[i], jac=True, method="L-BFGS-B",
                                   bounds=list(zip(sub.lower[0], sub.upper[0])))
        theta[i], ok[j] = result.x, result.success
    return theta, ok


def _fit(batch: _Batch, options: FitOptions) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Maximum-likelihood θ of every condition: grid start, Fisher scoring, scipy polish."""
    theta, _, converged, iterations = _score(batch, _start(batch, options.function), options.function,
                                             options.max_iter)
    stuck = np.flatnonzero(~converged)
    if stuck.size:
        theta, ok = _polish(batch, theta, stuck, options.function)
        converged[stuck] = ok
    return theta, converged, iterations


def _shared_spread(batch: _Batch, person: np.ndarray, options: FitOptions) -> np.ndarray:
    """Per participant, the ln-spread maximising the summed likelihood of their conditions.

    A profile over a grid of spreads (every condition refitted with the spread
    fixed), refined by a parabola through the best grid point and its neighbours.
    Fitting one slope per participant removes most of the upward slope bias of
    60-trial fits, which otherwise leaks into the thresholds (adaptive tracks
    sample above threshold, so a too-steep slope extrapolates too high).
    """
    grid = np.linspace(*_SPREAD_BOUNDS[options.function], 9)
    n_people = person.max() + 1
    profile = np.empty((len(grid), n_people))
    theta = None
    for g, s in enumerate(grid):
        fixed = _Batch(batch.x, batch.n, batch.k, batch.guess, batch.lower.copy(), batch.upper.copy())
        fixed.lower[:, 1] = fixed.upper[:, 1] = s
        # Warm start from the neighbouring grid point's fit: the optimum moves little.
        start = _start(fixed, options.function) if theta is None else np.clip(theta, fixed.lower, fixed.upper)
        theta, _, _, _ = _score(fixed, start, options.function, options.max_iter)
        ll = _loglik(_curve(theta, batch.x, batch.guess, options.function)[0], batch.n, batch.k)
        profile[g] = np.bincount(person, weights=ll, minlength=n_people)
    best = np.clip(profile.argmax(axis=0), 1, len(grid) - 2)
    cols = np.arange(n_people)
    y0, y1, y2 = profile[best - 1, cols], profile[best, cols], profile[best + 1, cols]
    curvature = y0 - 2 * y1 + y2
    shift = np.where(curvature < 0, 0.5 * (y0 - y2) / np.where(curvature < 0, curvature, -1.0), 0.0)
    step = grid[1] - grid[0]
    return np.clip(grid[best] + np.clip(shift, -1, 1) * step, grid[0], grid[-1])


def _ceiling_loglik(batch: _Batch, theta: np.ndarray, ceiling: np.ndarray, options: FitOptions) -> np.ndarray:
    """Best log-likelihood with the threshold held at or above ``ceiling`` (spread as fitted)."""
    shift = np.log(np.log(2.0)) / np.exp(theta[:, 1]) if options.function == "weibull" else 0.0
    lower, upper = batch.lower.copy(), batch.upper.copy()
    lower[:, 1] = upper[:, 1] = theta[:, 1]
    lower[:, 0] = np.minimum(np.log(ceiling) - shift, upper[:, 0])
    bounded = _Batch(batch.x, batch.n, batch.k, batch.guess, lower, upper)
    held, _, _, _ = _score(bounded, np.clip(theta, lower, upper), options.function, options.max_iter)
    return _loglik(_curve(held, batch.x, batch.guess, options.function)[0], batch.n, batch.k)


def _pool(trials: pd.DataFrame) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Per-condition summary and per-(condition, α) counts of the analysable trials."""
    data = trials[~trials["is_catch"]]
    keys = list(TRACK_KEY)
    alts = data.groupby(keys, sort=True)["n_alternatives"].nunique()
    if (alts > 1).any():
        bad = alts[alts > 1].index[0]
        raise ValueError(f"condition {dict(zip(keys, bad))} mixes 2- and 3-alternative trials; "
                         "fit them as separate conditions")
    extra = {"alpha_max": ("alpha_max", "max")} if "alpha_max" in data else {}
    conditions = data.groupby(keys, sort=True).agg(
        n_alternatives=("n_alternatives", "first"), n_trials=("correct", "size"), **extra
    ).reset_index()
    levels = data.groupby(keys + ["alpha"], sort=True).agg(
        n=("correct", "size"), k=("correct", "sum")
    ).reset_index()
    levels = levels.merge(conditions[keys].reset_index(names="cond"), on=keys)
    return conditions, levels


def fit_thresholds(trials: pd.DataFrame, alpha_max: float | None = None,
                   options: FitOptions = FitOptions()) -> pd.DataFrame:
    """Fit one psychometric function per participant × image × (model, layer, weights) × direction.

    Parameters
    ----------
    trials
        Trial rows (after exclusions). Catch trials are skipped. An ``alpha_max``
        column, where present, gives each condition's ceiling.
    alpha_max
        The ceiling when the rows carry no ``alpha_max`` column.
    options
        Function, lapse bound, iterations.

    Returns
    -------
    pandas.DataFrame
        One row per condition: the condition columns, ``n_alternatives``, ``guess``,
        ``threshold`` (alpha_max where censored, the lowest tested α where
        below_range), ``threshold_fit`` (the fit's own value), ``log10_threshold``,
        ``censored``, ``below_range``, ``alpha_max``, ``scale``, ``slope``
        (β or σ), ``lapse``, ``log_likelihood``, ``deviance``, ``n_trials``,
        ``n_levels``, ``converged``, ``iterations``, ``function``.
    """
    conditions, levels = _pool(trials)
    if "alpha_max" not in conditions:
        if alpha_max is None:
            raise ValueError("alpha_max is unknown: give it, or an alpha_max column in the trials")
        conditions["alpha_max"] = float(alpha_max)
    if (levels["alpha"] <= 0).any():
        raise ValueError("non-catch trials must have alpha > 0; found alpha = 0 outside blank catch trials")
    c = len(conditions)
    k_max = int(levels.groupby("cond").size().max()) if c else 0
    slot = levels.groupby("cond").cumcount().to_numpy()
    cond = levels["cond"].to_numpy()
    shape = (c, k_max)
    x, n, k = np.zeros(shape), np.zeros(shape), np.zeros(shape)
    x[cond, slot] = np.log(levels["alpha"].to_numpy())
    n[cond, slot] = levels["n"].to_numpy()
    k[cond, slot] = levels["k"].to_numpy()
    guess = 1.0 / conditions["n_alternatives"].to_numpy(dtype=float)
    x_lo = np.where(n > 0, x, np.inf).min(axis=1)
    x_hi = np.maximum(np.where(n > 0, x, -np.inf).max(axis=1), np.log(conditions["alpha_max"].to_numpy()))
    lo_s, hi_s = _SPREAD_BOUNDS[options.function]
    lower = np.stack([x_lo - 3.0, np.full(c, lo_s), np.zeros(c)], axis=1)
    upper = np.stack([x_hi + 3.0, np.full(c, hi_s), np.full(c, options.max_lapse)], axis=1)
    batch = _Batch(x, n, k, guess, lower, upper)

    if options.slope == "shared":
        person = pd.factorize(conditions["participant"])[0]
        lower[:, 1] = upper[:, 1] = _shared_spread(batch, person, options)[person]
    theta, converged, iterations = _fit(batch, options)
    p, _ = _curve(theta, x, guess, options.function)
    ll = _loglik(p, n, k)
    saturated = _loglik(np.clip(np.divide(k, n, out=np.full(shape, 0.5), where=n > 0), _P_EPS, 1 - _P_EPS), n, k)

    scale, spread = np.exp(theta[:, 0]), np.exp(theta[:, 1])
    fitted = threshold_of(scale, spread, options.function)
    ceiling = conditions["alpha_max"].to_numpy(dtype=float)
    lowest = np.exp(np.where(n > 0, x, np.inf).min(axis=1))
    censored = (fitted >= ceiling) | (2 * (ll - _ceiling_loglik(batch, theta, ceiling, options)) < CENSOR_LR)
    below = ~censored & (fitted < lowest)
    threshold = np.where(censored, ceiling, np.where(below, lowest, fitted))
    out = conditions.copy()
    out["guess"] = guess
    out["threshold"] = threshold
    out["threshold_fit"] = fitted
    out["log10_threshold"] = np.log10(threshold)
    out["censored"] = censored
    out["below_range"] = below
    out["scale"] = scale
    out["slope"] = spread
    out["lapse"] = theta[:, 2]
    out["log_likelihood"] = ll
    out["deviance"] = 2 * (saturated - ll)
    out["n_levels"] = (n > 0).sum(axis=1)
    out["converged"] = converged
    out["iterations"] = iterations
    out["function"] = options.function
    return out
