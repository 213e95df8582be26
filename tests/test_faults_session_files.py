"""A session's surroundings changing between runs: the display, the visit order, the sidecar, the set.

Each change is refused with one line that names it and gives a way forward that exists (also for a
plan of one session), or, where the change happens mid-run, the session stops naming it.
"""

from __future__ import annotations

import shutil
from dataclasses import replace
from pathlib import Path

import pytest

from eigdist.cli.main import main
from eigdist_core.stimulus_set import SetError, StimulusSet
from experiments.datafile import read_trials, session_paths
from experiments.engine import open_engine
from experiments.monitor import load_profile, save_profile
from experiments.participant_form import check_info
from experiments.resume_check import SessionFileError
from experiments.session import RunOptions, _record, prepare
from tests.build_fixtures import stimulus_set  # noqa: F401  (a module fixture)
from tests.profiles import make_profile
from tests.trial_fixtures import run_session, small_config

WEIBULL = "weibull;threshold=0.2;seed=1"


def _start(options: RunOptions, n_trials: int) -> None:
    """Start the session as ``eigdist run`` does (same record) and answer its first ``n_trials``, no window."""
    prep = prepare(options)
    engine = open_engine(prep.stimuli, prep.config, options.data, "P01", 1, observer=prep.observer,
                         calibrated=True, constants={"monitor": prep.profile.name},
                         metadata=_record(options, prep.profile))
    with engine.writer:
        for trial in list(engine.pending())[:n_trials]:
            stim = engine.stimuli(trial)
            engine.record(trial, stim, prep.responder.respond(trial, stim, 1))


@pytest.fixture
def started(stimulus_set, tmp_path) -> RunOptions:  # noqa: F811
    monitors = tmp_path / "monitors"
    save_profile(make_profile(name="lab"), monitors)
    options = RunOptions(stimuli=stimulus_set, monitor="lab", info=check_info("P01", 1), data=tmp_path / "data",
                         monitors=monitors, simulate=WEIBULL)
    _start(options, 3)
    return replace(options, resume=True)


def _resume_argv(options: RunOptions) -> list[str]:
    return ["run", "--stimuli", str(options.stimuli), "--monitor", "lab", "--monitors", str(options.monitors),
            "--participant", "P01", "--simulate", WEIBULL, "--data", str(options.data), "--resume"]


def test_resume_on_the_same_display_is_accepted(started):
    prepare(started)  # no error: the profile is the one the session started with


def test_resume_after_the_monitor_was_recreated_with_another_distance_is_refused(started, capsys):
    profile = load_profile("lab", started.monitors)
    save_profile(replace(profile, distance_cm=114.0), started.monitors)  # calibrate new --force, another distance
    trials = session_paths(started.data, "P01", 1).trials
    before = trials.read_bytes()
    assert main(_resume_argv(started)) == 2
    err = capsys.readouterr().err
    assert (f"eigdist run: error: cannot resume {trials}: display.distance_cm was 57.0 when the session started, "
            "now 114.0 (the monitor profile of --monitor differs); one session must not mix two displays: resume "
            "with the profile it started with, or move ") in err and "without --resume" in err
    assert len(err.strip().splitlines()) == 1 and trials.read_bytes() == before


def test_resume_after_a_new_calibration_is_refused(started):
    save_profile(make_profile(name="lab", gamma=2.4), started.monitors)  # a new calibrate fit
    with pytest.raises(SessionFileError, match=r"cannot resume .*: display\.(calibration_date|sha256) was .* "
                                               r"\(the monitor profile of --monitor differs\); one session must not "
                                               r"mix two displays"):
        prepare(started)


def test_the_next_visit_waits_for_the_unfinished_one(tmp_path):
    """visits_per_image = 2: session 2's tracks continue session 1's, so session 1 must be finished first."""
    config = small_config(visits_per_image=2)
    data = tmp_path / "data"
    engine = open_engine(_source(), config, data, "P01", 1, observer=OBSERVER, calibrated=False)
    _answer_first(engine, 5)  # session 1 stops (or is still running) after 5 trials
    n1 = len(engine.plan.trials)
    message = (rf"session 2 of participant P01 cannot start: session 1 of the same stimulus set is unfinished "
               rf"\(5 of {n1} trials; still running, or stopped\), and its tracks carry over into session 2; finish "
               rf"it first \(eigdist run --participant P01 --session 1 --resume")
    with pytest.raises(SessionFileError, match=message):
        open_engine(_source(), config, data, "P01", 2, observer=OBSERVER, calibrated=False)
    assert not session_paths(data, "P01", 2).trials.exists()
    with pytest.raises(SessionFileError, match=message):  # nor a resume of a session 2 begun before this check
        open_engine(_source(), config, data, "P01", 2, observer=OBSERVER, calibrated=False, resume=True)
    run_session(data, config=config, resume=True)
    run_session(data, session=2, config=config)  # in order: accepted
    sequential = tmp_path / "sequential"
    run_session(sequential, config=config)
    run_session(sequential, session=2, config=config)
    assert _alphas(data, 2) == _alphas(sequential, 2)  # the tracks carried over as in a sequential run


def test_a_missing_sidecar_gives_a_way_forward_that_works_with_one_session(tmp_path, capsys):
    data = tmp_path / "data"
    config = small_config(images_per_session=3)  # the whole plan is one session: no "another --session"
    engine = open_engine(_source(), config, data, "P01", 1, observer=OBSERVER, calibrated=False)
    assert engine.plan.n_sessions == 1
    _answer_first(engine, 4)
    paths = session_paths(data, "P01", 1)
    paths.sidecar.unlink()
    with pytest.raises(SessionFileError) as refused:
        run_session(data, config=config, resume=True)
    message = str(refused.value)
    assert message == (f"{paths.sidecar} is missing: cannot check what the session recorded; restore it from a "
                       f"backup, or move {paths.trials.name} and its .json out of {paths.folder} and run this "
                       "--session again from its start (without --resume)")
    aside = tmp_path / "aside"
    aside.mkdir()
    shutil.move(paths.trials, aside)  # the advice, followed
    run_session(data, config=config)
    assert len(read_trials(paths.trials)) == len(engine.plan.trials)


def test_a_set_rebuilt_while_a_session_reads_it_is_named(stimulus_set, tmp_path):  # noqa: F811
    copy = Path(shutil.copytree(stimulus_set, tmp_path / "set"))
    sset = StimulusSet.open(copy)
    item = sset.items[0]
    sset.item(item["item_id"])  # reads while the set is as opened
    (copy / item["file"]).unlink()  # --force removes the set's files before writing new ones
    with pytest.raises(SetError, match=rf"stimulus set {copy} changed while in use: {item['file']} is gone "
                                       r"\(rebuilt with --force, or edited\?\); finished trials are saved"):
        sset.item(item["item_id"])
    image = sset.images[0]
    (copy / image["file"]).write_bytes((copy / sset.items[1]["file"]).read_bytes())  # another build's content
    with pytest.raises(SetError, match=f"{image['file']} has other content"):
        sset.image(image["image_id"])


def _source():
    from tests.trial_fixtures import ArraySource

    return ArraySource()


#: The observer of :func:`tests.trial_fixtures.run_session`.
OBSERVER = "weibull;threshold=0.1;seed=5"


def _answer_first(engine, n: int) -> None:
    """Answer the first ``n`` pending trials of ``engine`` as :func:`run_session`'s observer does, then stop."""
    from experiments.observers import WeibullObserver

    observer = WeibullObserver(threshold=0.1, seed=5, observer=OBSERVER)
    with engine.writer:
        for trial in list(engine.pending())[:n]:
            stim = engine.stimuli(trial)
            engine.record(trial, stim, observer.respond(trial, stim, engine.plan.session))


def _alphas(data: Path, session: int) -> list[float]:
    return [r["alpha"] for r in read_trials(session_paths(data, "P01", session).trials)]
