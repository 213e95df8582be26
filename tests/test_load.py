"""Loading trial files: the contract's columns checked, every error names file, row and column."""

from __future__ import annotations

import re

import pandas as pd
import pytest

from analysis.exclusions import ExclusionRules, apply_exclusions
from analysis.load import TrialDataError, load_trials
from analysis.simulate import make_truth, simulate_trials
from experiments.datafile import write_trial_file
from tests.trial_fixtures import write_lab


def _session(participant: str = "p01", n_participants: int = 1) -> pd.DataFrame:
    truth = make_truth({("m", "l1", "random:0"): 0.5}, n_participants=n_participants, n_images=1, seed=0)
    trials = simulate_trials(truth, n_trials=4, seed=0)
    trials["participant"] = participant
    return trials


def _write(tmp_path, trials: pd.DataFrame, participant: str = "p01", session: int = 1):
    (path,) = write_lab(tmp_path, trials.assign(participant=participant, session=session))
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
    path = _write(tmp_path, _session())
    lines = path.read_text().splitlines(keepends=True)
    cells = lines[row + 1].split("\t")
    cells[lines[0].rstrip("\n").split("\t").index(column)] = value
    lines[row + 1] = "\t".join(cells)
    path.write_text("".join(lines))
    return path


@pytest.mark.parametrize(
    "column, value, allowed",
    [
        ("participant", "p 1", "allowed: letters and digits"),
        ("participant", "p_1", "allowed: letters and digits"),
        ("session", "0", "an integer >= 1"),
        ("session", "1.5", "an integer >= 1"),
        ("alpha", "-0.1", "a finite number >= 0"),
        ("alpha", "nan", "a finite number >= 0"),
        ("correct", "yes", "true or false"),
        ("direction", "mid", "allowed: max, min, random, gen_top, gen_bottom, principal_a, principal_b"),
        ("n_alternatives", "4", "allowed: 2 or 3"),
        ("n_alternatives", "3", "must match the task"),
        ("task", "yesno", "allowed: 2afc_ref, 3afc_oddity"),
        ("catch_type", "easy", "exactly when is_catch is true"),
        ("is_practice", "n/a", "true or false"),
        ("model", "n/a", "must not be empty"),
        ("item_id", "n/a", "must name a manifest item"),
        ("set_id", "n/a", "must not be empty"),
        ("alpha_ceiling", "0", "a finite number > 0"),
        ("alpha_ceiling", "n/a", "a finite number > 0"),
    ],
)
def test_bad_value_names_file_row_and_column(tmp_path, column, value, allowed):
    path = _corrupt(tmp_path, 4, column, value)
    with pytest.raises(TrialDataError, match=re.escape(f"{path}, row 6, column {column!r}: bad value {value!r}")
                       + ".*" + re.escape(allowed)):
        load_trials([path])


def test_missing_column_names_file_row_and_column(tmp_path):
    path = _write(tmp_path, _session())
    table = pd.read_csv(path, sep="\t", dtype=str, keep_default_na=False).drop(columns=["calibrated"])
    path.write_text(table.to_csv(sep="\t", index=False))
    with pytest.raises(TrialDataError, match=re.escape(f"{path}, row 1, column 'calibrated': required column missing")):
        load_trials([path])


def test_duplicate_trial_across_files_names_both(tmp_path):
    first = _write(tmp_path, _session(), session=1)
    second = tmp_path / "copy" / "sub-p01_ses-1_task-noticeability_beh.tsv"
    write_trial_file(second, _session().to_dict("records"))
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
    with pytest.raises(FileNotFoundError, match=r"no trial files \(\*_beh.tsv, \*_trials.csv\) under"):
        load_trials([tmp_path])


def test_a_row_of_the_experiments_writer_is_read_by_the_loader(tmp_path):
    """The experiment's session writer and the analysis' loader agree on every required column."""
    from experiments.datafile import open_session

    row = {"participant": "P01", "session": 1, "trial": 1, "image_id": "parrot", "model": "resnet18",
           "layer": "conv1", "weights": "random:0", "direction": "min", "item_id": "x", "alpha": 0.25,
           "correct": False, "n_alternatives": 3, "task": "3afc_oddity", "is_catch": True, "catch_type": "easy",
           "is_practice": False, "observer": "human", "calibrated": True, "set_id": "0123456789abcdef",
           "alpha_ceiling": 0.5, "rt": 0.75}
    blank = {**row, "trial": 2, "item_id": "", "alpha": 0.0, "catch_type": "blank", "rt": None}
    writer, _ = open_session(tmp_path, "P01", 1, {"set_id": row["set_id"]}, {})
    with writer:
        writer.write(row)
        writer.write(blank)
    loaded = load_trials([tmp_path])
    for i, written in enumerate((row, blank)):
        got = loaded.iloc[i]
        for column, value in written.items():
            want = "" if value is None else str(value) if column == "rt" else value
            assert got[column] == want, column
    assert loaded["alpha_ceiling"].dtype == float and loaded["correct"].dtype == bool


def test_first_format_csv_is_still_read(tmp_path):
    """A lab's existing ``*_trials.csv`` (comma-separated, empty for missing, no alpha_ceiling)."""
    table = _session().drop(columns=["alpha_ceiling"])
    for column in ("correct", "is_catch", "is_practice", "calibrated"):
        table[column] = table[column].map({True: "true", False: "false"})
    path = tmp_path / "sub-p01" / "ses-1" / "sub-p01_ses-1_trials.csv"
    path.parent.mkdir(parents=True)
    path.write_text(table.to_csv(index=False))
    loaded = load_trials([tmp_path])
    assert len(loaded) == 12 and loaded["alpha_ceiling"].isna().all() and set(loaded["catch_type"]) == {""}


def test_spreadsheet_resave_is_read(tmp_path):
    path = _write(tmp_path, _session())
    path.write_bytes(b"\xef\xbb\xbf" + path.read_bytes().replace(b"\n", b"\r\n"))
    assert len(load_trials([path])) == 12


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
    assert reasons["h3"] == "easy-catch accuracy 0.50 < 0.9"  # only rows 1 and 3 (max) score
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
