"""Stimulus sets with contrast items (issue 32): config errors, build + verify, previews, sessions, analysis."""

from __future__ import annotations

import copy
from pathlib import Path

import numpy as np
import pytest

from eigdist_core.build import build_set
from eigdist_core.build_plan import plan
from eigdist_core.config import load_config
from eigdist_core.contract import CONTRAST_DIRECTIONS, CONTRAST_WEIGHTS
from eigdist_core.contrast_items import contrast_problems
from eigdist_core.errors import EigdistError
from eigdist_core.io import load_json
from eigdist_core.stimulus_set import StimulusSet, verify_set

LAYERS = """\
[[models]]
spec = "frontend:ln"
weights = "published"

[[models]]
spec = "frontend:lg"
weights = "published"
"""

#: A one-image set of every kind: two layers' max, min and random items, their generalized pair, their principal pair.
CONFIG = f"""\
name = "contrasts"
images = ["camera"]
size = 16
alpha_max = 2.0
solver = "exact"
response_points = 3

{LAYERS}
[[contrasts]]
kind = "generalized"
models = ["frontend:ln", "frontend:lg"]

[[contrasts]]
kind = "principal"
name = "ln_lg"
models = ["frontend:lg", "frontend:ln"]
"""


def write(folder: Path, contrasts: str, layers: str = LAYERS, color: str = "grey") -> Path:
    path = folder / "cfg.toml"
    path.write_text(f'name = "cfg"\nimages = ["camera"]\nsize = 16\ncolor = "{color}"\n\n{layers}\n{contrasts}')
    return path


@pytest.mark.parametrize("contrasts,message", [
    ('[[contrasts]]\nkind = "generalized"\nmodels = ["frontend:ln", "frontend:lgg"]',
     r"contrasts\[0\]\.models\[1\]: 'frontend:lgg' is not a layer of the set; its \[\[models\]\] are: frontend:ln, frontend:lg$"),
    ('[[contrasts]]\nkind = "generalized"\nmodels = ["frontend:ln", "frontend:ln"]',
     r"contrasts\[0\]\.models: names frontend:ln \(published\) twice: a layer cannot be contrasted with itself$"),
    ('[[contrasts]]\nkind = "principal"\nmodels = ["frontend:ln"]',
     r"contrasts\[0\]\.models: principal distortions need at least two layers; got 1$"),
    ('[[contrasts]]\nkind = "generalized"\nmodels = ["frontend:ln"]',
     r"contrasts\[0\]\.models: a generalized contrast names exactly two layers \(A, then B\); got 1$"),
    ('[[contrasts]]\nkind = "eigen"\nmodels = ["frontend:ln", "frontend:lg"]',
     r"contrasts\[0\]\.kind: must be one of generalized, principal; got 'eigen'$"),
    ('[[contrasts]]\nkind = "principal"\nk = 2\nmodels = ["frontend:ln", "frontend:lg"]',
     r"contrasts\[0\]\.k: only for kind = \"generalized\""),
    ('[[contrasts]]\nkind = "generalized"\nmodels = ["frontend:ln", "frontend:lg"]\nsolver = "lobpcg"',
     r"contrasts\[0\]\.solver must be one of 'auto', 'exact', 'iterative', got 'lobpcg'"),
    ('[[contrasts]]\nkind = "generalized"\nmodels = ["frontend:ln", "frontend:lg"]\n'
     '[[contrasts]]\nkind = "generalized"\nmodels = ["frontend:ln", "frontend:lg"]',
     r"contrasts\[1\]\.name: 'frontend-ln_vs_frontend-lg' names an earlier contrast too"),
    ('[[contrasts]]\nkind = "generalized"\nlayers = ["frontend:ln", "frontend:lg"]',
     r"unknown key 'contrasts\[0\]\.layers'"),
])
def test_bad_contrasts_are_named_before_any_work(tmp_path, contrasts, message):
    with pytest.raises(EigdistError, match=message) as info:
        load_config(write(tmp_path, contrasts))
    assert "\n" not in str(info.value)


def test_a_layer_named_with_two_weights_needs_them(tmp_path):
    layers = LAYERS + '\n[[models]]\nspec = "frontend:ln"\nweights = "random:0"\n'
    contrasts = '[[contrasts]]\nkind = "generalized"\nmodels = ["frontend:ln", "frontend:lg"]'
    with pytest.raises(EigdistError, match=r"contrasts\[0\]\.models\[0\]: 'frontend:ln' is in the set with weights "
                                           r"published and random:0; name one, e.g. frontend:ln@published$"):
        load_config(write(tmp_path, contrasts, layers))
    fixed = contrasts.replace('"frontend:ln",', '"frontend:ln@random:0",')
    config, _ = load_config(write(tmp_path, fixed, layers))
    assert [m.weights for m in config.contrasts[0].models] == ["random:0", "published"]


def test_layers_with_different_inputs_are_refused_before_any_write(tmp_path):
    """An rgb set: resnet18 takes it, the grey-only front end does not; the contrast of the two is named."""
    layers = '[[models]]\nspec = "resnet18:conv1"\nweights = "random:0"\n\n[[models]]\nspec = "frontend:ln"\nweights = "published"\n'
    contrasts = '[[contrasts]]\nkind = "generalized"\nmodels = ["resnet18:conv1", "frontend:ln"]'
    with pytest.raises(EigdistError, match=r"^contrasts\[0\] \(resnet18-conv1_vs_frontend-ln\): the layers of a contrast "
                                           r"must take the same input \(the set's 3-channel 16 × 16 images\); models\[1\] "
                                           r"\(frontend:ln, weights published\)") as info:
        build_set(write(tmp_path, contrasts, layers, color="rgb"), tmp_path / "out", progress=False)
    assert "\n" not in str(info.value) and not (tmp_path / "out").exists()


def test_a_config_without_contrasts_keeps_its_build_id(tmp_path):
    config, _ = load_config(write(tmp_path, ""))
    assert "contrasts" not in config.as_dict()  # so sets built before contrasts existed resume and verify as before


@pytest.fixture(scope="module")
def contrast_set(tmp_path_factory) -> Path:
    base = tmp_path_factory.mktemp("contrasts")
    (base / "contrasts.toml").write_text(CONFIG)
    return build_set(base / "contrasts.toml", base / "set", progress=False)


def test_a_set_of_every_kind_builds_and_verifies(contrast_set):
    assert verify_set(contrast_set) == []
    sset = StimulusSet.open(contrast_set)
    config, _ = load_config(contrast_set / "config.toml")
    assert [i for g in plan(config) for i in g.item_ids] == [it["item_id"] for it in sset.items]
    contrast = [it for it in sset.items if "contrast" in it]
    assert [it["item_id"] for it in contrast] == [
        "camera__generalized__frontend-ln_vs_frontend-lg__contrast__gen_top0",
        "camera__generalized__frontend-ln_vs_frontend-lg__contrast__gen_bottom0",
        "camera__principal__ln_lg__contrast__principal_a0",
        "camera__principal__ln_lg__contrast__principal_b0",
    ]
    top, bottom, a, b = contrast
    assert top["contrast"]["models"] == [{"spec": "frontend:ln", "weights": "published"},
                                         {"spec": "frontend:lg", "weights": "published"}]
    assert a["contrast"]["models"][0]["spec"] == "frontend:lg"  # A is the first layer named
    for it in contrast:
        assert it["weights"] == CONTRAST_WEIGHTS and it["direction"] in CONTRAST_DIRECTIONS[it["model"]]
        assert it["converged"] and it["contrast"]["regularization"]["epsilon"] == 1e-6
        assert len(it["contrast"]["regularization"]["lambda_max"]) == 2
        assert it["contrast"]["regularization"]["lambda_max_converged"] is True  # exact: formed densely
    assert top["eigenvalue"] > bottom["eigenvalue"] > 0 and a["eigenvalue"] is None
    assert a["contrast"]["objective"] > 0 and a["contrast"]["method"] == "exact"
    # For two layers the principal pair is the generalized pair: a (what lg sees best relative to ln) is ln-vs-lg's bottom.
    cos = [abs(float(np.vdot(sset.item(x["item_id"]), sset.item(y["item_id"])))) for x, y in ((a, bottom), (b, top))]
    assert min(cos) >= 0.999, cos
    # α ceilings as for every item; the first layer's response curve, rayleigh = vᵀF_A v ≈ its slope².
    image = sset.image("camera")
    from eigdist_core.stimulus_set import alpha_displayable

    for it in contrast:
        assert it["alpha_displayable_max"] == alpha_displayable(image, sset.item(it["item_id"]))
        curve = it["response_curve"]
        assert curve["distance"][1] / curve["alpha"][1] == pytest.approx(it["rayleigh"] ** 0.5, rel=1e-2)


def test_every_layer_judges_every_contrast_item(contrast_set):
    from eigdist_core.sensitivities import read_table

    sset = StimulusSet.open(contrast_set)
    table = read_table(contrast_set, sset.manifest)
    judged = {(i, m) for i, m in zip(table["item_id"], table["layer"])}
    contrast = [it["item_id"] for it in sset.items if "contrast" in it]
    assert {(i, layer) for i in contrast for layer in ("ln", "lg", "pixels")} <= judged
    s = {(i, m): float(v) for i, m, v in zip(table["item_id"], table["layer"], table["s"])}
    top = next(it for it in sset.items if it["item_id"] == contrast[0])  # ln sees it best relative to lg
    reg = top["contrast"]["regularization"]  # the ratio is of F + ε·λ_max(F)·I, as recorded
    lam_ln, lam_lg = (reg["epsilon"] * value for value in reg["lambda_max"])
    ratio = (s[(top["item_id"], "ln")] + lam_ln) / (s[(top["item_id"], "lg")] + lam_lg)
    assert ratio == pytest.approx(top["eigenvalue"], rel=1e-2)
    assert s[(top["item_id"], "ln")] / s[(top["item_id"], "lg")] > top["eigenvalue"]  # lg barely sees it


def test_verify_names_a_contrast_item_whose_layers_are_not_the_configs(contrast_set):
    manifest = load_json(contrast_set / "manifest.json")
    assert contrast_problems(manifest) == []
    edited = copy.deepcopy(manifest)
    item = next(it for it in edited["items"] if it["direction"] == "gen_top")
    item["contrast"]["models"][1] = {"spec": "frontend:lgg", "weights": "published"}
    assert contrast_problems(edited) == [
        f"manifest.json: item {item['item_id']!r} contrasts frontend:lgg (published), not among the set's [[models]]",
        f"manifest.json: item {item['item_id']!r}: its contrast 'frontend-ln_vs_frontend-lg' is not the config's "
        "[[contrasts]] entry of that name (kind and layers in order)",
    ]
    edited = copy.deepcopy(manifest)
    item = next(it for it in edited["items"] if it["direction"] == "principal_b")
    del item["contrast"]
    assert contrast_problems(edited) == [
        f"manifest.json: item {item['item_id']!r}: direction 'principal_b' needs a contrast entry (the layers it tells apart)"]


def test_show_draws_contrast_rows(contrast_set, tmp_path):
    import shutil

    from eigdist_core.previews import contact_sheet, write_previews

    folder = tmp_path / "set"
    shutil.copytree(contrast_set, folder)
    paths = write_previews(folder)
    assert sorted(p.name for p in paths) == ["camera.png", "eigenvalues.png", "response_curves.png"]
    fig = contact_sheet(StimulusSet.open(folder), "camera", 1.0)
    titles = [ax.get_title() for ax in fig.axes]
    assert {"gen_top (ratio=", "principal_a (V="} <= {t.split("ratio=")[0] + "ratio=" if "ratio=" in t else
                                                     t.split("V=")[0] + "V=" for t in titles}


@pytest.mark.slow
def test_simulated_session_on_contrast_items_reaches_the_analysis(contrast_set, tmp_path):
    import pandas as pd

    from analysis.exclusions import ExclusionRules
    from analysis.pipeline import AnalysisSettings, analyze
    from experiments.datafile import read_trials, session_paths
    from experiments.engine import open_engine, open_stimuli, run_headless
    from experiments.observers import make_responder
    from tests.trial_fixtures import small_config

    stimuli = open_stimuli(contrast_set)
    config = small_config(per_condition=16, practice=2, images_per_session=1)
    data = tmp_path / "data"
    for i in (1,):
        spec = f"model=frontend:ln;weights=published;noise=0.0003;seed={i}"
        engine = open_engine(stimuli, config, data, f"P0{i}", 1, observer=spec, calibrated=False,
                             constants={"monitor": "none", "refresh_hz": 60.0})
        with engine.writer:
            run_headless(engine, make_responder(spec))
    rows = read_trials(session_paths(data, "P01", 1).trials)
    shown = {r["direction"] for r in rows if not r["is_catch"] and not r["is_practice"]}
    assert shown == {"max", "min", "random", "gen_top", "gen_bottom", "principal_a", "principal_b"}
    assert all(r["direction"] == "max" for r in rows if r["catch_type"] == "easy")
    out = tmp_path / "analysis"
    rules = ExclusionRules(observers="simulated", min_catch_accuracy=0.0, include_pilot=True)
    analyze([data], out, AnalysisSettings(n_boot=20, stimuli=str(contrast_set), exclusions=rules))
    thresholds = pd.read_csv(out / "thresholds.csv")
    assert {"gen_top", "gen_bottom", "principal_a", "principal_b"} <= set(thresholds["direction"])
    ranking = pd.read_csv(out / "ranking.csv")
    assert sorted(ranking["layer"]) == ["lg", "ln"]  # D ranks layers by their own max and min only
    predictions = pd.read_csv(out / "predictions.csv")
    assert {"gen_top", "principal_a"} <= set(predictions["direction"])  # the model comparison uses every item
    assert "generalized:frontend-ln_vs_frontend-lg (contrast)" in set(pd.read_csv(out / "matrix.csv")["source"])


@pytest.mark.slow
def test_sigkill_during_a_contrast_build_resumes_to_the_same_bytes(tmp_path):
    """SIGKILL at random moments of a build whose work is contrast groups; the rerun gives the uninterrupted bytes."""
    import os
    import random
    import signal
    import time

    from tests.build_fixtures import fingerprint
    from tests.test_faults_build import assert_whole, finish, start, temporaries

    config = tmp_path / "kill.toml"
    config.write_text(CONFIG.replace('solver = "exact"', 'directions = ["random"]'))
    began = time.monotonic()
    assert finish(start(config, tmp_path / "ref", tmp_path / "ref.log")) == 0, (tmp_path / "ref.log").read_text()
    duration, expected = time.monotonic() - began, fingerprint(tmp_path / "ref")
    rng, out, stops = random.Random(32), tmp_path / "set", 0
    for run in range(4):
        pid = start(config, out, tmp_path / f"run{run}.log")
        time.sleep(rng.uniform(0.3, 1.0) * duration)
        os.kill(pid, signal.SIGKILL)
        if finish(pid) != -signal.SIGKILL:
            break  # it finished first: resumed to its end
        stops += 1
        assert_whole(out)
    assert stops >= 1
    assert finish(start(config, out, tmp_path / "last.log")) == 0, (tmp_path / "last.log").read_text()
    assert verify_set(out) == [] and fingerprint(out) == expected and temporaries(out) == []
    assert any("contrast" in it for it in load_json(out / "manifest.json")["items"])


def test_the_compare_demo_asks_for_both_kinds():
    from eigdist.cli.demo import demo_plan
    from eigdist.configs import built_in_config

    plan = demo_plan(False, None, compare=True)
    assert plan.set_config == "demo_compare" and plan.observers == 2
    with built_in_config(plan.set_config) as path:
        config, _ = load_config(path)
    assert [c.kind for c in config.contrasts] == ["generalized", "principal"]
    assert len(config.contrasts[1].models) == 3  # principal distortions of more layers than a generalized pair
    with pytest.raises(EigdistError, match="^--compare and --color are two demos: choose one$"):
        demo_plan(False, None, color=True, compare=True)


def test_a_contrast_group_counts_the_memory_of_all_its_layers(tmp_path, monkeypatch):
    """Three layers of 16 × 16 outputs: one layer's group needs 16·8·(256 + 256) bytes, the principal group thrice that.
    A machine between the two refuses the set, naming the contrast."""
    from eigdist_core import build_inputs

    layers = LAYERS + '\n[[models]]\nspec = "frontend:lgg"\nweights = "published"\n'
    contrasts = '[[contrasts]]\nkind = "principal"\nname = "three"\nmodels = ["frontend:ln", "frontend:lg", "frontend:lgg"]'
    config, _ = load_config(write(tmp_path, contrasts, layers))
    one = build_inputs.MEMORY_FACTOR * 8 * (256 + 256)
    pages = {"SC_PAGE_SIZE": 1, "SC_PHYS_PAGES": 2 * one}
    monkeypatch.setattr(build_inputs.os, "sysconf", lambda name: pages[name])
    config_without = load_config(write(tmp_path, "", layers))[0]
    build_inputs._check_memory(config_without, 16, [256] * 3, jobs=2)  # two one-layer groups fit
    with pytest.raises(build_inputs.BuildError, match=r"^size = 16: 1 group\(s\) at a time would need about .* GiB "
                       r"\(256 input values, contrasts\[0\] \(three\) holds its 3 layers' 768 outputs at once\), "
                       r"more than this machine's"):
        build_inputs._check_memory(config, 16, [256] * 3, jobs=1)
