"""The models track in a session (issue 36): config, plan, rows, stopping rule, crash and resume."""

from __future__ import annotations

import json
import os
import random
import subprocess
import sys
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest

from eigdist_core.contract import TRIAL_COLUMNS, TRIAL_DESIGNS
from eigdist_core.errors import EigdistError
from eigdist_core.io import load_json
from eigdist_core.psychometric_function import weibull
from experiments.config import ConfigError, parse_config
from experiments.datafile import SessionFinished, format_row, read_trials, session_paths
from experiments.design import plan_session
from experiments.engine import check_session
from experiments.model_session import choice_times, summary_lines
from experiments.observers import Response
from tests.display_fixtures import xvfb, xvfb_factory  # noqa: F401 (fixtures)
from tests.trial_fixtures import (
    ArraySource, config_text, make_manifest, models_config, models_grid, run_session, small_config, validate_bids,
)

ROOT = Path(__file__).resolve().parents[1]
MODEL_COLUMNS = ("design", "map_layer", "p_map", "posterior", "choice_ms")


class LayerObserver:
    """Sees through layer ``layer`` of :func:`models_grid`: P(correct) = weibull(α √s_m(item), k, 3.5, ½, 0.02)."""

    observer = "layer-observer"

    def __init__(self, layer: int, k: float = 0.1, seed: int = 3) -> None:
        self.grid, self.layer, self.k, self.seed = models_grid(), layer, k, seed

    def respond(self, trial, stimuli, session):
        rng = np.random.default_rng([self.seed, session, trial.trial])
        item = trial.condition.item_id if stimuli.alpha > 0 else None
        s = self.grid.s[self.grid.items.index(item), self.layer] if item else 0.0
        p = float(weibull(stimuli.alpha * np.sqrt(s), self.k, 3.5, 0.5, 0.02))
        return Response(trial.target_interval if rng.random() < p else 3 - trial.target_interval)


def _run(data, *, session=1, resume=False, responder=None, **options):
    config = models_config(**options)
    return run_session(data, session=session, resume=resume, config=config, grid=models_grid(config),
                       responder=responder or LayerObserver(1))


# ---------------------------------------------------------------- config and plan


def test_models_config_takes_defaults_and_keeps_the_quest_options_of_common_trials():
    config = parse_config({"track": {"kind": "models", "quest": {"n_grid": 20}}})
    assert config.track_options == {"common_share": 0.25, "stop_at": 0.95, "budget": None, "n_alpha": 30,
                                    "n_k": 40, "quest": {"n_grid": 20}}
    assert config.condition_track == ("quest", {"n_grid": 20})
    assert parse_config({}).condition_track == ("quest", {})


@pytest.mark.parametrize("table, message", [
    ({"stop_at": 0.4}, r"track\.models\.stop_at must be a number > 0\.5 and <= 1, got 0\.4$"),
    ({"common_share": 1.5}, r"track\.models\.common_share must be a number >= 0 and <= 1, got 1\.5$"),
    ({"budget": 0}, r"track\.models\.budget must be an int >= 1, got 0$"),
    ({"share": 0.2}, r"unknown key 'track\.models\.share'; allowed: budget, common_share, n_alpha, n_k, stop_at"),
])
def test_bad_models_options_are_refused_naming_the_key(table, message):
    with pytest.raises(ConfigError, match=r"^noticeability\.toml: " + message):
        parse_config({"track": {"kind": "models", "models": table}})


def test_plan_marks_a_fixed_share_of_each_conditions_trials_common():
    manifest = make_manifest()
    plan = plan_session(manifest, models_config(), "P01", 1)
    main = [t for t in plan.trials if not t.is_catch and not t.is_practice]
    for key in {t.condition.key for t in main}:
        designs = [t.design for t in main if t.condition.key == key]
        assert designs.count("common") == 3 and designs.count("chosen") == 9  # round(0.25 × 12)
    assert {t.design for t in plan.trials if t.is_catch or t.is_practice} == {""}
    quest = plan_session(manifest, small_config(), "P01", 1)
    assert {t.design for t in quest.trials} == {""}
    assert [replace(t, design="") for t in plan.trials] == list(quest.trials)  # the same trials otherwise


# ---------------------------------------------------------------- bad sets


class _SetOnDisk(ArraySource):
    """:class:`ArraySource` with a folder and the build config's layers (no sensitivity table)."""

    def __init__(self, path, layers):
        super().__init__()
        self.path = path
        self.manifest = {**self.manifest, "config": {"models": [{"spec": f"resnet18:{la}", "weights": "random:0"}
                                                                for la in layers]}}


def test_a_set_with_one_layer_is_refused_before_anything_is_written(tmp_path):
    with pytest.raises(EigdistError, match=r"^track kind 'models' needs a stimulus set with at least two layers "
                                           r"to tell apart; this one has 1: resnet18:conv1 \(random:0\)$"):
        check_session(_SetOnDisk(tmp_path, ["conv1"]), models_config(), tmp_path / "data", "P01", 1,
                      observer="human", calibrated=False)
    assert not (tmp_path / "data").exists()


def test_a_set_without_sensitivities_is_refused_saying_how_to_add_them(tmp_path):
    with pytest.raises(EigdistError, match=r"^track kind 'models' needs the set's sensitivity table: .*no "
                                           r"sensitivity table .*; run 'eigdist stimuli sensitivities .*' to add one"):
        check_session(_SetOnDisk(tmp_path, ["conv1", "layer2"]), models_config(), tmp_path / "data", "P01", 1,
                      observer="human", calibrated=False)


# ---------------------------------------------------------------- the session


def test_models_session_writes_the_posterior_and_feeds_condition_tracks_only_common_rows(tmp_path):
    engine = _run(tmp_path, stop_at=1.0)
    rows = read_trials(session_paths(tmp_path, "P01", 1).trials)
    assert len(rows) == len(engine.plan.trials)
    main = [r for r in rows if not r["is_catch"] and not r["is_practice"]]
    assert {r["design"] for r in main} == set(TRIAL_DESIGNS)
    assert all(r["design"] is None for r in rows if r["is_catch"] or r["is_practice"])
    for row, trial in zip(rows, engine.plan.trials):
        posterior = json.loads(row["posterior"])
        assert sum(posterior.values()) == pytest.approx(1.0)
        assert row["p_map"] == max(posterior.values()) and posterior[row["map_layer"]] == row["p_map"]
        assert (row["choice_ms"] is not None) == (row["design"] == "chosen")
        assert row["image_id"] == trial.condition.image_id  # a chosen item is one of the block image's
        if row["design"] == "chosen":
            assert 0 < row["alpha"] <= row["alpha_ceiling"]
    states = engine.track_states()
    common = sum(r["design"] == "common" for r in main)
    assert sum(s["n_trials"] for k, s in states.items() if k != "models") == common
    assert states["models"]["n_trials"] == len(main)
    assert states["models"]["map_layer"] == "resnet18:layer2 (random:0)"  # the observer's layer
    assert len(choice_times(rows)) == len(main) - common
    assert summary_lines(rows)[0] == f"most probable layer: resnet18:layer2 (random:0) (posterior {rows[-1]['p_map']:.3f})"
    errors, _ = validate_bids(tmp_path)  # the JSON posterior column is a valid BIDS text column
    assert errors == [], errors


def test_session_stops_at_stop_at_and_a_resume_finds_it_finished(tmp_path):
    engine = _run(tmp_path, stop_at=0.9)
    rows = read_trials(session_paths(tmp_path, "P01", 1).trials)
    assert len(rows) < len(engine.plan.trials)
    assert rows[-1]["p_map"] >= 0.9 and all(r["p_map"] < 0.9 for r in rows[:-1])
    record = load_json(session_paths(tmp_path, "P01", 1).sidecar)["eigdist"]
    assert record["stopped"] == {"after_trial": len(rows), "reason": engine.stopped}
    assert engine.stopped == f"resnet18:layer2 (random:0) reached a posterior of {rows[-1]['p_map']:.3f} (stop_at 0.9)"
    with pytest.raises(SessionFinished, match=rf"is finished \({len(rows)} of {len(rows)} trials\)"):
        _run(tmp_path, stop_at=0.9, resume=True)


def test_budget_counts_tracked_trials_across_sessions(tmp_path):
    _run(tmp_path, stop_at=1.0, budget=30)
    rows = read_trials(session_paths(tmp_path, "P01", 1).trials)
    assert sum(not r["is_catch"] and not r["is_practice"] for r in rows) == 30
    second = _run(tmp_path, session=2, stop_at=1.0, budget=30)  # the posterior carries over: spent already
    assert second.done == 0 and second.stopped.startswith("the budget of 30 tracked trials is spent")


def test_kill_and_resume_gives_the_choices_of_an_unbroken_run(tmp_path):
    """SIGKILL during a random trial of a models session, resume: the same rows, choices and posterior."""
    config = models_config(stop_at=1.0)
    unbroken = run_session(tmp_path / "a", config=config, grid=models_grid(config))
    n = unbroken.done
    kill_at = random.Random(os.getpid()).randrange(6, n - 5)
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    proc = subprocess.run([sys.executable, str(ROOT / "tests" / "trial_fixtures.py"), str(tmp_path / "b"),
                           str(kill_at), "models"], env=env, cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert proc.returncode == -9, proc.stderr
    path_b = session_paths(tmp_path / "b", "P01", 1).trials
    assert len(read_trials(path_b)) == kill_at - 1
    resumed = run_session(tmp_path / "b", resume=True, config=config, grid=models_grid(config))

    def strip(rows):
        return [{k: v for k, v in r.items() if k not in ("timestamp", "choice_ms")} for r in rows]

    rows_a = read_trials(session_paths(tmp_path / "a", "P01", 1).trials)
    rows_b = read_trials(path_b)
    assert len(rows_b) == n and strip(rows_b) == strip(rows_a)
    assert {r["design"] for r in rows_b[kill_at:]} >= {"chosen"}  # the resumed part chose items too
    assert resumed.track_states() == unbroken.track_states()


@pytest.fixture(scope="module")
def two_layer_set(tmp_path_factory) -> Path:
    """A built grey set of the camera image, resnet18 conv1 and layer1 (random weights), with its sensitivities."""
    from eigdist_core.build import build_set
    from tests.trial_fixtures import set_config_toml

    base = tmp_path_factory.mktemp("set")
    (base / "two.toml").write_text(set_config_toml("two", "camera", "grey", more_layers=("layer1",)))
    return build_set(base / "two.toml", base / "set", progress=False)


def test_models_session_on_a_built_set_reads_its_sensitivity_table(two_layer_set, tmp_path):
    from experiments.engine import open_engine, open_stimuli, run_headless
    from experiments.observers import make_responder

    spec = "model=resnet18:layer1;weights=random:0;noise=0.01;seed=3"
    config = replace(models_config(stop_at=1.0), per_condition=8, images_per_session=1, practice=2)
    engine = open_engine(open_stimuli(two_layer_set), config, tmp_path, "P01", 1, observer=spec, calibrated=False)
    with engine.writer:
        run_headless(engine, make_responder(spec))
    rows = read_trials(session_paths(tmp_path, "P01", 1).trials)
    assert set(json.loads(rows[-1]["posterior"])) == {"resnet18:conv1 (random:0)", "resnet18:layer1 (random:0)"}
    assert {r["design"] for r in rows if not r["is_catch"] and not r["is_practice"]} == set(TRIAL_DESIGNS)
    assert engine.models.track.n_trials == sum(not r["is_catch"] and not r["is_practice"] for r in rows)


WINDOW_CONFIG = config_text(per_condition=8) + '[track]\nkind = "models"\n[track.models]\nstop_at = 1.0\n'


def test_models_session_runs_on_a_window_and_chooses_between_frames(two_layer_set, xvfb, tmp_path):  # noqa: F811
    """``eigdist run --simulate`` of the models track on a real PsychoPy window (Xvfb): the chosen trials are
    shown and recorded with their choice time, the posterior covers the set's layers, the frame is drawn."""
    from PIL import Image

    from experiments.monitor import save_profile
    from tests.profiles import make_profile

    save_profile(make_profile(name="xvfb"), tmp_path / "monitors")
    (tmp_path / "models.toml").write_text(WINDOW_CONFIG)
    (tmp_path / "cwd").mkdir()
    frame = tmp_path / "frame.png"
    spec = "model=resnet18:layer1;weights=random:0;noise=0.01;seed=3"
    done = subprocess.run(
        [sys.executable, "-m", "eigdist", "run", "--stimuli", str(two_layer_set), "--monitor", "xvfb", "--monitors",
         str(tmp_path / "monitors"), "--config", str(tmp_path / "models.toml"), "--data", "data", "--window",
         "400x300", "--participant", "P01", "--simulate", spec, "--capture-frame", str(frame)],
        cwd=tmp_path / "cwd", env={**xvfb.env, "PYTHONDONTWRITEBYTECODE": "1"}, capture_output=True, text=True,
        timeout=300)
    assert done.returncode == 0, done.stdout + done.stderr
    rows = read_trials(session_paths(tmp_path / "cwd" / "data", "P01", 1).trials)
    tracked = [r for r in rows if not r["is_catch"] and not r["is_practice"]]
    chosen = [r for r in tracked if r["design"] == "chosen"]
    assert len(tracked) == 6 * 8 and {r["design"] for r in tracked} == set(TRIAL_DESIGNS)
    assert len(chosen) == len(choice_times(rows)) == 6 * 6  # 6 conditions × (8 − round(0.25 × 8))
    assert all(r["choice_ms"] > 0 for r in chosen) and all(r["choice_ms"] is None for r in rows if r not in chosen)
    layers = {"resnet18:conv1 (random:0)", "resnet18:layer1 (random:0)"}
    assert all(set(json.loads(r["posterior"])) == layers for r in tracked)
    assert "choice time: median" in done.stdout + done.stderr
    shown = np.asarray(Image.open(frame))
    assert shown.shape == (300, 400, 3) and len(np.unique(shown[142:158, 192:208, 0])) > 4  # the 16×16 stimulus


# ---------------------------------------------------------------- the analysis reads old and new files


def test_analysis_reads_files_with_and_without_the_models_columns(tmp_path):
    from analysis.load import load_trials

    _run(tmp_path / "new", stop_at=1.0)
    new = read_trials(session_paths(tmp_path / "new", "P01", 1).trials)
    old_columns = tuple(c for c in TRIAL_COLUMNS if c not in MODEL_COLUMNS)
    old_path = session_paths(tmp_path / "old", "P01", 1).trials
    old_path.parent.mkdir(parents=True)
    old_path.write_text("\t".join(old_columns) + "\n" + "".join(
        format_row({k: v for k, v in r.items() if k in old_columns}, old_columns) for r in new))
    frames = [load_trials([tmp_path / name]) for name in ("new", "old")]
    assert len(frames[0]) == len(frames[1]) == len(new)
    assert list(frames[0]["alpha"]) == list(frames[1]["alpha"])
