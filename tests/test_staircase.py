"""Adaptive tracks: QUEST+ agrees with `questplus`, tracks converge, rebuilds are exact."""

from __future__ import annotations

import math

import numpy as np
import pytest

from eigdist_core.psychometric_function import WEIBULL_SCALE_CRITERION, convert_threshold, weibull
from experiments.staircase import make_track, rebuild_track


def run_observer(track, threshold, slope=3.5, lapse=0.0, n=60, seed=0):
    """Feed a track n responses of a Weibull observer; return the (alpha, correct) history."""
    rng = np.random.default_rng(seed)
    guess = 1.0 / track.n_alternatives
    trials = []
    for _ in range(n):
        alpha = track.next_alpha()
        correct = bool(rng.random() < weibull(alpha, threshold, slope, guess, lapse))
        track.update(alpha, correct)
        trials.append((alpha, correct))
    return trials


def test_weibull_closed_form():
    """The threshold is where F = 1/2 (75 % in 2AFC without lapse); the scale a = t / (ln 2)^(1/beta)."""
    assert weibull(0.0, 0.1, 3.0, 0.5, 0.0) == pytest.approx(0.5)
    assert weibull(0.1, 0.1, 3.0, 0.5, 0.0) == pytest.approx(0.75)
    assert weibull(0.1, 0.1, 3.0, 0.5, 0.04) == pytest.approx(0.75 - 0.02)
    scale = 0.1 / math.log(2) ** (1 / 3)
    assert weibull(scale, 0.1, 3.0, 0.5, 0.0) == pytest.approx(0.5 + 0.5 * (1 - math.exp(-1)))
    assert weibull(1e6, 0.1, 3.0, 1 / 3, 0.02) == pytest.approx(0.98)


def test_quest_matches_questplus_package():
    """Same grid, prior and responses: the same α choices and the same posterior.

    questplus's Weibull threshold is its scale (F = 1 − 1/e); ours is at F = 1/2, so its
    threshold grid is ours moved to its criterion (one slope: the move depends on it).
    """
    import questplus
    track = make_track("quest", 1.0, 2, n_grid=12, slopes=[3.0], lapses=[0.0, 0.04])
    x = np.log10(track.alphas)
    scales = np.log10(convert_threshold(track.alphas, 3.0, "weibull", 0.5, WEIBULL_SCALE_CRITERION))
    ref = questplus.QuestPlusWeibull(
        intensities=x, thresholds=scales, slopes=[3.0], lower_asymptotes=[0.5],
        lapse_rates=[0.0, 0.04], responses=["Correct", "Incorrect"],
    )
    rng = np.random.default_rng(3)
    for _ in range(15):
        alpha = track.next_alpha()
        assert math.log10(alpha) == pytest.approx(ref.next_intensity, abs=1e-12)
        correct = bool(rng.random() < weibull(alpha, 0.05, 3.0, 0.5, 0.0))
        track.update(alpha, correct)
        ref.update(intensity=ref.next_intensity, response="Correct" if correct else "Incorrect")
    ours = track.posterior.reshape(12, 1, 2)
    theirs = ref.posterior.transpose("threshold", "slope", "lower_asymptote", "lapse_rate").values[:, :, 0, :]
    np.testing.assert_allclose(ours, theirs, rtol=1e-9, atol=1e-15)


@pytest.mark.parametrize("kind,n_alt", [("quest", 2), ("quest", 3), ("updown", 2)])
def test_track_converges_near_true_threshold(kind, n_alt):
    """Weibull observers with known thresholds: the median estimate lies within 0.15 log units."""
    errors = []
    for seed, threshold in enumerate([0.02, 0.05, 0.1, 0.2, 0.05, 0.1]):
        track = make_track(kind, 1.0, n_alt)
        run_observer(track, threshold, n=80 if kind == "updown" else 60, seed=seed)
        estimate = track.threshold_estimate()
        if kind == "updown":
            # the staircase tracks its own target level (P = 0.5^(1/n_down)), not F = 1/2
            target = 0.5 ** (1 / 2) if n_alt == 2 else 0.5 ** (1 / 3)
            g = 1 / n_alt
            threshold = convert_threshold(threshold, 3.5, "weibull", 0.5, (target - g) / (1 - g))
        errors.append(abs(math.log10(estimate / threshold)))
    assert np.median(errors) < 0.15, errors


def test_quest_is_fast_enough():
    """60 trials of a 40-point QUEST+ grid stay far under a second (typically ~20 ms)."""
    import time

    track = make_track("quest", 1.0, 2)
    t0 = time.perf_counter()
    run_observer(track, 0.1)
    assert time.perf_counter() - t0 < 5.0  # generous: a loose guard, not a benchmark


@pytest.mark.parametrize("kind,options", [
    ("quest", {}), ("quest", {"min_n": 4}), ("updown", {}), ("updown", {"n_down": 3, "step_factor": 1.5}),
])
def test_rebuild_reproduces_state_exactly(kind, options):
    track = make_track(kind, 0.5, 2, seed=7, **options)
    trials = run_observer(track, 0.05, n=40, seed=1)
    rebuilt = rebuild_track(kind, 0.5, 2, trials, seed=7, **options)
    assert rebuilt.state() == track.state()
    assert rebuilt.next_alpha() == track.next_alpha()
    # halfway rebuild then continue: the same as never stopping
    half = rebuild_track(kind, 0.5, 2, trials[:17], seed=7, **options)
    for alpha, correct in trials[17:]:
        assert half.next_alpha() == alpha
        half.update(alpha, correct)
    assert half.state() == track.state()


def test_state_is_plain_data():
    import json

    for kind in ("quest", "updown"):
        track = make_track(kind, 1.0, 3)
        run_observer(track, 0.1, n=5)
        assert json.loads(json.dumps(track.state())) == track.state()


def test_min_n_uses_seed():
    a = run_observer(make_track("quest", 1.0, 2, seed=1, min_n=6), 0.1, n=20)
    b = run_observer(make_track("quest", 1.0, 2, seed=2, min_n=6), 0.1, n=20)
    assert a != b


def test_quest_alpha_stays_in_range_and_off_grid_update_works():
    track = make_track("quest", 0.3, 2, alpha_min=0.003)
    for _ in range(10):
        assert 0.003 * (1 - 1e-12) <= track.next_alpha() <= 0.3
        track.update(0.01234, True)  # an α the grid does not hold
    assert track.n_trials == 10
    assert track.threshold_estimate() < 0.02


def test_updown_clamps_at_alpha_max():
    track = make_track("updown", 0.2, 2, start=0.15)
    for _ in range(10):
        track.update(track.next_alpha(), False)
    assert track.next_alpha() == 0.2


@pytest.mark.parametrize("call,message", [
    (lambda: make_track("bestpest", 1.0, 2), "track kind must be one of quest, updown; got 'bestpest'"),
    (lambda: make_track("quest", -1.0, 2), "alpha_max must lie in (0.0, inf], got -1.0"),
    (lambda: make_track("quest", 1.0, 4), "n_alternatives must be 2 or 3, got 4"),
    (lambda: make_track("quest", 1.0, 2, grid=3), "unknown quest track option(s) grid; allowed: alpha_min, n_grid"),
    (lambda: make_track("quest", 1.0, 2, alpha_min=2.0), "quest.alpha_min must lie in (0.0, 1.0], got 2.0"),
    (lambda: make_track("quest", 1.0, 2, alpha_min=1.0), "quest.alpha_min must be < alpha_max = 1.0"),
    (lambda: make_track("quest", 1.0, 2, lapses=[0.7]), "quest.lapses must lie in [0.0, 0.5], got 0.7"),
    (lambda: make_track("quest", 1.0, 2, slopes=[]), "quest.slopes must be a non-empty list"),
    (lambda: make_track("quest", 1.0, 2, n_grid=1), "quest.n_grid must be an int >= 2, got 1"),
    (lambda: make_track("updown", 1.0, 2, step_factor=1.0), "updown.step_factor must lie in (1.0, 10.0]"),
    (lambda: make_track("updown", 1.0, 2, start=3.0), "updown.start must lie in (0.0, 1.0], got 3.0"),
    (lambda: make_track("quest", 1.0, 2).update(float("nan"), True), "alpha must be a finite number, got nan"),
    (lambda: make_track("quest", 1.0, 2).update(0.1, "yes"), "correct must be a bool, got 'yes'"),
])
def test_bad_arguments_are_named(call, message):
    with pytest.raises(ValueError) as err:
        call()
    assert message in str(err.value)

