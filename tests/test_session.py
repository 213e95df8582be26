"""``eigdist run`` on a real PsychoPy window under Xvfb (experiments/session.py, eigdist/cli/run.py).

Sessions run as subprocesses (``python -m eigdist run``) in a scratch working folder, so
``sys.exit`` or a GL crash cannot take pytest down and stray files would show. The keyboard
path is driven by real X key events (XTEST, python-xlib) sent to the PsychoPy window.
"""

from __future__ import annotations

import io
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from dataclasses import replace
from pathlib import Path
from typing import Iterator

import numpy as np
import pytest

from eigdist_core.io import load_json
from experiments.config import load_config
from experiments.datafile import REQUIRED_COLUMNS, read_trials, session_paths
from experiments.engine import open_engine, run_headless
from experiments.observers import make_responder
from experiments.participant_form import check_info, participant_form
from experiments.session import dropped_frames, summary
from tests.display_fixtures import ROOT, VirtualDisplay, xvfb, xvfb_factory  # noqa: F401 (fixtures)
from tests.profiles import make_profile
from tests.build_fixtures import stimulus_set  # noqa: F401 (fixture: a built 1-image grey set)
from tests.trial_fixtures import config_text, validate_bids

WEIBULL = "weibull;threshold=0.2;seed=1"
MODEL = "model=resnet18:conv1;weights=random:0;noise=0.1;seed=3"
COMPARED = ("trial", "item_id", "alpha", "correct", "response", "target_interval", "eig_sign", "catch_type",
            "is_practice")


@pytest.fixture(scope="module")
def lab(tmp_path_factory, stimulus_set) -> dict[str, Path]:
    """The built stimulus set, a calibrated and an uncalibrated profile (800×600, 60 Hz), configs."""
    from dataclasses import replace

    from experiments.monitor import save_profile

    base = tmp_path_factory.mktemp("lab")
    stimuli = shutil.copytree(stimulus_set, base / "set")
    monitors = base / "monitors"
    save_profile(make_profile(name="xvfb"), monitors)
    save_profile(replace(make_profile(name="uncal"), calibration=None), monitors)
    (base / "short.toml").write_text(config_text())
    (base / "long.toml").write_text(config_text(per_condition=20, feedback=False))
    (base / "oddity.toml").write_text(config_text(task="3afc_oddity"))
    return {"base": base, "stimuli": stimuli, "monitors": monitors, "short": base / "short.toml",
            "long": base / "long.toml", "oddity": base / "oddity.toml"}


def listing(folder: Path) -> dict[str, float]:
    """Every file under ``folder`` with its mtime (to show nothing was written there)."""
    return {str(p.relative_to(folder)): p.stat().st_mtime_ns for p in sorted(folder.rglob("*"))}


def run_args(lab: dict, config: str = "short", *extra: str) -> list[str]:
    return [sys.executable, "-m", "eigdist", "run", "--stimuli", str(lab["stimuli"]), "--monitor", "xvfb",
            "--monitors", str(lab["monitors"]), "--config", str(lab[config]), "--data", "data",
            "--window", "400x300", *extra]


def popen(screen: VirtualDisplay, cwd: Path, args: list[str]) -> subprocess.Popen:
    cwd.mkdir(exist_ok=True)
    env = {**screen.env, "PYTHONDONTWRITEBYTECODE": "1"}
    # A shell starts background jobs with SIGINT ignored, and a child inherits that; Python then never raises
    # KeyboardInterrupt. The child gets the default back, as a session started from a terminal has it.
    return subprocess.Popen(args, cwd=cwd, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))


def finish(proc: subprocess.Popen, timeout: float = 120) -> tuple[int, str]:
    out, err = proc.communicate(timeout=timeout)
    return proc.returncode, out + err


def n_rows(path: Path) -> int:
    """Complete rows in a trial file (a torn last line does not count)."""
    return max(0, path.read_bytes().count(b"\n") - 1) if path.exists() else 0


def headless_rows(lab: dict, config: str, spec: str, data: Path) -> list[dict]:
    """The same session through the engine alone, with no window and no crash."""
    from eigdist_core.stimulus_set import StimulusSet

    engine = open_engine(StimulusSet.open(lab["stimuli"]), load_config(lab[config]), data, "P01", 1,
                         observer=spec, calibrated=True)
    with engine.writer:
        run_headless(engine, make_responder(spec))
    return read_trials(session_paths(data, "P01", 1).trials)


# ---------------------------------------------------------------- pure parts (no window)


def test_dropped_frames_counts_missed_refreshes():
    period = 1 / 60
    assert dropped_frames([0, period, 2 * period, 3 * period], 60) == 0
    assert dropped_frames([0, period, 3 * period, 4 * period], 60) == 1  # one flip two periods late
    assert dropped_frames([0, 4 * period], 60) == 3
    assert dropped_frames([0, 1.4 * period], 60) == 0


def test_participant_form_asks_again_until_each_answer_is_valid():
    answers = iter(["../x", "", "P07", "x", "", "200", "31", "robot", "Female", "corrected"])
    said = []
    info = participant_form(lambda prompt: next(answers), session=2, write=said.append)
    assert (info.participant, info.session, info.age, info.sex, info.vision) == ("P07", 2, 31, "female", "corrected")
    assert said == [
        "  participant ID must be letters and digits only (a BIDS label, [A-Za-z0-9]+), got '../x'",
        "  participant ID must be letters and digits only (a BIDS label, [A-Za-z0-9]+), got ''",
        "  session must be an int >= 1, got 'x'",
        "  age must be a whole number of years between 1 and 120 (or empty), got '200'",
        "  sex must be one of female, male, other (or empty), got 'robot'",
    ]
    assert info.extra() == {"age": 31, "sex": "female", "vision": "corrected"}


@pytest.mark.parametrize("kwargs,message", [
    ({"participant": "a b"}, "participant ID must be letters and digits"),
    ({"participant": "P1", "session": 0}, "session must be an int >= 1, got 0"),
    ({"participant": "P1", "age": "3.5"}, "age must be a whole number of years between 1 and 120"),
    ({"participant": "P1", "vision": "blurry"}, "vision must be one of normal, corrected (or empty), got 'blurry'"),
])
def test_bad_participant_details_are_named(kwargs, message):
    with pytest.raises(ValueError) as err:
        check_info(**kwargs)
    assert message in str(err.value)


def test_summary_reports_main_and_catch_accuracy():
    def row(correct, catch="", practice=False, dropped=0):
        return {"correct": correct, "catch_type": catch, "is_catch": bool(catch), "is_practice": practice,
                "dropped_frames": dropped}

    rows = [row(True, practice=True), row(True), row(False, dropped=2), row(True, "easy"), row(False, "blank")]
    assert summary(rows) == ["5 trials done", "main trials: 50% correct of 2", "easy catch trials: 100% correct of 1",
                             "blank catch trials (chance expected): 0% correct of 1",
                             "dropped frames: 2 in 1 trials"]


class FakeScreen:
    """Stands in for :class:`experiments.session.Screen` (no window): logs what each frame draws."""

    def __init__(self, late_flip: int) -> None:
        self.log: list = []
        self.profile, self.win = make_profile(name="fake"), self
        self.t, self.n_flips, self.late_flip = 0.0, 0, late_flip

    def prepare(self, stimuli, target_interval):
        self.log.append(("prepare", target_interval))

    def draw(self, content, frame):
        self.log.append(content)

    def flip(self) -> float:
        self.n_flips += 1
        self.t += (2 if self.n_flips == self.late_flip else 1) / 60  # one flip a refresh late
        return self.t

    def check_escape(self):
        pass

    def respond_screen(self, n_alternatives):
        self.log.append("respond")
        return self.flip()


def test_a_trial_prepares_textures_then_shows_its_counted_frames(tmp_path):
    from experiments.config import Timing
    from experiments.observers import WeibullObserver
    from experiments.session import run_trial
    from tests.trial_fixtures import ArraySource, small_config

    config = small_config(timing=Timing(fixation_ms=50, reference_ms=100, isi_ms=50, test_ms=200))
    engine = open_engine(ArraySource(), config, tmp_path, "P01", 1, observer="weibull", calibrated=True)
    trial = next(engine.pending())
    screen = FakeScreen(late_flip=5)
    with engine.writer:
        row = run_trial(screen, engine, WeibullObserver(), trial, 60.0, simulated=False, capture=None)
    test1, test2 = ("distorted", "image") if trial.target_interval == 1 else ("image", "distorted")
    assert screen.log == ([("prepare", trial.target_interval)] + ["fixation"] * 3 + ["image"] * 6 + ["blank"] * 3
                          + [test1] * 12 + ["blank"] * 3 + [test2] * 12 + ["respond"])
    assert row["dropped_frames"] == 1 and read_trials(session_paths(tmp_path, "P01", 1).trials)[0]["dropped_frames"] == 1


# ---------------------------------------------------------------- refusals before anything opens


def _fail(lab, tmp_path, monkeypatch, capsys, *changes: str, stimuli: Path | None = None) -> str:
    """Run the CLI in-process in an empty folder; it must fail (status 2) and write nothing anywhere."""
    from eigdist.cli.main import main

    cwd = tmp_path / "cwd"
    cwd.mkdir()
    monkeypatch.chdir(cwd)
    stimuli = stimuli or lab["stimuli"]
    before = listing(lab["base"])
    args = ["run", "--stimuli", str(stimuli), "--monitor", "xvfb", "--monitors", str(lab["monitors"]),
            "--config", str(lab["short"]), "--data", "data", "--participant", "P01", "--simulate", WEIBULL]
    for change in changes:  # "--flag=value" replaces the flag's value or adds it
        flag, _, value = change.partition("=")
        if flag in args:
            args[args.index(flag) + 1] = value
        else:
            args += [flag, value] if value else [flag]
    assert main(args) == 2
    assert list(cwd.iterdir()) == [] and listing(lab["base"]) == before
    return capsys.readouterr().err


@pytest.mark.parametrize("change,message", [
    ("--participant=../x", "eigdist run: error: participant ID must be letters and digits only (a BIDS label, "
                           "[A-Za-z0-9]+), got '../x'"),
    ("--participant=" + "a" * 300, "eigdist run: error: participant ID must be at most 64 characters, got 300"),
    ("--data=" + str(ROOT / "pyproject.toml"), f"eigdist run: error: --data '{ROOT / 'pyproject.toml'}' is a file; "
                                               "give a folder"),
    ("--session=0", "session must be an int >= 1, got 0"),
    ("--monitor=uncal", "monitor 'uncal': field 'calibration' is missing (uncalibrated profile)"),
    ("--monitor=nope", "no monitor profile 'nope' in"),
    ("--simulate=weibull;slope=0", "--simulate weibull: slope must be in (0, 100], got '0'"),
    ("--window=400by300", "resolution must be WxH in pixels, e.g. 1920x1080, got '400by300'"),
])
def test_bad_arguments_fail_naming_the_problem(lab, tmp_path, monkeypatch, capsys, change, message):
    assert message in _fail(lab, tmp_path, monkeypatch, capsys, change)


def test_bad_config_fails_naming_the_key(lab, tmp_path, monkeypatch, capsys):
    bad = tmp_path / "bad.toml"
    bad.write_text(config_text().replace("test_ms = 30", "test_ms = -5"))
    err = _fail(lab, tmp_path, monkeypatch, capsys, f"--config={bad}")
    assert "eigdist run: error: bad.toml: timing.test_ms must be a number > 0, got -5" in err


def test_models_track_on_a_one_layer_set_fails_before_anything_is_written(lab, tmp_path, monkeypatch, capsys):
    models = tmp_path / "models.toml"
    models.write_text(config_text() + '[track]\nkind = "models"\n')
    err = _fail(lab, tmp_path, monkeypatch, capsys, f"--config={models}")
    assert err.strip() == ("eigdist run: error: track kind 'models' needs a stimulus set with at least two layers to "
                           "tell apart; this one has 1: resnet18:conv1 (random:0)")


def test_tampered_stimulus_set_fails_naming_the_file(lab, tmp_path, monkeypatch, capsys):
    tampered = tmp_path / "tampered"
    shutil.copytree(lab["stimuli"], tampered)
    item = sorted((tampered / "items").glob("*.npy"))[0]
    raw = bytearray(item.read_bytes())
    raw[-1] ^= 1
    item.write_bytes(bytes(raw))
    err = _fail(lab, tmp_path, monkeypatch, capsys, stimuli=tampered)
    assert f"failed verification (1 problem(s)): items/{item.name}: sha256" in err


def test_simulate_needs_a_participant_and_the_form_needs_input(lab, tmp_path, monkeypatch, capsys):
    from eigdist.cli.main import main

    monkeypatch.chdir(tmp_path)
    base = ["run", "--stimuli", str(lab["stimuli"]), "--monitor", "xvfb", "--monitors", str(lab["monitors"])]
    assert main([*base, "--simulate", WEIBULL]) == 2
    assert "--participant is required with --simulate" in capsys.readouterr().err
    monkeypatch.setattr("sys.stdin", io.StringIO(""))  # input that has ended
    monkeypatch.setattr("experiments.participant_form.display_available", lambda: False)  # the terminal form
    assert main(base) == 2
    assert "the participant form got no answer (input ended); give --participant" in capsys.readouterr().err
    assert list(tmp_path.iterdir()) == []


# ---------------------------------------------------------------- real windows


@pytest.mark.parametrize("spec,config", [(WEIBULL, "short"), (MODEL, "oddity")], ids=["weibull-2afc", "model-3afc"])
def test_simulated_session_runs_end_to_end_on_a_window(lab, xvfb, tmp_path, spec, config):
    from analysis.load import load_trials

    before = listing(lab["base"])
    frame = tmp_path / "frame.png"
    rc, out = finish(popen(xvfb, tmp_path / "cwd", run_args(lab, config, "--participant", "P01", "--simulate",
                                                                 spec, "--capture-frame", str(frame))))
    assert rc == 0, out
    paths = session_paths(tmp_path / "cwd" / "data", "P01", 1)
    assert sorted(p.name for p in (tmp_path / "cwd").iterdir()) == ["data"] and listing(lab["base"]) == before
    assert (Path(xvfb.env["HOME"]) / ".psychopy3").is_dir()  # PsychoPy's prefs went to the scratch HOME
    table = load_trials(tmp_path / "cwd" / "data")  # the analysis contract accepts the file
    rows = read_trials(paths.trials)
    sidecar = load_json(paths.sidecar)["eigdist"]
    assert len(table) == len(rows) == sidecar["n_trials"] and [r["trial"] for r in rows] == list(range(1, len(rows) + 1))
    assert set(REQUIRED_COLUMNS) <= set(table.columns)
    assert {r["observer"] for r in rows} == {spec} and all(r["calibrated"] for r in rows)
    assert {r["monitor"] for r in rows} == {"xvfb"} and {r["refresh_hz"] for r in rows} == {60.0}
    assert all(r["dropped_frames"] is None for r in rows)  # no frame sync: not measured
    (run,) = sidecar["runs"]
    assert run["window"]["framebuffer_size"] == [400, 300] and run["window"]["hardware_ramp"] == "os"
    assert run["first_trial"] == 1 and run["versions"]["eigdist"] == sidecar["eigdist_version"]
    assert (sidecar["monitor"], sidecar["pilot"], sidecar["simulate"]) == ("xvfb", False, spec)
    assert (tmp_path / "cwd" / "data" / "dataset_description.json").is_file()
    assert (tmp_path / "cwd" / "data" / "participants.tsv").read_text().splitlines()[1] == "sub-P01\tn/a\tn/a\tn/a"
    assert f"{len(rows)} trials done" in out
    assert {r["task"] for r in rows} == {load_config(lab[config]).task}
    assert {r["target_interval"] for r in rows} == set(range(1, rows[0]["n_alternatives"] + 1))
    if spec == MODEL:
        assert all(r["repr_distance"] > 0 for r in rows if r["catch_type"] != "blank")
    psychopy_csv = list(paths.psychopy.glob("*.csv"))
    assert len(psychopy_csv) == 1 and psychopy_csv[0].read_bytes().startswith(b"\xef\xbb\xbf")
    assert psychopy_csv[0].read_text(encoding="utf-8-sig").count("\n") == len(rows) + 1
    from PIL import Image

    shown = np.asarray(Image.open(frame))
    assert shown.shape == (300, 400, 3) and len(np.unique(shown[142:158, 192:208, 0])) > 4  # the 16×16 stimulus
    errors, _ = validate_bids(tmp_path / "cwd" / "data")  # with PsychoPy's files under sourcedata/
    assert errors == [], errors
    if spec == WEIBULL:  # a second run of the same session is refused without --resume, nothing changed
        data_before = listing(tmp_path / "cwd" / "data")
        rc, out = finish(popen(xvfb, tmp_path / "cwd", run_args(lab, "short", "--participant", "P01",
                                                                     "--simulate", spec)))
        assert rc == 2 and "already exists; continue it with --resume or choose another --session" in out
        assert listing(tmp_path / "cwd" / "data") == data_before


def test_real_session_on_a_screen_without_gamma_ramp_is_refused_and_writes_nothing(lab, xvfb, tmp_path):
    rc, out = finish(popen(xvfb, tmp_path / "cwd", run_args(lab, "short", "--participant", "P01")))
    assert rc == 2 and "eigdist run: error: could not set the hardware gamma ramp to identity" in out, out
    assert list((tmp_path / "cwd").iterdir()) == []


def test_sigkilled_session_resumes_with_every_trial_once(lab, xvfb, tmp_path):
    cwd = tmp_path / "cwd"
    trials = session_paths(cwd / "data", "P01", 1).trials
    proc = popen(xvfb, cwd, run_args(lab, "long", "--participant", "P01", "--simulate", WEIBULL))
    deadline = time.monotonic() + 90
    while n_rows(trials) < 5 and proc.poll() is None and time.monotonic() < deadline:
        time.sleep(0.01)
    proc.send_signal(signal.SIGKILL)
    rc, out = finish(proc)
    assert rc == -signal.SIGKILL, f"the session ended before it could be killed: {out}"
    before = read_trials(trials)
    sidecar = session_paths(cwd / "data", "P01", 1).sidecar
    n_planned = load_json(sidecar)["eigdist"]["n_trials"]
    assert 5 <= len(before) < n_planned
    rc, out = finish(popen(xvfb, cwd, run_args(lab, "long", "--participant", "P01", "--simulate", WEIBULL,
                                               "--resume")))
    assert rc == 0, out
    after = read_trials(trials)
    assert [r["trial"] for r in after] == list(range(1, n_planned + 1))
    assert after[:len(before)] == before
    assert [r["first_trial"] for r in load_json(sidecar)["eigdist"]["runs"]] == [1, len(before) + 1]
    unbroken = headless_rows(lab, "long", WEIBULL, tmp_path / "headless")
    assert [[r[c] for c in COMPARED] for r in after] == [[r[c] for c in COMPARED] for r in unbroken]


class XKeys:
    """Real key events through the XTEST extension, sent to the PsychoPy window (no window manager)."""

    def __init__(self, display: str) -> None:
        from Xlib import display as xdisplay

        self.d = xdisplay.Display(display)

    def focus(self, title: str = "PsychoPy") -> bool:
        """Give the window named ``title`` the keyboard focus; False while it does not exist."""
        from Xlib import X

        stack = [self.d.screen().root]
        while stack:
            win = stack.pop()
            if win.get_wm_name() in (title, title.encode()):
                win.set_input_focus(X.RevertToParent, X.CurrentTime)
                self.d.sync()
                return True
            stack += win.query_tree().children
        return False

    def press(self, key: str) -> None:
        from Xlib import X, XK
        from Xlib.ext import xtest

        code = self.d.keysym_to_keycode(XK.string_to_keysym(key))
        xtest.fake_input(self.d, X.KeyPress, code)
        self.d.sync()
        time.sleep(0.03)
        xtest.fake_input(self.d, X.KeyRelease, code)
        self.d.sync()

    def drive(self, proc: subprocess.Popen, trials: Path, key_for, *, escape_after: int | None = None,
              timeout: float = 120) -> None:
        """Answer trial t with ``key_for(t)`` until ``proc`` ends; Space for text screens; Escape after n rows.

        A key is sent again only when the trial file has not grown within 0.6 s (a row is written
        within milliseconds of the key), so no answer can land on the next trial.
        """
        deadline = time.monotonic() + timeout
        while not self.focus():
            assert proc.poll() is None and time.monotonic() < deadline, "the PsychoPy window never appeared"
            time.sleep(0.1)
        while proc.poll() is None and time.monotonic() < deadline:
            done = n_rows(trials)
            time.sleep(0.15)  # let the next trial's frames pass: keys pressed before its response screen are dropped
            if escape_after is not None and done >= escape_after:
                self.press("Escape")
                time.sleep(0.5)
                continue
            self.press(key_for(done + 1))
            until = time.monotonic() + 0.6
            while n_rows(trials) == done and time.monotonic() < until and proc.poll() is None:
                time.sleep(0.01)
            if n_rows(trials) == done:
                self.press("space")  # an instruction, break or end screen
                time.sleep(0.2)


@pytest.fixture
def keys(xvfb: VirtualDisplay) -> Iterator[XKeys]:
    """An :class:`XKeys` on the test's screen; its X connection is closed afterwards."""
    keys = XKeys(xvfb.display)
    yield keys
    keys.d.close()


def test_keyboard_answers_real_x_key_events_and_escape_keeps_the_data(lab, xvfb, keys, tmp_path):
    cwd = tmp_path / "cwd"
    trials = session_paths(cwd / "data", "P01", 1).trials

    def key_for(trial: int) -> str:
        return "1" if trial % 3 == 0 else "2"

    human = run_args(lab, "short", "--participant", "P01", "--pilot", "--age", "30", "--vision", "corrected")
    proc = popen(xvfb, cwd, human)
    keys.drive(proc, trials, key_for, escape_after=3)
    rc, out = finish(proc)
    assert rc == 3 and "stopped with Escape after trial 3" in out, out
    psychopy = session_paths(cwd / "data", "P01", 1).psychopy
    assert len(read_trials(trials)) == 3 and len(list(psychopy.glob("*.csv"))) == 1
    proc = popen(xvfb, cwd, human + ["--resume"])
    keys.drive(proc, trials, key_for)
    rc, out = finish(proc)
    assert rc == 0, out
    rows = read_trials(trials)
    sidecar = load_json(session_paths(cwd / "data", "P01", 1).sidecar)["eigdist"]
    assert [r["trial"] for r in rows] == list(range(1, sidecar["n_trials"] + 1))
    assert [r["first_trial"] for r in sidecar["runs"]] == [1, 4]
    assert [r["response"] for r in rows] == [int(key_for(r["trial"])) for r in rows]
    assert all(r["correct"] == (r["response"] == r["target_interval"]) for r in rows)
    assert all(r["rt"] > 0 and r["observer"] == "human" and r["calibrated"] is False for r in rows)
    assert all(isinstance(r["dropped_frames"], int) for r in rows)
    assert sidecar["participant_info"] == {"age": 30, "vision": "corrected"} and sidecar["pilot"] is True
    assert any(r["correct"] for r in rows) and not all(r["correct"] for r in rows)


def test_model_observer_imports_torch_before_psychopy(lab, tmp_path):
    code = (
        "import sys; from pathlib import Path\n"
        "from experiments.participant_form import check_info\nfrom experiments.session import RunOptions, prepare\n"
        f"prepare(RunOptions(Path({str(lab['stimuli'])!r}), 'xvfb', check_info('P01'), "
        f"monitors=Path({str(lab['monitors'])!r}), simulate={MODEL!r}))\n"
        "print(sorted(m for m in ('torch', 'psychopy') if m in sys.modules))\n"
    )
    env = {**os.environ, "PYTHONPATH": str(ROOT), "HOME": str(tmp_path)}
    done = subprocess.run([sys.executable, "-c", code], env=env, cwd=tmp_path, capture_output=True, text=True,
                          timeout=120)
    assert done.stdout.strip() == "['torch']", done.stderr  # PsychoPy comes later, with the window


# ---------------------------------------------------------------- resume rules, lock, Ctrl-C (issue 16)


def _wait_rows(proc: subprocess.Popen, trials: Path, n: int, timeout: float = 90) -> None:
    deadline = time.monotonic() + timeout
    while n_rows(trials) < n and proc.poll() is None and time.monotonic() < deadline:
        time.sleep(0.01)
    assert proc.poll() is None, f"the session ended before trial {n}: {finish(proc)[1]}"


def test_interrupted_resume_keeps_the_record_and_refuses_other_settings(lab, xvfb, tmp_path, monkeypatch, capsys):
    """Ctrl-C exits 130 with the --resume hint; a resume must match what was recorded (naming both values),
    appends a run and keeps participant_info; a finished session is left unchanged."""
    from eigdist.cli.main import main
    from experiments.monitor import save_profile

    cwd = tmp_path / "cwd"
    data = cwd / "data"
    paths = session_paths(data, "P01", 1)
    first = run_args(lab, "long", "--participant", "P01", "--simulate", WEIBULL, "--age", "30")
    proc = popen(xvfb, cwd, first)
    _wait_rows(proc, paths.trials, 3)
    proc.send_signal(signal.SIGINT)
    rc, out = finish(proc)
    assert rc == 130 and "eigdist run: interrupted; every finished trial is saved; rerun with --resume" in out, out
    done = read_trials(paths.trials)
    record = load_json(paths.sidecar)["eigdist"]
    assert 3 <= len(done) < record["n_trials"] and record["participant_info"] == {"age": 30}

    monitors = tmp_path / "monitors"
    for name in ("xvfb", "other"):
        save_profile(make_profile(name=name), monitors)
    monkeypatch.chdir(cwd)
    resume = [*first[3:], "--resume", "--monitors", str(monitors)]
    resume = resume[:resume.index("--age")] + resume[resume.index("--age") + 2:]  # a resume asks no details
    before = listing(data)

    def refused(flag: str, value: str | None, message: str) -> None:
        args = list(resume)
        if value is None:
            args.append(flag)
        else:
            args[args.index(flag) + 1] = value
        assert main(args) == 2
        err = capsys.readouterr().err
        assert f"eigdist run: error: cannot resume {paths.trials}: " in err and message in err, err
        assert listing(data) == before

    refused("--simulate", "weibull;threshold=0.3;seed=1",
            "observer was 'weibull;threshold=0.2;seed=1' when the session started, now 'weibull;threshold=0.3;seed=1' "
            "(the observer (--simulate) differs)")
    refused("--pilot", None, "pilot was False when the session started, now True (--pilot differs)")
    refused("--monitor", "other", "monitor was 'xvfb' when the session started, now 'other' (--monitor differs)")
    slower = tmp_path / "slower.toml"
    slower.write_text(config_text(per_condition=20, feedback=False).replace("test_ms = 30", "test_ms = 50"))
    refused("--config", str(slower), "config.timing.test_ms was 30.0 when the session started, now 50.0 "
                                     "(--config differs)")

    rc, out = finish(popen(xvfb, cwd, run_args(lab, "long", "--participant", "P01", "--simulate", WEIBULL,
                                               "--resume")))
    assert rc == 0, out
    after = load_json(paths.sidecar)["eigdist"]
    assert [r["first_trial"] for r in after["runs"]] == [1, len(done) + 1]
    assert {k: v for k, v in after.items() if k != "runs"} == {k: v for k, v in record.items() if k != "runs"}
    assert after["runs"][0] == record["runs"][0]
    assert read_trials(paths.trials)[:len(done)] == done

    finished = listing(data)
    assert main(resume[:-2]) == 0  # the profile folder the session used
    assert (f"eigdist run: session {paths.trials.name} is finished ({record['n_trials']} of {record['n_trials']} "
            "trials); nothing to resume, nothing changed") in capsys.readouterr().out
    assert listing(data) == finished


def test_a_second_run_of_a_running_session_is_refused_naming_the_holder(lab, xvfb, tmp_path, monkeypatch, capsys):
    from eigdist.cli.main import main

    cwd = tmp_path / "cwd"
    paths = session_paths(cwd / "data", "P01", 1)
    args = run_args(lab, "long", "--participant", "P01", "--simulate", WEIBULL)
    proc = popen(xvfb, cwd, args)
    try:
        _wait_rows(proc, paths.trials, 2)
        monkeypatch.chdir(cwd)
        for extra in ([], ["--resume"]):
            assert main([*args[3:], *extra]) == 2
            err = capsys.readouterr().err
            assert (f"eigdist run: error: session sub-P01 ses-1 in {paths.root} is in use by another process "
                    f"(pid {proc.pid} on ") in err, err
    finally:
        proc.kill()
        finish(proc)


def test_sessions_started_at_once_on_a_fresh_account_find_psychopy_s_files_whole(lab, xvfb, tmp_path):
    """PsychoPy's first-use race, forced (tests/psychopy_race.py): the second session lists the monitor
    folder before the first creates testMonitor.json, and reads it while it is still empty. eigdist
    imports PsychoPy under one lock per account, so both sessions finish and the file is whole JSON."""
    home, signals = tmp_path / "home", tmp_path / "signals"
    home.mkdir()
    signals.mkdir()
    screen = replace(xvfb, env={**xvfb.env, "HOME": str(home)})
    race = [sys.executable, str(ROOT / "tests" / "psychopy_race.py")]
    procs = [popen(screen, tmp_path / role, [*race, role, str(signals),
                                           *run_args(lab, "short", "--participant", f"P{i}", "--simulate", WEIBULL)[3:]])
             for i, role in enumerate(("first", "second"), start=1)]
    results = [finish(proc, timeout=600) for proc in procs]  # two first PsychoPy starts on a loaded machine
    for code, err in results:
        assert code == 0, err
    assert json.loads((home / ".psychopy3" / "monitors" / "testMonitor.json").read_text())


def test_psychopy_s_unreadable_monitor_file_is_named(tmp_path, monkeypatch):
    from experiments import psychopy_home

    monitors = tmp_path / ".psychopy3" / "monitors"
    monitors.mkdir(parents=True)
    (monitors / "testMonitor.json").write_text("")
    assert psychopy_home._unreadable(monitors) == str(monitors / "testMonitor.json")


def test_a_shared_dataset_names_no_home_folder_and_no_user(lab, xvfb, tmp_path):
    """BIDS data is made to be published: after a session, no file of the dataset holds an absolute path
    of this machine (the home folder, the working folder, the set's folder) or the user's name as a folder."""
    import getpass

    proc = popen(xvfb, tmp_path / "lab", run_args(lab, "short", "--participant", "P01", "--simulate", WEIBULL))
    code, out = finish(proc)
    assert code == 0, out
    data = tmp_path / "lab" / "data"
    record = load_json(session_paths(data, "P01", 1).sidecar)["eigdist"]
    assert record["stimuli"] == lab["stimuli"].name
    user = getpass.getuser()
    leaks = {str(Path.home()), xvfb.env["HOME"], str(tmp_path), str(lab["base"]), f"/{user}/", f"-of-{user}/"}
    for file in data.rglob("*"):
        if file.is_file():
            text = file.read_bytes().decode("utf-8", errors="replace")
            assert not [leak for leak in leaks if leak in text], (file, [leak for leak in leaks if leak in text])


def test_the_set_is_recorded_relative_to_the_dataset_or_by_its_folder_name(tmp_path):
    from experiments.session import shareable_set_path

    assert shareable_set_path(tmp_path / "lab" / "stimuli" / "demo", tmp_path / "lab" / "data") == "../stimuli/demo"
    assert shareable_set_path(tmp_path / "elsewhere" / "demo", tmp_path / "lab" / "data") == "demo"
