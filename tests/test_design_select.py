"""Offline design selection: the criterion's closed form, the constraints, the subset set, bad input."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest
import scipy.linalg

from eigdist_core.design_criterion import (
    PLACEMENT, Constraints, DesignError, layer_bounds, pair_contrasts, pair_information, select, trial_divergence,
)
from eigdist_core.io import load_json
from eigdist_core.stimulus_set import verify_set
from tests.build_fixtures import stimulus_set  # noqa: F401 (module fixture)
from tests.trial_fixtures import set_config_toml


def linear_pool(seed: int = 0, dim: int = 30):
    """Two linear layers A, B: 500 random unit directions, each layer's eigendistortions (max, min), and the
    generalized eigenvectors of (AᵀA, BᵀB) (top, bottom, last two rows); s = ‖Av‖², ‖Bv‖²."""
    rng = np.random.default_rng(seed)
    a, b = rng.normal(size=(40, dim)), rng.normal(size=(40, dim))
    fa, fb = a.T @ a, b.T @ b
    _, gen = scipy.linalg.eigh(fa, fb)
    own = [np.linalg.eigh(f)[1][:, [-1, 0]].T for f in (fa, fb)]
    random = rng.normal(size=(500, dim))
    items = np.vstack([random, *own, gen[:, -1], gen[:, 0]])
    items /= np.linalg.norm(items, axis=1, keepdims=True)
    s = np.stack([np.einsum("vi,ij,vj->v", items, f, items) for f in (fa, fb)], axis=1)
    return items, s


G = trial_divergence(3.0, 0.02, 0.5)


def weibull_information(slope: float, lapse: float, guess: float) -> float:
    """w = mean_c (∂P/∂ln T)² / (P (1 − P)) over :data:`PLACEMENT`, in closed form for the project's Weibull
    (F = 1 − exp(−u), u = ln 2 · (α/T)^β, so ∂F/∂ln T = −β u e^−u)."""
    u = np.log(2.0) * np.array(PLACEMENT) ** slope
    p = guess + (1.0 - guess - lapse) * (1.0 - np.exp(-u))
    dp = (1.0 - guess - lapse) * slope * u * np.exp(-u)
    return float(np.mean(dp * dp / (p * (1.0 - p))))


def two_item_information(d: np.ndarray, n: int = 10) -> np.ndarray:
    """E of n trials on each of two items whose Δ differ by d, by brute force over the shift c."""
    c = np.linspace(-1.0, 1.0, 4001)[:, None] * np.abs(d)[None]
    return (n * (G(c) + G(d[None] - c))).min(axis=0)


def test_two_stimuli_are_the_generalized_top_and_bottom():
    _, s = linear_pool()
    design = select(pair_contrasts(s), np.zeros(len(s), int), G, Constraints(budget=20, step=10, image_cap=20))
    assert set(np.flatnonzero(design.trials)) == {len(s) - 2, len(s) - 1}
    ratio = np.log(s[:, 0] / s[:, 1])
    spread = 0.5 * (ratio.max() - ratio.min())
    assert design.information[0] == pytest.approx(two_item_information(np.array([spread]))[0], rel=1e-3)
    assert design.value == pytest.approx(0.5 * np.exp(-design.information[0] / 4))


@pytest.mark.parametrize("seed", [1, 2])
def test_the_pair_beats_every_other_pair_of_the_pool(seed):
    """Brute force over all pairs of a smaller pool: no two items give a larger E."""
    _, s = linear_pool(seed)
    s = s[-60:]
    delta = pair_contrasts(s)
    design = select(delta, np.zeros(len(s), int), G, Constraints(budget=20, step=10, image_cap=20))
    a, b = np.triu_indices(len(s), k=1)
    assert design.information[0] == pytest.approx(two_item_information(delta[a, 0] - delta[b, 0]).max(), rel=1e-3)


def test_information_is_a_profile_over_the_scale():
    """A constant shift of every Δ (another k) changes nothing; one item alone tells nothing."""
    rng = np.random.default_rng(3)
    delta, n = rng.normal(size=(8, 3)), rng.integers(0, 5, 8)
    assert np.allclose(pair_information(delta + 2.0, n, G), pair_information(delta, n, G), rtol=1e-3)
    assert np.allclose(pair_information(delta, np.eye(8)[2] * 40, G), 0.0, atol=1e-5)  # g(GRID_STEP / 2) per trial


def test_a_trial_tells_half_w_x_squared_near_threshold_and_no_more_than_chance_or_lapse_far_from_it():
    from eigdist_core.psychometric_function import weibull

    w = weibull_information(3.0, 0.02, 0.5)
    assert w == pytest.approx(1.01, abs=5e-3)  # the figure docs/analysis.md quotes
    assert G(np.array([0.1]))[0] == pytest.approx(0.5 * w * 0.1 ** 2, rel=2e-2)  # x³ terms and the grid: < 2 %
    p = weibull(np.array(PLACEMENT), 1.0, 3.0, 0.5, 0.02)

    def kl(q):
        return p * np.log(p / q) + (1 - p) * np.log((1 - p) / (1 - q))

    far = 0.5 * np.mean(kl(0.5) + kl(0.98))  # the other layer puts every trial at chance, or at 1 − λ
    assert G(np.array([50.0]))[0] == pytest.approx(far, rel=1e-3)
    assert (np.diff(G(np.linspace(0, 4, 50))) > 0).all()


def test_layer_bounds_are_half_the_sum_of_exp_minus_a_quarter_of_each_pairs_llr():
    e = np.array([4.0, 8.0, 12.0])  # pairs (0, 1), (0, 2), (1, 2)
    expected = 0.5 * np.array([np.exp(-1) + np.exp(-2), np.exp(-1) + np.exp(-3), np.exp(-2) + np.exp(-3)])
    assert np.allclose(layer_bounds(e), expected)


def test_constraints_hold():
    rng = np.random.default_rng(4)
    s = np.exp(rng.normal(size=(300, 4)))
    image = np.repeat(np.arange(10), 30)
    limits = Constraints(budget=600, step=10, item_cap=40, image_cap=100)
    design = select(pair_contrasts(s), image, G, limits)
    per_image = np.bincount(image, weights=design.trials)
    directions = np.bincount(image, weights=design.trials > 0)
    assert design.trials.sum() <= 600 and design.trials.max() <= 40 and per_image.max() <= 100
    assert (design.trials % 10 == 0).all() and ((directions == 0) | (directions >= 2)).all()
    assert 0 < design.value < 1.5 and design.information.min() > 0


@pytest.mark.parametrize("limits,message", [
    (Constraints(budget=15, step=10), "budget 15 trials is smaller than the constraints allow: at least 20"),
    (Constraints(budget=100, step=10, image_cap=10), "image cap 10 trials is below 20"),
    (Constraints(budget=100, step=10, item_cap=5), "item cap 5 trials must be at least one step"),
    (Constraints(budget=100, step=0), "step must be at least 1 trial, got 0"),
    (Constraints(budget=100, per_image=1), "per_image must be at least 2 directions of every image shown, got 1"),
])
def test_impossible_constraints_are_named(limits, message):
    _, s = linear_pool()
    with pytest.raises(DesignError, match=message):
        select(pair_contrasts(s), np.zeros(len(s), int), G, limits)


def test_one_layer_is_refused():
    with pytest.raises(DesignError, match="the pool has 1 layer"):
        pair_contrasts(np.ones((5, 1)))


# --- The subset on disk, through the CLI ------------------------------------------------------------------

POOL_TOML = set_config_toml("pool", "camera", "grey", more_images=("coffee",), more_layers=("layer1",))


@pytest.fixture(scope="module")
def pool_set(tmp_path_factory) -> Path:
    """A built two-layer, two-image pool with its sensitivity table."""
    from eigdist_core.build import build_set

    base = tmp_path_factory.mktemp("pool")
    (base / "pool.toml").write_text(POOL_TOML)
    return build_set(base / "pool.toml", base / "pool", progress=False)


def cli(*args: str) -> int:
    from eigdist.cli.main import main

    return main(list(args))


def test_select_writes_a_verified_subset_that_names_its_parent(pool_set, tmp_path, capsys):
    out = tmp_path / "subset"
    assert cli("design", "select", str(pool_set), "--budget-trials", "80", "--out", str(out),
               "--typical-threshold", "0.05") == 0
    assert verify_set(out) == []
    parent, child = load_json(pool_set / "manifest.json"), load_json(out / "manifest.json")
    assert child["parent"] == {"set_id": parent["set_id"], "name": "pool", "build_id": parent["build_id"]}
    trials = child["selection"]["trials"]
    assert set(trials) == {it["item_id"] for it in child["items"]} and sum(trials.values()) <= 80
    for it in child["items"]:
        assert (out / it["file"]).read_bytes() == (pool_set / it["file"]).read_bytes()
    assert len(child["selection"]["pairs"]) == 1 and 0 < child["selection"]["value"] < 0.5
    assert set(child["selection"]["bounds"]) == set(child["selection"]["layers"])
    assert "criterion" in capsys.readouterr().out


def test_verify_names_a_selection_that_does_not_match_the_items(pool_set, tmp_path):
    from eigdist_core.stimulus_set import write_manifest

    out = tmp_path / "subset"
    assert cli("design", "select", str(pool_set), "--budget-trials", "40", "--out", str(out)) == 0
    manifest = load_json(out / "manifest.json")
    manifest["selection"]["trials"]["ghost"] = 10
    write_manifest(out, manifest)  # sealed again: only the selection check can see it
    assert "manifest.json: selection.trials names 'ghost', which is not an item of the set" in verify_set(out)


def test_exclusions_are_recorded_with_a_reason(pool_set, tmp_path):
    out = tmp_path / "subset"
    assert cli("design", "select", str(pool_set), "--budget-trials", "40", "--out", str(out),
               "--typical-threshold", "1.5") == 0
    excluded = load_json(out / "manifest.json")["selection"]["excluded"]
    assert excluded and all("exceeds the α ceiling" in r or "fewer than 2" in r for r in excluded.values())
    assert not set(excluded) & set(load_json(out / "manifest.json")["selection"]["trials"])


def test_a_pool_without_sensitivities_is_refused(pool_set, tmp_path, capsys):
    from eigdist_core.stimulus_set import write_manifest

    pool = tmp_path / "pool"
    shutil.copytree(pool_set, pool)
    manifest = load_json(pool / "manifest.json")
    del manifest["sensitivities"]
    write_manifest(pool, manifest)
    (pool / "sensitivities.csv").unlink()
    assert cli("design", "select", str(pool), "--budget-trials", "40", "--out", str(tmp_path / "s")) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "has no sensitivity table" in err


def test_a_small_budget_is_refused(pool_set, tmp_path, capsys):
    assert cli("design", "select", str(pool_set), "--budget-trials", "10", "--out", str(tmp_path / "s")) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "budget 10 trials is smaller than the constraints allow" in err


def test_a_one_layer_pool_is_refused(stimulus_set, tmp_path, capsys):  # noqa: F811
    assert cli("design", "select", str(stimulus_set), "--budget-trials", "40", "--out", str(tmp_path / "s")) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "the pool has 1 layer (resnet18:conv1)" in err


def test_a_used_out_folder_is_refused(pool_set, tmp_path, capsys):
    (tmp_path / "s").mkdir()
    (tmp_path / "s" / "x").write_text("")
    assert cli("design", "select", str(pool_set), "--budget-trials", "40", "--out", str(tmp_path / "s")) == 2
    assert "exists and is not an empty folder" in capsys.readouterr().err



def test_a_steep_function_without_lapses_gives_a_finite_divergence_and_a_design():
    """P rounds to 1 at the top placement (Weibull β = 8, no lapse): 0·ln 0 counts as 0, not NaN (numpy's
    argmin of an empty sequence before). A steep g saturates, so the best pair need not be the generalized one."""
    g = trial_divergence(8.0, 0.0, 0.5)
    assert np.isfinite(g.table).all() and g.table[0] >= 0 and np.all(np.diff(g.table) >= -1e-12)
    _, s = linear_pool()
    design = select(pair_contrasts(s), np.zeros(len(s), int), g, Constraints(budget=20, step=10, image_cap=20))
    assert np.count_nonzero(design.trials) == 2 and np.isfinite(design.information).all() and design.information[0] > 0
