"""experiments.model_track: the posterior over (layer, scale), the information rule, replay, bad input."""

from __future__ import annotations

import math

import numpy as np
import pytest

from eigdist_core.errors import EigdistError
from eigdist_core.psychometric_function import weibull
from experiments.model_track import (SLOPE, ModelTrack, grid_for_set, make_grid, open_grid, rebuild,
                                     run_simulated, sensitivity_matrix)


def _s(n_items: int = 40, n_layers: int = 4, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    z = 0.8 * rng.normal(size=(n_items, 1)) + 0.6 * rng.normal(size=(n_items, n_layers))
    return np.exp(2 * z + np.arange(n_layers))


def _grid(s: np.ndarray, **kw):
    n_items, n_layers = s.shape
    return make_grid(s, [f"L{m}" for m in range(n_layers)], [f"i{i}" for i in range(n_items)],
                     np.ones(n_items), n_alpha=12, n_k=16, **kw)


def _observer(grid, layer: int, seed: int):
    """Threshold k / √s_layer(v), k putting the layer's typical item at α = 0.1."""
    rng = np.random.default_rng(seed)
    k = 0.1 * math.exp(0.5 * np.mean(np.log(grid.s[:, layer])))
    return lambda item, alpha: bool(rng.random() < weibull(alpha * math.sqrt(grid.s[item, layer]), k, SLOPE,
                                                           grid.guess, 0.02))


@pytest.mark.parametrize("layer", range(4))
def test_observer_through_a_layer_drives_its_posterior_up(layer):
    grid = _grid(_s())
    track = run_simulated(grid, _observer(grid, layer, seed=layer), budget=150)
    assert track.map_layer() == (f"L{layer}", pytest.approx(track.layer_probabilities().max()))
    assert track.map_layer()[1] >= 0.95 and track.n_trials < 150


def test_a_layer_listed_twice_keeps_its_copies_even():
    s = _s(n_layers=3)
    grid = make_grid(np.column_stack([s, s[:, 1]]), ["L0", "L1", "L2", "L1bis"], [f"i{i}" for i in range(40)],
                     np.ones(40), n_alpha=12, n_k=16)
    track = run_simulated(grid, _observer(grid, 1, seed=3), budget=100)
    p = track.layer_probabilities()
    assert p[1] == pytest.approx(p[3], rel=1e-9) and p[1] + p[3] > 0.95


def _mutual_information(p_y_m: np.ndarray, pm: np.ndarray) -> float:
    """I(m; y) of a binary response with P(y = 1 | m) = p_y_m, by its definition."""
    mi = 0.0
    for py in (p_y_m, 1 - p_y_m):
        marg = (pm * py).sum()
        mi += sum(pm[m] * py[m] * math.log(py[m] / marg) for m in range(len(pm)))
    return mi


def test_information_without_item_misfit_equals_the_mutual_information_by_enumeration():
    grid = _grid(_s(n_items=5, n_layers=3), item_sd=0.0)
    np.testing.assert_array_equal(grid.spread, np.eye(16))
    track = ModelTrack(grid)
    for item, alpha, correct in [(0, 0.1, True), (3, 0.02, False), (1, 0.5, True)]:
        track.update(item, alpha, correct)
    joint = track.joint()
    pm = joint.sum(1)
    for c in (0, 7, len(grid.cand_item) - 1):
        p_y_m = (joint * grid.p_correct(int(grid.cand_item[c]), float(grid.cand_alpha[c]))).sum(1) / pm
        assert track.information()[c] == pytest.approx(_mutual_information(p_y_m, pm), rel=1e-9, abs=1e-15)


def test_posterior_and_information_with_item_misfit_equal_enumeration_over_every_items_deviation():
    """Every hypothesis (m, k, λ, j_v for each item v) spelled out: P(m) and I(m; y | c) by their definitions."""
    tau = 0.5
    grid = _grid(_s(n_items=4, n_layers=2), item_sd=tau)
    step = grid.log_k[0, 1] - grid.log_k[0, 0]
    shifts = np.arange(-math.ceil(3 * tau / step), math.ceil(3 * tau / step) + 1)
    w = np.exp(-0.5 * (shifts * step / tau) ** 2)
    w /= w.sum()
    trials = [(0, 0.1, True), (2, 0.02, False), (0, 0.5, False), (1, 0.3, True)]
    track = rebuild(grid, trials)
    n_k, n_l = grid.log_k.shape[1], len(grid.lapses)

    def p_at(item, alpha):  # P(correct) at scale index k' (clipped to the grid), shape (m, n_k, n_l)
        return grid.p_correct(item, alpha).reshape(2, n_k, n_l)

    # joint over (m, k, λ, j_0, j_1, j_2, j_3): each item's deviation is one shift for all its trials
    ks = np.arange(n_k)
    weight = np.ones((2, n_k, n_l) + (len(shifts),) * 4)
    for v in range(4):
        shape = [1] * 3 + [1] * 4
        shape[3 + v] = len(shifts)
        weight = weight * w.reshape(shape)
    for item, alpha, correct in trials:
        p = p_at(item, alpha)[:, np.clip(ks[:, None] + shifts, 0, n_k - 1), :]  # (m, k, j, λ)
        p = np.moveaxis(p if correct else 1 - p, 2, 3)  # (m, k, λ, j)
        shape = [2, n_k, n_l] + [1] * 4
        shape[3 + item] = len(shifts)
        weight = weight * p.reshape(shape)
    pm = weight.reshape(2, -1).sum(1) / weight.sum()
    np.testing.assert_allclose(track.layer_probabilities(), pm, rtol=1e-9)
    for c in (0, 13, len(grid.cand_item) - 1):  # items 0 (tested twice) and 3 (untested)
        item = int(grid.cand_item[c])
        p = p_at(item, float(grid.cand_alpha[c]))[:, np.clip(ks[:, None] + shifts, 0, n_k - 1), :]
        shape = [2, n_k, n_l] + [1] * 4
        shape[3 + item] = len(shifts)
        p_y_m = (weight * np.moveaxis(p, 2, 3).reshape(shape)).reshape(2, -1).sum(1) / weight.reshape(2, -1).sum(1)
        assert track.information()[c] == pytest.approx(_mutual_information(p_y_m, pm), rel=1e-8, abs=1e-15)


def test_one_item_cannot_outweigh_the_prior_odds_of_its_deviation():
    """Layers equal but on items 0 and 1, where b's ln threshold is j* = 2 grid steps off a's (in opposite
    directions, so both layers get the same scale grid). Whatever item 0 shows, its Bayes factor for a over
    b is at most 1 / w_{j*}: b's item 0 may be shifted by j* at prior weight w_{j*}. Without misfit the
    same trials decide."""
    n_k, tau = 16, 0.5
    s = _s(n_items=6, n_layers=1)[:, 0]
    step = math.log(1e5) / (n_k - 1)  # the ln k grid's step: α from 1e-3 to 1, thresholds from /10 to ×10
    sb = s.copy()
    sb[0] *= math.exp(-2 * 2 * step)
    sb[1] *= math.exp(2 * 2 * step)
    odds = {}
    for sd in (tau, 0.0):
        grid = make_grid(np.column_stack([s, sb]), ["a", "b"], [f"i{i}" for i in range(6)], np.ones(6),
                         n_alpha=12, n_k=n_k, item_sd=sd)
        observe = _observer(grid, 0, seed=4)
        trials = [(v, a, observe(v, a)) for _ in range(30) for v in (0, 2, 3, 4, 5) for a in (0.03, 0.1, 0.3)]
        p = rebuild(grid, trials).layer_probabilities()
        odds[sd] = p[0] / p[1]
    shifts = np.arange(-math.ceil(3 * tau / step), math.ceil(3 * tau / step) + 1)
    w = np.exp(-0.5 * (shifts * step / tau) ** 2)
    assert odds[tau] <= w.sum() / w[shifts == 2][0] * (1 + 1e-9)
    assert odds[0.0] > 1e3 * w.sum() / w[shifts == 2][0]


def test_a_lapse_free_grid_survives_an_error_far_above_threshold():
    grid = _grid(_s(n_items=4, n_layers=2), lapses=(0.0,))
    track = ModelTrack(grid)
    assert (grid.p_correct(0, 1.0) == 1.0).any()  # hypotheses under which an error at α = 1 is impossible
    track.update(0, 1.0, False)
    assert np.isfinite(track.log_post).all() and track.layer_probabilities().sum() == pytest.approx(1)


def test_table_is_the_likelihood_at_the_grid_and_s0_is_chance():
    s = _s(n_items=6, n_layers=2)
    s[2, 1] = 0.0
    grid = _grid(s)
    c = np.flatnonzero(grid.cand_item == 2)
    np.testing.assert_allclose(grid.table[:, c[-1], :], grid.p_correct(2, float(grid.cand_alpha[c[-1]])))
    np.testing.assert_allclose(grid.table[1, c, :], 0.5)
    assert (grid.cand_alpha[grid.cand_item == 0] <= 1.0).all()


def test_candidates_stay_below_each_items_ceiling():
    s = _s(n_items=3, n_layers=2)
    grid = make_grid(s, ["a", "b"], ["x", "y", "z"], [1.0, 0.05, 0.3], n_alpha=10, n_k=5)
    for i, ceiling in enumerate([1.0, 0.05, 0.3]):
        assert grid.cand_alpha[grid.cand_item == i].max() <= ceiling * (1 + 1e-12)
    assert (grid.cand_item == 1).sum() < (grid.cand_item == 0).sum()


def test_replayed_history_gives_the_same_posterior_and_choice():
    grid = _grid(_s())
    unbroken = run_simulated(grid, _observer(grid, 2, seed=9), budget=25, stop_at=1.1)
    for cut in (0, 11, 25):
        resumed = rebuild(grid, unbroken.history[:cut])
        observe = _observer(grid, 2, seed=9)
        for item, alpha, _ in unbroken.history[:cut]:
            observe(item, alpha)  # the simulated observer's stream, as the rows would replay it
        while resumed.n_trials < 25:
            item, alpha = resumed.choose()
            resumed.update(item, alpha, observe(item, alpha))
        assert resumed.history == unbroken.history
        np.testing.assert_array_equal(resumed.log_post, unbroken.log_post)


def test_a_subset_of_items_chooses_the_best_of_their_candidates():
    grid = _grid(_s())
    track = ModelTrack(grid)
    for item, alpha, correct in [(0, 0.05, True), (3, 0.2, False), (7, 0.1, True)]:
        track.update(item, alpha, correct)
    items = [2, 5, 11]
    sub = grid.subset(items)
    keep = np.isin(grid.cand_item, items)
    np.testing.assert_allclose(track.information(sub), track.information()[keep], rtol=1e-12)
    c = int(np.argmax(np.where(keep, track.information(), -np.inf)))
    assert track.choose(sub) == (int(grid.cand_item[c]), float(grid.cand_alpha[c]))
    assert set(sub.cand_item) == set(items)


def test_random_rule_is_seeded():
    grid = _grid(_s())
    runs = [run_simulated(grid, _observer(grid, 0, seed=1), budget=20, stop_at=1.1,
                          rng=np.random.default_rng(5)).history for _ in range(2)]
    assert runs[0] == runs[1] and len({(i, a) for i, a, _ in runs[0]}) > 10


def test_sensitivity_matrix_pivots_the_table():
    table = {"item_id": ["a", "a", "b", "b"], "model": ["m"] * 4, "layer": ["x", "y", "x", "y"],
             "weights": ["w"] * 4, "s": [1.0, 2.0, 3.0, 4.0]}
    np.testing.assert_array_equal(sensitivity_matrix(table, ["b", "a"], [("m", "y", "w"), ("m", "x", "w")]),
                                  [[4.0, 3.0], [2.0, 1.0]])
    with pytest.raises(EigdistError, match=r"^sensitivity table has no row for item 'a' under m:z \(w\)$"):
        sensitivity_matrix(table, ["a"], [("m", "z", "w")])


@pytest.mark.parametrize("args, message", [
    (dict(s=np.ones((2, 1)), layers=["only"]),
     r"^a models track needs at least two layers to tell apart, got 1: only$"),
    (dict(s=np.ones((3, 2))), r"^sensitivities must have shape \(items, layers\) = \(2, 2\), got \(3, 2\)$"),
    (dict(s=np.array([[1.0, np.nan], [1.0, 1.0]])),
     r"^sensitivity of item 'x' under layer 'b' is nan; s must be a number >= 0$"),
    (dict(s=np.array([[1.0, 0.0], [1.0, 0.0]])),
     r"^layer 'b' has s = 0 at every item: it predicts chance everywhere and has no scale to fit$"),
    (dict(ceilings=[1.0, 0.0]), r"^ceilings must be 2 finite numbers > 0 \(one per item\), got "),
    (dict(alpha_min=2.0), r"^alpha_min must lie in \(0, 1.0\) \(the largest ceiling\), got 2.0$"),
    (dict(n_alternatives=4), r"^n_alternatives must be 2 or 3, got 4$"),
    (dict(lapses=(0.0, 0.5)), r"^lapses must be a non-empty list of numbers in \[0, 0.5\), got \(0.0, 0.5\)$"),
    (dict(lapses=()), r"^lapses must be a non-empty list of numbers in \[0, 0.5\), got \(\)$"),
    (dict(item_sd=-0.1), r"^item_sd must be a finite number >= 0, got -0.1$"),
    (dict(item_sd=math.nan), r"^item_sd must be a finite number >= 0, got nan$"),
])
def test_bad_grid_input(args, message):
    kw = dict(s=np.ones((2, 2)), layers=["a", "b"], items=["x", "y"], ceilings=[1.0, 1.0]) | args
    with pytest.raises(EigdistError, match=message):
        make_grid(kw.pop("s"), kw.pop("layers"), kw.pop("items"), kw.pop("ceilings"), **kw)


@pytest.mark.parametrize("item, alpha, message", [
    (2, 0.1, r"^item must be an index in \[0, 2\), got 2$"),
    (True, 0.1, r"^item must be an index in \[0, 2\), got True$"),
    (0, 0.0, r"^alpha must be a finite number > 0, got 0.0$"),
    (0, math.inf, r"^alpha must be a finite number > 0, got inf$"),
])
def test_bad_update(item, alpha, message):
    track = ModelTrack(make_grid(np.ones((2, 2)), ["a", "b"], ["x", "y"], [1.0, 1.0], n_alpha=4, n_k=4))
    with pytest.raises(EigdistError, match=message):
        track.update(item, alpha, True)
    assert track.n_trials == 0


def _manifest(n_layers: int) -> dict:
    """Two images × n_layers layers × max/min: the fields design.conditions and set_layers read."""
    models = [{"spec": f"net:l{m}", "weights": "w"} for m in range(n_layers)]
    items = [{"item_id": f"{img}-l{m}-{d}", "image_id": img, "model": "net", "layer": f"l{m}", "weights": "w",
              "direction": d, "alpha_displayable_max": 0.5 if d == "min" else None}
             for img in ("a", "b") for m in range(n_layers) for d in ("max", "min")]
    return {"config": {"models": models}, "images": [{"image_id": "a"}, {"image_id": "b"}], "items": items,
            "alpha_max": 2.0, "set_id": "x"}


def test_grid_for_set_takes_items_ceilings_and_layers_from_the_set():
    manifest = _manifest(3)
    ids = [it["item_id"] for it in manifest["items"]]
    table = {"item_id": [], "model": [], "layer": [], "weights": [], "s": []}
    for i, item_id in enumerate(ids):
        for m in range(3):
            for key, value in zip(("item_id", "model", "layer", "weights", "s"),
                                  (item_id, "net", f"l{m}", "w", float(1 + i + 10 * m))):
                table[key].append(value)
    grid = grid_for_set(manifest, table, 3, n_alpha=8, n_k=5)
    assert grid.layers == ("net:l0 (w)", "net:l1 (w)", "net:l2 (w)") and grid.items == tuple(ids)
    np.testing.assert_array_equal(grid.s[:, 2], np.arange(len(ids)) + 21.0)
    assert grid.guess == pytest.approx(1 / 3) and grid.alphas[-1] == pytest.approx(2.0)
    assert grid.cand_alpha[grid.cand_item == ids.index("a-l0-min")].max() <= 0.5


def test_a_set_with_one_layer_is_refused():
    with pytest.raises(EigdistError, match=r"^track kind 'models' needs a stimulus set with at least two layers "
                                           r"to tell apart; this one has 1: net:l0 \(w\)$"):
        open_grid("nowhere", _manifest(1), 2)


def test_a_set_without_a_sensitivity_table_is_refused():
    with pytest.raises(EigdistError, match=r"^track kind 'models' needs the set's sensitivity table: nowhere: the "
                                           r"stimulus set has no sensitivity table .*; run 'eigdist stimuli "
                                           r"sensitivities nowhere' to add one"):
        open_grid("nowhere", _manifest(2), 2)
