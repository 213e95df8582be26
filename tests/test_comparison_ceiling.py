"""The noise ceiling of small labs: the explainable fraction is n/a, with a named note, unless the ceiling is
reliably above L2; labs too small to cross-validate say what they cannot do and report what they can."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from analysis.comparison import CompareOptions
from analysis.comparison_report import comparison_outputs
from analysis.comparison_tables import ceiling_above_l2, ceiling_note, compare_models
from analysis.psychometric import FitOptions, fit_thresholds
from analysis.report import save_table
from eigdist_core.contract import NOISE_CEILING
from tests.recovery_labs import perturbed_pair, synthetic_items, weibull_lab

OPTIONS = CompareOptions(n_boot=200)
EXPLAINABLE = ["explainable", "explainable_low", "explainable_high"]
NO_RANKING = pd.DataFrame(columns=["model", "layer", "weights", "rank"])


def weibull(observers: int, trials: int, spread: float, seed: int):
    """Weibull observers of a synthetic set (4 images × 4 items), their thresholds and the table of two candidates."""
    rng = np.random.default_rng(seed)
    items = synthetic_items(4, 4, spread, rng)
    sens = perturbed_pair(items, 0.1, rng)
    trials = weibull_lab(items, observers=observers, trials=trials, seed=seed)
    return trials, sens, fit_thresholds(trials, options=FitOptions(gof_draws=0, intervals=False))


def ceiling(table: pd.DataFrame) -> pd.Series:
    return table[table["model"] == NOISE_CEILING].iloc[0]


@pytest.mark.parametrize("bits, low, above", [(0.1, 0.01, True), (0.1, 0.0, False), (0.1, -0.01, False),
                                               (-0.02, -0.2, False), (0.0, 0.0, False), (np.nan, np.nan, False)])
def test_the_fraction_needs_the_ceiling_and_its_lower_end_above_l2(bits, low, above):
    assert ceiling_above_l2(bits, low) is above


@pytest.mark.parametrize("seed, sign", [(0, -1), (3, 1)])
def test_two_observers_give_no_fraction_and_say_why(seed, sign, tmp_path, capsys):
    """Seed 0: the ceiling's point is below L2; seed 3: above, but its interval reaches 0. Both: n/a."""
    from eigdist.cli.demo import print_comparison

    trials, sens, fits = weibull(observers=2, trials=12, spread=0.3, seed=seed)
    result = compare_models(trials, sens, fits, OPTIONS)
    row = ceiling(result.comparison)
    assert np.sign(row["bits"]) == sign and row["ci_low"] <= 0 <= row["ci_high"]
    assert result.comparison[EXPLAINABLE].isna().all().all() and not result.comparison["at_ceiling"].any()
    note = [n for n in result.notes if n.startswith("explainable fraction n/a")]
    assert len(note) == 1
    assert f"the noise ceiling, {row['bits']:+.3f} bits per trial vs L2 [{row['ci_low']:+.3f}, " in note[0]
    assert "(2 participants here): more observers or more trials per stimulus" in note[0]
    save_table(result.comparison, tmp_path / "comparison.csv")
    print_comparison(tmp_path, "pert:a")
    out = capsys.readouterr().out
    assert out.count("explainable n/a") == 3 and f"  note: {note[0]}\n" in out  # two candidates and L2
    _, sections, _ = comparison_outputs(trials, fits, NO_RANKING, sens, "", OPTIONS)
    section = sections[0][0]
    assert "<td>n/a</td>" in section and "explainable fraction n/a: the noise ceiling" in section


def test_many_observers_give_the_fraction_with_intervals():
    trials, sens, fits = weibull(observers=6, trials=40, spread=1.5, seed=0)
    result = compare_models(trials, sens, fits, OPTIONS)
    table = result.comparison
    row = ceiling(table)
    assert 0 < row["ci_low"] <= row["bits"] <= row["ci_high"]
    assert not any(n.startswith("explainable fraction n/a") for n in result.notes)
    models = table[table["model"] == "pert"]
    np.testing.assert_allclose(models["explainable"], models["bits"] / row["bits"])
    assert np.isfinite(models[EXPLAINABLE].to_numpy()).all()
    assert (models["explainable_low"] <= models["explainable"]).all()
    assert (models["explainable"] <= models["explainable_high"]).all()
    assert row[EXPLAINABLE].tolist() == [1.0, 1.0, 1.0]
    np.testing.assert_array_equal(models["at_ceiling"], models["bits"] >= row["ci_low"])


@pytest.mark.parametrize("keep, says", [
    ("one observer", "no noise ceiling: it needs thresholds of two or more participants"),
    ("one image", "leave-one-image-out needs two images per participant (p00, p01, p02 saw one)"),
    ("one of each", "nothing can be cross-validated with one participant and one image"),
])
def test_a_lab_too_small_to_cross_validate_says_so_in_the_report(keep, says):
    """The report's section of a lab with one observer and/or one image: a named note, the scores it can give."""
    trials, sens, fits = weibull(observers=3, trials=20, spread=1.0, seed=0)
    person = trials["participant"] == "p00" if keep != "one image" else True
    image = trials["image_id"] == "img0" if keep != "one observer" else True
    small = trials[person & image]
    tables, sections, status = comparison_outputs(small, fits[fits["participant"].isin(small["participant"])],
                                                  NO_RANKING, sens, "", OPTIONS)
    assert says in sections[0][0]
    scores = tables["comparison.csv"]
    assert np.isfinite(scores[scores["model"] == "pert"]["bits"]).all()
    if keep != "one image":  # no ceiling: no fraction, and the printed tables say so too
        assert scores[EXPLAINABLE].isna().all().all()
        assert ceiling_note(scores) == ("no noise ceiling: it needs thresholds of two or more participants "
                                        "(explainable fraction n/a)")
    assert status.startswith("model comparison (")
