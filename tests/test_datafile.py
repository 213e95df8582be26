"""The trial file: contract format, fsync per row, refusals, and crash + resume = unbroken run."""

from __future__ import annotations

import os
import random
import re
import subprocess
import sys
from pathlib import Path

import pytest

from eigdist_core.io import load_json

from experiments.datafile import (
    COLUMNS, REQUIRED_COLUMNS, open_session, read_trials, session_paths,
)
from trial_fixtures import SET_ID, run_session

ROOT = Path(__file__).resolve().parents[1]


def _row(trial=1, **changes):
    row = {"participant": "P01", "session": 1, "trial": trial, "image_id": "parrot", "model": "resnet18",
           "layer": "conv1", "weights": "random:0", "direction": "max", "item_id": "x", "alpha": 0.1,
           "correct": True, "n_alternatives": 2, "task": "2afc_ref", "is_catch": False, "catch_type": "",
           "is_practice": False, "observer": "human", "calibrated": True, "set_id": SET_ID,
           "alpha_ceiling": 0.8}
    return {**row, **changes}


def _open(data, participant="P01", session=1, set_id=SET_ID, **kwargs):
    return open_session(data, participant, session, {"set_id": set_id}, {"started": "now"}, **kwargs)


def test_paths_follow_bids(tmp_path):
    paths = session_paths(tmp_path, "P01a", 3)
    beh = tmp_path.resolve() / "sub-P01a" / "ses-3" / "beh"
    assert paths.trials == beh / "sub-P01a_ses-3_task-noticeability_beh.tsv"
    assert paths.sidecar == beh / "sub-P01a_ses-3_task-noticeability_beh.json"
    assert paths.psychopy == tmp_path.resolve() / "sourcedata" / "sub-P01a" / "ses-3" / "psychopy"


@pytest.mark.parametrize("bad", ["../x", "a/b", "", "P 1", "é", 7, "..", "P-01", "P_01"])
def test_bad_participant_is_named(tmp_path, bad):
    with pytest.raises(ValueError, match=r"participant ID must be letters and digits only \(a BIDS label, "
                       r"\[A-Za-z0-9\]\+\), got " + re.escape(repr(bad))):
        session_paths(tmp_path, bad, 1)
    assert list(tmp_path.iterdir()) == []  # nothing written anywhere


def test_long_participant_is_refused(tmp_path):
    with pytest.raises(ValueError, match="participant ID must be at most 64 characters, got 300 "):
        session_paths(tmp_path, "a" * 300, 1)


@pytest.mark.parametrize("bad", [0, -1, "2", True])
def test_bad_session_is_named(tmp_path, bad):
    with pytest.raises(ValueError, match=f"session must be an int >= 1, got {bad!r}"):
        session_paths(tmp_path, "P01", bad)


def test_format_of_written_file(tmp_path):
    writer, done = _open(tmp_path)
    assert done == []
    with writer:
        writer.write(_row(1, rt=0.5))
        writer.write(_row(2, alpha=0.0, correct=False, item_id="", catch_type="blank", is_catch=True))
    raw = session_paths(tmp_path, "P01", 1).trials.read_bytes()
    assert not raw.startswith(b"\xef\xbb\xbf") and b"\r" not in raw
    lines = raw.decode("utf-8").splitlines()
    assert lines[0] == "\t".join(COLUMNS) and lines[0].startswith("\t".join(REQUIRED_COLUMNS))
    first = dict(zip(COLUMNS, lines[1].split("\t")))
    assert (first["correct"], first["is_catch"], first["calibrated"], first["rt"], first["eigenvalue"],
            first["catch_type"], first["alpha_ceiling"]) == ("true", "false", "true", "0.5", "n/a", "n/a", "0.8")
    second = dict(zip(COLUMNS, lines[2].split("\t")))
    assert (second["alpha"], second["item_id"], second["catch_type"]) == ("0.0", "n/a", "blank")
    rows = read_trials(session_paths(tmp_path, "P01", 1).trials)
    assert rows[0]["alpha"] == 0.1 and rows[0]["correct"] is True and rows[1]["is_catch"] is True


def test_writer_refuses_bad_rows(tmp_path):
    writer, _ = _open(tmp_path)
    with writer:
        with pytest.raises(ValueError, match="trial number must be 1 \\(no gaps\\), got 2"):
            writer.write(_row(2))
        with pytest.raises(ValueError, match="unknown trial column\\(s\\) colour"):
            writer.write(_row(1, colour="red"))
        with pytest.raises(ValueError, match="trial row lacks required column\\(s\\) correct"):
            writer.write(_row(1, correct=None))


def test_existing_session_needs_resume_and_same_set(tmp_path):
    writer, _ = _open(tmp_path)
    with writer:
        writer.write(_row(1))
    with pytest.raises(FileExistsError, match="already exists; continue it with --resume"):
        _open(tmp_path)
    with pytest.raises(ValueError, match=f"set_id was '{SET_ID}' when the session started, now 'ffff' "
                       r"\(the stimulus set \(--stimuli\) differs\)"):
        _open(tmp_path, set_id="ffff", resume=True)
    with pytest.raises(FileNotFoundError, match="nothing to resume"):
        _open(tmp_path, session=2, resume=True)
    writer, done = _open(tmp_path, resume=True)
    with writer:
        assert len(done) == 1 and writer.next_trial == 2
        writer.write(_row(2))


def test_torn_last_line_is_dropped_on_resume(tmp_path):
    writer, _ = _open(tmp_path)
    with writer:
        writer.write(_row(1))
    path = session_paths(tmp_path, "P01", 1).trials
    with open(path, "a", encoding="utf-8") as fh:
        fh.write("P01\t1\t2\tparrot\tres")  # a crash in the middle of a row
    writer, done = _open(tmp_path, resume=True)
    with writer:
        assert [r["trial"] for r in done] == [1]
        writer.write(_row(2))
    assert [r["trial"] for r in read_trials(path)] == [1, 2]


def test_resume_refuses_a_different_plan(tmp_path):
    run_session(tmp_path)
    path = session_paths(tmp_path, "P01", 1).trials
    lines = path.read_text().splitlines(keepends=True)
    path.write_text("".join(lines[:10]))
    from trial_fixtures import small_config

    with pytest.raises(ValueError, match=r"config.seed was \d+ when the session started, now 99 \(--config differs\)"):
        run_session(tmp_path, resume=True, config=small_config(seed=99))


def _strip(rows):
    return [{k: v for k, v in r.items() if k != "timestamp"} for r in rows]


def test_kill_and_resume_equals_unbroken_run(tmp_path):
    """SIGKILL during a random trial, resume: every finished trial once, same rows and tracks."""
    unbroken = run_session(tmp_path / "a")
    n = unbroken.done
    kill_at = random.Random(os.getpid()).randrange(6, n - 5)
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    proc = subprocess.run([sys.executable, str(ROOT / "tests" / "trial_fixtures.py"), str(tmp_path / "b"),
                           str(kill_at)], env=env, cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert proc.returncode == -9, proc.stderr  # killed, not finished
    path_b = session_paths(tmp_path / "b", "P01", 1).trials
    assert [r["trial"] for r in read_trials(path_b)] == list(range(1, kill_at))
    resumed = run_session(tmp_path / "b", resume=True)
    rows_a = read_trials(session_paths(tmp_path / "a", "P01", 1).trials)
    rows_b = read_trials(path_b)
    assert [r["trial"] for r in rows_b] == list(range(1, n + 1))
    assert _strip(rows_b) == _strip(rows_a)
    assert resumed.track_states() == unbroken.track_states()
    sidecar = load_json(session_paths(tmp_path / "b", "P01", 1).sidecar)["eigdist"]
    assert [r["first_trial"] for r in sidecar["runs"]] == [1, kill_at] and sidecar["set_id"] == SET_ID
    assert sidecar["n_trials"] == n and sidecar["config"]["track_kind"] == "quest"


def test_tracks_carry_across_sessions(tmp_path):
    """Session 2 revisits the images of session 1: its tracks start from session 1's trials."""
    from dataclasses import replace

    from trial_fixtures import small_config

    config = replace(small_config(), images_per_session=3, visits_per_image=2, per_condition=16)
    first = run_session(tmp_path, config=config)
    second = run_session(tmp_path, session=2, config=config)
    states = second.track_states()
    assert all(s["n_trials"] == 16 for s in states.values())
    assert first.track_states().keys() == states.keys()
    # rows of another stimulus set never seed a track
    other = tmp_path / "other"
    run_session(other, config=config)
    path = session_paths(other, "P01", 1).trials
    path.write_text(path.read_text().replace(SET_ID, "ffffffffffffffff"))  # as if recorded with another set
    fresh = run_session(other, session=2, config=config)
    assert all(s["n_trials"] == 8 for s in fresh.track_states().values())
