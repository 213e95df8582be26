"""Faults during a session: SIGKILL or SIGINT at random points, then ``--resume``, equals an unbroken run.

Each of the 20 runs per signal starts a headless session (the engine, the trial writer and
the sidecar are the same code a PsychoPy session runs; tests/test_session.py kills real
windowed sessions) in a subprocess, signals it once its file holds a random number of
trials (plus a random few milliseconds, so the signal also lands inside a row's write),
then resumes it in this process. Every finished trial must be there exactly once, and the
rows (timestamps aside) and the tracks must equal those of a session that was never stopped.

Run as a script (``python tests/test_faults_session.py DATA``) it is the session that gets killed.
"""

from __future__ import annotations

import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from eigdist_core.io import load_json
from experiments.datafile import read_trials, session_paths
from tests.trial_fixtures import run_session

ROOT = Path(__file__).resolve().parents[1]
RUNS = 20


def _rows(data: Path) -> list[dict]:
    return [{k: v for k, v in r.items() if k != "timestamp"}
            for r in read_trials(session_paths(data, "P01", 1).trials)]


def _complete_rows(path: Path) -> int:
    return max(0, path.read_bytes().count(b"\n") - 1) if path.exists() else 0


@pytest.fixture(scope="module")
def unbroken(tmp_path_factory):
    data = tmp_path_factory.mktemp("unbroken")
    engine = run_session(data)
    return _rows(data), engine.track_states()


@pytest.mark.parametrize("sig", [signal.SIGKILL, signal.SIGINT], ids=["SIGKILL", "SIGINT"])
def test_signal_at_random_points_then_resume_equals_an_unbroken_run(unbroken, tmp_path, sig):
    rows_unbroken, tracks_unbroken = unbroken
    n = len(rows_unbroken)
    rng = random.Random(20 + sig)
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    stopped_at = []
    for run in range(RUNS):
        data = tmp_path / f"run{run}"
        trials = session_paths(data, "P01", 1).trials
        target = rng.randrange(0, n - 1)
        proc = subprocess.Popen([sys.executable, __file__, str(data)], env=env, cwd=ROOT,
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        assert proc.stdout.readline().strip() == "ready"
        while _complete_rows(trials) < target and proc.poll() is None:
            time.sleep(0.0005)
        time.sleep(rng.random() * 0.003)
        proc.send_signal(sig)
        out, err = proc.communicate(timeout=60)
        if proc.returncode == 0:
            continue  # finished before the signal: nothing to resume (rare; counted below)
        expected = -signal.SIGKILL if sig == signal.SIGKILL else 130
        assert proc.returncode == expected, err
        saved = _rows(data) if trials.exists() else []
        assert saved == rows_unbroken[:len(saved)]  # what was saved is exactly the unbroken run's start
        stopped_at.append(len(saved))
        engine = run_session(data, resume=trials.exists())
        assert [r["trial"] for r in _rows(data)] == list(range(1, n + 1))  # every trial once
        assert _rows(data) == rows_unbroken
        assert engine.track_states() == tracks_unbroken
        if trials.exists() and saved:
            runs = load_json(session_paths(data, "P01", 1).sidecar)["eigdist"]["runs"]
            assert [r["first_trial"] for r in runs] == [1, len(saved) + 1]
    assert len(stopped_at) >= RUNS - 2, stopped_at  # nearly every run was really interrupted
    print(f"{signal.Signals(sig).name}: stopped after {sorted(stopped_at)} of {n} trials")


if __name__ == "__main__":
    # A shell starts background jobs (a CI run with `&`) with SIGINT ignored, and this child inherits that.
    signal.signal(signal.SIGINT, signal.default_int_handler)
    from experiments.observers import WeibullObserver

    class Announcing(WeibullObserver):
        """Says "ready" at its first answer (the session's files are open by then)."""

        said = False

        def respond(self, trial, stimuli, session):
            if not self.said:
                print("ready", flush=True)
                self.said = True
            time.sleep(0.002)  # a trial takes a little time, as on a screen
            return super().respond(trial, stimuli, session)

    try:
        run_session(sys.argv[1], responder=Announcing(threshold=0.1, seed=5, observer="weibull;threshold=0.1;seed=5"))
    except KeyboardInterrupt:
        sys.exit(130)  # as the command line does
