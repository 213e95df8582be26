"""`eigdist analyze` end to end on a small simulated lab: files, report links, errors."""

from __future__ import annotations

import re

import pandas as pd
import pytest

from analysis.load import iter_sessions, session_path, write_trials_csv
from analysis.ranking import RANKING_COLUMNS
from analysis.simulate import make_truth, simulate_trials
from cli.main import main

LAYERS = {("vgg16", "conv1", "imagenet"): 0.8, ("frontend", "lgg", "published"): 0.3}


@pytest.fixture(scope="module")
def lab(tmp_path_factory):
    data = tmp_path_factory.mktemp("data")
    truth = make_truth(LAYERS, n_participants=3, n_images=2, seed=0,
                       predicted_d={k: 1.0 for k in LAYERS})
    truth.loc[(truth["participant"] == "p01") & (truth["direction"] == "min"), "threshold"] = 80.0
    for participant, session, rows in iter_sessions(simulate_trials(truth, n_trials=40, seed=1)):
        write_trials_csv(rows, session_path(data, participant, session))
    return data


def test_analyze_writes_tables_and_a_report_whose_links_exist(lab, tmp_path, capsys):
    out = tmp_path / "out"
    assert main(["analyze", str(lab), "--out", str(out), "--n-boot", "100", "--alpha-max", "30"]) == 0
    assert "report.html" in capsys.readouterr().out
    ranking = pd.read_csv(out / "ranking.csv")
    assert list(ranking.columns) == RANKING_COLUMNS
    assert ranking["n_censored"].sum() == 4                       # p01's min thresholds: 2 images × 2 layers
    thresholds = pd.read_csv(out / "thresholds.csv")
    assert thresholds["censored"].sum() == 4
    assert thresholds.loc[thresholds["censored"], "threshold"].eq(30.0).all()
    for name in ("fits.csv", "pairwise.csv", "control.csv", "d.csv", "exclusions.csv"):
        assert (out / name).is_file()
    page = (out / "report.html").read_text(encoding="utf-8")
    links = re.findall(r"(?:src|href)='([^']+)'", page)
    assert {"forest.png", "fits.png", "d_per_image.png", "ratio.png", "ranking.csv"} <= set(links)
    for link in links:
        assert (out / link).is_file() and (out / link).stat().st_size > 0, link


def test_analyze_reports_bad_input(lab, tmp_path, capsys):
    assert main(["analyze", str(tmp_path / "none"), "--out", str(tmp_path / "o")]) == 2
    assert "eigdist analyze: error: no such file or folder" in capsys.readouterr().err
    assert main(["analyze", str(lab), "--out", str(tmp_path / "o"), "--observers", "human"]) == 2
    assert "no trials left after exclusions (1440 read); see the reasons: simulated observer" in capsys.readouterr().err
    assert main(["analyze", str(lab), "--out", str(tmp_path / "o"), "--alpha-max", "-1"]) == 2
    assert "alpha_max must be a positive number, got -1.0" in capsys.readouterr().err
