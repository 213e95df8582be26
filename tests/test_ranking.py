"""D, censoring bounds, and the bootstrap ranking on seeded synthetic labs.

Labs: Weibull observers (β 3.5, lapse 0.02, 2AFC), constant stimuli at 0.59–1.68 × the true
threshold, 60 trials per condition, alpha_max 30; spreads (log10 SD): participant 0.1, image 0.1,
D scatter 0.1; 6 participants, 2 images, 4 layers with true D 0.9, 0.6, 0.3, 0.0 and D_random 0.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from analysis.psychometric import FitOptions, fit_thresholds
from analysis.ranking import ALL, RANKING_COLUMNS, compute_d, flag_summary, rank_layers
from analysis.simulate import make_truth, simulate_trials
from eigdist_core.errors import EigdistError

TRUE_D = {("vgg16", f"l{i}", "imagenet"): d for i, d in enumerate([0.9, 0.6, 0.3, 0.0])}


@pytest.fixture(scope="module")
def labs() -> pd.DataFrame:
    """D tables of 100 labs, fitted in one vectorised call."""
    truths = []
    for lab in range(100):
        truth = make_truth(TRUE_D, n_participants=6, n_images=2, seed=lab)
        truth["participant"] = f"lab{lab:03d}-" + truth["participant"]
        truths.append(truth)
    fits = fit_thresholds(simulate_trials(pd.concat(truths, ignore_index=True), n_trials=60, seed=11),
                          alpha_max=30.0, options=FitOptions(gof_draws=0, intervals=False))
    d = compute_d(fits)
    d["lab"] = d["participant"].str[:6]
    return d


def test_ranking_recovers_true_order_in_95_of_100_labs(labs):
    true_order = ["l0", "l1", "l2", "l3"]
    results = [rank_layers(lab, n_boot=200, seed=1) for _, lab in labs.groupby("lab")]
    hits = sum(r.ranking["layer"].tolist() == true_order for r in results)
    assert hits >= 95
    # The random control (true D_random = 0): its 95 % CI holds 0 in about 95 % of layer × lab cases.
    covered = np.mean([((r.control["ci_low"] <= 0) & (r.control["ci_high"] >= 0)).mean() for r in results])
    assert covered >= 0.88
    pooled = [r.control.iloc[-1] for r in results]
    assert all(row["model"] == ALL for row in pooled)
    assert np.mean([row["ci_low"] <= 0 <= row["ci_high"] for row in pooled]) >= 0.88


def test_random_control_within_its_ci_of_zero(labs):
    result = rank_layers(labs[labs["lab"] == "lab000"], n_boot=500, seed=2)
    pooled = result.control.iloc[-1]
    assert pooled["model"] == ALL and pooled["n_participants"] == 6 and pooled["n_images"] == 2
    assert pooled["ci_low"] <= 0 <= pooled["ci_high"]
    assert abs(pooled["D_random"]) < 0.05
    assert list(result.ranking.columns) == RANKING_COLUMNS
    assert result.ranking["rank"].tolist() == [1, 2, 3, 4]
    assert result.ranking["p_best"].sum() == pytest.approx(1.0)
    assert result.ranking["p_best"].iloc[0] > 0.9
    assert (result.ranking["n_participants"] == 6).all() and (result.ranking["n_images"] == 2).all()
    assert len(result.pairwise) == 6 and (result.pairwise["diff"] > 0).all()


def _thresholds(rows):
    frame = pd.DataFrame(rows, columns=["participant", "image_id", "direction", "threshold", "censored"])
    frame["model"], frame["layer"], frame["weights"] = "m", "l", "w"
    frame["log10_threshold"] = np.log10(frame["threshold"])
    return frame


def test_censored_thresholds_give_flagged_bounds():
    t = _thresholds([
        ("a", "i1", "max", 1.0, False), ("a", "i1", "min", 30.0, True), ("a", "i1", "random", 2.0, False),
        ("a", "i2", "max", 30.0, True), ("a", "i2", "min", 10.0, False), ("a", "i2", "random", 30.0, True),
        ("b", "i1", "max", 30.0, True), ("b", "i1", "min", 30.0, True), ("b", "i1", "random", 1.0, False),
        ("b", "i2", "max", 1.0, False), ("b", "i2", "min", 10.0, False),
    ])
    d = compute_d(t).set_index(["participant", "image_id"])
    assert d.loc[("a", "i1"), "D"] == pytest.approx(np.log10(30)) and d.loc[("a", "i1"), "D_bound"] == "lower"
    assert d.loc[("a", "i2"), "D"] == pytest.approx(np.log10(10 / 30)) and d.loc[("a", "i2"), "D_bound"] == "upper"
    assert np.isnan(d.loc[("b", "i1"), "D"]) and d.loc[("b", "i1"), "D_bound"] == "unknown"
    assert d.loc[("b", "i2"), "D_bound"] == "exact" and d.loc[("b", "i2"), "D_random_bound"] == "missing"
    assert d.loc[("a", "i2"), "D_random_bound"] == "unknown"
    ranking = rank_layers(d.reset_index(), n_boot=50).ranking.iloc[0]
    assert ranking["n_censored"] == 3                     # lower, upper and unknown all counted
    assert ranking["D"] == pytest.approx(np.mean([np.log10(30), np.log10(10 / 30), 1.0]))


def test_rank_layers_errors():
    with pytest.raises(ValueError, match="n_boot must be >= 1, got 0"):
        rank_layers(pd.DataFrame({"D": [0.1]}), n_boot=0)
    with pytest.raises(EigdistError, match="no D can be estimated for any layer"):
        rank_layers(pd.DataFrame(columns=["participant", "image_id", "model", "layer", "weights", "D"]))


def test_data_without_min_trials_is_an_error_naming_it():
    """Issue 16: no 'min' direction anywhere used to rank every layer with p_best = 1 for one."""
    t = _thresholds([("a", "i1", "max", 1.0, False), ("a", "i1", "random", 2.0, False)])
    d = compute_d(t)
    assert d["D_bound"].tolist() == ["missing"]
    with pytest.raises(EigdistError, match=r"no D can be estimated for any layer: D needs estimable 'max' and "
                                         r"'min' thresholds .*; 1 of 1 participant × image × layer have no "
                                         r"estimable 'max' or 'min' threshold \(a direction not tested"):
        rank_layers(d, n_boot=20)


def test_layer_without_d_is_not_estimable_not_ranked():
    good = _thresholds([("a", "i1", "max", 1.0, False), ("a", "i1", "min", 3.0, False),
                        ("b", "i1", "max", 1.0, False), ("b", "i1", "min", 2.0, False)])
    lost = _thresholds([("a", "i1", "max", 1.0, False), ("a", "i1", "min", np.nan, False),
                        ("b", "i1", "max", 1.0, False)])
    lost["layer"] = "l2"
    result = rank_layers(compute_d(pd.concat([good, lost], ignore_index=True)), n_boot=100)
    ranking = result.ranking.set_index("layer")
    assert ranking.loc["l", "estimable"] and ranking.loc["l", "rank"] == 1 and ranking.loc["l", "p_best"] == 1.0
    assert not ranking.loc["l2", "estimable"]
    assert pd.isna(ranking.loc["l2", "rank"]) and np.isnan(ranking.loc["l2", "p_best"])
    assert result.ranking["layer"].tolist() == ["l", "l2"] and result.pairwise.empty


def test_flagged_thresholds_are_counted_never_silent():
    t = _thresholds([("a", "i1", "max", 1.0, False), ("a", "i1", "min", 3.0, False),
                     ("a", "i2", "max", 1.0, False), ("a", "i2", "min", 2.0, False),
                     ("a", "i2", "random", 2.0, False)])
    t["poor_fit"] = [False, True, False, False, False]
    t["few_trials"] = [False, False, False, False, True]
    d = compute_d(t).set_index("image_id")
    assert d.loc["i1", "D_flagged"] and not d.loc["i2", "D_flagged"] and d.loc["i2", "D_random_flagged"]
    result = rank_layers(d.reset_index(), n_boot=50)
    assert result.ranking["n_flagged"].tolist() == [1] and result.control["n_flagged"].tolist() == [1, 1]
    summary = flag_summary(t).set_index("layer")
    assert summary.loc["l", "thresholds"] == 5 and summary.loc["l", "poor_fit"] == 1
    assert summary.loc[ALL, "few_trials"] == 1


def test_bounds_below_the_tested_range():
    t = _thresholds([("a", "i1", "max", 0.2, False), ("a", "i1", "min", 5.0, False),
                     ("a", "i2", "max", 1.0, False), ("a", "i2", "min", 0.3, False)])
    t["below_range"] = [True, False, False, True]
    d = compute_d(t).set_index("image_id")
    assert d.loc["i1", "D_bound"] == "lower"          # T_max ≤ 0.2: D ≥ log10(5 / 0.2)
    assert d.loc["i2", "D_bound"] == "upper"          # T_min ≤ 0.3: D ≤ log10(0.3)


def test_power_grows_with_observers_and_checks_input():
    from analysis.power import power_table

    table = power_table(0.2, [2, 8], [40], n_images=2, n_labs=20, n_boot=100, seed=3, progress=False)
    assert table["observers"].tolist() == [2, 8] and (table["labs"] == 20).all()
    assert table["power"].iloc[1] >= 0.8
    assert table["median_ci_width"].iloc[1] < table["median_ci_width"].iloc[0]
    with pytest.raises(ValueError, match="delta_d must be a positive number of log10 units, got -0.1"):
        power_table(-0.1, [4], [40])
    with pytest.raises(ValueError, match="observers must be integers >= 2, got \\[1\\]"):
        power_table(0.3, [1], [40])


def _two_layer_d(cells: dict[str, list[tuple[str, str, float | None]]]) -> pd.DataFrame:
    """D of layers ``a`` and ``b`` from ``{layer: [(participant, image, D or None = both censored)]}``."""
    frames = []
    for layer, rows in cells.items():
        t = _thresholds([row for p, i, d in rows for row in (
            (p, i, "max", 1.0 if d is not None else 30.0, d is None),
            (p, i, "min", 10.0 ** d if d is not None else 30.0, d is None))])
        t["layer"] = layer
        frames.append(t)
    return compute_d(pd.concat(frames, ignore_index=True))


def test_p_best_uses_only_draws_where_it_is_defined():
    """Two layers, D 0.1 and 0.9, on sparse data: half the participants have no D (both censored).

    Draws holding only the empty participant used to credit the alphabetically-first layer:
    p_best 0.25 / 0.75 and P(D_b > D_a) = 0.75 while the difference's CI is [0.8, 0.8].
    """
    d = _two_layer_d({"a": [("p1", "i1", 0.1), ("p2", "i1", None)], "b": [("p1", "i1", 0.9), ("p2", "i1", None)]})
    result = rank_layers(d, n_boot=400, seed=0)
    ranking = result.ranking.set_index("layer")
    assert ranking.loc["b", "p_best"] == 1.0 and ranking.loc["a", "p_best"] == 0.0
    valid = int(np.isfinite(result.draws).all(axis=1).sum())
    assert (ranking["n_valid_draws"] == valid).all() and 250 < valid < 350     # ≈ 3/4 of 400
    pair = result.pairwise.iloc[0]
    assert (pair["layer_a"], pair["p_greater"], pair["n_valid_draws"]) == ("b", 1.0, valid)
    assert pair["ci_low"] == pytest.approx(0.8) and pair["ci_high"] == pytest.approx(0.8)


def test_a_lab_whose_draws_are_mostly_empty_reports_the_count(tmp_path):
    """Layer a has a D only for p1, layer b only for p2; p3 and p4 have none: ≈ 43 % of the draws hold both."""
    empty = [("p3", "i1", None), ("p4", "i1", None)]
    d = _two_layer_d({"a": [("p1", "i1", 0.2), ("p2", "i1", None), *empty],
                      "b": [("p1", "i1", None), ("p2", "i1", 0.5), *empty]})
    result = rank_layers(d, n_boot=1000, seed=1)
    valid = int(np.isfinite(result.draws).all(axis=1).sum())
    assert valid < 500 and (result.ranking["n_valid_draws"] == valid).all()
    assert result.ranking["p_best"].tolist() == [1.0, 0.0] and result.pairwise["n_valid_draws"].tolist() == [valid]
    from analysis.report import write_report

    page = write_report(tmp_path, tables={"ranking.csv": result.ranking, "pairwise.csv": result.pairwise,
                                          "control.csv": result.control},
                        figures={}, settings={"bootstrap draws": 1000}, exclusions=pd.DataFrame()).read_text()
    assert "Few valid bootstrap draws" in page and f"p_best: {valid} of 1000" in page
    assert f"P(b &gt; a): {valid} of 1000" in page
    assert pd.read_csv(tmp_path / "ranking.csv")["n_valid_draws"].tolist() == [valid, valid]


@pytest.mark.parametrize("identical", [True, False])
def test_a_symmetric_two_layer_lab_gives_p_best_one_half(identical):
    """Ties split their credit: identical layers tie in every draw (they used to give 1 / 0); two
    layers that swap D between two participants tie whenever both are drawn once (they gave 0.75 / 0.25)."""
    swap = (0.2, 0.4) if identical else (0.4, 0.2)
    d = _two_layer_d({"a": [("p1", "i1", 0.2), ("p2", "i1", 0.4)], "b": [("p1", "i1", swap[0]), ("p2", "i1", swap[1])]})
    result = rank_layers(d, n_boot=4000, seed=3)
    assert result.ranking["p_best"].to_numpy() == pytest.approx([0.5, 0.5], abs=0.05)
    assert result.ranking["p_best"].sum() == pytest.approx(1.0)
    assert result.pairwise["p_greater"].iloc[0] == pytest.approx(0.5, abs=0.05)
    assert (result.ranking["n_valid_draws"] == 4000).all()
