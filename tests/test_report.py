"""`eigdist analyze` end to end on a small simulated lab: files, report links, errors."""

from __future__ import annotations

import os
import re
from pathlib import Path

import pandas as pd
import pytest

from analysis.ranking import RANKING_COLUMNS
from analysis.simulate import make_truth, simulate_trials
from eigdist.cli.main import main
from tests.trial_fixtures import write_lab

LAYERS = {("vgg16", "conv1", "imagenet"): 0.8, ("frontend", "lgg", "published"): 0.3}


@pytest.fixture(scope="module")
def lab(tmp_path_factory):
    data = tmp_path_factory.mktemp("data")
    truth = make_truth(LAYERS, n_participants=3, n_images=2, seed=0,
                       predicted_d={k: 1.0 for k in LAYERS})
    truth.loc[(truth["participant"] == "p01") & (truth["direction"] == "min"), "threshold"] = 80.0
    write_lab(data, simulate_trials(truth, n_trials=40, seed=1))
    return data


def test_analyze_writes_tables_and_a_report_whose_links_exist(lab, tmp_path, capsys):
    out = tmp_path / "out"
    assert main(["analyze", str(lab), "--out", str(out), "--n-boot", "100", "--alpha-max", "30"]) == 0
    assert "report.html" in capsys.readouterr().out
    ranking = pd.read_csv(out / "ranking.csv")
    assert list(ranking.columns) == RANKING_COLUMNS
    assert len(ranking) == 2 and ranking["estimable"].all()         # the two layers, no model × layer mix
    assert ranking["n_censored"].sum() == 4                       # p01's min thresholds: 2 images × 2 layers
    thresholds = pd.read_csv(out / "thresholds.csv")
    assert thresholds["censored"].sum() == 4
    assert thresholds.loc[thresholds["censored"], "threshold"].eq(30.0).all()
    for name in ("fits.csv", "pairwise.csv", "control.csv", "d.csv", "exclusions.csv"):
        assert (out / name).is_file()
    assert (thresholds["ci_low"] < thresholds["ci_high"]).all() and (thresholds["fitter"] == "eigdist").all()
    assert {"flags", "few_trials", "slope_at_bound", "poor_fit", "gof_p"} <= set(thresholds.columns)
    flags = pd.read_csv(out / "flags.csv")
    assert flags["thresholds"].iloc[-1] == len(thresholds) and flags["censored"].iloc[-1] == 4
    page = (out / "report.html").read_text(encoding="utf-8")
    assert "<b>Fitter:</b> eigdist" in page and "Threshold flags" in page
    links = re.findall(r"(?:src|href)='([^']+)'", page)
    assert {"forest.png", "fits.png", "d_per_image.png", "ratio.png", "ranking.csv"} <= set(links)
    for link in links:
        assert (out / link).is_file() and (out / link).stat().st_size > 0, link


def test_analyze_without_min_trials_names_the_problem(lab, tmp_path, capsys):
    """Issue 16: no 'min' direction used to exit 0 with every layer ranked and p_best = 1 for one."""
    truth = make_truth(LAYERS, n_participants=2, n_images=1, seed=0)
    data = tmp_path / "nomin"
    write_lab(data, simulate_trials(truth[truth["direction"] != "min"], n_trials=20, seed=1))
    assert main(["analyze", str(data), "--out", str(tmp_path / "o"), "--n-boot", "20", "--alpha-max", "30"]) == 2
    assert "no D can be estimated for any layer" in capsys.readouterr().err


def test_analyze_with_psignifit_feeds_the_same_ranking(tmp_path):
    """A small lab (2 participants × 1 image × 2 layers, 40 trials; p01's min directions invisible)."""
    truth = make_truth(LAYERS, n_participants=2, n_images=1, seed=0)
    truth.loc[(truth["participant"] == "p01") & (truth["direction"] == "min"), "threshold"] = 80.0
    lab = tmp_path / "data"
    write_lab(lab, simulate_trials(truth, n_trials=40, seed=1))
    out = {}
    for fitter in ("eigdist", "psignifit"):
        out[fitter] = tmp_path / fitter
        assert main(["analyze", str(lab), "--out", str(out[fitter]), "--n-boot", "50", "--alpha-max", "30",
                     "--fitter", fitter, "--slope", "free", "--no-slope-prior"]) == 0
    ours, theirs = (pd.read_csv(out[f] / "thresholds.csv") for f in ("eigdist", "psignifit"))
    assert (theirs["fitter"] == "psignifit").all()
    assert "<b>Fitter:</b> psignifit" in (out["psignifit"] / "report.html").read_text(encoding="utf-8")
    exact = ~ours["censored"] & ~ours["below_range"]
    ratio = theirs.loc[exact, "threshold"] / ours.loc[exact, "threshold"]
    assert (ratio - 1).abs().median() < 0.02
    assert list(pd.read_csv(out["psignifit"] / "ranking.csv")["layer"]) == list(
        pd.read_csv(out["eigdist"] / "ranking.csv")["layer"])


def _manifest(folder, alpha_max: float) -> str:
    """A sealed stimulus-set manifest of the lab's layers in ``folder``; returns its set_id."""
    from eigdist_core.stimulus_set import SCHEMA_VERSION, write_manifest

    images = [{"image_id": f"img{i}", "source": "test", "file": f"images/img{i}.npy", "sha256": ""} for i in (1, 2)]
    items = []
    for (model, layer, weights) in LAYERS:
        for image in images:
            for direction, eigenvalue in (("max", 4.0), ("min", 0.04), ("random", None)):
                alpha = [0.1, 1.0, 10.0]
                gain = {"max": 2.0, "min": 0.2, "random": 1.0}[direction]
                items.append({
                    "item_id": f"{image['image_id']}__{model}__{layer}__{direction}", "image_id": image["image_id"],
                    "model": model, "layer": layer, "weights": weights, "direction": direction,
                    "eigenvalue": eigenvalue, "alpha_displayable_max": 100.0,
                    "response_curve": {"alpha": alpha, "distance": [gain * a for a in alpha]},
                })
    manifest = {"schema_version": SCHEMA_VERSION, "alpha_max": alpha_max, "images": images, "items": items}
    write_manifest(folder, manifest)
    return manifest["set_id"]


def test_analyze_with_stimulus_set(tmp_path):
    set_id = _manifest(tmp_path, alpha_max=30.0)
    truth = make_truth(LAYERS, n_participants=3, n_images=2, seed=0, predicted_d={k: 1.0 for k in LAYERS})
    lab = tmp_path / "data"
    write_lab(lab, simulate_trials(truth, n_trials=40, seed=1, set_id=set_id))
    out = tmp_path / "out"
    assert main(["analyze", str(lab), "--out", str(out), "--n-boot", "50", "--stimuli", str(tmp_path)]) == 0
    assert (out / "response_curves.png").stat().st_size > 0 and (out / "ratio.png").stat().st_size > 0
    assert (pd.read_csv(out / "thresholds.csv")["alpha_ceiling"] == 30.0).all()
    assert "response_curves.png" in (out / "report.html").read_text(encoding="utf-8")


def test_analyze_refuses_trials_of_another_set(lab, tmp_path, capsys):
    """Issue 16 item 7: rows of another set than --stimuli, or of two sets, are refused, naming the files."""
    set_id = _manifest(tmp_path, alpha_max=30.0)
    out = tmp_path / "out"
    assert main(["analyze", str(lab), "--out", str(out), "--stimuli", str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert re.search(r"sub-p01_ses-1_task-noticeability_beh.tsv, .*: recorded with stimulus set 0{16}, not the set "
                     rf"given with --stimuli {re.escape(str(tmp_path))} \(set_id {set_id}\)", err), err
    other = tmp_path / "other"
    truth = make_truth(LAYERS, n_participants=1, n_images=2, seed=0)
    (path,) = write_lab(other, simulate_trials(truth, n_trials=5, seed=1, set_id="ffffffffffffffff")
                        .assign(participant="p09"))
    assert main(["analyze", str(lab), str(other), "--out", str(out)]) == 2
    err = capsys.readouterr().err
    assert "sessions of different stimulus sets cannot be pooled: 0000000000000000 in " in err
    assert f"; ffffffffffffffff in {path}; analyse each set on its own" in err
    assert not out.exists()


def test_analyze_out_checked_before_fitting(lab, tmp_path, capsys, monkeypatch):
    """Issue 16 item 12: --out that is a file or read-only fails before any fitting."""
    import analysis.pipeline

    monkeypatch.setattr(analysis.pipeline, "fit_thresholds", lambda *a, **k: pytest.fail("fitting started"))
    (tmp_path / "file").write_text("x")
    assert main(["analyze", str(lab), "--out", str(tmp_path / "file")]) == 2
    assert f"--out '{tmp_path / 'file'}' is a file; give a folder" in capsys.readouterr().err
    assert main(["analyze", str(lab), "--out", str(tmp_path / "file" / "sub")]) == 2
    assert f"lies under the file {tmp_path / 'file'}" in capsys.readouterr().err
    readonly = tmp_path / "ro"
    readonly.mkdir()
    real_access = os.access
    monkeypatch.setattr(os, "access", lambda p, m: False if Path(p) == readonly else real_access(p, m))
    assert main(["analyze", str(lab), "--out", str(readonly / "out")]) == 2
    assert (f"--out '{readonly / 'out'}' is read-only for this user (it would be created in {readonly})"
            in capsys.readouterr().err)


def test_analyze_reports_bad_input(lab, tmp_path, capsys):
    assert main(["analyze", str(tmp_path / "none"), "--out", str(tmp_path / "o")]) == 2
    assert "eigdist analyze: error: no such file or folder" in capsys.readouterr().err
    assert main(["analyze", str(lab), "--out", str(tmp_path / "o"), "--observers", "human"]) == 2
    assert "no trials left after exclusions (1440 read); see the reasons: simulated observer" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        main(["analyze", str(lab), "--out", str(tmp_path / "o"), "--alpha-max", "-1"])
    assert "argument --alpha-max: must be a number > 0, got -1.0" in capsys.readouterr().err
    assert main(["analyze", str(lab), "--out", str(tmp_path / "o"), "--stimuli", str(tmp_path)]) == 2
    assert "no stimulus-set manifest at" in capsys.readouterr().err


def test_analyze_reads_what_the_experiment_writes(tmp_path):
    """Sessions written by the headless experiment engine load, fit and rank as they are."""
    from tests.trial_fixtures import make_manifest, run_session

    from eigdist_core.io import save_json

    data = tmp_path / "data"
    for participant in ("P01", "P02"):
        run_session(data, participant)
    save_json(tmp_path / "set" / "manifest.json", make_manifest())
    out = tmp_path / "out"
    args = ["analyze", str(data), "--out", str(out), "--n-boot", "50", "--stimuli", str(tmp_path / "set")]
    assert main(args) == 2                                  # the fixture's sessions are uncalibrated
    assert main([*args, "--include-pilot"]) == 0
    reasons = pd.read_csv(out / "exclusions.csv").groupby("participant")["reason"].agg(set)
    # one Weibull threshold for every direction: every scored easy catch is far above it, none excludes
    assert not [r for rs in reasons for r in rs if r.startswith("easy-catch")]
    assert main([*args, "--include-pilot", "--min-catch-accuracy", "0.8"]) == 0
    thresholds = pd.read_csv(out / "thresholds.csv")
    assert set(thresholds["participant"]) == {"P01", "P02"}
    assert (thresholds["alpha_ceiling"] == 0.8).all()       # min(set alpha_max, displayable maximum)
    assert len(pd.read_csv(out / "ranking.csv")) == 2
    assert "practice trial" in set(pd.read_csv(out / "exclusions.csv")["reason"])


def test_power_command(tmp_path, capsys):
    out = tmp_path / "power"
    args = ["power", "--delta-d", "0.3", "--observers", "2,3", "--trials", "20", "--images", "1", "--labs", "4",
            "--n-boot", "50", "--out", str(out)]
    assert main(args) == 0
    printed = capsys.readouterr().out
    assert "observers" in printed and "median_ci_width" in printed
    table = pd.read_csv(out / "power.csv")
    assert table["observers"].tolist() == [2, 3] and table["power"].between(0, 1).all()
    assert (out / "power.png").stat().st_size > 0
    with pytest.raises(SystemExit):
        main(["power", "--delta-d", "0"])
    assert "argument --delta-d: must be a number > 0, got 0.0" in capsys.readouterr().err


def test_analyze_refuses_a_hand_edited_set(tmp_path, capsys):
    """Issue 16 item 6: an edited manifest (alpha_max 1 → 0.4) flipped a ranking; analyze now refuses it."""
    from eigdist_core.io import load_json, save_json
    from tests.trial_fixtures import make_manifest, run_session

    from eigdist_core.stimulus_set import write_manifest

    folder = tmp_path / "set"
    folder.mkdir()
    write_manifest(folder, make_manifest())
    data = tmp_path / "data"
    run_session(data)
    manifest = load_json(folder / "manifest.json")
    manifest["alpha_max"] = 0.4
    save_json(folder / "manifest.json", manifest)
    assert main(["analyze", str(data), "--out", str(tmp_path / "o"), "--stimuli", str(folder)]) == 2
    err = capsys.readouterr().err
    assert f"stimulus set {folder} was changed after it was built" in err and "alpha_max was edited" in err


def test_report_tables_scroll_and_leave_missing_values_blank():
    from analysis.report import _html_table

    table = pd.DataFrame({"model": ["frontend", "(mixture)"], "rank": pd.array([1, None], dtype="Int64"),
                          "p_best": [1.0, float("nan")]})
    page = _html_table(table)
    assert page.startswith("<div class='wide'>") and page.endswith("</div>")
    assert "<NA>" not in page and "NaN" not in page and "<td>1</td>" in page
