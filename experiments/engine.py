"""The trial loop without a screen: tracks pick α, stimuli are built, answers are written.

:class:`TrialEngine` ties a :class:`~experiments.design.SessionPlan`, one
adaptive track per condition, a stimulus source and a
:class:`~experiments.datafile.TrialWriter`. The PsychoPy session does, for
each pending trial, ``stim = engine.stimuli(trial)``, shows the frames,
asks its responder, and calls ``engine.record(trial, stim, response, ...)``;
:func:`run_headless` does the same with a simulated responder and no window.

Tracks carry over sessions: each is rebuilt (:func:`~experiments.staircase.rebuild_track`)
from the participant's earlier rows of the same stimulus set and condition,
then from the rows already written in this session. Catch and practice
trials never update a track. Practice shows ``practice_alpha_ratio × the
ceiling``.

Easy catch trials measure attention, so they show only what is visible by
construction (:meth:`TrialEngine.alpha`): on a ``max`` condition (the plan puts
them there), α = ``easy_factor`` × the track's threshold estimate, provided the
track has seen at least :data:`EASY_MIN_TRIALS` trials (the estimate rests on
data, not on the prior) and that α lies below the item's ceiling (there is room
above the threshold). Otherwise the trial shows the ceiling itself: it is still
a catch trial for the observer, but α = ``alpha_ceiling`` marks it as not
visible by construction, and :func:`analysis.exclusions.attention_catches`
leaves it out of the easy-catch score.

Under ``track.kind = "models"`` (:mod:`experiments.model_session`) the common trials run as above on
their conditions' own tracks (fed by common rows only), the chosen trials show the models track's item
and α, every tracked row feeds its posterior, and :meth:`TrialEngine.pending` ends the session once the
models track stops (``on_stop`` is told why, once).
"""

from __future__ import annotations

import math
import os
from dataclasses import replace
from datetime import datetime, timezone
from typing import Any, Callable, Iterable, Iterator, Protocol

import numpy as np

from eigdist_core.errors import EigdistError
from eigdist_core.io import sha256_bytes

from eigdist_core.contract import CONDITION_KEY, DISPLAY_RANGE

from .config import ExperimentConfig
from .datafile import (
    TrialWriter, check_session_files, mark_stopped, open_session, participant_trials, session_paths,
)
from .design import Condition, SessionPlan, Trial, conditions, plan_session, stable_int
from .item_trials import selected_trials
from .model_session import ModelSession, model_grid
from .model_track import ModelGrid
from .monitor import MonitorProfile, ProfileError
from .observers import Responder, Response, Stimuli
from .readings_rules import check_additivity
from .staircase import Track, rebuild_track

#: Tracked trials a condition's track needs before an easy catch trusts its threshold estimate.
EASY_MIN_TRIALS = 10


class StimulusSource(Protocol):
    """A stimulus set as the engine needs it; ``eigdist_core.stimulus_set.StimulusSet`` is one."""

    manifest: dict
    set_id: str

    def image(self, image_id: str) -> np.ndarray: ...

    def item(self, item_id: str) -> np.ndarray: ...


def tracked(row: dict) -> bool:
    """Whether a saved row fed its condition's track (not catch, not practice)."""
    return not row["is_catch"] and not row["is_practice"]


def condition_key(row: dict) -> tuple:
    """The condition key of a row (:data:`eigdist_core.contract.CONDITION_KEY`)."""
    return tuple(row[name] for name in CONDITION_KEY)


def planned_key(trial: Trial) -> tuple:
    """What a saved row of ``trial`` must show: a chosen trial fixes only its image (its item is chosen)."""
    shown = (trial.condition.image_id,) if trial.design == "chosen" else trial.condition.key
    return trial.trial, shown, trial.is_catch, trial.is_practice, trial.design


def row_key(row: dict) -> tuple:
    """:func:`planned_key` of a saved row (rows of files without a ``design`` column have none)."""
    design = row.get("design") or ""
    shown = (row["image_id"],) if design == "chosen" else condition_key(row)
    return row["trial"], shown, row["is_catch"], row["is_practice"], design


class TrialEngine:
    """Runs a session's pending trials through tracks and the writer.

    Parameters
    ----------
    plan
        The session's trials (:func:`~experiments.design.plan_session`).
    config
        The experiment configuration.
    source
        ``image(image_id)`` and ``item(item_id)`` arrays (C × H × W).
    writer
        From :func:`~experiments.datafile.open_session`.
    session_rows
        Rows already in this session's file (a resume); they must match the plan.
    earlier_rows
        Rows of the participant's other sessions; those with ``set_id``
        equal to ``set_id`` seed the tracks.
    set_id, observer, calibrated
        Written on every row.
    constants
        Further per-session columns (monitor, ppd, lum_*, refresh_hz, …).
    grid
        ``track.kind = "models"``: the set's :class:`~experiments.model_track.ModelGrid`.
    on_stop
        Called once with the reason when the models track ends the session.

    Raises
    ------
    ValueError
        If the saved rows do not follow the plan (another config or seed).
    """

    def __init__(
        self, plan: SessionPlan, config: ExperimentConfig, source: StimulusSource, writer: TrialWriter,
        *, set_id: str, observer: str, calibrated: bool, session_rows: Iterable[dict] = (),
        earlier_rows: Iterable[dict] = (), constants: dict | None = None, grid: ModelGrid | None = None,
        on_stop: Callable[[str], None] | None = None,
    ) -> None:
        self.plan, self.config, self.source, self.writer = plan, config, source, writer
        self.set_id, self.observer, self.calibrated = set_id, observer, calibrated
        self.constants = dict(constants or {})
        session_rows = list(session_rows)
        for row, trial in zip(session_rows, plan.trials):
            if row_key(row) != planned_key(trial):
                raise EigdistError(
                    f"saved trial {row['trial']} does not match the session plan (was the config, seed or "
                    "participant changed?); start another session instead of resuming"
                )
        if len(session_rows) > len(plan.trials):
            raise EigdistError(f"the file holds {len(session_rows)} trials, the plan only {len(plan.trials)}")
        self.done = len(session_rows)
        self._history: dict[tuple, list[tuple[float, bool]]] = {}
        earlier = [r for r in earlier_rows if r.get("set_id") == set_id]
        for row in earlier + session_rows:
            if tracked(row) and row.get("design") != "chosen":
                self._history.setdefault(condition_key(row), []).append((row["alpha"], row["correct"]))
        self.tracks: dict[tuple, Track] = {}
        self.models = None if grid is None else ModelSession(
            grid, source.manifest, config, [r for r in earlier + session_rows if tracked(r)])
        self.on_stop, self.stopped = on_stop, None
        self._chosen: tuple[int, Condition, float, float] | None = None  # (trial, condition, α, ms) of the trial on screen

    def track(self, condition: Condition) -> Track:
        """The condition's track, rebuilt from its saved trials on first use."""
        if condition.key not in self.tracks:
            kind, options = self.config.condition_track
            self.tracks[condition.key] = rebuild_track(
                kind, condition.alpha_ceiling, self.config.n_alternatives, self._history.get(condition.key, []),
                seed=stable_int(self.config.seed, *condition.key), **options,
            )
        return self.tracks[condition.key]

    def pending(self) -> Iterator[Trial]:
        """The trials still to run, in order, until the models track (if any) stops the session.

        The stop is checked before each trial is handed out: iterate lazily, recording each trial before the next.
        """
        for trial in self.plan.trials[self.done:]:
            if self.models is not None and self.stopped is None:
                self.stopped = self.models.stop_reason()
                if self.stopped is not None and self.on_stop is not None:
                    self.on_stop(self.stopped)
            if self.stopped is not None:
                return
            yield trial

    def shown(self, trial: Trial) -> Trial:
        """The trial as shown: a chosen trial with the models track's condition (chosen once, timed)."""
        if trial.design != "chosen":
            return trial
        if self._chosen is None or self._chosen[0] != trial.trial:
            self._chosen = (trial.trial, *self.models.choose(trial.condition.image_id))
        return replace(trial, condition=self._chosen[1])

    def alpha(self, trial: Trial) -> float:
        """The amplitude a trial shows (blank 0; practice and easy catches as the module says)."""
        cond = trial.condition
        if trial.catch_type == "blank":
            return 0.0
        if trial.is_practice:
            return self.config.practice_alpha_ratio * cond.alpha_ceiling
        if trial.catch_type == "easy":
            track = self.track(cond)
            alpha = self.config.easy_factor * track.threshold_estimate()
            return alpha if track.n_trials >= EASY_MIN_TRIALS and alpha < cond.alpha_ceiling else cond.alpha_ceiling
        if trial.design == "chosen":
            self.shown(trial)
            return self._chosen[2]
        return self.track(cond).next_alpha()

    def stimuli(self, trial: Trial) -> Stimuli:
        """The arrays of a trial: the reference and its test intervals."""
        trial = self.shown(trial)
        image = np.asarray(self.source.image(trial.condition.image_id), dtype=np.float32)
        alpha = self.alpha(trial)
        if trial.catch_type == "blank":
            distortion = np.zeros_like(image)
        else:
            distortion = trial.eig_sign * np.asarray(self.source.item(trial.condition.item_id), dtype=np.float32)
        target = (image + np.float32(alpha) * distortion).astype(np.float32)
        n = self.config.n_alternatives
        intervals = tuple(target if i == trial.target_interval else image for i in range(1, n + 1))
        return Stimuli(image, intervals, alpha, distortion)

    def record(self, trial: Trial, stimuli: Stimuli, response: Response, **extra: Any) -> dict:
        """Update the track (tracked trials), write and fsync the row; return it.

        ``extra`` adds per-trial columns the session measures (``dropped_frames``, …).
        """
        trial = self.shown(trial)
        cond = trial.condition
        correct = response.interval == trial.target_interval
        alpha = stimuli.alpha
        models: dict = {}
        if not trial.is_catch and not trial.is_practice:
            if trial.design != "chosen":
                self.track(cond).update(alpha, correct)
            if self.models is not None:
                self.models.update({"item_id": cond.item_id, "alpha": alpha, "correct": correct})
        if self.models is not None:
            models = {**self.models.columns(), "design": trial.design,
                      "choice_ms": self._chosen[3] if trial.design == "chosen" else None}
        target = stimuli.intervals[trial.target_interval - 1]
        n_pixels = target.size
        lo, hi = DISPLAY_RANGE
        row = {
            "participant": self.plan.participant, "session": self.plan.session, "trial": trial.trial,
            "image_id": cond.image_id, "model": cond.model, "layer": cond.layer, "weights": cond.weights,
            "direction": cond.direction, "item_id": "" if trial.catch_type == "blank" else cond.item_id,
            "alpha": float(alpha), "correct": correct, "n_alternatives": self.config.n_alternatives,
            "task": self.config.task, "is_catch": trial.is_catch, "catch_type": trial.catch_type,
            "is_practice": trial.is_practice, "observer": self.observer, "calibrated": self.calibrated,
            "block": trial.block, "eig_sign": trial.eig_sign, "eigenvalue": cond.eigenvalue,
            "log10_alpha": math.log10(alpha) if alpha > 0 else None,
            "rms": alpha / math.sqrt(n_pixels), "mse": alpha**2 / n_pixels,
            "target_interval": trial.target_interval, "response": response.interval, "rt": response.rt,
            "clipped_pixels": int(((target < lo) | (target > hi)).sum()),
            "repr_distance": response.repr_distance, "stim_sha256": sha256_bytes(target.tobytes()),
            "set_id": self.set_id, "alpha_ceiling": cond.alpha_ceiling, "seed": self.config.seed,
            "timestamp": datetime.now(timezone.utc).isoformat(timespec="milliseconds"),
            **models, **self.constants, **extra,
        }
        self.writer.write(row)
        self.done += 1
        return row

    def track_states(self) -> dict[str, dict]:
        """The state of every condition's track in the plan, keyed by ``"image_id|model|layer|weights|direction"``."""
        conds = {t.condition.key: t.condition for t in self.plan.trials if t.design != "chosen"}
        states = {"|".join(key): self.track(cond).state() for key, cond in sorted(conds.items())}
        return states if self.models is None else {**states, "models": self.models.state()}


def run_headless(engine: TrialEngine, responder: Responder, *, progress: bool = False) -> list[dict]:
    """Run every pending trial with ``responder`` and no window; return the new rows."""
    trials = engine.pending()
    if progress:
        from tqdm import tqdm

        trials = tqdm(trials, desc=f"session {engine.plan.session}", unit="trial",
                      total=len(engine.plan.trials) - engine.done)
    rows = []
    for trial in trials:
        stim = engine.stimuli(trial)
        rows.append(engine.record(trial, stim, responder.respond(engine.shown(trial), stim, engine.plan.session)))
    return rows


def open_stimuli(path: str | os.PathLike, *, profile: MonitorProfile | None = None) -> StimulusSource:
    """Open a stimulus set for an experiment after verifying every file of it.

    Parameters
    ----------
    path
        The set's folder.
    profile
        The monitor the set will be shown on: a colour set needs its per-gun calibration
        (an uncalibrated ``--pilot`` profile shows every gun linearly). ``None``: no screen.

    Raises
    ------
    FileNotFoundError
        If ``path`` is not a stimulus set.
    ValueError
        Listing the verification problems (first five), or for a set with more than one
        item per condition.
    ProfileError
        For a colour set on a profile calibrated without per-gun curves, naming the missing calibration.
    """
    from eigdist_core.stimulus_set import open_verified

    stimuli = open_verified(path)
    cal = profile.calibration if profile is not None else None
    if stimuli.manifest["channels"] != 1 and cal is not None and cal.guns is None:
        raise ProfileError(
            f"stimulus set {str(path)!r} is colour ({stimuli.manifest['channels']} channels) but monitor "
            f"{profile.name!r} has no per-gun calibration (field 'calibration.guns' is missing, calibrated "
            f"{cal.date}): measure the r, g and b guns and run 'eigdist calibrate fit' with a 'gun' column, "
            "or build the set with color = \"grey\""
        )
    if stimuli.manifest["channels"] != 1 and cal is not None:
        try:  # a profile fitted before the rule existed, or edited by hand
            check_additivity(cal.lut, {g: c.lut for g, c in cal.guns.items()})
        except EigdistError as exc:
            raise ProfileError(f"monitor {profile.name!r} calibration of {cal.date}: {exc}; refit it with "
                               f"'eigdist calibrate fit'") from None
    conditions(stimuli.manifest)
    return stimuli


def session_record(
    stimuli: StimulusSource, config: ExperimentConfig, plan: SessionPlan, *, observer: str, calibrated: bool,
    constants: dict | None = None, metadata: dict | None = None,
) -> dict:
    """The session record of the sidecar (its ``"eigdist"`` key): what a resume must match, and the plan."""
    constants = constants or {}
    return {
        "monitor": constants.get("monitor"), "pilot": not calibrated, **(metadata or {}),
        "participant": plan.participant, "session": plan.session, "set_id": stimuli.set_id,
        "observer": observer, "calibrated": calibrated, "config": config.as_dict(),
        "n_sessions": plan.n_sessions, "image_order": list(plan.image_order),
        "blocks": [list(b) for b in plan.blocks], "n_trials": len(plan.trials), "constants": constants,
        "main_trials": "per_condition" if selected_trials(stimuli.manifest, config) is None else "selection",
    }


def check_session(
    stimuli: StimulusSource, config: ExperimentConfig, data: str | os.PathLike, participant: str, session: int,
    *, observer: str, calibrated: bool, resume: bool = False, constants: dict | None = None,
    metadata: dict | None = None,
) -> int:
    """Check, writing nothing, that the session can be opened as :func:`open_engine` would; return trials done.

    Raises
    ------
    ValueError, FileExistsError, FileNotFoundError
        As :func:`open_engine` (:class:`~experiments.datafile.SessionFinished` for a finished session).
    EigdistError
        Track kind ``models`` on a set with fewer than two layers or without a sensitivity table.
    """
    if config.track_kind == "models":
        model_grid(stimuli, config)
    plan = plan_session(stimuli.manifest, config, participant, session)
    record = session_record(stimuli, config, plan, observer=observer, calibrated=calibrated,
                            constants=constants, metadata=metadata)
    _, rows = check_session_files(session_paths(data, participant, session), record, resume=resume)
    return len(rows)


def open_engine(
    stimuli: StimulusSource, config: ExperimentConfig, data: str | os.PathLike, participant: str, session: int,
    *, observer: str, calibrated: bool, resume: bool = False, constants: dict | None = None,
    metadata: dict | None = None, run: dict | None = None, participant_info: dict | None = None,
    grid: ModelGrid | None = None,
) -> TrialEngine:
    """Plan the session, open its trial file (new or resumed) and rebuild the tracks.

    The sidecar's record (:func:`session_record`) holds ``metadata`` plus participant,
    session, set_id, observer, calibrated, the parsed config, the schedule and
    ``constants``; a resume keeps the recorded one and appends ``run`` to its runs.
    Close the engine's ``writer`` when done (or use ``with engine.writer:``).
    Track kind ``models``: ``grid`` (None: :func:`~experiments.model_session.model_grid` of the set); when the
    models track stops the session, the sidecar records it (:func:`~experiments.datafile.mark_stopped`).

    Raises
    ------
    ValueError, FileExistsError, FileNotFoundError
        From :func:`~experiments.design.plan_session` and
        :func:`~experiments.datafile.open_session` (bad participant or
        session, an existing file without ``resume``, another set or config, …).
    """
    if config.track_kind == "models" and grid is None:
        grid = model_grid(stimuli, config)
    plan = plan_session(stimuli.manifest, config, participant, session)
    record = session_record(stimuli, config, plan, observer=observer, calibrated=calibrated,
                            constants=constants, metadata=metadata)
    run = run or {"started": datetime.now(timezone.utc).isoformat(timespec="seconds")}
    writer, done = open_session(data, participant, session, record, run, resume=resume,
                                participant_info=participant_info)
    earlier = participant_trials(data, participant, range(1, session))
    paths = session_paths(data, participant, session)
    try:
        return TrialEngine(plan, config, stimuli, writer, set_id=stimuli.set_id, observer=observer,
                           calibrated=calibrated, session_rows=done, earlier_rows=earlier, constants=constants,
                           grid=grid, on_stop=lambda reason: mark_stopped(paths, writer.next_trial - 1, reason))
    except BaseException:
        writer.close()
        raise
