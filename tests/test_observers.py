"""Responders: the --simulate grammar, the Weibull observer, the model observer, the keyboard."""

from __future__ import annotations

import math

import numpy as np
import pytest

from experiments.design import Condition, Trial
from experiments.observers import (
    KeyboardResponder, ModelObserver, Stimuli, WeibullObserver, make_responder, parse_simulate,
)
from experiments.staircase import make_track, weibull

COND = Condition("grey", "resnet18", "conv1", "random:0", "max", "grey__max0", 1.0, 1.0)


def _stimuli(trial: Trial, alpha: float, e: np.ndarray, ref: np.ndarray, n: int = 2) -> Stimuli:
    target = (ref + alpha * trial.eig_sign * e).astype(np.float32)
    return Stimuli(ref, tuple(target if i == trial.target_interval else ref for i in range(1, n + 1)),
                   alpha, trial.eig_sign * e)


def test_parse_simulate_grammar():
    spec = parse_simulate("weibull;threshold=0.05;slope=2;lapse=0.01;seed=3")
    assert (spec.kind, spec.model, spec.params) == ("weibull", None, {"threshold": 0.05, "slope": 2.0,
                                                                      "lapse": 0.01, "seed": 3})
    assert parse_simulate("weibull").params == {}
    spec = parse_simulate("model=frontend:lgg;weights=published;noise=0.5;lapse=0.02;seed=1")
    assert (spec.kind, spec.model, spec.params["weights"], spec.params["noise"]) == (
        "model", "frontend:lgg", "published", 0.5)
    assert parse_simulate("model=efficientnet_lite0:_blocks.4").model == "efficientnet_lite0:_blocks.4"


@pytest.mark.parametrize("spec,message", [
    ("", "--simulate must be 'weibull[;key=value...]' or 'model=<model:layer>[;key=value...]'"),
    ("human", "--simulate kind must be 'weibull' or 'model=<model:layer>', got 'human'"),
    ("model=resnet18", "model spec must look like '<model>:<layer>'"),
    ("weibull;noise=1", "--simulate weibull: unknown or malformed parameter 'noise=1'; allowed keys: threshold, slope, lapse, seed"),
    ("model=resnet18:conv1;threshold=1", "allowed keys: weights, noise, lapse, seed"),
    ("weibull;threshold", "unknown or malformed parameter 'threshold'"),
    ("weibull;threshold=abc", "--simulate weibull: threshold must be a number, got 'abc'"),
    ("weibull;threshold=-1", "--simulate weibull: threshold must be > 0, got '-1'"),
    ("weibull;lapse=1", "--simulate weibull: lapse must be in [0, 1), got '1'"),
    ("weibull;seed=1.5", "--simulate weibull: seed must be an integer, got '1.5'"),
    ("weibull;slope=nan", "--simulate weibull: slope must be in (0, 100], got 'nan'"),
    ("model=resnet18:conv1;noise=-0.1", "--simulate model: noise must be >= 0, got '-0.1'"),
    ("model=resnet18:conv1;weights=", "--simulate model: weights must not be empty"),
    ("weibull;seed=1;seed=2", "parameter 'seed' given twice"),
])
def test_bad_simulate_spec_is_named(spec, message):
    with pytest.raises(ValueError) as err:
        parse_simulate(spec)
    assert message in str(err.value)


@pytest.mark.parametrize("n_alt", [2, 3])
def test_weibull_observer_matches_its_function(n_alt):
    obs = make_responder("weibull;threshold=0.1;slope=3;lapse=0.04;seed=2")
    assert obs.observer == "weibull;threshold=0.1;slope=3;lapse=0.04;seed=2"
    ref, e = np.zeros((1, 4, 4), np.float32), np.ones((1, 4, 4), np.float32) / 4
    for alpha in (0.0, 0.08, 0.2):
        answers = []
        for i in range(1, 2001):
            trial = Trial(i, 1, COND, 1 + i % n_alt, 1)
            answers.append(obs.respond(trial, _stimuli(trial, alpha, e, ref, n_alt), 1).interval == trial.target_interval)
        expected = float(weibull(alpha, 0.1, 3.0, 1 / n_alt, 0.04))
        assert abs(np.mean(answers) - expected) < 3.5 * math.sqrt(expected * (1 - expected) / 2000) + 1e-9


def test_weibull_observer_answers_depend_only_on_seed_session_trial():
    obs = WeibullObserver(threshold=0.1, seed=4)
    ref, e = np.zeros((1, 2, 2), np.float32), np.full((1, 2, 2), 0.5, np.float32)
    trial = Trial(7, 1, COND, 2, -1)
    first = [obs.respond(trial, _stimuli(trial, 0.1, e, ref), 1) for _ in range(3)]
    assert len(set(first)) == 1


def test_weibull_track_converges_near_true_threshold():
    """An end-to-end check through the responder interface (the track tests cover the tracks alone)."""
    ref, e = np.zeros((1, 4, 4), np.float32), np.ones((1, 4, 4), np.float32) / 4
    estimates = []
    for seed in range(5):
        obs = WeibullObserver(threshold=0.05, slope=3.5, lapse=0.02, seed=seed)
        track = make_track("quest", 1.0, 2)
        for i in range(1, 61):
            trial = Trial(i, 1, COND, 1 + (i * 7 + seed) % 2, 1)
            alpha = track.next_alpha()
            track.update(alpha, obs.respond(trial, _stimuli(trial, alpha, e, ref), 1).interval == trial.target_interval)
        estimates.append(track.threshold_estimate())
    assert abs(np.median(np.log10(estimates)) - math.log10(0.05)) < 0.1, estimates


def test_keyboard_responder_maps_keys():
    keys = iter([("2", 0.61), ("left", 0.3)])
    seen = []

    def wait_keys(allowed):
        seen.append(allowed)
        return next(keys)

    kb = KeyboardResponder(wait_keys)
    ref = np.zeros((1, 2, 2), np.float32)
    trial = Trial(1, 1, COND, 2, 1)
    response = kb.respond(trial, _stimuli(trial, 0.1, ref, ref), 1)
    assert (response.interval, response.rt) == (2, 0.61)
    assert seen == [("1", "2")]
    with pytest.raises(ValueError, match="key 'left' is not a response key; allowed: 1, 2"):
        kb.respond(trial, _stimuli(trial, 0.1, ref, ref), 1)


@pytest.fixture(scope="module")
def lgg_eigendistortions():
    """frontend:lgg (published parameters) on a small textured image: its max and min eigendistortions."""
    import torch
    from eigdist_core import models
    from eigdist_core.eigendistortion import Eigendistortion

    model = models.load("frontend:lgg", "published")
    image = 0.5 + 0.2 * torch.rand(1, 1, 16, 16, generator=torch.Generator().manual_seed(0))
    ed = Eigendistortion(image, model)
    ed.synthesize(method="exact")
    return model, image[0].numpy(), ed.eigendistortions.detach().numpy()


def _model_threshold(obs, ref, e, direction, alpha_max=4.0, n=40):
    track = make_track("quest", alpha_max, 2)
    cond = Condition("tex", "frontend", "lgg", "published", direction, "x", None, alpha_max)
    for i in range(1, n + 1):
        trial = Trial(i, 1, cond, 1 + i % 2, 1 if i % 3 else -1)
        alpha = track.next_alpha()
        response = obs.respond(trial, _stimuli(trial, alpha, e, ref), 1)
        track.update(alpha, response.interval == trial.target_interval)
    return track.threshold_estimate()


def test_model_observer_names_a_bad_model():
    with pytest.raises(ValueError, match="unknown model 'nosuch'"):
        make_responder("model=nosuch:conv1")


def test_lgg_observer_sees_max_before_min(lgg_eigendistortions):
    """The model observer detects its own max eigendistortion at a far lower α than its min."""
    model, ref, eig = lgg_eigendistortions
    obs = make_responder("model=frontend:lgg;weights=published;noise=0.01;seed=1", model=model)
    assert isinstance(obs, ModelObserver)
    t_max, t_min = _model_threshold(obs, ref, eig[0], "max"), _model_threshold(obs, ref, eig[1], "min")
    assert t_max < 0.5 * t_min, (t_max, t_min)


def test_model_observer_oddity_and_chance():
    """The decision rule alone, through an identity "model": distance = α, oddity at high α, chance at 0."""
    import torch
    obs = ModelObserver("identity:none", noise=0.01, seed=2, model=torch.nn.Identity())
    ref = np.full((1, 8, 8), 0.5, np.float32)
    e = np.random.default_rng(0).standard_normal((1, 8, 8)).astype(np.float32)
    e /= np.linalg.norm(e)
    correct_high, correct_zero = [], []
    for i in range(1, 301):
        trial = Trial(i, 1, COND, 1 + i % 3, 1)
        high = obs.respond(trial, _stimuli(trial, 0.5, e, ref, 3), 1)
        zero = obs.respond(trial, _stimuli(trial, 0.0, e, ref, 3), 1)
        correct_high.append(high.interval == trial.target_interval)
        correct_zero.append(zero.interval == trial.target_interval)
        assert zero.repr_distance == 0.0 and high.repr_distance == pytest.approx(0.5, rel=1e-5)
    assert np.mean(correct_high) > 0.95
    assert abs(np.mean(correct_zero) - 1 / 3) < 0.1
