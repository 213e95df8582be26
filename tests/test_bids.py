"""The data folder is a valid BIDS dataset: the official validator reports no errors."""

from __future__ import annotations

import json

from tests.trial_fixtures import run_session, validate_bids


def test_sessions_of_two_participants_validate(tmp_path):
    for participant, session in (("P01", 1), ("P02", 1), ("P01", 2)):
        run_session(tmp_path, participant, session)
    errors, warnings = validate_bids(tmp_path)
    assert errors == [], json.dumps(errors, indent=1)[:3000]
    assert {w["code"] for w in warnings} <= {"JSON_KEY_RECOMMENDED", "NO_AUTHORS", "TOO_FEW_AUTHORS",
                                             "SIDECAR_KEY_RECOMMENDED", "README_FILE_MISSING"}


def test_the_validator_finds_errors(tmp_path):
    """The check can fail: a trial file in a made-up layout is an error."""
    run_session(tmp_path, "P01")
    (tmp_path / "sub-P01" / "ses-1" / "beh" / "trials.csv").write_text("a,b\n1,2\n")
    errors, _ = validate_bids(tmp_path)
    assert errors
