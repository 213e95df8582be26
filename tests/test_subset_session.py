"""A chosen subset's ``selection.trials`` sets each item's main trials in a session (experiments/item_trials.py)."""

from __future__ import annotations

import hashlib
import itertools
import json
from collections import Counter
from dataclasses import replace

import pytest

from eigdist_core.errors import EigdistError
from eigdist_core.io import load_json
from eigdist_core.stimulus_set import seal
from experiments.design import plan_session, schedule
from experiments.engine import open_engine, open_stimuli, run_headless
from experiments.observers import WeibullObserver
from tests.test_design_select import cli, pool_set  # noqa: F401 (module fixture)
from tests.trial_fixtures import make_manifest, models_config, small_config


def main_counts(plans) -> Counter:
    """Main (tracked, not practice, not catch) trials per item over the given plans."""
    return Counter(t.condition.item_id for plan in plans for t in plan.trials if not (t.is_practice or t.is_catch))


def subset_manifest(trials: dict[str, int]) -> dict:
    """The hand-made manifest with a ``selection.trials`` (and its set_id sealed over it)."""
    manifest = make_manifest()
    manifest.pop("set_id")
    return seal({**manifest, "selection": {"trials": trials}})


def fingerprint(plan) -> str:
    rows = [(t.trial, t.block, t.condition.item_id, t.target_interval, t.eig_sign, t.is_practice, t.catch_type,
             t.break_before, t.design) for t in plan.trials]
    return hashlib.sha256(repr(rows).encode()).hexdigest()[:16]


# Printed by main's code (commit 2749ffc, before selection.trials was read) for participant P03.
MAIN_PLANS = {
    ("small", 1): "c5709c213e2a1b4b", ("small", 2): "e51b0a5c965c96c0",
    ("visits", 1): "8f7ba0bc8bee244d", ("visits", 2): "93eca6e4862351cb",
    ("models", 1): "c5a8e59f0cf2fa20", ("models", 2): "055c7c65fb48fdc3",
}


@pytest.mark.parametrize("name, session", sorted(MAIN_PLANS))
def test_a_set_without_selection_plans_as_before(name, session):
    config = {"small": small_config(), "visits": small_config(visits_per_image=2, per_condition=7),
              "models": models_config()}[name]
    assert fingerprint(plan_session(make_manifest(), config, "P03", session)) == MAIN_PLANS[(name, session)]


def test_selection_trials_set_each_items_main_trials_over_its_visits():
    items = [it["item_id"] for it in make_manifest()["items"]]
    trials = {item: i % 7 for i, item in enumerate(items)}  # 0 … 6: odd counts, and items not shown
    manifest = subset_manifest(trials)
    config = small_config(visits_per_image=2)
    plans = [plan_session(manifest, config, "P01", s) for s in range(1, len(schedule(manifest, config, "P01")) + 1)]
    assert main_counts(plans) == Counter({item: n for item, n in trials.items() if n})
    assert all(trials[t.condition.item_id] for plan in plans for t in plan.trials)  # practice and catches too


def test_an_image_without_trials_gets_no_block():
    trials = {it["item_id"]: 0 if it["image_id"] == "door" else 3 for it in make_manifest()["items"]}
    blocks = [b for session in schedule(subset_manifest(trials), small_config(), "P01") for b in session]
    assert sorted(image for image, _ in blocks) == ["boats", "parrot"]


def test_ignore_gives_the_fixed_grid():
    trials = {it["item_id"]: 1 for it in make_manifest()["items"]}
    config = small_config(selection="ignore")
    manifest = subset_manifest(trials)
    plans = [plan_session(manifest, config, "P01", s) for s in range(1, len(schedule(manifest, config, "P01")) + 1)]
    assert set(main_counts(plans).values()) == {config.per_condition}


def test_models_track_splits_the_selected_trials():
    trials = {it["item_id"]: 8 for it in make_manifest()["items"]}
    plan = plan_session(subset_manifest(trials), models_config(common_share=0.25), "P01", 1)
    designs = Counter((t.condition.item_id, t.design) for t in plan.trials if not (t.is_practice or t.is_catch))
    assert {d for (_, d) in designs} == {"common", "chosen"}
    assert all(designs[(item, "common")] == 2 and designs[(item, "chosen")] == 6 for item, _ in designs)


@pytest.mark.parametrize("change, message", [
    (lambda t: {**t, "ghost": 4}, "manifest.json: selection.trials names 'ghost', which is not an item of the set: "
                                  "selection.trials must name exactly the set's items"),
    (lambda t: dict(list(t.items())[1:]), "has no trials in selection.trials"),
    (lambda t: {**t, next(iter(t)): -2}, "must be an int >= 0, got -2"),
])
def test_a_selection_that_does_not_fit_the_set_is_one_line(change, message):
    trials = change({it["item_id"]: 3 for it in make_manifest()["items"]})
    with pytest.raises(EigdistError) as err:
        plan_session(subset_manifest(trials), small_config(), "P01", 1)
    assert message in str(err.value) and len(str(err.value).splitlines()) == 1
    assert "trials.selection = \"ignore\"" in str(err.value)


def test_a_headless_session_on_a_chosen_subset_gives_the_selected_trials(pool_set, tmp_path):  # noqa: F811
    out = tmp_path / "subset"
    assert cli("design", "select", str(pool_set), "--budget-trials", "80", "--out", str(out),
               "--typical-threshold", "0.05") == 0
    trials = load_json(out / "manifest.json")["selection"]["trials"]
    stimuli = open_stimuli(out)
    config = replace(small_config(), images_per_session=10)
    observer = WeibullObserver(threshold=0.1, seed=5, observer="weibull;threshold=0.1;seed=5")
    engine = open_engine(stimuli, config, tmp_path / "data", "P01", 1, observer=observer.observer, calibrated=False)
    with engine.writer:
        rows = run_headless(engine, observer)
    main = Counter(r["item_id"] for r in rows if not r["is_practice"] and not r["is_catch"])
    assert main == Counter({item: n for item, n in trials.items() if n})
    assert sum(main.values()) != config.per_condition * len(trials)  # the grid would have given this
    resumed = replace(config, selection="ignore")
    with pytest.raises(EigdistError, match="config.selection"):
        open_engine(stimuli, resumed, tmp_path / "data", "P01", 1, observer=observer.observer, calibrated=False,
                    resume=True)


def older_record(data, participant="P01", session=1) -> None:
    """Make the session's sidecar look written by a version before ``trials.selection``."""
    from experiments.datafile import load_sidecar, session_paths
    from eigdist_core.io import save_json

    path = session_paths(data, participant, session).sidecar
    sidecar = json.loads(path.read_text(encoding="utf-8"))
    load_sidecar(path)  # it was readable before
    del sidecar["eigdist"]["main_trials"], sidecar["eigdist"]["config"]["selection"]
    save_json(path, sidecar)


def start(stimuli, config, data, n, *, resume=False):
    """Open (or resume) a session and run only its next n trials."""
    observer = WeibullObserver(threshold=0.1, seed=5, observer="weibull;threshold=0.1;seed=5")
    engine = open_engine(stimuli, config, data, "P01", 1, observer=observer.observer, calibrated=False,
                         resume=resume)
    with engine.writer:
        for trial in itertools.islice(engine.pending(), n):
            stim = engine.stimuli(trial)
            engine.record(trial, stim, observer.respond(engine.shown(trial), stim, 1))


def test_an_older_record_resumes_on_a_normal_set_and_is_refused_on_a_subset_unless_ignored(pool_set, tmp_path):  # noqa: F811
    from tests.trial_fixtures import ArraySource

    start(ArraySource(), small_config(), tmp_path / "plain", 5)
    older_record(tmp_path / "plain")
    start(ArraySource(), small_config(), tmp_path / "plain", 5, resume=True)  # same plan: resumes

    out = tmp_path / "subset"
    assert cli("design", "select", str(pool_set), "--budget-trials", "40", "--out", str(out)) == 0
    stimuli = open_stimuli(out)
    start(stimuli, small_config(selection="ignore"), tmp_path / "sub", 5)
    older_record(tmp_path / "sub")
    with pytest.raises(EigdistError, match="main_trials was 'per_condition' when the session started, now "
                                           "'selection' \\(trials.selection of --config"):
        start(stimuli, small_config(), tmp_path / "sub", 5, resume=True)
    start(stimuli, small_config(selection="ignore"), tmp_path / "sub", 5, resume=True)
