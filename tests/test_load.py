"""Loading trial files: the contract's columns checked, every error names file, row and column."""

from __future__ import annotations

import re

import pandas as pd
import pytest

from analysis.exclusions import ExclusionRules, apply_exclusions
from eigdist_core.contract import REQUIRED_COLUMNS
from analysis.load import TrialDataError, load_trials, session_path, write_trials_csv
from analysis.simulate import make_truth, simulate_trials


def _session(participant: str = "p01", n_participants: int = 1) -> pd.DataFrame:
    truth = make_truth({("m", "l1", "random:0"): 0.5}, n_participants=n_participants, n_images=1, seed=0)
    trials = simulate_trials(truth, n_trials=4, seed=0)
    trials["participant"] = participant
    return trials


def _write(tmp_path, trials: pd.DataFrame, participant: str = "p01", session: int = 1):
    path = session_path(tmp_path, participant, session)
    write_trials_csv(trials, path)
    return path


def test_round_trip_types_and_extra_columns(tmp_path):
    trials = _session()
    trials["rt"] = 0.5
    path = _write(tmp_path, trials)
    loaded = load_trials([tmp_path])
    assert len(loaded) == len(trials) == 12
    assert loaded["correct"].dtype == bool and loaded["trial"].dtype.kind == "i"
    assert loaded["alpha"].tolist() == pytest.approx(trials["alpha"].tolist())
    assert "rt" in loaded and "eigenvalue" in loaded          # extra columns kept
    assert set(loaded["source_file"]) == {str(path)}
    assert loaded["source_line"].tolist() == list(range(2, 14))


def _corrupt(tmp_path, row: int, column: str, value: str):
    trials = _session().astype({column: object})
    trials.loc[row, column] = value
    return _write(tmp_path, trials)


@pytest.mark.parametrize(
    "column, value, allowed",
    [
        ("participant", "p 1", "letters, digits"),
        ("session", "0", "an integer >= 1"),
        ("session", "1.5", "an integer >= 1"),
        ("alpha", "-0.1", "a finite number >= 0"),
        ("alpha", "nan", "a finite number >= 0"),
        ("correct", "yes", "true or false"),
        ("direction", "mid", "allowed: max, min, random"),
        ("n_alternatives", "4", "allowed: 2 or 3"),
        ("n_alternatives", "3", "must match the task"),
        ("task", "yesno", "allowed: 2afc_ref, 3afc_oddity"),
        ("catch_type", "easy", "exactly when is_catch is true"),
        ("is_practice", "", "true or false"),
        ("model", "", "must not be empty"),
        ("item_id", "", "must name a manifest item"),
    ],
)
def test_bad_value_names_file_row_and_column(tmp_path, column, value, allowed):
    path = _corrupt(tmp_path, 4, column, value)
    with pytest.raises(TrialDataError, match=re.escape(f"{path}, row 6, column {column!r}: bad value {value!r}")
                       + ".*" + re.escape(allowed)):
        load_trials([path])


def test_missing_column_names_file_row_and_column(tmp_path):
    path = _write(tmp_path, _session().drop(columns=["calibrated"]))
    with pytest.raises(TrialDataError, match=re.escape(f"{path}, row 1, column 'calibrated': required column missing")):
        load_trials([path])


def test_duplicate_trial_across_files_names_both(tmp_path):
    first = _write(tmp_path, _session(), session=1)
    second = tmp_path / "copy" / "sub-p01_ses-1_trials.csv"
    write_trials_csv(_session(), second)
    # Files are read in sorted path order: copy/… comes first, so the session file is the duplicate.
    with pytest.raises(TrialDataError, match=re.escape(f"{first}, row 2, column 'trial': duplicated "
                                                       "(participant, session, trial) = (p01, 1, 1); first seen in "
                                                       f"{second}, row 2")):
        load_trials([tmp_path])


def test_gap_in_trial_numbers(tmp_path):
    trials = _session()
    trials = trials[trials["trial"] != 3]
    path = _write(tmp_path, trials)
    with pytest.raises(TrialDataError, match=re.escape(f"{path}, row 4, column 'trial': bad value '4'; ")
                       + ".*no gaps \\(expected 3\\)"):
        load_trials([path])


def test_blank_catch_alpha_must_be_zero(tmp_path):
    trials = _session()
    trials.loc[0, ["is_catch", "catch_type", "alpha"]] = [True, "blank", 0.2]
    path = _write(tmp_path, trials)
    with pytest.raises(TrialDataError, match=re.escape(f"{path}, row 2, column 'alpha'") + ".*blank catch"):
        load_trials([path])


def test_missing_paths(tmp_path):
    with pytest.raises(FileNotFoundError, match="no such file or folder"):
        load_trials([tmp_path / "nope"])
    with pytest.raises(FileNotFoundError, match="no \\*_trials.csv files under"):
        load_trials([tmp_path])


def test_required_columns_match_contract():
    contract = (
        "participant session trial image_id model layer weights direction item_id alpha correct "
        "n_alternatives task is_catch catch_type is_practice observer calibrated"
    ).split()
    assert list(REQUIRED_COLUMNS) == contract


def test_exclusions_each_with_reason():
    human = _session("h1")
    human["observer"] = "human"
    human.loc[0:1, "is_practice"] = True
    pilot = _session("h2")
    pilot["observer"] = "human"
    pilot["calibrated"] = False
    careless = _session("h3")
    careless["observer"] = "human"
    careless.loc[0:4, ["is_catch", "catch_type"]] = [True, "easy"]
    careless.loc[0:4, "correct"] = [True, True, False, False, True]
    sim = _session("s1")
    trials = pd.concat([human, pilot, careless, sim], ignore_index=True)
    kept, excluded = apply_exclusions(trials)
    assert set(kept["participant"]) == {"h1"} and len(kept) == 10
    reasons = dict(zip(excluded["participant"], excluded["reason"]))
    assert excluded["n_trials"].sum() == len(trials) - len(kept)
    assert reasons["h2"].startswith("uncalibrated session")
    assert reasons["h3"] == "easy-catch accuracy 0.60 < 0.9"
    assert reasons["s1"].startswith("simulated observer")
    assert excluded.loc[excluded["participant"] == "h1", "reason"].item() == "practice trial"
    kept, _ = apply_exclusions(trials, ExclusionRules(include_pilot=True, observers="all", min_catch_accuracy=0.5))
    assert set(kept["participant"]) == {"h1", "h2", "h3", "s1"}
    kept, _ = apply_exclusions(sim)                                   # only simulated: auto analyses them
    assert len(kept) == len(sim)


def test_exclusion_rules_checked():
    with pytest.raises(ValueError, match="observers must be auto, human, simulated or all, got 'robots'"):
        ExclusionRules(observers="robots")
    with pytest.raises(ValueError, match="min_catch_accuracy must lie in \\[0, 1\\], got 1.5"):
        ExclusionRules(min_catch_accuracy=1.5)
