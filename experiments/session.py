"""The PsychoPy session: a window, the trial engine and a responder, tied together.

This is the one module (with :mod:`experiments.window` and :mod:`experiments.pixel_image`) that
imports PsychoPy's display parts; it does so inside functions, after every check, so ``import
experiments.session`` needs no X display and a bad input fails before a window opens or a file is written.

Flow of :func:`run_session`:

1. :func:`prepare` checks everything without writing: participant ID and session, the
   experiment config, the ``--simulate`` spec, the monitor profile (its calibration unless
   ``pilot``), the stimulus set (every file's sha256), and builds the responder. A model
   observer imports torch here, before PsychoPy (the platform notes require that order).
2. The window (:func:`experiments.window.open_window`; ``simulated`` turns ``waitBlanking``
   off), then the engine (:func:`experiments.engine.open_engine`: new or resumed trial file).
3. Instructions, then per trial: a break screen where the plan says so, the stimulus
   textures prepared (dithered) *before* the first frame, the frames counted from the
   profile's refresh rate (:func:`experiments.design.frame_sequence`), the answer from the
   responder (keys read after the response screen appears, ``waitRelease=True``), the row
   written and fsynced (:meth:`~experiments.engine.TrialEngine.record`), optional feedback.
4. An end screen with a summary. Escape at any screen (or Ctrl-C) stops the session: every
   finished trial is already on disk; ``--resume`` continues it.

PsychoPy's ``ExperimentHandler`` writes its own wide CSV of this run into
``DATA/sourcedata/sub-<p>/ses-<s>/psychopy/`` when the run ends (also on Escape); it is a courtesy copy, the
trial file is the record.
"""

from __future__ import annotations

import os
import platform
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Callable

import numpy as np

from eigdist_core.io import check_output_folder
from eigdist_core.locks import hold, probe

from .config import ExperimentConfig, load_config
from .datafile import read_trials, session_paths
from .design import Trial, frame_sequence, frames
from .monitor import MonitorProfile, check_calibrated, load_profile
from .observers import KeyboardResponder, Responder, Stimuli, make_responder, parse_simulate
from .participant_form import ParticipantInfo, check_info
from eigdist_core.errors import EigdistError

#: Dithering patterns prepared per stimulus and cycled frame by frame (``display.dithering = "frame"``).
DITHER_POOL = 8
#: Response keys of intervals 1, 2, 3.
RESPONSE_KEYS = ("1", "2", "3")
#: Exit status of a session stopped with Escape (finished trials are saved).
ABORTED = 3
#: A flip interval longer than this many frame periods counts as dropped frames.
DROP_FACTOR = 1.5

_INSTRUCTIONS = {
    "2afc_ref": "You will see a picture, then two more pictures.\n"
                "One of the two differs slightly from the first.\n\n"
                "Press 1 if the first of the two differs, 2 if the second does.",
    "3afc_oddity": "You will see three pictures; one differs slightly from the other two.\n\n"
                   "Press 1, 2 or 3 for the odd one.",
}


class SessionAborted(Exception):
    """Escape was pressed; finished trials are on disk."""


# ---------------------------------------------------------------- checks before anything opens


@dataclass(frozen=True)
class RunOptions:
    """What ``eigdist run`` was asked (see ``eigdist/cli/run.py``)."""

    stimuli: Path
    monitor: str
    info: ParticipantInfo
    config: Path | None = None
    data: Path = Path("data")
    monitors: Path | None = None
    resume: bool = False
    pilot: bool = False
    simulate: str | None = None
    fullscreen: bool = False
    window: tuple[int, int] | None = None
    capture: Path | None = None


@dataclass
class Prepared:
    """Everything checked and loaded before a window opens."""

    options: RunOptions
    config: ExperimentConfig
    profile: MonitorProfile
    stimuli: Any
    responder: Responder | None  # None: the keyboard (needs the window)
    magnification: int = 1  # integer pixel replication (display.stimulus_deg or display.magnification)
    stimulus_deg: float = 0.0  # the achieved width in degrees of visual angle

    @property
    def observer(self) -> str:
        """``human``, or the simulated observer's spec (the ``observer`` column)."""
        return self.responder.observer if self.responder is not None else "human"


def prepare(options: RunOptions) -> Prepared:
    """Check every input and load the stimulus set and responder; writes nothing.

    Raises
    ------
    ValueError, FileNotFoundError
        Naming the bad participant ID, session, config key, ``--simulate`` part, monitor
        field (``ProfileError``: missing or expired calibration unless ``pilot``; a colour set
        without per-gun calibration), stimulus-set file or stimulus size
        (``DisplayError``: a size in degrees no integer magnification reaches).
    """
    from .pixel_image import choose_magnification
    from .engine import check_session, open_stimuli

    info = options.info
    check_info(info.participant, info.session, info.age, info.sex, info.vision)
    config = load_config(options.config)
    spec = parse_simulate(options.simulate) if options.simulate is not None else None
    profile = load_profile(options.monitor, options.monitors)
    if not options.pilot:
        check_calibrated(profile)
    if options.capture is not None and Path(options.capture).suffix.lower() != ".png":
        raise EigdistError(f"--capture-frame must name a .png file, got {str(options.capture)!r}")
    check_output_folder(options.data, "--data")
    stimuli = open_stimuli(options.stimuli, profile=profile)
    size = int(stimuli.manifest["size"])
    window = tuple(profile.resolution) if options.fullscreen or options.window is None else options.window
    magnification, stimulus_deg = choose_magnification(
        (size, size), profile, window, magnification=config.magnification, stimulus_deg=config.stimulus_deg,
        tolerance=config.size_tolerance)
    responder = None
    if spec is not None:
        if spec.kind == "model":
            import torch  # noqa: F401  (before PsychoPy: see the module docstring)
        responder = make_responder(spec, source=stimuli)
    prep = Prepared(options, config, profile, stimuli, responder, magnification, stimulus_deg)
    _session_lock(options, check_only=True)  # a running session is named before its files are judged
    check_session(stimuli, config, options.data, info.participant, info.session, observer=prep.observer,
                  calibrated=not options.pilot, resume=options.resume, constants={"monitor": profile.name},
                  metadata=_record(options, profile))
    return prep


#: How long a session lock left by another machine holds (seconds from its start) unless its note is
#: removed: longer than any session, so a live session on another PC is never broken into.
SESSION_LOCK_HOLDS_S = 12 * 3600


def _session_lock(options: RunOptions, *, check_only: bool = False) -> Any:
    """The lock a running session holds (refuses a second run of it, naming the holder).

    With ``check_only``, refuse if it is held but create nothing (the checks leave DATA untouched).
    """
    info = options.info
    paths = session_paths(options.data, info.participant, info.session)
    what = f"session sub-{info.participant} ses-{info.session} in {paths.root}"
    if check_only:
        return probe(paths.lock, what, across_hosts_s=SESSION_LOCK_HOLDS_S)
    return hold(paths.lock, what, across_hosts_s=SESSION_LOCK_HOLDS_S)


def _record(options: RunOptions, profile: MonitorProfile) -> dict:
    """What the session record holds from the options and the display (besides the engine's plan and config)."""
    from eigdist_core import __version__

    return {"pilot": options.pilot, "simulate": options.simulate,
            "stimuli": shareable_set_path(options.stimuli, options.data), "eigdist_version": __version__,
            "display": display_fingerprint(profile)}


def display_fingerprint(profile: MonitorProfile) -> dict:
    """What a session's display is: the profile's constants and calibration, and a sha256 over them.

    A resume must find the same (:data:`experiments.resume_check.RESUME_FIELDS`): one session never
    mixes two displays. The profile's notes, expiry and history do not count.
    """
    from eigdist_core.io import json_bytes, sha256_bytes

    from .monitor import profile_to_dict

    data = profile_to_dict(profile)
    shown = {key: data[key] for key in ("width_cm", "distance_cm", "resolution", "refresh_hz", "bits", "calibration")}
    cal = profile.calibration
    return {"width_cm": profile.width_cm, "distance_cm": profile.distance_cm, "resolution": list(profile.resolution),
            "refresh_hz": profile.refresh_hz, "bits": profile.bits, "calibration_date": cal.date if cal else None,
            "sha256": sha256_bytes(json_bytes(shown))}


def shareable_set_path(stimuli: str | os.PathLike, data: str | os.PathLike) -> str:
    """Where the stimulus set lies, as a dataset meant to be published may record it.

    The set's folder relative to the dataset (``../stimuli/demo``) when it lies in the folder
    that holds the dataset, else only its folder name: never an absolute path, which names a
    home folder or a user. The set itself is identified by the record's ``set_id``.
    """
    folder, project = Path(stimuli).resolve(), Path(data).resolve().parent
    if folder.is_relative_to(project):
        return Path(os.path.relpath(folder, Path(data).resolve())).as_posix()
    return folder.name


# ---------------------------------------------------------------- pure helpers


def dropped_frames(flip_times: list[float], refresh_hz: float) -> int:
    """Frames lost between consecutive flips: an interval of k periods (k > ``DROP_FACTOR``) lost k − 1."""
    period = 1.0 / refresh_hz
    lost = 0
    for dt in np.diff(np.asarray(flip_times, dtype=float)):
        if dt > DROP_FACTOR * period:
            lost += max(1, round(dt / period) - 1)
    return lost


def session_constants(profile: MonitorProfile, *, color: str = "grey", magnification: int = 1,
                      stimulus_deg: float | None = None) -> dict:
    """The per-session columns of the trial file that describe the display and the stimulus size."""
    import psychopy

    cal = profile.calibration
    return {
        "monitor": profile.name, "calibration_date": cal.date if cal else None, "color": color,
        "magnification": magnification, "stimulus_deg": None if stimulus_deg is None else round(stimulus_deg, 6),
        "ppd": round(profile.ppd, 6),
        "distance_cm": profile.distance_cm, "lum_min": cal.lum_min if cal else None,
        "lum_mean": cal.lum_mean if cal else None, "lum_max": cal.lum_max if cal else None,
        "bpc": profile.bits, "refresh_hz": profile.refresh_hz, "psychopy_version": psychopy.__version__,
    }


def summary(rows: list[dict]) -> list[str]:
    """End-of-session lines: trials, accuracy of main and catch trials, dropped frames; a models track's
    most probable layer and choice times (:func:`experiments.model_session.summary_lines`)."""
    from .model_session import summary_lines

    def pct(sel: list[dict]) -> str:
        return f"{100 * sum(r['correct'] for r in sel) / len(sel):.0f}% correct of {len(sel)}" if sel else "none"

    main = [r for r in rows if not r["is_practice"] and not r["is_catch"]]
    lines = [f"{len(rows)} trials done", f"main trials: {pct(main)}",
             f"easy catch trials: {pct([r for r in rows if r['catch_type'] == 'easy'])}",
             f"blank catch trials (chance expected): {pct([r for r in rows if r['catch_type'] == 'blank'])}"]
    dropped = [r["dropped_frames"] for r in rows if r.get("dropped_frames") is not None]
    if dropped:
        lines.append(f"dropped frames: {sum(dropped)} in {sum(d > 0 for d in dropped)} trials")
    return lines + summary_lines(rows)


# ---------------------------------------------------------------- the window side


class Screen:
    """What the session draws: dithered stimulus pools, fixation, text; frame loop and keys.

    Parameters
    ----------
    win
        The window from :func:`experiments.window.open_window`.
    profile, config
        The monitor profile (mapping, refresh rate) and the experiment configuration.
    simulated
        No waiting for keys on text screens (a simulated observer answers trials).
    rng
        Dithering noise.
    magnification
        Integer pixel replication of every stimulus.
    """

    def __init__(self, win: Any, profile: MonitorProfile, config: ExperimentConfig, *, simulated: bool,
                 rng: np.random.Generator, magnification: int = 1) -> None:
        from psychopy import visual
        from psychopy.hardware import keyboard

        from .pixel_image import PixelImage

        self.win, self.profile, self.config, self.simulated = win, profile, config, simulated
        self.kb = keyboard.Keyboard(backend="ptb")
        size = max(12, int(win.size[1]) // 30)
        self.text = visual.TextStim(win, text="", height=size, wrapWidth=int(win.size[0]) * 0.8, units="pix",
                                    color=(-1, -1, -1), autoLog=False)
        self.prompt = visual.TextStim(win, text="", height=size, units="pix", pos=(0, -int(win.size[1]) // 3),
                                      color=(-1, -1, -1), autoLog=False)
        self.fixation = visual.TextStim(win, text="+", height=2 * size, units="pix", color=(-1, -1, -1),
                                        autoLog=False)
        n = DITHER_POOL if config.dithering == "frame" else 1
        mode = "off" if config.dithering == "off" else "trial"
        self.pool = {content: [PixelImage(win, profile, dither=mode, rng=rng, magnification=magnification)
                               for _ in range(n)]
                     for content in ("image", "distorted")}

    def prepare(self, stimuli: Stimuli, target_interval: int) -> None:
        """Map and upload every texture the trial shows (before its first frame)."""
        values = {"image": stimuli.reference, "distorted": stimuli.intervals[target_interval - 1]}
        for content, images in self.pool.items():
            for image in images:
                image.set_values(values[content])

    def draw(self, content: str, frame: int) -> None:
        """Draw one frame's content: ``fixation``, ``blank``, ``image`` or ``distorted``."""
        if content == "fixation":
            self.fixation.draw()
        elif content in self.pool:
            images = self.pool[content]
            images[frame % len(images)].draw()

    def check_escape(self) -> None:
        """Raise :class:`SessionAborted` if Escape was pressed."""
        if self.kb.getKeys(keyList=["escape"], waitRelease=False):
            raise SessionAborted

    def wait_key(self, keys: tuple[str, ...]) -> tuple[str, float]:
        """Wait for one of ``keys`` (on release); keys pressed earlier are dropped. Returns (key, rt)."""
        from psychopy import core

        self.kb.clearEvents()
        while True:
            got = self.kb.getKeys(keyList=[*keys, "escape"], waitRelease=True)
            if got:
                if got[0].name == "escape":
                    raise SessionAborted
                return got[0].name, float(got[0].rt)
            core.wait(0.002, hogCPUperiod=0)

    def message(self, text: str, *, key: str = "space") -> None:
        """Show ``text``; wait for ``key`` unless simulated."""
        self.text.text = text + ("" if self.simulated else f"\n\n(press {key} to continue)")
        self.text.draw()
        self.win.flip()
        if self.simulated:
            self.check_escape()
        else:
            self.wait_key((key,))

    def respond_screen(self, n_alternatives: int) -> float:
        """Show the response prompt, start the reaction-time clock at its flip; return the flip time."""
        self.fixation.draw()
        self.prompt.text = " or ".join(RESPONSE_KEYS[:n_alternatives]) + "?"
        self.prompt.draw()
        self.win.callOnFlip(self.kb.clock.reset)
        return self.win.flip()

    def feedback(self, correct: bool, n_frames: int) -> None:
        """The fixation cross in green (correct) or red (wrong) for ``n_frames``."""
        self.fixation.color = (-1, 0.6, -1) if correct else (0.8, -1, -1)
        for _ in range(n_frames):
            self.fixation.draw()
            self.win.flip()
        self.fixation.color = (-1, -1, -1)


@dataclass
class SessionResult:
    """What a run did: the trial file, how many trials it ran, whether Escape stopped it."""

    trials_file: Path
    n_run: int
    n_total: int
    aborted: bool
    summary: list[str] = field(default_factory=list)
    psychopy_file: Path | None = None


def run_session(options: RunOptions, *, out: Callable[[str], Any] = print) -> SessionResult:
    """Run one session on a PsychoPy window (checks first: see :func:`prepare`)."""
    prep = prepare(options)
    return run_prepared(prep, out=out)


def run_prepared(prep: Prepared, *, out: Callable[[str], Any] = print) -> SessionResult:
    """Open the window and the engine and run the pending trials of a prepared session."""
    from .window import open_window

    opts, profile = prep.options, prep.profile
    simulated = prep.responder is not None
    win, report = open_window(profile, fullscreen=opts.fullscreen, size=opts.window, pilot=opts.pilot,
                              simulated=simulated)
    try:  # the lock is taken once the window opened: a run refused by its window leaves DATA as it was
        with _session_lock(opts):
            for problem in report.problems:  # not enforced: a pilot, or a simulated observer (recorded in the run)
                out(f"{'pilot' if opts.pilot else 'simulated observer, screen not checked'}: {problem}")
            return _run(prep, win, report, out)
    finally:
        win.close()


def _run(prep: Prepared, win: Any, report: Any, out: Callable[[str], Any]) -> SessionResult:
    from dataclasses import asdict

    from psychopy import data as psydata

    from eigdist_core import __version__
    from .engine import open_engine

    opts, profile, config, info = prep.options, prep.profile, prep.config, prep.options.info
    simulated = prep.responder is not None
    observer = prep.observer
    constants = session_constants(profile, color="rgb" if prep.stimuli.manifest["channels"] == 3 else "grey",
                                  magnification=prep.magnification, stimulus_deg=prep.stimulus_deg)
    run = {"started": datetime.now(timezone.utc).isoformat(timespec="seconds"),
           "window": {k: list(v) if isinstance(v, tuple) else v for k, v in asdict(report).items()},
           "versions": {"eigdist": __version__, "psychopy": constants["psychopy_version"],
                        "python": platform.python_version(), "numpy": np.__version__}}
    screen = Screen(win, profile, config, simulated=simulated, rng=np.random.default_rng([config.seed, info.session]),
                    magnification=prep.magnification)
    responder = prep.responder or KeyboardResponder(wait_keys=screen.wait_key, keys=RESPONSE_KEYS)
    engine = open_engine(prep.stimuli, config, opts.data, info.participant, info.session, observer=observer,
                         calibrated=not opts.pilot, resume=opts.resume, constants=constants,
                         metadata=_record(opts, profile), run=run, participant_info=info.extra())
    paths = session_paths(opts.data, info.participant, info.session)
    stamp = datetime.now(timezone.utc).strftime("%Y%m%dT%H%M%S")
    n_total, done_before, aborted = len(engine.plan.trials), engine.done, False
    with engine.writer:
        paths.psychopy.mkdir(parents=True, exist_ok=True)
        exp = psydata.ExperimentHandler(
            name="eigdist-noticeability", version=__version__, savePickle=False, saveWideText=True,
            extraInfo={"participant": info.participant, "session": info.session, "observer": observer},
            dataFileName=str(paths.psychopy / f"sub-{info.participant}_ses-{info.session}_{stamp}"), autoLog=False,
        )
        try:
            _trials(screen, engine, responder, exp, simulated, opts.capture)
        except SessionAborted:
            aborted = True
        finally:
            exp.close()
    rows = read_trials(paths.trials)
    lines = summary(rows)
    if aborted:
        lines.insert(0, f"stopped with Escape after trial {len(rows)} of {n_total}; every finished trial is saved; "
                        f"continue with --resume")
    else:
        try:
            screen.message("Done, thank you!\n\n" + "\n".join(lines[1:3]))
        except SessionAborted:
            pass
    for line in lines:
        out(line)
    files = sorted(paths.psychopy.glob(f"sub-{info.participant}_ses-{info.session}_{stamp}*.csv"))
    return SessionResult(paths.trials, len(rows) - done_before, n_total, aborted, lines, files[0] if files else None)


def _trials(screen: Screen, engine: Any, responder: Responder, exp: Any, simulated: bool,
            capture: Path | None) -> None:
    """Every pending trial, with its instruction or break screen before it; rows also go to ``exp``."""
    config, hz = engine.config, screen.profile.refresh_hz
    n_total, prev = len(engine.plan.trials), None
    for trial in engine.pending():
        if prev is None:
            resumed = (f"Welcome back: the session continues at trial {trial.trial} of {n_total}.\n\n"
                       if trial.trial > 1 else "")
            practice = "First a few practice trials.\n\n" if trial.is_practice else ""
            screen.message(resumed + _INSTRUCTIONS[config.task] + "\n\n" + practice)
        elif trial.break_before:
            head = "Practice done: the experiment starts now." if prev.is_practice else "Break."
            screen.message(f"{head}\n\n{trial.trial - 1} of {n_total} trials done.")
        row = run_trial(screen, engine, responder, trial, hz, simulated, capture=capture if prev is None else None)
        for key, value in row.items():
            exp.addData(key, value)
        exp.nextEntry()
        if config.feedback:
            screen.feedback(row["correct"], frames(config.timing.feedback_ms, hz))
        prev = trial


def run_trial(screen: Screen, engine: Any, responder: Responder, trial: Trial, hz: float, simulated: bool,
           capture: Path | None) -> dict:
    """One trial: prepare textures, show the counted frames, get the answer, write the row."""
    from .window import capture_levels, save_frame_png

    config = engine.config
    stim = engine.stimuli(trial)
    screen.prepare(stim, trial.target_interval)
    segments = frame_sequence(config.task, config.timing, hz, trial.target_interval)
    flips = []
    for seg in segments[:-1]:  # the last segment is the (unlimited) response
        for i in range(seg.n_frames):
            screen.draw(seg.content, i)
            if capture is not None and seg.content == "distorted" and i == 0:
                save_frame_png(capture_levels(screen.win, screen.profile.bits), screen.profile.bits, str(capture))
                capture = None
            flips.append(screen.win.flip())
            screen.check_escape()
    flips.append(screen.respond_screen(config.n_alternatives))  # ends the last test interval
    response = responder.respond(trial, stim, engine.plan.session)
    dropped = None if simulated else dropped_frames(flips, hz)
    return engine.record(trial, stim, response, dropped_frames=dropped)


__all__ = ["ABORTED", "DITHER_POOL", "Prepared", "RunOptions", "Screen", "SessionAborted", "SessionResult",
           "dropped_frames", "prepare", "run_prepared", "run_trial", "run_session", "session_constants", "summary"]
