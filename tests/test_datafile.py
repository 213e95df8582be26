"""The trial file: contract format, fsync per row, refusals, and crash + resume = unbroken run."""

from __future__ import annotations

import os
import random
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
           "is_practice": False, "observer": "human", "calibrated": True, "set_id": SET_ID}
    return {**row, **changes}


def test_paths_follow_contract(tmp_path):
    paths = session_paths(tmp_path, "P-01_a", 3)
    assert paths.trials == tmp_path.resolve() / "sub-P-01_a" / "ses-3" / "sub-P-01_a_ses-3_trials.csv"
    assert paths.sidecar.name == "sub-P-01_a_ses-3_session.json"
    assert paths.psychopy == paths.folder / "psychopy"


@pytest.mark.parametrize("bad", ["../x", "a/b", "", "P 1", "é", 7, ".."])
def test_bad_participant_is_named(tmp_path, bad):
    with pytest.raises(ValueError, match=r"participant ID must be .*\[A-Za-z0-9_-\]\+.*got " + repr(repr(bad))[1:-1]):
        session_paths(tmp_path, bad, 1)
    assert list(tmp_path.iterdir()) == []  # nothing written anywhere


@pytest.mark.parametrize("bad", [0, -1, "2", True])
def test_bad_session_is_named(tmp_path, bad):
    with pytest.raises(ValueError, match=f"session must be an int >= 1, got {bad!r}"):
        session_paths(tmp_path, "P01", bad)


def test_format_of_written_file(tmp_path):
    writer, done = open_session(tmp_path, "P01", 1, {"set_id": SET_ID})
    assert done == []
    with writer:
        writer.write(_row(1, rt=0.5))
        writer.write(_row(2, alpha=0.0, correct=False, item_id="", catch_type="blank", is_catch=True))
    raw = session_paths(tmp_path, "P01", 1).trials.read_bytes()
    assert not raw.startswith(b"\xef\xbb\xbf")
    lines = raw.decode("utf-8").splitlines()
    assert lines[0] == ",".join(COLUMNS) and lines[0].startswith(",".join(REQUIRED_COLUMNS))
    first = dict(zip(COLUMNS, lines[1].split(",")))
    assert (first["correct"], first["is_catch"], first["calibrated"], first["rt"], first["eigenvalue"]) == (
        "true", "false", "true", "0.5", "")
    second = dict(zip(COLUMNS, lines[2].split(",")))
    assert (second["alpha"], second["item_id"], second["catch_type"]) == ("0.0", "", "blank")
    rows = read_trials(session_paths(tmp_path, "P01", 1).trials)
    assert rows[0]["alpha"] == 0.1 and rows[0]["correct"] is True and rows[1]["is_catch"] is True


def test_writer_refuses_bad_rows(tmp_path):
    writer, _ = open_session(tmp_path, "P01", 1, {"set_id": SET_ID})
    with writer:
        with pytest.raises(ValueError, match="trial number must be 1 \\(no gaps\\), got 2"):
            writer.write(_row(2))
        with pytest.raises(ValueError, match="unknown trial column\\(s\\) colour"):
            writer.write(_row(1, colour="red"))
        with pytest.raises(ValueError, match="trial row lacks required column\\(s\\) correct"):
            writer.write(_row(1, correct=None))


def test_existing_session_needs_resume_and_same_set(tmp_path):
    writer, _ = open_session(tmp_path, "P01", 1, {"set_id": SET_ID})
    with writer:
        writer.write(_row(1))
    with pytest.raises(FileExistsError, match="already exists; continue it with --resume"):
        open_session(tmp_path, "P01", 1, {"set_id": SET_ID})
    with pytest.raises(ValueError, match=f"was recorded with stimulus set '{SET_ID}', not 'ffff'"):
        open_session(tmp_path, "P01", 1, {"set_id": "ffff"}, resume=True)
    with pytest.raises(FileNotFoundError, match="nothing to resume"):
        open_session(tmp_path, "P01", 2, {"set_id": SET_ID}, resume=True)
    writer, done = open_session(tmp_path, "P01", 1, {"set_id": SET_ID}, resume=True)
    with writer:
        assert len(done) == 1 and writer.next_trial == 2
        writer.write(_row(2))


def test_torn_last_line_is_dropped_on_resume(tmp_path):
    writer, _ = open_session(tmp_path, "P01", 1, {"set_id": SET_ID})
    with writer:
        writer.write(_row(1))
    path = session_paths(tmp_path, "P01", 1).trials
    with open(path, "a", encoding="utf-8") as fh:
        fh.write("P01,1,2,parrot,res")  # a crash in the middle of a row
    writer, done = open_session(tmp_path, "P01", 1, {"set_id": SET_ID}, resume=True)
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

    with pytest.raises(ValueError, match="does not match the session plan"):
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
    sidecar = load_json(session_paths(tmp_path / "b", "P01", 1).sidecar)
    assert sidecar["resumed"] == [kill_at] and sidecar["set_id"] == SET_ID
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
    path.write_text(path.read_text().replace(SET_ID, "ffffffffffffffff"))
    fresh = run_session(other, session=2, config=config)
    assert all(s["n_trials"] == 8 for s in fresh.track_states().values())
