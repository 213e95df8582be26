"""The psychometric function, one definition for the tracks, the simulated observers and the fits.

P(correct | α) = γ + (1 − γ − λ) F(α; t, s), with γ the guess rate (1 / n_alternatives),
λ the lapse rate and F a sigmoid in α that rises from 0 to 1:

* ``weibull``:   F = 1 − exp(−ln(1/(1−c)) · (α/t)^β)      (s = β, the Weibull shape)
* ``lognormal``: F = Φ(Φ⁻¹(c) + (ln α − ln t) / σ)        (s = σ, in ln α)

Both are parametrised by the **threshold** t, the α where F = c, the criterion.
The project's criterion is :data:`CRITERION` = ½: the midpoint between the guess
rate and the lapse-free ceiling 1, i.e. P = γ + (1 − γ − λ)/2 *with* the lapse
(75 % − λ/2 correct in 2AFC, 66.7 % − λ/2 in 3-AFC). It is psignifit's
threshold 0.5 (midway between guess and 1 − lapse).

The textbook Weibull ``1 − exp(−(α/a)^β)`` has its scale a at the criterion
1 − 1/e ≈ 0.632; :func:`convert_threshold` moves a threshold between criteria.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from scipy import special
from .errors import EigdistError

FUNCTIONS = ("weibull", "lognormal")
#: F at the threshold: the midpoint between guess rate and 1 (with the lapse, P = γ + (1 − γ − λ)/2).
CRITERION = 0.5
#: The Weibull's own scale parameter sits at F = 1 − 1/e.
WEIBULL_SCALE_CRITERION = 1.0 - np.exp(-1.0)


def _check(function: str, criterion: float) -> None:
    if function not in FUNCTIONS:
        raise EigdistError(f"function must be one of {', '.join(FUNCTIONS)}, got {function!r}")
    if not 0.0 < criterion < 1.0:
        raise EigdistError(f"criterion must lie in (0, 1), got {criterion!r}")


def _offset(function: str, criterion: float) -> float:
    """The sigmoid's argument at the threshold: ln(−ln(1 − c)) (Weibull), Φ⁻¹(c) (log-normal)."""
    return float(np.log(-np.log1p(-criterion))) if function == "weibull" else float(special.ndtri(criterion))


def sigmoid(alpha: Any, threshold: Any, spread: Any, function: str = "weibull",
            criterion: float = CRITERION) -> np.ndarray:
    """F(α), rising from 0 to 1, equal to ``criterion`` at ``threshold`` (numpy broadcasting).

    Parameters
    ----------
    alpha
        Amplitudes (≥ 0; F(0) = 0).
    threshold
        α where F = ``criterion`` (> 0).
    spread
        Weibull shape β, or log-normal σ in ln α (> 0).
    function
        ``"weibull"`` or ``"lognormal"``.
    criterion
        F at the threshold, in (0, 1).
    """
    _check(function, criterion)
    with np.errstate(divide="ignore"):
        d = np.log(np.asarray(alpha, dtype=float)) - np.log(threshold)
    spread = np.asarray(spread, dtype=float)
    if function == "weibull":
        return -np.expm1(-np.exp(np.minimum(spread * d + _offset(function, criterion), 50.0)))
    return special.ndtr(d / spread + _offset(function, criterion))


def sigmoid_log(x: np.ndarray, m: np.ndarray, log_spread: np.ndarray, function: str,
                criterion: float = CRITERION) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """F and its derivatives in log coordinates, for fitting.

    Parameters
    ----------
    x
        ln α.
    m
        ln threshold.
    log_spread
        ln β (Weibull) or ln σ (log-normal).

    Returns
    -------
    tuple of numpy.ndarray
        F, ∂F/∂m, ∂F/∂(ln spread), broadcast together.
    """
    spread = np.exp(log_spread)
    d = x - m
    if function == "weibull":
        u = spread * d + _offset(function, criterion)
        z = np.exp(np.minimum(u, 50.0))
        dens = np.exp(-z) * z  # dF/du
        return -np.expm1(-z), -dens * spread, dens * spread * d
    u = d / spread + _offset(function, criterion)
    dens = np.exp(-0.5 * u * u) / np.sqrt(2 * np.pi)
    return special.ndtr(u), -dens / spread, -dens * d / spread


def p_correct(alpha: Any, threshold: Any, spread: Any, guess: Any, lapse: Any, function: str = "weibull",
              criterion: float = CRITERION) -> np.ndarray:
    """P(correct) = γ + (1 − γ − λ) F(α) (numpy broadcasting); see :func:`sigmoid`."""
    return guess + (1.0 - guess - np.asarray(lapse, dtype=float)) * sigmoid(alpha, threshold, spread, function,
                                                                            criterion)


def weibull(alpha: Any, threshold: Any, slope: Any, guess: Any, lapse: Any) -> np.ndarray:
    """P(correct) of the Weibull at the project's criterion: ``threshold`` is where F = ½."""
    return p_correct(alpha, threshold, slope, guess, lapse, "weibull")


def percent_correct_at_threshold(guess: Any, lapse: Any = 0.0, criterion: float = CRITERION) -> np.ndarray:
    """P(correct) at the threshold: γ + (1 − γ − λ) c (0.75 for 2AFC without lapses)."""
    return guess + (1.0 - guess - np.asarray(lapse, dtype=float)) * criterion


def convert_threshold(threshold: Any, spread: Any, function: str, from_criterion: float,
                      to_criterion: float) -> np.ndarray:
    """The α where F = ``to_criterion`` of the curve whose F = ``from_criterion`` at ``threshold``."""
    _check(function, from_criterion)
    _check(function, to_criterion)
    shift = _offset(function, to_criterion) - _offset(function, from_criterion)
    spread = np.asarray(spread, dtype=float)
    return np.asarray(threshold, dtype=float) * np.exp(shift / spread if function == "weibull" else shift * spread)
