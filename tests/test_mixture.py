"""The mixture of layers s = Σ w_m s_m: recovery of known proportions, scale invariance, a one-layer set."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from analysis.comparison import CompareOptions, folds, levels
from analysis.comparison_report import mixture_figure, mixture_html
from analysis.comparison_tables import compare_models
from analysis.fitting import curve
from analysis.mixture import item_log_means, mixture
from analysis.psychometric import SLOPE_PRIOR
from analysis.simulate import simulate_trials
from eigdist_core.contract import CONDITION_KEY, MIXTURE, MIXTURE_COLUMNS, TRACK_KEY
from tests.test_comparison import LAYERS, _items, _sensitivities

OPTIONS = CompareOptions(n_boot=100)


def mixed_lab(weights: dict[str, float], n_people: int = 4, n_images: int = 3, per_item: int = 36,
              seed: int = 0) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Weibull observers (analysis.simulate) whose threshold for item v is c_p/√s(v), s = Σ w_m s_m over the
    linear layers of tests.test_comparison (``weights`` by layer name), c_p a log-normal participant factor;
    constant stimuli around each threshold. Returns the trials and the sensitivity table."""
    items, vectors = _items(n_images)
    sens = _sensitivities(items, vectors)
    s = sum(w * sens[sens["layer"] == layer].set_index("item_id")["s"] for layer, w in weights.items())
    rng = np.random.default_rng(seed)
    rows = []
    for p in range(n_people):
        factor = np.exp(rng.normal(0, 0.2))
        for it in items.itertuples():
            rows.append((f"p{p}", *(getattr(it, c) for c in CONDITION_KEY), factor / np.sqrt(s[it.item_id])))
    truth = pd.DataFrame(rows, columns=[*TRACK_KEY, "threshold"])
    trials = simulate_trials(truth, n_trials=per_item, seed=seed, alpha_max=1e6)
    trials["item_id"] = items.set_index(list(CONDITION_KEY)).loc[
        pd.MultiIndex.from_frame(trials[list(CONDITION_KEY)]), "item_id"].to_numpy()
    return trials, sens


def _weights(result) -> pd.Series:
    return result.mixture.set_index("layer")["w"]


def test_half_and_half_observers_recover_both_proportions():
    trials, sens = mixed_lab({"a0": 0.5, "a1": 0.5})
    result = compare_models(trials, sens, None, OPTIONS)
    w = _weights(result)
    assert list(result.mixture.columns) == list(MIXTURE_COLUMNS)
    assert w["a0"] == pytest.approx(0.5, abs=0.1) and w["a1"] == pytest.approx(0.5, abs=0.1)
    assert w["a2"] < 0.1 and w.sum() == pytest.approx(1.0)
    table = result.mixture.set_index("layer")
    assert (table["ci_low"] <= table["w"]).all() and (table["w"] <= table["ci_high"]).all()
    assert table.loc["a0", "ci_low"] > 0.2 and table.loc["a2", "ci_high"] < 0.3
    # the mixture is scored like any candidate, beats each of its layers here, and is not ranked
    scores = result.comparison.set_index("layer")
    mix = result.comparison[result.comparison["model"] == MIXTURE[0]].iloc[0]
    assert mix["bits"] > scores.loc["a0", "bits"] and mix["bits"] > scores.loc["a1", "bits"]
    assert pd.isna(mix["rank"]) and pd.isna(mix["p_best"]) and mix["cv"] == "image"
    assert MIXTURE[0] in set(result.matrix["model"])
    text = mixture_html(result.mixture, result.comparison)
    assert "<b>mixture proportions</b>, the fitted weights normalised to sum 1" in text
    assert f"Cross-validated score {mix['bits']:+.3f} bits per trial" in text and "(the best single candidate, " in text
    bars = mixture_figure(result.mixture).axes[0].patches
    np.testing.assert_allclose([b.get_width() for b in bars], result.mixture["w"])


def test_an_observer_of_one_layer_gives_it_the_whole_mixture():
    trials, sens = mixed_lab({"a1": 1.0}, seed=1)
    w = _weights(compare_models(trials, sens, None, OPTIONS))
    assert w["a1"] > 0.95


def test_scaling_every_sensitivity_leaves_the_mixture_unchanged():
    trials, sens = mixed_lab({"a0": 0.5, "a1": 0.5}, n_people=2, n_images=2, per_item=24, seed=2)
    base = compare_models(trials, sens, None, OPTIONS)
    scaled = compare_models(trials, sens.assign(s=sens["s"] * 7.3), None, OPTIONS)
    row = base.comparison["model"] == MIXTURE[0]
    assert row.sum() == 1
    np.testing.assert_allclose(scaled.comparison["bits"], base.comparison["bits"], rtol=0, atol=1e-8)
    np.testing.assert_allclose(scaled.mixture[["w", "share"]], base.mixture[["w", "share"]], rtol=0, atol=1e-8)


def test_a_set_with_one_layer_skips_the_mixture_and_says_why():
    trials, sens = mixed_lab({"a0": 1.0}, n_people=2, n_images=2, per_item=12)
    one = trials[trials["layer"] == "a0"]
    result = compare_models(one, sens, None, OPTIONS)
    assert "no mixture: the lab's stimuli come from one layer (lin:a0 (seed)); a mixture needs two or more" \
        in result.notes
    assert result.mixture.empty and list(result.mixture.columns) == list(MIXTURE_COLUMNS)
    assert MIXTURE[0] not in set(result.comparison["model"])
    assert len(result.comparison) == len(LAYERS) + 2  # the layers, L2, the ceiling
    assert mixture_figure(result.mixture) is None
    assert "No mixture (the notes above say why)" in mixture_html(result.mixture, result.comparison)


def test_switching_the_mixture_off_leaves_the_single_candidates_as_they_were():
    trials, sens = mixed_lab({"a0": 0.5, "a1": 0.5}, n_people=2, n_images=2, per_item=24, seed=3)
    base = compare_models(trials, sens, None, OPTIONS)
    off = compare_models(trials, sens, None, CompareOptions(n_boot=100, mixture=False))
    single = base.comparison[base.comparison["model"] != MIXTURE[0]].reset_index(drop=True)
    pd.testing.assert_frame_equal(off.comparison, single)
    assert off.mixture.empty and "no mixture: not asked for (CompareOptions.mixture)" in off.notes


def test_the_layers_geometric_means_count_each_item_once():
    """An item tested at three levels weighs as much in g_m as one tested at one (adaptive tracks), and an
    item a layer does not see (s_m = 0) is left out of that layer's g_m only."""
    log_s = np.array([[0.0, 1.0], [0.0, 1.0], [0.0, 1.0], [2.0, -np.inf], [4.0, 3.0]])
    ids = np.array(["a", "a", "a", "b", "c"])
    np.testing.assert_allclose(item_log_means(log_s, ids), [2.0, 2.0], rtol=0, atol=1e-12)


def test_participants_of_different_sensitivity_keep_the_proportions_exact():
    """Expected counts (k = n·p, no sampling noise) of two observers of s = ½ s_a0 + ½ s_a1 whose thresholds
    differ threefold, each tested at levels around their own threshold with trial counts that differ by item, as
    adaptive tracks place them: the fit gives each participant its own scale, so its proportions are exact
    (one scale for both would pool two psychometric functions in proportions that change from item to item)."""
    items, vectors = _items(3)
    sens = _sensitivities(items, vectors)
    s = 0.5 * sens[sens["layer"] == "a0"].set_index("item_id")["s"] + 0.5 * sens[sens["layer"] == "a1"].set_index("item_id")["s"]
    rng = np.random.default_rng(4)
    rows = []
    for p, factor in enumerate((1.0, 3.0)):
        for it in items.itertuples():
            threshold, trials = factor / np.sqrt(s[it.item_id]), int(rng.choice([4, 40]))
            for step in (0.5, 0.8, 1.0, 1.3, 2.0):
                rows += [(f"p{p}", it.item_id, *(getattr(it, c) for c in CONDITION_KEY), step * threshold)] * trials
    trials = pd.DataFrame(rows, columns=["participant", "item_id", *CONDITION_KEY, "alpha"]).assign(
        correct=True, n_alternatives=2, is_catch=False)
    lv = levels(trials, sens, None)
    threshold = np.log(lv.table["participant"].map({"p0": 1.0, "p1": 3.0}) / np.sqrt(s[lv.table["item_id"]].to_numpy()))
    theta = np.column_stack([threshold, np.full(len(threshold), SLOPE_PRIOR["weibull"][0]), np.full(len(threshold), 0.02)])
    p, _ = curve(theta, np.log(lv.table["alpha"].to_numpy())[:, None], np.full(len(threshold), 0.5), "weibull")
    lv.table["k"] = lv.table["n"] * p[:, 0]
    w = mixture(lv, folds(lv.table), OPTIONS).table.set_index("layer")["w"]
    assert w["a0"] == pytest.approx(0.5, abs=0.005) and w["a1"] == pytest.approx(0.5, abs=0.005) and w["a2"] < 0.005
