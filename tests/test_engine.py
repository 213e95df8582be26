"""The headless engine on a real, built stimulus set (eigdist_core.build)."""

from __future__ import annotations

import shutil
from collections import Counter

import numpy as np
import pytest

from eigdist_core.io import load_json
from experiments.datafile import read_trials, session_paths
from experiments.engine import open_engine, open_stimuli, run_headless
from experiments.observers import make_responder
from tests.build_fixtures import stimulus_set  # noqa: F401 (fixture: a built 1-image grey set)
from tests.trial_fixtures import small_config

def test_model_observer_session_on_a_built_set(stimulus_set, tmp_path):
    stimuli = open_stimuli(stimulus_set)
    config = small_config(per_condition=24, practice=2, images_per_session=1)
    spec = "model=resnet18:conv1;weights=random:0;noise=0.1;seed=3"
    observer = make_responder(spec)
    engine = open_engine(stimuli, config, tmp_path, "P01", 1, observer=spec, calibrated=False,
                         constants={"monitor": "none", "refresh_hz": 60.0})
    with engine.writer:
        run_headless(engine, observer)
    rows = read_trials(session_paths(tmp_path, "P01", 1).trials)
    items = {it["item_id"]: it for it in stimuli.items}
    assert Counter(r["direction"] for r in rows if not r["is_catch"] and not r["is_practice"]) == {
        "max": 24, "min": 24, "random": 24}
    for r in rows:
        assert r["observer"] == spec and r["set_id"] == stimuli.set_id and r["monitor"] == "none"
        assert r["clipped_pixels"] == 0
        if r["catch_type"] != "blank":
            assert r["alpha"] <= items[r["item_id"]]["alpha_displayable_max"] + 1e-12
        if r["direction"] in ("max", "min") and r["catch_type"] != "blank":
            # resnet18:conv1 is linear, so the recorded ‖f(x + α s e) − f(x)‖ is α √λ exactly
            assert r["repr_distance"] == pytest.approx(r["alpha"] * r["eigenvalue"] ** 0.5, rel=1e-3)
    states = engine.track_states()
    t = {key.split("|")[-1]: 10 ** s["log10_threshold_mean"] for key, s in states.items()}
    assert t["max"] < t["min"]
    sidecar = load_json(session_paths(tmp_path, "P01", 1).sidecar)["eigdist"]
    assert sidecar["constants"]["refresh_hz"] == 60.0 and sidecar["observer"] == spec


def test_open_stimuli_refusals(stimulus_set, tmp_path, monkeypatch):
    with pytest.raises(FileNotFoundError, match="is not a stimulus set"):
        open_stimuli(tmp_path)
    broken = tmp_path / "broken"
    shutil.copytree(stimulus_set, broken)
    item = next((broken / "items").glob("*.npy"))
    np.save(item, np.zeros((1, 16, 16), np.float32))
    with pytest.raises(ValueError, match=rf"failed verification \(3 problem\(s\)\): items/{item.name}: sha256"):
        open_stimuli(broken)
    import eigdist_core.stimulus_set as stimulus_set_module

    colour = tmp_path / "colour"
    shutil.copytree(stimulus_set, colour)
    manifest = load_json(colour / "manifest.json")
    stimulus_set_module.write_manifest(colour, {**manifest, "channels": 3})  # resealed: a set built so
    monkeypatch.setattr(stimulus_set_module, "verify_set", lambda path: [])
    from experiments.calibration import calibrated, fit_calibration
    from experiments.monitor import gamma_curve, new_profile

    levels = np.rint(np.linspace(0, 255, 9))
    lum = gamma_curve(levels / 255, 0.5, 100.0, 2.2)
    base = new_profile("lab", width_cm=40.0, distance_cm=57.0, resolution=(800, 600), refresh_hz=60.0)
    grey_only = calibrated(base, fit_calibration(levels, lum, 8))
    with pytest.raises(ValueError, match="is colour \\(3 channels\\) but monitor 'lab' has no per-gun calibration "
                                         "\\(field 'calibration.guns' is missing"):
        open_stimuli(colour, profile=grey_only)
    thirds = (levels, 0.5 + (lum - 0.5) / 3)  # each gun a third of grey above black: r + g + b = grey
    per_gun = calibrated(base, fit_calibration(levels, lum, 8, guns={g: thirds for g in "rgb"}))
    assert open_stimuli(colour, profile=per_gun).manifest["channels"] == 3
    # a profile fitted before the rule grey = r + g + b (here: grey and b swapped) is refused by a colour session
    from dataclasses import replace

    swapped = replace(per_gun, calibration=replace(per_gun.calibration, guns={
        **per_gun.calibration.guns, "b": replace(per_gun.calibration.guns["b"], lut=per_gun.calibration.lut)}))
    with pytest.raises(ValueError, match=r"monitor 'lab' calibration of .*: b: at level 255 the b gun alone reads .* "
                                         r"are the labels grey and b swapped\?; refit it with 'eigdist calibrate fit'"):
        open_stimuli(colour, profile=swapped)
    assert open_stimuli(stimulus_set, profile=swapped).manifest["channels"] == 1  # grey sets use grey only
    assert open_stimuli(colour, profile=base).manifest["channels"] == 3  # uncalibrated pilot: linear guns
    assert open_stimuli(colour).manifest["channels"] == 3  # no screen (headless)
