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
from analysis.load import TrialDataError
from eigdist_core.contract import TRACK_KEY
from analysis.simulate import make_truth, simulate_trials
from experiments.staircase import make_track

LAYERS = {("vgg16", "conv1", "imagenet"): 0.8, ("vgg16", "conv5", "imagenet"): 0.2}


def _relative_errors(fits: pd.DataFrame, truth: pd.DataFrame) -> np.ndarray:
    merged = fits.merge(truth, on=list(TRACK_KEY), suffixes=("", "_true"))
    assert len(merged) == len(truth)
    return np.abs(merged["threshold"] / merged["threshold_true"] - 1)


@pytest.mark.parametrize("method, n_participants", [("constant", 10), ("updown", 6)])
def test_thresholds_recovered_within_ten_percent(method, n_participants):
    truth = make_truth(LAYERS, n_participants=n_participants, n_images=3, seed=5)
    trials = simulate_trials(truth, n_trials=60, method=method, seed=3, make_track=make_track)
    fits = ps.fit_thresholds(trials, alpha_max=30.0)
    assert fits["converged"].all() and not fits["censored"].any()
    assert (fits["n_trials"] == 60).all()
    assert np.median(_relative_errors(fits, truth)) < 0.10


def test_quest_tracks_recover_thresholds_and_d():
    """QUEST+ tracks the same F = 1/2 threshold the fit reports (one psychometric function):
    no systematic shift (before, the track's 1 - 1/e point left thresholds ~8 % high)."""
    truth = make_truth(LAYERS, n_participants=4, n_images=2, seed=5)
    trials = simulate_trials(truth, n_trials=60, method="quest", seed=3, make_track=make_track)
    fits = ps.fit_thresholds(trials, alpha_max=30.0)
    assert np.median(_relative_errors(fits, truth)) < 0.15
    merged = fits.merge(truth, on=list(TRACK_KEY), suffixes=("", "_true"))
    log_ratio = np.log10(merged["threshold"] / merged["threshold_true"])
    assert abs(log_ratio.median()) < 0.02


@pytest.mark.parametrize("method", ["constant", "quest"])
def test_threshold_above_alpha_max_is_censored_not_invented(method):
    truth = make_truth({("m", "l", "w"): 0.0}, n_participants=2, n_images=1, seed=1)
    truth.loc[truth["direction"] == "min", "threshold"] = 60.0     # invisible below alpha_max = 30
    trials = simulate_trials(truth, n_trials=60, method=method, seed=2, make_track=make_track)
    fits = ps.fit_thresholds(trials, alpha_max=30.0)
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
    groups = dict(iter(trials.groupby(list(TRACK_KEY))))
    for row in fits.itertuples():
        data = groups[tuple(getattr(row, c) for c in TRACK_KEY)]
        a, y = data["alpha"].to_numpy(), data["correct"].to_numpy()

        def nll(t):
            p = np.clip(ps.psychometric(a, np.exp(t[0]), np.exp(t[1]), t[2], 0.5), 1e-12, 1 - 1e-12)
            return -np.sum(np.where(y, np.log(p), np.log1p(-p)))

        best = min((optimize.minimize(nll, [m, s, 0.02], method="L-BFGS-B",
                                      bounds=[(-5, 6), (0, np.log(10)), (0, 0.06)])
                    for m in (-0.5, 0.5) for s in (0.5, 2.0)), key=lambda r: r.fun)
        assert -row.log_likelihood <= best.fun + 1e-6


def test_fit_errors_name_the_problem():
    truth = make_truth(LAYERS, n_participants=1, n_images=1, seed=0)
    trials = simulate_trials(truth, n_trials=10, seed=0)
    with pytest.raises(ValueError, match="the α ceiling is unknown"):
        ps.fit_thresholds(trials.drop(columns="alpha_ceiling"))
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
    lowest = trials.groupby(list(TRACK_KEY))["alpha"].min().reindex(pd.MultiIndex.from_frame(fits[list(TRACK_KEY)]))
    assert np.allclose(fits["threshold"], lowest.to_numpy())


def _small_lab(n_trials: int = 20) -> pd.DataFrame:
    truth = make_truth(LAYERS, n_participants=1, n_images=1, seed=0)
    return simulate_trials(truth, n_trials=n_trials, seed=0)


FAST = ps.FitOptions(gof_draws=0, intervals=False)


@pytest.mark.parametrize("edit, message", [
    (lambda t: t.assign(alpha=t["alpha"].where(t.index != 3, np.nan)),
     "trial row 3, column 'alpha': bad value nan; allowed: a finite number > 0 on non-catch trials"),
    (lambda t: t.assign(alpha=t["alpha"].where(t.index != 4, -0.5)),
     "trial row 4, column 'alpha': bad value -0.5; allowed: a finite number > 0"),
    (lambda t: t.assign(correct=t["correct"].astype(object).where(t.index != 2, np.nan)),
     "trial row 2, column 'correct': bad value nan; allowed: True or False"),
    (lambda t: t.assign(correct=t["correct"].astype(object).where(t.index != 5, "yes")),
     "trial row 5, column 'correct': bad value 'yes'; allowed: True or False"),
    (lambda t: t.assign(n_alternatives=1),
     "trial row 0, column 'n_alternatives': bad value 1; allowed: an integer >= 2 "
     "\\(the guess rate 1 / n_alternatives must be below 1\\)"),
    (lambda t: t.iloc[:0], "no trials to fit: the table has no rows"),
    (lambda t: t.assign(is_catch=True), "no trials to fit: all 120 rows are catch trials"),
    (lambda t: t.drop(columns=["correct"]), "trials lack column\\(s\\) correct; the fits need participant"),
])
def test_direct_api_rejects_bad_trials_naming_row_and_value(edit, message):
    with pytest.raises(TrialDataError, match=message):
        ps.fit_thresholds(edit(_small_lab()), alpha_max=30.0, options=FAST)


def test_bad_alpha_max_and_options_are_named():
    with pytest.raises(TrialDataError, match="alpha_max must be a finite number > 0, got -1"):
        ps.fit_thresholds(_small_lab(), alpha_max=-1, options=FAST)
    with pytest.raises(TrialDataError, match="column 'alpha_ceiling': bad value nan"):
        ps.fit_thresholds(_small_lab().assign(alpha_ceiling=np.nan), options=FAST)
    with pytest.raises(TrialDataError, match="the α ceiling is unknown: give alpha_max, or an alpha_ceiling column"):
        ps.fit_thresholds(_small_lab().drop(columns="alpha_ceiling"), options=FAST)
    with pytest.raises(ValueError, match="gof_draws must be an integer >= 0, got -5"):
        ps.FitOptions(gof_draws=-5)
    with pytest.raises(ValueError, match="poor_fit_p must lie in \\[0, 1\\), got 1.5"):
        ps.FitOptions(poor_fit_p=1.5)


def _counts_to_trials(alpha, n, k, direction="max") -> pd.DataFrame:
    rows = []
    for a, nn, kk in zip(alpha, n, k):
        rows += [(a, True)] * int(kk) + [(a, False)] * int(nn - kk)
    trials = pd.DataFrame(rows, columns=["alpha", "correct"])
    for column, value in [("participant", "p"), ("image_id", "i"), ("model", "m"), ("layer", "l"),
                          ("weights", "w"), ("direction", direction), ("n_alternatives", 2), ("is_catch", False)]:
        trials[column] = value
    return trials


def test_flags_poor_fit_few_trials_and_not_estimable():
    """Non-monotone data get a small bootstrap p and poor_fit; 10 trials get few_trials; one α
    inside the range, neither bound, is not estimable (NaN threshold, no interval)."""
    alpha = np.geomspace(0.5, 4.0, 6)
    bumpy = _counts_to_trials(alpha, [40] * 6, [38, 20, 39, 21, 40, 22], "max")
    tiny = _counts_to_trials([1.0, 2.0], [5, 5], [3, 5], "min")
    single = _counts_to_trials([1.0], [40], [30], "random")
    fits = ps.fit_thresholds(pd.concat([bumpy, tiny, single], ignore_index=True), alpha_max=30.0,
                             options=ps.FitOptions(slope="free", gof_draws=200)).set_index("direction")
    assert fits.loc["max", "poor_fit"] and fits.loc["max", "gof_p"] < 0.01
    assert "poor_fit" in fits.loc["max", "flags"].split(";")
    assert fits.loc["min", "few_trials"] and "few_trials" in fits.loc["min", "flags"]
    assert fits.loc["random", "not_estimable"] and np.isnan(fits.loc["random", "threshold"])
    assert np.isnan(fits.loc["random", "ci_low"]) and fits.loc["random", "flags"].startswith("not_estimable")


def test_good_fits_have_uniform_gof_p():
    """Data drawn from the fitted family: the bootstrap p-values are not piled near 0."""
    truth = make_truth(LAYERS, n_participants=6, n_images=2, seed=2)
    fits = ps.fit_thresholds(simulate_trials(truth, n_trials=60, seed=8), alpha_max=30.0,
                             options=ps.FitOptions(gof_draws=100))
    assert fits["poor_fit"].mean() < 0.06
    assert 0.3 < fits["gof_p"].median() < 0.7


@pytest.mark.parametrize("method", ["constant", "quest"])
def test_profile_intervals_cover_the_true_threshold(method):
    """95 % profile-likelihood intervals on 60-trial conditions hold the truth in ≥ 85 % of them
    (shared slope held at its joint estimate: slightly under 95 %, measured ≈ 0.90)."""
    truth = make_truth(LAYERS, n_participants=8, n_images=3, seed=5)
    trials = simulate_trials(truth, n_trials=60, method=method, seed=3, make_track=make_track)
    fits = ps.fit_thresholds(trials, alpha_max=30.0,
                             options=ps.FitOptions(gof_draws=0))
    merged = fits.merge(truth, on=list(TRACK_KEY), suffixes=("", "_true"))
    covered = (merged["ci_low"] <= merged["threshold_true"]) & (merged["threshold_true"] <= merged["ci_high"])
    assert covered.mean() >= 0.85
    assert (merged["ci_low"] < merged["threshold"]).all() and (merged["threshold"] < merged["ci_high"]).all()


def test_censored_threshold_has_an_open_interval():
    truth = make_truth({("m", "l", "w"): 0.0}, n_participants=1, n_images=1, seed=1)
    truth.loc[truth["direction"] == "min", "threshold"] = 60.0
    fits = ps.fit_thresholds(simulate_trials(truth, n_trials=60, seed=2), alpha_max=30.0,
                             options=ps.FitOptions(gof_draws=0)).set_index("direction")
    assert fits.loc["min", "censored"] and np.isinf(fits.loc["min", "ci_high"])
    assert fits.loc["min", "ci_low"] > 5.0


def test_slope_prior_keeps_small_sample_slopes_off_the_bound():
    truth = make_truth(LAYERS, n_participants=10, n_images=3, seed=4)
    trials = simulate_trials(truth, n_trials=40, method="quest", seed=6, make_track=make_track)
    at_bound = {prior: ps.fit_thresholds(trials, alpha_max=30.0, options=ps.FitOptions(
        slope="free", slope_prior=prior, gof_draws=0, intervals=False))["slope_at_bound"].mean()
        for prior in (False, True)}
    assert at_bound[False] > 0.1 and at_bound[True] < at_bound[False] / 3


#: psignifit's own demo data: 2AFC, 90 trials per level (wichmann-lab/python-psignifit,
#: docs/examples/demo_001.md and docs/basic-usage.md: "a simple signal detection experiment").
PSIGNIFIT_DEMO = np.array([[0.0010, 45, 90], [0.0015, 50, 90], [0.0020, 44, 90], [0.0025, 44, 90],
                           [0.0030, 52, 90], [0.0035, 53, 90], [0.0040, 62, 90], [0.0045, 64, 90],
                           [0.0050, 76, 90], [0.0060, 79, 90], [0.0070, 88, 90], [0.0080, 90, 90],
                           [0.0100, 90, 90]])


@pytest.mark.parametrize("function", ["weibull", "lognormal"])
def test_agrees_with_psignifit_on_its_demo_data(function):
    """Same sigmoid, guess rate, lapse bound and criterion: thresholds within 2 % (docs/analysis.md),
    and psignifit's 95 % credible interval overlaps our profile-likelihood interval."""
    from analysis.psignifit_fit import fit_thresholds_psignifit

    trials = _counts_to_trials(*PSIGNIFIT_DEMO.T[[0, 2, 1]])
    options = ps.FitOptions(function=function, slope="free", slope_prior=False, gof_draws=50)
    ours = ps.fit_thresholds(trials, alpha_max=0.01, options=options).iloc[0]
    theirs = fit_thresholds_psignifit(trials, alpha_max=0.01, options=options).iloc[0]
    assert not ours["censored"] and not theirs["censored"]
    assert theirs["threshold"] == pytest.approx(ours["threshold"], rel=0.02)
    assert theirs["ci_low"] < ours["ci_high"] and ours["ci_low"] < theirs["ci_high"]


def test_one_psychometric_function_with_an_explicit_criterion():
    """F(threshold) = criterion for both shapes; P at threshold = γ + (1 − γ − λ)/2; conversions invert."""
    from eigdist_core import psychometric_function as pf

    for function, spread in (("weibull", 3.5), ("lognormal", 0.4)):
        for criterion in (0.5, pf.WEIBULL_SCALE_CRITERION, 0.9):
            assert pf.sigmoid(0.05, 0.05, spread, function, criterion) == pytest.approx(criterion)
        moved = pf.convert_threshold(0.05, spread, function, 0.5, 0.9)
        assert pf.sigmoid(moved, 0.05, spread, function) == pytest.approx(0.9)
        assert pf.convert_threshold(moved, spread, function, 0.9, 0.5) == pytest.approx(0.05)
    assert pf.weibull(0.05, 0.05, 3.5, 0.5, 0.02) == pytest.approx(pf.percent_correct_at_threshold(0.5, 0.02))
    assert pf.percent_correct_at_threshold(0.5, 0.02) == pytest.approx(0.74)
    assert ps.psychometric(0.05, 0.05, 3.5, 0.02, 1 / 3)[0] == pytest.approx(1 / 3 + (2 / 3 - 0.02) / 2)
    with pytest.raises(ValueError, match="criterion must lie in \\(0, 1\\), got 1.0"):
        pf.sigmoid(1.0, 1.0, 2.0, "weibull", 1.0)
    with pytest.raises(ValueError, match="function must be one of weibull, lognormal, got 'probit'"):
        pf.sigmoid(1.0, 1.0, 2.0, "probit")


def test_the_ceiling_is_alpha_ceiling_and_its_first_name_is_still_read():
    """The per-condition ceiling is ``alpha_ceiling`` in and out; a table naming it ``alpha_max``
    (the first format) fits the same, and the set's alpha_max fills rows that recorded none."""
    lab = _small_lab()
    fits = ps.fit_thresholds(lab, options=FAST)
    assert "alpha_ceiling" in fits and "alpha_max" not in fits and (fits["alpha_ceiling"] == 30.0).all()
    legacy = ps.fit_thresholds(lab.rename(columns={"alpha_ceiling": "alpha_max"}), options=FAST)
    pd.testing.assert_frame_equal(legacy, fits)
    filled = ps.fit_thresholds(lab.assign(alpha_ceiling=np.nan), alpha_max=30.0, options=FAST)
    pd.testing.assert_frame_equal(filled, fits)
