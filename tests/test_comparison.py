"""The trial-level model comparison: invariances, recovery by model observers, small labs."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import torch

from analysis.comparison import CompareOptions
from analysis.comparison_tables import compare_models
from analysis.load import TrialDataError
from analysis.psychometric import FitOptions, fit_thresholds
from eigdist_core.contract import L2_MODEL, NOISE_CEILING
from eigdist_core.sensitivities import SensitivityError
from experiments.design import Condition, Trial
from experiments.observers import ModelObserver, Stimuli
from tests.lab.linear_model import AffineModel

LAYERS = [("lin", f"a{i}", "seed") for i in range(3)]
N = 64  # 8 × 8 grey images
NOISE = 0.05
FAST = FitOptions(gof_draws=0, intervals=False)
OPTIONS = CompareOptions(n_boot=200)


def _models() -> list[AffineModel]:
    """Linear layers A = diag(σ) Q with a random rotation Q each and σ over three decades: strongly
    anisotropic, so the layers disagree about which directions are visible."""
    out = []
    for i in range(len(LAYERS)):
        model = AffineModel(n=N, m=N, seed=10 + i)
        q, _ = torch.linalg.qr(model.A.detach().double())
        model.A.data = (torch.logspace(-1.5, 1.5, N, dtype=torch.float64)[:, None] * q).float()
        out.append(model)
    return out


def _items(n_images: int) -> tuple[pd.DataFrame, dict[str, np.ndarray]]:
    """Per image and layer: the max and min of vᵀF v over a random 16-dim subspace, and a random direction."""
    rng = np.random.default_rng(0)
    rows, vectors = [], {}
    models = _models()
    for j in range(n_images):
        q, _ = np.linalg.qr(rng.standard_normal((N, 16)))
        for (model, layer, weights), m in zip(LAYERS, models):
            a = m.A.double().numpy() @ q
            _, vecs = np.linalg.eigh(a.T @ a)
            for direction, v in (("max", q @ vecs[:, -1]), ("min", q @ vecs[:, 0]),
                                 ("random", rng.standard_normal(N))):
                item = f"img{j}__{model}__{layer}__{weights}__{direction}0"
                vectors[item] = v / np.linalg.norm(v)
                rows.append((item, f"img{j}", model, layer, weights, direction))
    return pd.DataFrame(rows, columns=["item_id", "image_id", "model", "layer", "weights", "direction"]), vectors


def _sensitivities(items: pd.DataFrame, vectors: dict[str, np.ndarray]) -> pd.DataFrame:
    """s = ‖A_m v‖² of every item under every layer, and ‖v‖² for L2 (exact: linear models)."""
    rows = []
    for item in items["item_id"]:
        v = vectors[item]
        for cand, m in zip(LAYERS, _models()):
            rows.append((item, *cand, float(np.sum((m.A.double().numpy() @ v) ** 2)), False))
        rows.append((item, *L2_MODEL, float(v @ v), False))
    return pd.DataFrame(rows, columns=["item_id", "model", "layer", "weights", "s", "nonlinear"])


def simulate_lab(true: int, n_people: int = 4, n_images: int = 3, per_item: int = 24) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Trials of model observers (Berardino's additive-noise observer, experiments.observers) seeing through
    layer ``true``, at constant stimuli around each item's expected threshold, and the sensitivity table."""
    items, vectors = _items(n_images)
    sens = _sensitivities(items, vectors)
    s_true = sens[(sens["model"] == LAYERS[true][0]) & (sens["layer"] == LAYERS[true][1])].set_index("item_id")["s"]
    model = _models()[true]
    image = np.full((1, 8, 8), 0.5)
    rows = []
    for p in range(n_people):
        observer = ModelObserver("lin:a", model=model, noise=NOISE * (1 + 0.2 * p), lapse=0.02, seed=p)
        t = 0
        for item in items.itertuples():
            scale = 6 * NOISE / np.sqrt(max(s_true[item.item_id], 1e-12))
            cond = Condition(item.image_id, item.model, item.layer, item.weights, item.direction, item.item_id,
                             None, 1e9)
            for a in np.resize(scale * np.geomspace(0.35, 2.8, 6), per_item):
                t += 1
                target = 1 + (t % 2)
                shown = image + a * vectors[item.item_id].reshape(1, 8, 8)
                stim = Stimuli(image, tuple(shown if i == target else image for i in (1, 2)), a, vectors[item.item_id])
                answer = observer.respond(Trial(t, 1, cond, target, 1), stim, 1)
                rows.append((f"p{p}", 1, t, item.image_id, item.model, item.layer, item.weights, item.direction,
                             item.item_id, a, answer.interval == target))
    trials = pd.DataFrame(rows, columns=["participant", "session", "trial", "image_id", "model", "layer", "weights",
                                         "direction", "item_id", "alpha", "correct"])
    trials = trials.assign(n_alternatives=2, is_catch=False, alpha_max=1e9)
    return trials, sens


@pytest.fixture(scope="module")
def lab():
    torch.set_num_threads(1)
    trials, sens = simulate_lab(true=1)
    return trials, sens, fit_thresholds(trials, options=FAST)


def test_the_observers_own_layer_wins(lab):
    trials, sens, fits = lab
    result = compare_models(trials, sens, fits, OPTIONS)
    table = result.comparison
    first = table.iloc[0]
    assert tuple(first[["model", "layer", "weights"]]) == LAYERS[1]
    assert first["bits"] > 0 and first["ci_low"] > 0 and first["p_best"] > 0.9
    l2 = table[table["model"] == "l2"].iloc[0]
    assert l2["bits"] == 0
    ceiling = table.iloc[-1]
    assert ceiling["model"] == NOISE_CEILING and np.isfinite(ceiling["bits"])
    assert first["explainable"] == pytest.approx(first["bits"] / ceiling["bits"])
    assert first["spearman"] > 0.8 and table["cv"].eq("image").all()
    # the matrix's diagonal: the true layer beats L2 on its own stimuli
    m = result.matrix.set_index(["layer", "source"])
    assert m.loc[("a1", "lin:a1 (seed)"), "bits"] > 0
    assert set(result.matrix["source"]) == {"lin:a0 (seed)", "lin:a1 (seed)", "lin:a2 (seed)", "random"}
    assert len(result.predictions) == len(fits.dropna(subset=["threshold"])) * 5  # 3 layers, L2, the mixture


def test_another_true_layer_is_recovered():
    torch.set_num_threads(1)
    trials, sens = simulate_lab(true=2, n_people=2, n_images=2, per_item=18)
    table = compare_models(trials, sens, None, OPTIONS).comparison
    assert tuple(table.iloc[0][["model", "layer", "weights"]]) == LAYERS[2]


def _scores(result):
    return result.comparison.set_index(["model", "layer"])["bits"]


def test_scaling_sensitivities_or_amplitudes_leaves_every_score_unchanged(lab):
    trials, sens, fits = lab
    base = _scores(compare_models(trials, sens, fits, OPTIONS))
    scaled_s = _scores(compare_models(trials, sens.assign(s=sens["s"] * 7.3), fits, OPTIONS))
    np.testing.assert_allclose(scaled_s.to_numpy(), base.to_numpy(), rtol=0, atol=1e-8)
    c = 3.1
    scaled_a = _scores(compare_models(trials.assign(alpha=trials["alpha"] * c), sens,
                                      fits.assign(threshold=fits["threshold"] * c), OPTIONS))
    np.testing.assert_allclose(scaled_a.to_numpy(), base.to_numpy(), rtol=0, atol=1e-8)


def test_one_observer_reports_what_it_can(lab):
    trials, sens, fits = lab
    one = trials[trials["participant"] == "p0"]
    result = compare_models(one, sens, fits[fits["participant"] == "p0"], OPTIONS)
    assert any("no noise ceiling" in n for n in result.notes)
    assert np.isnan(result.comparison.iloc[-1]["bits"]) and result.comparison["cv"].eq("image").all()
    assert np.isfinite(result.comparison.iloc[0]["bits"])


def test_one_image_is_scored_leave_one_participant_out(lab):
    trials, sens, fits = lab
    result = compare_models(trials[trials["image_id"] == "img0"], sens, fits, OPTIONS)
    assert result.comparison["cv"].eq("observer").all()
    assert any("leave-one-image-out needs two images per participant" in n for n in result.notes)


def test_one_observer_one_image_is_in_sample(lab):
    trials, sens, _ = lab
    one = trials[(trials["participant"] == "p0") & (trials["image_id"] == "img0")]
    result = compare_models(one, sens, None, OPTIONS)
    assert result.comparison["cv"].eq("none").all()
    assert any("nothing can be cross-validated" in n for n in result.notes)


def test_bad_input_is_named(lab):
    trials, sens, _ = lab
    with pytest.raises(TrialDataError, match=r"item 'img0__lin__a0__seed__max0' is not in the stimulus set's "
                                             r"sensitivity table \(96 trial\(s\)\); recompute"):
        compare_models(trials, sens[sens["item_id"] != "img0__lin__a0__seed__max0"], None, OPTIONS)
    nan = sens.copy()
    nan.loc[3, "s"] = np.nan
    with pytest.raises(SensitivityError, match=r"sensitivity of item 'img0__lin__a0__seed__max0' under l2:pixels "
                                               r"is nan; s must be a number >= 0"):
        compare_models(trials, nan, None, OPTIONS)
    with pytest.raises(TrialDataError, match=r"no L2 baseline"):
        compare_models(trials, sens[sens["model"] != "l2"], None, OPTIONS)


def test_zero_sensitivity_is_scored_at_chance_and_named(lab):
    trials, sens, _ = lab
    zero = sens.copy()
    zero.loc[(zero["layer"] == "a0") & (zero["item_id"].str.endswith("min0")), "s"] = 0.0
    result = compare_models(trials, zero, None, OPTIONS)
    assert any("lin:a0 (seed) predicts 9 item(s) invisible (s = 0)" in n for n in result.notes)
    assert np.isfinite(result.comparison["bits"].iloc[:-1]).all()


def test_the_demo_prints_the_comparison_with_the_own_model_marked(lab, tmp_path, capsys):
    from analysis.report import save_table
    from eigdist.cli.demo import print_comparison

    trials, sens, fits = lab
    save_table(compare_models(trials, sens, fits, OPTIONS).comparison, tmp_path / "comparison.csv")
    print_comparison(tmp_path, "lin:a1")
    out = capsys.readouterr().out
    assert "cross-validated: image" in out
    assert " 1. lin:a1 (seed)  +0." in out and "<- the observers' own model" in out.splitlines()[2]
    assert f"      {NOISE_CEILING}  +0." in out
    print_comparison(tmp_path / "none")
    assert "no model comparison" in capsys.readouterr().out
