"""Threshold fits: recovery on seeded synthetic observers, censoring, agreement with scipy.

Synthetic labs (stated spreads): Weibull observers, slope β = 3.5, lapse 0.02, 2AFC;
log10 thresholds spread by participant (σ 0.1), image (σ 0.1) and D scatter (σ 0.1)
around 1.0; alpha_max = 30; 60 trials per condition.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from scipy import optimize

from analysis import psychometric as ps
from analysis.load import CONDITION
from analysis.simulate import make_truth, simulate_trials

LAYERS = {("vgg16", "conv1", "imagenet"): 0.8, ("vgg16", "conv5", "imagenet"): 0.2}


def _relative_errors(fits: pd.DataFrame, truth: pd.DataFrame) -> np.ndarray:
    merged = fits.merge(truth, on=list(CONDITION), suffixes=("", "_true"))
    assert len(merged) == len(truth)
    return np.abs(merged["threshold"] / merged["threshold_true"] - 1)


@pytest.mark.parametrize("method, n_participants", [("constant", 10), ("updown", 6)])
def test_thresholds_recovered_within_ten_percent(method, n_participants):
    truth = make_truth(LAYERS, n_participants=n_participants, n_images=3, seed=5)
    trials = simulate_trials(truth, n_trials=60, method=method, seed=3)
    fits = ps.fit_thresholds(trials, alpha_max=30.0)
    assert fits["converged"].all() and not fits["censored"].any()
    assert (fits["n_trials"] == 60).all()
    assert np.median(_relative_errors(fits, truth)) < 0.10


def test_quest_tracks_recover_thresholds_and_d():
    """QUEST+ tracks the same F = 1/2 threshold the fit reports (one psychometric function):
    no systematic shift (before, the track's 1 - 1/e point left thresholds ~8 % high)."""
    truth = make_truth(LAYERS, n_participants=4, n_images=2, seed=5)
    fits = ps.fit_thresholds(simulate_trials(truth, n_trials=60, method="quest", seed=3), alpha_max=30.0)
    assert np.median(_relative_errors(fits, truth)) < 0.15
    merged = fits.merge(truth, on=list(CONDITION), suffixes=("", "_true"))
    log_ratio = np.log10(merged["threshold"] / merged["threshold_true"])
    assert abs(log_ratio.median()) < 0.02


@pytest.mark.parametrize("method", ["constant", "quest"])
def test_threshold_above_alpha_max_is_censored_not_invented(method):
    truth = make_truth({("m", "l", "w"): 0.0}, n_participants=2, n_images=1, seed=1)
    truth.loc[truth["direction"] == "min", "threshold"] = 60.0     # invisible below alpha_max = 30
    fits = ps.fit_thresholds(simulate_trials(truth, n_trials=60, method=method, seed=2), alpha_max=30.0)
    hidden = fits["direction"] == "min"
    assert fits.loc[hidden, "censored"].all()
    assert (fits.loc[hidden, "threshold"] == 30.0).all()
    assert not fits.loc[~hidden, "censored"].any()


def test_exact_expected_counts_give_the_true_curve():
    """MLE on counts equal to their expectations returns the generating parameters."""
    alpha = np.geomspace(0.3, 3.0, 9)
    rows = []
    for function, (threshold, spread) in {"weibull": (1.2, 3.0), "lognormal": (0.8, 0.4)}.items():
        p = ps.psychometric(alpha, threshold, spread, 0.03, 0.5, function)
        n = 10_000
        for a, pa in zip(alpha, p):
            k = int(round(pa * n))
            rows += [(function, a, True)] * k + [(function, a, False)] * (n - k)
    trials = pd.DataFrame(rows, columns=["model", "alpha", "correct"])
    for column, value in [("participant", "p"), ("image_id", "i"), ("layer", "l"), ("weights", "w"),
                          ("direction", "max"), ("n_alternatives", 2), ("is_catch", False)]:
        trials[column] = value
    for function, (threshold, spread) in {"weibull": (1.2, 3.0), "lognormal": (0.8, 0.4)}.items():
        fit = ps.fit_thresholds(trials[trials["model"] == function], alpha_max=10.0,
                                options=ps.FitOptions(function=function, slope="free", slope_prior=False,
                                                      gof_draws=0)).iloc[0]
        assert fit["slope"] == pytest.approx(spread, rel=2e-2)
        assert fit["lapse"] == pytest.approx(0.03, abs=2e-3)
        assert fit["threshold"] == pytest.approx(threshold, rel=2e-3)
        assert fit["deviance"] < 0.05
        assert fit["ci_low"] < threshold < fit["ci_high"] and fit["ci_high"] / fit["ci_low"] < 1.05


def test_vectorised_fit_matches_scipy_per_condition():
    truth = make_truth(LAYERS, n_participants=1, n_images=2, seed=9)
    trials = simulate_trials(truth, n_trials=50, seed=4)
    fits = ps.fit_thresholds(trials, alpha_max=30.0, options=ps.FitOptions(slope="free", slope_prior=False))
    groups = dict(iter(trials.groupby(list(CONDITION))))
    for row in fits.itertuples():
        data = groups[tuple(getattr(row, c) for c in CONDITION)]
        a, y = data["alpha"].to_numpy(), data["correct"].to_numpy()

        def nll(t):
            p = ps.psychometric(a, np.exp(t[0]), np.exp(t[1]), t[2], 0.5)
            return -np.sum(np.where(y, np.log(p), np.log(1 - p)))

        best = min((optimize.minimize(nll, [m, s, 0.02], method="L-BFGS-B",
                                      bounds=[(-5, 6), (0, np.log(10)), (0, 0.06)])
                    for m in (-0.5, 0.5) for s in (0.5, 2.0)), key=lambda r: r.fun)
        assert -row.log_likelihood <= best.fun + 1e-6


def test_fit_errors_name_the_problem():
    truth = make_truth(LAYERS, n_participants=1, n_images=1, seed=0)
    trials = simulate_trials(truth, n_trials=10, seed=0)
    with pytest.raises(ValueError, match="alpha_max is unknown"):
        ps.fit_thresholds(trials)
    mixed = trials.copy()
    mixed.loc[0, "n_alternatives"] = 3
    with pytest.raises(ValueError, match="mixes 2- and 3-alternative trials"):
        ps.fit_thresholds(mixed, alpha_max=30.0)
    with pytest.raises(ValueError, match="function must be one of weibull, lognormal, got 'probit'"):
        ps.FitOptions(function="probit")
    with pytest.raises(ValueError, match="slope must be one of shared, free, got 'fixed'"):
        ps.FitOptions(slope="fixed")
    with pytest.raises(ValueError, match="max_lapse must lie in \\[0, 0.5\\), got 0.7"):
        ps.FitOptions(max_lapse=0.7)


def test_threshold_below_the_tested_range_is_flagged_not_extrapolated():
    truth = make_truth({("m", "l", "w"): 0.0}, n_participants=2, n_images=1, seed=1)
    trials = simulate_trials(truth, n_trials=60, levels=tuple(np.geomspace(20, 60, 6)), alpha_max=1000.0, seed=2)
    fits = ps.fit_thresholds(trials, alpha_max=1000.0)
    assert fits["below_range"].all() and not fits["censored"].any()
    lowest = trials.groupby(list(CONDITION))["alpha"].min().reindex(pd.MultiIndex.from_frame(fits[list(CONDITION)]))
    assert np.allclose(fits["threshold"], lowest.to_numpy())
