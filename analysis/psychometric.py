"""Psychometric thresholds per condition: fits, intervals, goodness of fit, flags.

The trial rows are checked and pooled first (:mod:`analysis.fit_input`).

P(correct | α) = γ + (1 − γ − λ) F(α) (:mod:`eigdist_core.psychometric_function`),
with the guess rate γ = 1 / n_alternatives fixed, the lapse rate λ free in
[0, max_lapse], and F a Weibull or a log-normal on α. The **threshold** is where
F = ½ (the criterion of :data:`CRITERION`): P = γ + (1 − γ − λ)/2, i.e.
75 % − λ/2 correct in 2AFC.

The fit (:mod:`analysis.fitting`) maximises the binomial likelihood times a
weakly informative prior on the slope (switchable, :data:`SLOPE_PRIOR`).

Slopes: by default one slope per participant (joint fit over their
conditions, a profile over a grid of slopes); ``slope="free"`` fits one per
condition.

Per condition it also reports

* a **95 % profile-likelihood interval** of the threshold (``ci_low``, ``ci_high``);
* the **deviance** against the saturated model and its **parametric-bootstrap
  p-value** ``gof_p`` (Wichmann & Hill 2001);
* **flags**: ``few_trials`` (n < ``min_trials``), ``slope_at_bound`` (β or σ at
  its bound), ``poor_fit`` (``gof_p`` < ``poor_fit_p``), ``unconverged``,
  ``not_estimable`` (see below), and the bounds ``censored`` / ``below_range``.

Censoring: a threshold is censored (reported as its condition's ceiling
``alpha_ceiling``) when the fit puts it at or above the ceiling, or when the data
cannot rule that out (the profile interval reaches the ceiling: the best fit with
the threshold at the ceiling or beyond is not worse by χ²₁(95 %) = 3.84). A fitted threshold below the lowest
tested α is flagged ``below_range`` and reported as that α (an upper bound).
A condition tested at a single α whose threshold is neither kind of bound is
``not_estimable``: its threshold is NaN, and it enters no D.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from eigdist_core.errors import EigdistError
from eigdist_core.psychometric_function import CRITERION, FUNCTIONS, p_correct

from . import fitting
from .fit_input import CEILING, pool_levels, validate_trials

SLOPES = ("shared", "free")
#: Bounds of ln spread: Weibull slope β in [1, 10], log-normal σ (in ln α) in [0.03, 3].
SPREAD_BOUNDS = {"weibull": (np.log(1.0), np.log(10.0)), "lognormal": (np.log(0.03), np.log(3.0))}
#: The weakly informative slope prior: normal on ln spread, (mean, sd). Weibull β: median 3,
#: 95 % within [1.1, 8]; log-normal σ: median 0.4 (≈ the same curve), same relative width.
SLOPE_PRIOR = {"weibull": (np.log(3.0), 0.5), "lognormal": (np.log(0.4), 0.5)}
#: Quality flags of a threshold, in the order ``flags`` lists them.
FLAGS = ("not_estimable", "censored", "below_range", "few_trials", "slope_at_bound", "poor_fit", "unconverged")
#: Flags that question a threshold's value (bounds are handled by the ranking): a D built on one
#: is marked and counted (``n_flagged``), never used silently.
QUALITY_FLAGS = ("few_trials", "slope_at_bound", "poor_fit", "unconverged")


@dataclass(frozen=True)
class FitOptions:
    """Settings of :func:`fit_thresholds`.

    Attributes
    ----------
    function
        ``"weibull"`` or ``"lognormal"``.
    slope
        ``"shared"``: one slope (β or σ) per participant; ``"free"``: one per condition.
    max_lapse
        Upper bound of the lapse rate λ.
    slope_prior
        Multiply the likelihood by :data:`SLOPE_PRIOR` (the fit is then a posterior mode).
    gof_draws
        Parametric-bootstrap draws of the deviance per condition (0: no ``gof_p``).
    intervals
        Compute the 95 % profile-likelihood interval of each threshold.
    min_trials
        Conditions with fewer trials are flagged ``few_trials``.
    poor_fit_p
        Conditions with ``gof_p`` below this are flagged ``poor_fit``.
    max_iter
        Fisher-scoring iterations before the scipy polish.
    seed
        Seed of the bootstrap draws.
    """

    function: str = "weibull"
    slope: str = "shared"
    max_lapse: float = 0.06
    slope_prior: bool = True
    gof_draws: int = 200
    intervals: bool = True
    min_trials: int = 30
    poor_fit_p: float = 0.01
    max_iter: int = 300
    seed: int = 0

    def __post_init__(self) -> None:
        if self.function not in FUNCTIONS:
            raise EigdistError(f"function must be one of {', '.join(FUNCTIONS)}, got {self.function!r}")
        if self.slope not in SLOPES:
            raise EigdistError(f"slope must be one of {', '.join(SLOPES)}, got {self.slope!r}")
        if not 0.0 <= self.max_lapse < 0.5:
            raise EigdistError(f"max_lapse must lie in [0, 0.5), got {self.max_lapse}")
        for name, low in (("max_iter", 1), ("gof_draws", 0), ("min_trials", 0)):
            if int(getattr(self, name)) != getattr(self, name) or getattr(self, name) < low:
                raise EigdistError(f"{name} must be an integer >= {low}, got {getattr(self, name)}")
        if not 0.0 <= self.poor_fit_p < 1.0:
            raise EigdistError(f"poor_fit_p must lie in [0, 1), got {self.poor_fit_p}")


def psychometric(alpha: np.ndarray, threshold: float, slope: float, lapse: float, guess: float,
                 function: str = "weibull") -> np.ndarray:
    """P(correct) at amplitudes ``alpha`` of one fitted curve (``threshold_fit``, ``slope``… of fits.csv)."""
    return p_correct(np.atleast_1d(alpha), threshold, slope, guess, lapse, function)


def _batch(conditions: pd.DataFrame, levels: pd.DataFrame, options: FitOptions) -> fitting.Batch:
    c = len(conditions)
    k_max = int(levels.groupby("cond").size().max())
    slot = levels.groupby("cond").cumcount().to_numpy()
    cond = levels["cond"].to_numpy()
    x, n, k = np.zeros((c, k_max)), np.zeros((c, k_max)), np.zeros((c, k_max))
    x[cond, slot] = np.log(levels["alpha"].to_numpy())
    n[cond, slot] = levels["n"].to_numpy()
    k[cond, slot] = levels["k"].to_numpy()
    guess = 1.0 / conditions["n_alternatives"].to_numpy(dtype=float)
    x_lo = np.where(n > 0, x, np.inf).min(axis=1)
    x_hi = np.maximum(np.where(n > 0, x, -np.inf).max(axis=1), np.log(conditions[CEILING].to_numpy()))
    lo_s, hi_s = SPREAD_BOUNDS[options.function]
    lower = np.stack([x_lo - 3.0, np.full(c, lo_s), np.zeros(c)], axis=1)
    upper = np.stack([x_hi + 3.0, np.full(c, hi_s), np.full(c, options.max_lapse)], axis=1)
    prior = SLOPE_PRIOR[options.function] if options.slope_prior else None
    return fitting.Batch(x, n, k, guess, lower, upper, options.function, prior)


def flag_text(table: pd.DataFrame) -> pd.Series:
    """``;``-joined names of the :data:`FLAGS` set in each row ('' for none)."""
    present = [f for f in FLAGS if f in table]
    marks = table[present].astype(bool).to_numpy()
    return pd.Series([";".join(f for f, m in zip(present, row) if m) for row in marks], index=table.index)


@dataclass(frozen=True)
class _Fitted:
    """The best parameters of every condition and how well they explain its counts.

    Attributes
    ----------
    theta
        ``(conditions, 3)``: ln threshold, ln spread (β or σ), lapse λ.
    converged, iterations
        From :func:`analysis.fitting.fit`.
    objective
        The maximised objective (log-likelihood, plus the slope log-prior when used).
    log_likelihood
        Binomial log-likelihood at ``theta``.
    deviance
        Against the saturated model.
    """

    theta: np.ndarray
    converged: np.ndarray
    iterations: np.ndarray
    objective: np.ndarray
    log_likelihood: np.ndarray
    deviance: np.ndarray


@dataclass(frozen=True)
class _Placement:
    """Where each fitted threshold lies relative to the tested α and the ceiling.

    Attributes
    ----------
    fitted
        The fit's own threshold.
    ceiling
        alpha_ceiling of each condition.
    lowest
        The lowest tested α.
    n_levels
        Number of tested α.
    censored
        At or above the ceiling, or not ruled out to be there.
    below
        Below the lowest tested α (and not censored).
    estimable
        Tested at two or more α, or one of the bounds above.
    """

    fitted: np.ndarray
    ceiling: np.ndarray
    lowest: np.ndarray
    n_levels: np.ndarray
    censored: np.ndarray
    below: np.ndarray
    estimable: np.ndarray


def _fit_conditions(batch: fitting.Batch, participants: pd.Series, options: FitOptions) -> _Fitted:
    """Fit every condition of ``batch``; with shared slopes, first fix each participant's spread.

    Parameters
    ----------
    batch
        The pooled counts and parameter bounds; with ``options.slope == "shared"`` its spread bounds
        are pinned in place to each participant's joint estimate.
    participants
        The participant of each condition (row of ``batch``).
    options
        Slope mode and iteration limit.

    Returns
    -------
    _Fitted
        Parameters, convergence, objective, log-likelihood and deviance per condition.
    """
    if options.slope == "shared":
        person = pd.factorize(participants)[0]
        batch.lower[:, 1] = batch.upper[:, 1] = fitting.shared_spread(batch, person, options.max_iter)[person]
    theta, converged, iterations = fitting.fit(batch, options.max_iter)
    ll = fitting.loglik(fitting.curve(theta, batch.x, batch.guess, batch.function)[0], batch.n, batch.k)
    return _Fitted(theta, converged, iterations, fitting.objective(batch, theta), ll,
                   2 * (fitting.saturated_loglik(batch.n, batch.k) - ll))


def _place_thresholds(batch: fitting.Batch, fit: _Fitted, ceiling: np.ndarray, max_iter: int) -> _Placement:
    """Decide per condition whether the threshold is censored, below the tested range or not estimable.

    Parameters
    ----------
    batch
        The fitted batch.
    fit
        Its fit (:func:`_fit_conditions`).
    ceiling
        alpha_ceiling of each condition.
    max_iter
        Iterations of the refit with the threshold held at or above the ceiling.

    Returns
    -------
    _Placement
    """
    fitted = np.exp(fit.theta[:, 0])
    lowest = np.exp(np.where(batch.n > 0, batch.x, np.inf).min(axis=1))
    n_levels = (batch.n > 0).sum(axis=1)
    above = fitting.held_threshold(batch, fit.theta, np.log(ceiling), max_iter, at_least=True)
    # censored also when the data cannot rule the ceiling out: the best fit with the threshold at
    # the ceiling or beyond is not worse by χ²₁(95 %)
    censored = (fitted >= ceiling) | (2 * (fit.objective - above) < fitting.CHI2_95)
    below = ~censored & (fitted < lowest)
    estimable = (n_levels >= 2) | censored | below
    return _Placement(fitted, ceiling, lowest, n_levels, censored, below, estimable)


def _threshold_intervals(batch: fitting.Batch, fit: _Fitted, censored: np.ndarray,
                         options: FitOptions) -> tuple[np.ndarray, np.ndarray]:
    """The 95 % profile-likelihood interval of each threshold (NaN when ``options.intervals`` is off).

    Parameters
    ----------
    batch, fit
        The fitted batch and its fit.
    censored
        Conditions whose interval is open upwards (``ci_high`` = inf).
    options
        Whether to compute intervals, and the iteration limit.

    Returns
    -------
    (ci_low, ci_high)
        In α units.
    """
    if not options.intervals:
        nan = np.full(len(fit.theta), np.nan)
        return nan, nan
    lo, hi = fitting.profile_interval(batch, fit.theta, fit.objective, options.max_iter)
    return np.exp(lo), np.where(censored, np.inf, np.exp(hi))


def _gof_p(batch: fitting.Batch, fit: _Fitted, options: FitOptions) -> np.ndarray:
    """Parametric-bootstrap p-value of each deviance (NaN when ``options.gof_draws`` is 0).

    Parameters
    ----------
    batch, fit
        The fitted batch and its fit.
    options
        Number of draws, iteration limit and seed.

    Returns
    -------
    numpy.ndarray
        One p-value per condition.
    """
    if not options.gof_draws:
        return np.full(len(fit.theta), np.nan)
    return fitting.deviance_p_value(batch, fit.theta, fit.deviance, options.gof_draws, options.max_iter, options.seed)


def reported_threshold(fitted: np.ndarray, ceiling: np.ndarray, lowest: np.ndarray, censored: np.ndarray,
                       below: np.ndarray, estimable: np.ndarray) -> np.ndarray:
    """The threshold a table reports: NaN if not estimable, the ceiling if censored, the lowest α if below range.

    The one rule for every fitter (maximum likelihood here, psignifit in :mod:`analysis.psignifit_fit`).
    """
    return np.where(~estimable, np.nan, np.where(censored, ceiling, np.where(below, lowest, fitted)))


def _threshold_columns(place: _Placement, ci_low: np.ndarray, ci_high: np.ndarray) -> dict[str, np.ndarray]:
    """The reported threshold (bounds substituted), its interval and log10 (NaN where not estimable).

    Parameters
    ----------
    place
        From :func:`_place_thresholds`.
    ci_low, ci_high
        From :func:`_threshold_intervals`.

    Returns
    -------
    dict
        ``threshold``, ``ci_low``, ``ci_high``, ``log10_threshold``, in table order.
    """
    threshold = reported_threshold(place.fitted, place.ceiling, place.lowest, place.censored, place.below,
                                   place.estimable)
    return {"threshold": threshold, "ci_low": np.where(place.estimable, ci_low, np.nan),
            "ci_high": np.where(place.estimable, ci_high, np.nan), "log10_threshold": np.log10(threshold)}


def _flag_columns(n_trials: np.ndarray, fit: _Fitted, place: _Placement, gof_p: np.ndarray,
                  options: FitOptions) -> dict[str, np.ndarray]:
    """The boolean :data:`FLAGS` of each condition.

    Parameters
    ----------
    n_trials
        Trials per condition.
    fit, place, gof_p
        The fit, where its thresholds lie, and the bootstrap p-values.
    options
        Function (its spread bounds), ``min_trials`` and ``poor_fit_p``.

    Returns
    -------
    dict
        One boolean array per flag, in the order of :data:`FLAGS`.
    """
    spread_bounds = np.array(SPREAD_BOUNDS[options.function])
    return {
        "not_estimable": ~place.estimable,
        "censored": place.censored & place.estimable,
        "below_range": place.below,
        "few_trials": n_trials < options.min_trials,
        "slope_at_bound": np.abs(fit.theta[:, 1, None] - spread_bounds).min(axis=1) < 1e-3,
        "poor_fit": gof_p < options.poor_fit_p,
        "unconverged": ~fit.converged,
    }


def _fit_columns(fit: _Fitted, place: _Placement, gof_p: np.ndarray, options: FitOptions) -> dict[str, object]:
    """The fit's own values and settings, reported after the flags.

    Parameters
    ----------
    fit, place, gof_p
        The fit, where its thresholds lie, and the bootstrap p-values.
    options
        Function, slope mode, lapse bound and prior.

    Returns
    -------
    dict
        ``threshold_fit`` … ``fitter``, in table order.
    """
    free = 1 + (options.slope == "free") + (options.max_lapse > 0)
    return {
        "threshold_fit": place.fitted,
        "slope": np.exp(fit.theta[:, 1]),
        "lapse": fit.theta[:, 2],
        "log_likelihood": fit.log_likelihood,
        "deviance": fit.deviance,
        "deviance_df": np.maximum(place.n_levels - free, 0),
        "gof_p": gof_p,
        "n_levels": place.n_levels,
        "converged": fit.converged,
        "iterations": fit.iterations,
        "function": options.function,
        "criterion": CRITERION,
        "slope_prior": options.slope_prior,
        "fitter": "eigdist",
    }


def fit_thresholds(trials: pd.DataFrame, alpha_max: float | None = None,
                   options: FitOptions = FitOptions()) -> pd.DataFrame:
    """Fit one psychometric function per participant × image × (model, layer, weights) × direction.

    Parameters
    ----------
    trials
        Trial rows (after exclusions); catch trials are skipped. Needs the
        columns of :data:`FIT_COLUMNS`; an ``alpha_ceiling`` column (the α
        ceiling each trial's track used; ``alpha_max``, its first name, is read
        too), where present, gives each condition's ceiling.
    alpha_max
        The ceiling of the rows that recorded none (the set's ``alpha_max``).
    options
        Function, slopes, lapse bound, prior, bootstrap draws, flag thresholds.

    Returns
    -------
    pandas.DataFrame
        One row per condition: the condition columns, ``n_alternatives``,
        ``n_trials``, ``alpha_ceiling``, ``guess``, ``threshold`` (alpha_ceiling where
        censored, the lowest tested α where below_range, NaN where not
        estimable), ``ci_low``/``ci_high`` (95 % profile-likelihood interval;
        0 / inf where unbounded), ``log10_threshold``, the boolean flags of
        :data:`FLAGS`, ``flags`` (their names), ``threshold_fit`` (the fit's own
        value), ``slope`` (β or σ), ``lapse``, ``log_likelihood``, ``deviance``,
        ``deviance_df``, ``gof_p``, ``n_levels``, ``iterations``, ``function``,
        ``criterion``, ``slope_prior``, ``fitter``.

    Raises
    ------
    TrialDataError
        For input the fits cannot use (see :func:`analysis.fit_input.validate_trials`).
    """
    conditions, levels = pool_levels(validate_trials(trials, alpha_max))
    batch = _batch(conditions, levels, options)
    fit = _fit_conditions(batch, conditions["participant"], options)
    place = _place_thresholds(batch, fit, conditions[CEILING].to_numpy(dtype=float), options.max_iter)
    ci_low, ci_high = _threshold_intervals(batch, fit, place.censored, options)
    gof_p = _gof_p(batch, fit, options)
    out = conditions.assign(guess=batch.guess, **_threshold_columns(place, ci_low, ci_high),
                            **_flag_columns(conditions["n_trials"].to_numpy(), fit, place, gof_p, options))
    out["flags"] = flag_text(out)
    return out.assign(**_fit_columns(fit, place, gof_p, options))
