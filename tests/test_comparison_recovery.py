"""Recovery through the real trial engine, a layer listed twice, and the comparison bootstrap's variance.

The seeded, seconds-long versions of benchmarks/bench_recovery.py (docs/analysis.md, "Model comparison").
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

from analysis.comparison_bootstrap import crossed_bootstrap_means
from analysis.comparison_tables import compare_models
from eigdist_core.stimulus_set import SCHEMA_VERSION, seal
from tests.recovery_labs import (LAPSE, EngineLab, correct_probability, engine_lab, expected_correct,
                                 readout_linearity, with_copy)
from tests.test_comparison import LAYERS, OPTIONS, _items, _models, _sensitivities

TRUE = 1
SPEC = f"{LAYERS[TRUE][0]}:{LAYERS[TRUE][1]}"
#: The tracks' ceiling: QUEST+ searches three decades below it, around the median item's threshold of 1.
ALPHA_MAX = 30.0


class LinearSource:
    """The linear layers' items of tests/test_comparison.py as a stimulus source for the engine (8 × 8 grey)."""

    def __init__(self, n_images: int) -> None:
        items, self.vectors = _items(n_images)
        entries = [{**row, "eigenvalue": 1.0, "alpha_displayable_max": 1e9} for row in items.to_dict("records")]
        self.manifest = seal({"schema_version": SCHEMA_VERSION, "alpha_max": ALPHA_MAX, "items": entries,
                              "images": [{"image_id": i} for i in items["image_id"].unique()]})
        self.set_id = self.manifest["set_id"]
        self.sens = _sensitivities(items, self.vectors)

    def image(self, image_id: str) -> np.ndarray:
        return np.full((1, 8, 8), 0.5, dtype=np.float32)

    def item(self, item_id: str) -> np.ndarray:
        return self.vectors[item_id].reshape(1, 8, 8).astype(np.float32)


@pytest.fixture(scope="module")
def labs(tmp_path_factory):
    torch.set_num_threads(1)
    source = LinearSource(n_images=3)
    lab = EngineLab(source, source.sens, {SPEC: _models()[TRUE]})
    root = tmp_path_factory.mktemp("labs")
    return lab, [engine_lab(lab, SPEC, observers=2, per_condition=24, seed=seed, root=root) for seed in range(3)]


def test_model_observers_through_the_engine_put_their_layer_first(labs):
    lab, trials = labs
    for rows in trials:
        assert rows["observer"].str.startswith(f"model={SPEC};").all() and rows["item_id"].nunique() == 27
        assert len(rows) == 2 * 27 * 24
        table = compare_models(rows, lab.sens, None, OPTIONS).comparison
        assert tuple(table.iloc[0][["model", "layer", "weights"]]) == LAYERS[TRUE]
        assert table.iloc[0]["bits"] > 0 and table.iloc[0]["p_best"] > 0.5


def test_a_layer_listed_twice_splits_p_best(labs):
    lab, trials = labs
    table = compare_models(trials[0], with_copy(lab.sens, SPEC), None, OPTIONS).comparison
    copies = table[table["layer"] == LAYERS[TRUE][1]]
    assert len(copies) == 2 and copies["bits"].nunique() == 1
    np.testing.assert_allclose(copies["p_best"].to_numpy(), [0.5, 0.5])


def test_a_readout_of_two_layers_sees_the_weighted_sum_of_their_sensitivities():
    """Linear layers: ‖R(x + e) − R(x)‖² = Σ c_m ‖A_m e‖² = Σ c_m s_m; c ∝ share/g, 1 for the first; each
    stimulus's response is computed once."""
    source = LinearSource(n_images=1)
    models = _models()
    lab = EngineLab(source, source.sens, {f"lin:a{i}": m for i, m in enumerate(models)})
    readout, sigma = lab.readout({"lin:a0": 0.25, "lin:a2": 0.75})
    s = source.sens.pivot_table(index="item_id", columns="layer", values="s")
    g = np.exp(np.log(s).mean())
    np.testing.assert_allclose(readout.gains, [1.0, 3.0 * g["a0"] / g["a2"]], rtol=1e-12)
    x = torch.as_tensor(source.image(source.manifest["images"][0]["image_id"]))[None]
    for item in s.index[:4]:
        e = torch.as_tensor(source.item(item))[None]
        seen = float(((readout(x + e) - readout(x)).double() ** 2).sum())
        assert seen == pytest.approx(s.loc[item, "a0"] + readout.gains[1] * s.loc[item, "a2"], rel=1e-4)
        assert readout(x + e) is readout(x + e)
    median = (s["a0"] + readout.gains[1] * s["a2"]).median()
    assert sigma == pytest.approx(np.sqrt(median) / (1.53 * (2 * 64) ** 0.25), rel=1e-12)
    quarter, sigma_quarter = lab.readout({"lin:a0": 0.25, "lin:a2": 0.75}, threshold=0.25)  # σ ∝ the threshold
    assert quarter is readout and sigma_quarter == pytest.approx(0.25 * sigma, rel=1e-12)
    rho, above = readout_linearity(lab, {"lin:a0": 0.25, "lin:a2": 0.75}, 1.0)  # linear: ρ = 1 at any α
    np.testing.assert_allclose(rho, 1.0, rtol=1e-4)
    assert len(rho) == len(source.manifest["items"]) and above == 0
    assert readout_linearity(lab, {"lin:a0": 0.25, "lin:a2": 0.75}, 1e12)[1] == len(rho)  # α_T beyond 1e9


def test_the_model_observers_probability_correct_follows_its_decision_rule():
    """2afc_ref as ModelObserver answers it: the test interval farther from the noisy reference wins; Monte Carlo
    (20 000 draws, sd ≤ 0.0035) against Φ(d²/√(12Nσ⁴ + 8σ²d²)), no lapses; lapses move p towards ½."""
    rng = np.random.default_rng(0)
    units, sigma, draws = 400, 1.0, 20_000
    for distance in (0.0, 3.0, 5.0, 8.0):
        target = np.zeros(units)
        target[0] = distance
        ref, null, noise = rng.standard_normal((3, draws, units)) * sigma  # each response's own noise
        seen = target + noise
        won = np.linalg.norm(seen - ref, axis=1) > np.linalg.norm(null - ref, axis=1)
        assert correct_probability(np.array(distance), np.array(sigma), units, 0.0) == pytest.approx(won.mean(), abs=0.012)
    assert correct_probability(np.array(0.0), np.array(1.0), units) == pytest.approx(0.5)
    assert correct_probability(np.array(1e6), np.array(1.0), units, 0.1) == pytest.approx(0.95)


def test_expected_correct_of_linear_observers_is_the_laws_and_matches_their_answers(labs):
    """Through a linear layer the distance shown is α√s: the observers' own P(correct) and the law's agree, and
    their mean is the share of correct answers (3 labs × 1296 trials: sd ≈ 0.007)."""
    lab, trials = labs
    for rows in trials:
        shown = expected_correct(lab, {SPEC: 1.0}, rows, law=False)
        np.testing.assert_allclose(shown, expected_correct(lab, {SPEC: 1.0}, rows, law=True), rtol=1e-4)
        assert shown.min() >= 0.5 * LAPSE and shown.mean() == pytest.approx(rows["correct"].mean(), abs=0.025)


def test_the_crossed_bootstrap_has_the_variance_of_its_two_main_effects():
    """Balanced cells y = a_p + b_i + r_pi: a draw is m + Σ W_p ȳ_p / P + Σ V_i ȳ_i / I − 2m with multinomial W, V, so
    its variance is var(ȳ_p) / P + var(ȳ_i) / I (population variances), the image effect at 1 / I, not 1 / (P·I)."""
    rng = np.random.default_rng(3)
    n_p, n_i = 5, 7
    cells = rng.normal(0, 1, (n_p, 1)) + rng.normal(0, 2, (1, n_i)) + rng.normal(0, 0.5, (n_p, n_i))
    total = np.stack([cells, -cells, np.zeros_like(cells)])
    draws = crossed_bootstrap_means(total, np.ones((3, n_p, n_i)), 40_000, seed=0)
    expected = cells.mean(axis=1).var() / n_p + cells.mean(axis=0).var() / n_i
    assert draws[:, 0].var() == pytest.approx(expected, rel=0.03)
    np.testing.assert_allclose(draws[:, 1], -draws[:, 0], atol=1e-12)  # candidates share the draws
    assert draws[:, 2].var() == 0 and draws[:, 0].mean() == pytest.approx(cells.mean(), abs=0.02)
