"""The sensitivity table of a set: closed forms, the linearity ratio, staleness and tampering."""

from __future__ import annotations

import csv
import io
import shutil

import numpy as np
import pytest

from eigdist_core.contract import SENSITIVITY_FILE
from eigdist_core.io import load_json, save_json
from eigdist_core.sensitivities import (
    SensitivityError, add_sensitivities, items_digest, parse_model_arg, read_table,
)
from eigdist_core.sensitivity_values import RHO_RTOL, as_float64, layer_values, pair_values
from eigdist_core.stimulus_set import StimulusSet, verify_set, write_manifest
from tests.build_fixtures import stimulus_set  # noqa: F401 (module fixture)
from tests.lab.linear_model import AffineModel


def test_linear_model_closed_forms():
    """f(x) = Ax + b: s = vᵀAᵀAv to 1e-6 relative and ρ = 1 to 1e-6 at every α up to each ceiling."""
    model = AffineModel(n=64, m=20, seed=3)
    rng = np.random.default_rng(0)
    image = rng.uniform(0.2, 0.8, (1, 8, 8))
    items = rng.standard_normal((5, 1, 8, 8))
    items /= np.linalg.norm(items.reshape(5, -1), axis=1)[:, None, None, None]
    alphas = list(np.geomspace(0.004, 4.0, 8))
    ceilings = [4.0, 1.0, 0.05, 2.5, 0.004]
    s, rho, rho_c = pair_values(as_float64(model), image, items, ceilings, alphas)
    A = model.A.detach().double().numpy()
    exact = ((items.reshape(5, -1) @ A.T) ** 2).sum(axis=1)
    np.testing.assert_allclose(s, exact, rtol=1e-6)
    for j, ceiling in enumerate(ceilings):
        shown = np.array(alphas) <= ceiling
        np.testing.assert_allclose(rho[j, shown], 1.0, atol=1e-6)
        assert np.isnan(rho[j, ~shown]).all()
    np.testing.assert_allclose(rho_c, 1.0, atol=1e-6)


def test_rho_leaves_one_for_a_saturating_model():
    """A model that saturates along v (tanh of a large gain) has ρ < 1 at large α: the check can fail."""
    import torch

    class Saturating(torch.nn.Module):
        def forward(self, x):
            return torch.tanh(20 * (x.flatten(1) - 0.5))

    rng = np.random.default_rng(1)
    items = rng.standard_normal((1, 1, 4, 4))
    items /= np.linalg.norm(items)
    s, rho, _ = pair_values(as_float64(Saturating()), np.full((1, 4, 4), 0.5), items, [4.0], [0.001, 1.0])
    assert rho[0, 0] == pytest.approx(1.0, abs=1e-3) and rho[0, 1] < 0.5


def test_layers_of_one_network_share_their_passes_and_keep_their_numbers():
    """resnet18 conv1 and layer1 stacked into one module: the same s and ρ as each layer alone (1e-12)."""
    import torch

    from eigdist_core import models
    from eigdist_core.models.adapter import stack_layers

    layers = [models.load(f"resnet18:{n}", "random:0") for n in ("conv1", "layer1")]
    stack = stack_layers(layers, ["conv1", "layer1"])
    rng = np.random.default_rng(2)
    image = rng.uniform(0.2, 0.8, (1, 16, 16))
    items = rng.standard_normal((3, 1, 16, 16))
    items /= np.linalg.norm(items.reshape(3, -1), axis=1)[:, None, None, None]
    ceilings, alphas = [2.0, 0.3, 0.002], [0.002, 0.06, 2.0]
    sizes = stack.sizes(torch.from_numpy(image).float()[None])
    s, rho, rho_c = layer_values(as_float64(stack), sizes, image, items, ceilings, alphas)
    for m, layer in enumerate(layers):
        alone = pair_values(as_float64(layer), image, items, ceilings, alphas)
        np.testing.assert_allclose(s[:, m], alone[0], rtol=1e-12)
        np.testing.assert_allclose(rho[:, m], alone[1], rtol=1e-12)
        np.testing.assert_allclose(rho_c[:, m], alone[2], rtol=1e-12)
    assert rho[2, 0, 0] == rho_c[2, 0] and np.isnan(rho[2, :, 1:]).all()  # a ceiling on the grid: one pass


def test_other_weights_or_models_are_not_stacked():
    from eigdist_core import models
    from eigdist_core.models.adapter import stack_layers

    conv1 = models.load("resnet18:conv1", "random:0")
    assert stack_layers([conv1, models.load("resnet18:layer1", "random:1")], ["conv1", "layer1"]) is None
    fronts = [models.load(f"frontend:{n}", "published") for n in ("ln", "lg")]
    assert stack_layers(fronts, ["ln", "lg"]) is None


def test_float32_passes_keep_rho_within_its_tolerance():
    """ρ of a saturating model with float32 passes where they are safe: within RHO_RTOL of float64 at every α,
    although float32 alone is far off at the smallest α (so both precisions were used)."""
    import torch

    class Saturating(torch.nn.Module):
        def forward(self, x):
            return torch.tanh(3 * (x.flatten(1) - 0.5)) * torch.linspace(0.5, 2, x[0].numel(), dtype=x.dtype)

    rng = np.random.default_rng(4)
    image = rng.uniform(0.2, 0.8, (1, 16, 16))
    items = rng.standard_normal((4, 1, 16, 16))
    items /= np.linalg.norm(items.reshape(4, -1), axis=1)[:, None, None, None]
    alphas = list(np.geomspace(1e-5, 4.0, 12))
    model32, model64 = Saturating().float(), Saturating().double()
    exact = layer_values(model64, None, image, items, [4.0] * 4, alphas)
    mixed = layer_values(model64, None, image, items, [4.0] * 4, alphas, model32)
    np.testing.assert_allclose(mixed[0], exact[0], rtol=1e-12)
    np.testing.assert_allclose(mixed[1], exact[1], rtol=RHO_RTOL)
    assert (mixed[1] != exact[1]).any()  # some passes ran in float32
    x, v = torch.from_numpy(image).float()[None], torch.from_numpy(items).float()
    single = ((model32(x + alphas[0] * v) - model32(x)) ** 2).sum(dim=1).numpy() / (alphas[0] ** 2 * exact[0][:, 0])
    assert np.abs(single / exact[1][:, 0, 0] - 1).max() > 10 * RHO_RTOL  # float32 alone is not


@pytest.fixture
def built(stimulus_set, tmp_path):  # noqa: F811
    """A private copy of the module's built set (its table computed by the build)."""
    folder = tmp_path / "set"
    shutil.copytree(stimulus_set, folder)
    return folder


def test_build_writes_a_table_that_matches_the_eigenvalues(built):
    m = load_json(built / "manifest.json")
    table = read_table(built, m)
    assert verify_set(built) == []
    assert m["sensitivities"]["set_id"] == m["set_id"] and m["sensitivities"]["items_sha256"] == items_digest(m)
    by_item = {(i, mo): s for i, mo, s in zip(table["item_id"], table["model"], table["s"])}
    for item in m["items"]:
        # vᵀFv of the set's own layer is the solver's Rayleigh quotient (float32) and, for l2, ‖v‖² = 1.
        assert by_item[(item["item_id"], item["model"])] == pytest.approx(item["rayleigh"], rel=1e-3, abs=1e-6)
        assert by_item[(item["item_id"], "l2")] == pytest.approx(1.0, abs=1e-5)


def test_old_set_without_a_table_stays_valid_and_gets_one(built):
    m = load_json(built / "manifest.json")
    set_id = m["set_id"]
    del m["sensitivities"]
    write_manifest(built, m)
    (built / SENSITIVITY_FILE).unlink()
    assert verify_set(built) == []
    with pytest.raises(SensitivityError, match=r"has no sensitivity table .*eigdist stimuli sensitivities"):
        read_table(built, load_json(built / "manifest.json"))
    add_sensitivities(built)
    m = load_json(built / "manifest.json")
    assert m["set_id"] == set_id and StimulusSet.open(built).set_id == set_id
    assert len(read_table(built, m)["s"]) == 2 * len(m["items"])


def _rewrite(folder, edit) -> None:
    """Edit the table's rows with ``edit(rows)`` and record its new sha256 (a consistent but wrong table)."""
    import hashlib

    rows = list(csv.reader(io.StringIO((folder / SENSITIVITY_FILE).read_text())))
    edit(rows)
    out = io.StringIO()
    csv.writer(out, lineterminator="\n").writerows(rows)
    (folder / SENSITIVITY_FILE).write_text(out.getvalue())
    m = load_json(folder / "manifest.json")
    m["sensitivities"]["sha256"] = hashlib.sha256(out.getvalue().encode()).hexdigest()
    write_manifest(folder, m)


def test_a_stale_table_is_refused_naming_the_item(built):
    item = load_json(built / "manifest.json")["items"][1]["item_id"]

    def other_item(rows):
        for row in rows[1:]:
            if row[0] == item:
                row[1] = "0" * 64
    _rewrite(built, other_item)
    with pytest.raises(SensitivityError, match=rf"item '{item}' has sha256 .* in the set but the table was computed "
                                               r"for 000000000000….*eigdist stimuli sensitivities"):
        read_table(built, load_json(built / "manifest.json"))
    assert any(item in p for p in verify_set(built))


def test_a_table_of_another_set_is_refused(built):
    m = load_json(built / "manifest.json")
    m["sensitivities"]["set_id"] = "0123456789abcdef"
    save_json(built / "manifest.json", m)  # digests and set_id stay: the entry is outside the identity
    with pytest.raises(SensitivityError, match=r"stale: computed for set '0123456789abcdef'"):
        read_table(built, load_json(built / "manifest.json"))


def test_verify_catches_a_tampered_table(built):
    text = (built / SENSITIVITY_FILE).read_text().splitlines()
    cells = text[1].split(",")
    cells[6] = repr(float(cells[6]) * 2)
    text[1] = ",".join(cells)
    (built / SENSITIVITY_FILE).write_text("\n".join(text) + "\n")
    problems = verify_set(built)
    assert problems == [f"{SENSITIVITY_FILE}: sha256 differs from the manifest's: the table was changed after it "
                        f"was computed; run 'eigdist stimuli sensitivities {built}'"]


def test_nan_sensitivity_is_refused(built):
    def nan(rows):
        rows[2][6] = "nan"
    _rewrite(built, nan)
    with pytest.raises(SensitivityError, match=r"row 3: s of item .* is nan; s must be a number >= 0"):
        read_table(built, load_json(built / "manifest.json"))


def test_extra_models_join_the_table(built):
    set_id = load_json(built / "manifest.json")["set_id"]
    add_sensitivities(built, [parse_model_arg("resnet18:conv1=random:1")])
    m = load_json(built / "manifest.json")
    table = read_table(built, m)
    assert m["set_id"] == set_id and verify_set(built) == []
    assert sorted(set(table["weights"])) == ["none", "random:0", "random:1"]


def test_a_model_that_cannot_take_the_images_is_refused_before_any_work(built):
    before = (built / SENSITIVITY_FILE).read_bytes()
    with pytest.raises(SensitivityError, match=r"--models python:tests.lab.linear_model:make=factory cannot take "
                                               r"this set's images \(1 channel\(s\), 16 × 16 px\)"):
        add_sensitivities(built, [parse_model_arg("python:tests.lab.linear_model:make")])
    assert (built / SENSITIVITY_FILE).read_bytes() == before
    with pytest.raises(SensitivityError, match=r"already a candidate of this set"):
        add_sensitivities(built, [parse_model_arg("resnet18:conv1=random:0")])
    with pytest.raises(SensitivityError, match=r"--models 'nocolon': model spec must look like"):
        parse_model_arg("nocolon")


def test_analyze_scores_every_layer_and_extra_models(built, tmp_path, capsys):
    """`eigdist analyze --stimuli SET --models SPEC` writes comparison.csv, matrix.csv and predictions.csv and a
    report section; observers whose thresholds follow the set's layer put it first."""
    import pandas as pd

    from analysis.simulate import simulate_trials
    from eigdist.cli.main import main
    from eigdist_core.contract import TRACK_KEY
    from tests.trial_fixtures import write_lab

    m = load_json(built / "manifest.json")
    s = {i: v for i, mo, v in zip(*(read_table(built, m)[c] for c in ("item_id", "model", "s"))) if mo == "resnet18"}
    rows = [(f"p{p}", it["image_id"], it["model"], it["layer"], it["weights"], it["direction"],
             0.3 * (1 + 0.1 * p) / np.sqrt(s[it["item_id"]])) for p in range(3) for it in m["items"]]
    trials = simulate_trials(pd.DataFrame(rows, columns=[*TRACK_KEY, "threshold"]), n_trials=60, seed=2,
                             set_id=m["set_id"], alpha_max=0.6)
    trials["item_id"] = trials["direction"].map({it["direction"]: it["item_id"] for it in m["items"]})
    write_lab(tmp_path / "data", trials)
    out = tmp_path / "out"
    args = ["analyze", str(tmp_path / "data"), "--out", str(out), "--n-boot", "20", "--stimuli", str(built)]
    assert main([*args, "--models", "resnet18:conv1=random:1"]) == 0
    assert "comparison.csv, matrix.csv, predictions.csv" in capsys.readouterr().out
    table = pd.read_csv(out / "comparison.csv")
    assert list(table["weights"].iloc[:1]) == ["random:0"] and table["cv"].eq("observer").all()
    assert set(table["weights"].dropna()) == {"random:0", "random:1", "none"}
    assert set(pd.read_csv(out / "matrix.csv")["source"]) == {"resnet18:conv1 (random:0)", "random"}
    assert len(pd.read_csv(out / "predictions.csv")) == 3 * 3 * 3
    report = (out / "report.html").read_text(encoding="utf-8")
    assert "Model comparison: every layer judges every stimulus" in report and "comparison_matrix.png" in report
    assert "leave-one-image-out needs two images per participant" in report


def test_without_a_table_the_analysis_says_how_to_add_one(built):
    """The D ranking goes on; the comparison is skipped with the reason, and --models is refused before any fit."""
    from analysis.comparison_report import sensitivities_for
    from eigdist_core.errors import EigdistError

    m = load_json(built / "manifest.json")
    del m["sensitivities"]
    write_manifest(built, m)
    m = load_json(built / "manifest.json")
    table, why = sensitivities_for(str(built), m, ())
    assert table is None and why.startswith("no model comparison: ") and "eigdist stimuli sensitivities" in why
    with pytest.raises(SensitivityError, match="has no sensitivity table"):
        sensitivities_for(str(built), m, ("resnet18:conv1=random:1",))
    with pytest.raises(EigdistError, match="--models needs --stimuli"):
        sensitivities_for(None, None, ("resnet18:conv1=random:1",))
    assert sensitivities_for(None, None, ())[1] == "no model comparison: it needs --stimuli DIR (the set's sensitivity table)"


def test_previews_name_the_items_whose_own_layer_is_not_linear(built):
    """The flag of an item under its own layer reaches the contact sheets; other layers' flags do not."""
    from eigdist_core.previews import nonlinear_items

    item = load_json(built / "manifest.json")["items"][0]

    def flag(rows):
        for row in rows[1:]:
            row[-1] = "true" if row[0] == item["item_id"] else "false"
    _rewrite(built, flag)
    assert nonlinear_items(StimulusSet.open(built)) == {item["item_id"]}
