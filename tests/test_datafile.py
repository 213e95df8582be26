"""The trial file: contract format, fsync per row, refusals, and crash + resume = unbroken run."""

from __future__ import annotations

import os
import random
import re
import subprocess
import sys
from pathlib import Path

import pytest

from eigdist_core.contract import ITEM_DIRECTIONS
from eigdist_core.io import load_json

from experiments.datafile import (
    COLUMNS, REQUIRED_COLUMNS, open_session, read_trials, session_paths,
)
from tests.trial_fixtures import SET_ID, run_session, small_config

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
    from tests.trial_fixtures import small_config

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

    from tests.trial_fixtures import small_config

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


# ---------------------------------------------------------------- BIDS dataset, resume rules (issues 16, 19)


def _listing(folder: Path) -> dict:
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


def test_dataset_files_created_once_and_participants_added_never_overwritten(tmp_path):
    from experiments.bids import add_participant

    run_session(tmp_path, "P01")
    description = (tmp_path / "dataset_description.json").read_bytes()
    assert load_json(tmp_path / "dataset_description.json")["BIDSVersion"]
    assert (tmp_path / "README").read_text().startswith("Noticeability of eigendistortions")
    assert set(load_json(tmp_path / "participants.json")) == {"participant_id", "age", "sex", "vision"}
    (tmp_path / "README").write_text("our own words\n")  # a lab edits its README: later sessions keep it
    run_session(tmp_path, "P02")
    add_participant(tmp_path.resolve(), "P03", {"age": 41, "sex": "female"})
    add_participant(tmp_path.resolve(), "P01", {"age": 99})  # already there: unchanged
    assert (tmp_path / "participants.tsv").read_text().splitlines() == [
        "participant_id\tage\tsex\tvision", "sub-P01\tn/a\tn/a\tn/a", "sub-P02\tn/a\tn/a\tn/a",
        "sub-P03\t41\tfemale\tn/a"]
    assert (tmp_path / "dataset_description.json").read_bytes() == description
    assert (tmp_path / "README").read_text() == "our own words\n"


def test_participants_added_by_parallel_sessions_are_all_kept(tmp_path):
    """Eight processes add a participant each at once: the lock and the atomic write keep every row."""
    code = ("import sys; from pathlib import Path; from experiments.bids import add_participant; "
            "add_participant(Path(sys.argv[1]), sys.argv[2], {})")
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    procs = [subprocess.Popen([sys.executable, "-c", code, str(tmp_path), f"P{i}"], env=env) for i in range(8)]
    assert [p.wait(timeout=60) for p in procs] == [0] * 8
    rows = (tmp_path / "participants.tsv").read_text().splitlines()[1:]
    assert sorted(r.split("\t")[0] for r in rows) == sorted(f"sub-P{i}" for i in range(8))


def test_sidecar_describes_every_column(tmp_path):
    run_session(tmp_path)
    sidecar = load_json(session_paths(tmp_path, "P01", 1).sidecar)
    assert set(sidecar) == set(COLUMNS) | {"eigdist", "TaskName", "TaskDescription"}
    assert all(sidecar[c]["LongName"] and sidecar[c]["Description"] for c in COLUMNS)
    assert sidecar["direction"]["Levels"].keys() == set(ITEM_DIRECTIONS) and sidecar["rt"]["Units"] == "s"
    assert sidecar["correct"]["Levels"].keys() == {"true", "false"}


def test_rows_record_set_and_the_ceiling_their_track_used(tmp_path):
    engine = run_session(tmp_path)
    rows = read_trials(session_paths(tmp_path, "P01", 1).trials)
    ceilings = {t.condition.key: t.condition.alpha_ceiling for t in engine.plan.trials}
    assert all(r["set_id"] == SET_ID for r in rows)
    assert all(r["alpha_ceiling"] == ceilings[tuple(r[k] for k in
               ("image_id", "model", "layer", "weights", "direction"))] == 0.8 for r in rows)
    assert all(r["color"] is None and r["magnification"] is None and r["stimulus_deg"] is None for r in rows)


def _partial(tmp_path, n=10):
    """A session cut after ``n`` trials (as if the process had died)."""
    run_session(tmp_path)
    path = session_paths(tmp_path, "P01", 1).trials
    path.write_text("".join(path.read_text().splitlines(keepends=True)[:n + 1]))
    return path


def _drop_columns(path, keep):
    """Rewrite a trial file with only its first ``keep`` columns, as an earlier version wrote it."""
    lines = path.read_text(encoding="utf-8").splitlines()
    path.write_text("".join("\t".join(line.split("\t")[:keep]) + "\n" for line in lines), encoding="utf-8")


def test_a_file_of_an_earlier_version_resumes_in_its_own_columns(tmp_path):
    writer, _ = _open(tmp_path)
    with writer:
        writer.write(_row(1))
    path = session_paths(tmp_path, "P01", 1).trials
    old = len(COLUMNS) - 5  # before the models track's five columns
    _drop_columns(path, old)
    writer, done = _open(tmp_path, resume=True)
    with writer:
        assert [r["trial"] for r in done] == [1]
        writer.write(_row(2))
    lines = path.read_text(encoding="utf-8").splitlines()
    assert [len(line.split("\t")) for line in lines] == [old] * 3
    assert [r["trial"] for r in read_trials(path)] == [1, 2]


@pytest.mark.parametrize("change", ["swap", "too_few"])
def test_a_file_with_other_columns_is_not_resumed(tmp_path, change):
    writer, _ = _open(tmp_path)
    with writer:
        writer.write(_row(1))
    path = session_paths(tmp_path, "P01", 1).trials
    if change == "swap":
        text = path.read_text(encoding="utf-8")
        path.write_text(text.replace("image_id\tmodel", "model\timage_id", 1), encoding="utf-8")
    else:
        _drop_columns(path, len(REQUIRED_COLUMNS) - 1)
    with pytest.raises(ValueError, match=re.escape(f"{path} has other columns than this version writes; ")):
        _open(tmp_path, resume=True)


def test_resume_keeps_the_record_and_appends_a_run(tmp_path):
    path = _partial(tmp_path)
    sidecar = session_paths(tmp_path, "P01", 1).sidecar
    first = load_json(sidecar)
    first["eigdist"]["participant_info"] = {"age": 30}  # as the first run's form recorded it
    from eigdist_core.io import save_json

    save_json(sidecar, first)
    run_session(tmp_path, resume=True)
    after = load_json(sidecar)
    assert after["eigdist"]["participant_info"] == {"age": 30}
    assert [r["first_trial"] for r in after["eigdist"]["runs"]] == [1, 11]
    assert {k: v for k, v in after["eigdist"].items() if k != "runs"} == {
        k: v for k, v in first["eigdist"].items() if k != "runs"}
    assert len(read_trials(path)) == after["eigdist"]["n_trials"]


def test_resume_of_a_finished_session_changes_nothing(tmp_path):
    from experiments.datafile import SessionFinished

    engine = run_session(tmp_path)
    before = _listing(tmp_path)
    with pytest.raises(SessionFinished, match=rf"session sub-P01_ses-1_task-noticeability_beh.tsv is finished "
                       rf"\({engine.done} of {engine.done} trials\); nothing to resume, nothing changed"):
        run_session(tmp_path, resume=True)
    assert _listing(tmp_path) == before


@pytest.mark.parametrize("change,message", [
    ({"observer": "weibull;threshold=0.3"}, "observer was 'weibull;threshold=0.1;seed=5' when the session started, "
                                            "now 'weibull;threshold=0.3' (the observer (--simulate) differs)"),
    ({"calibrated": True}, "pilot was True when the session started, now False (--pilot differs)"),
    ({"constants": {"monitor": "lab2"}}, "monitor was None when the session started, now 'lab2' (--monitor differs)"),
])
def test_resume_with_other_settings_is_refused_naming_both(tmp_path, change, message):
    from experiments.engine import open_engine
    from tests.trial_fixtures import ArraySource

    _partial(tmp_path)
    before = _listing(tmp_path)
    kwargs = {"observer": "weibull;threshold=0.1;seed=5", "calibrated": False, **change}
    with pytest.raises(ValueError, match=re.escape(message)):
        open_engine(ArraySource(), small_config(), tmp_path, "P01", 1, resume=True, **kwargs)
    assert _listing(tmp_path) == before


def test_resume_of_a_spreadsheet_resave_is_refused(tmp_path):
    path = _partial(tmp_path)
    path.write_bytes(path.read_bytes().replace(b"\n", b"\r\n"))
    with pytest.raises(ValueError, match=re.escape(f"{path} was re-saved with Windows line endings or a byte-order "
                                                   "mark (as a spreadsheet saves it)")):
        run_session(tmp_path, resume=True)


def test_resume_with_a_truncated_sidecar_names_it(tmp_path):
    _partial(tmp_path)
    sidecar = session_paths(tmp_path, "P01", 1).sidecar
    sidecar.write_bytes(sidecar.read_bytes()[:200])
    with pytest.raises(ValueError, match=re.escape(f"{sidecar}: not a session sidecar of eigdist (") +
                       ".*cut by a crash or edited: restore it from a backup, or move .* and run this --session "
                       "again from its start"):
        run_session(tmp_path, resume=True)
