"""Colour sets and sizes in degrees through ``eigdist run`` on a PsychoPy window under Xvfb.

Sessions run as subprocesses (``python -m eigdist run``), as in tests/test_session.py.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from experiments.datafile import load_sidecar, read_trials, session_paths
from experiments.monitor import save_profile
from tests.display_fixtures import VirtualDisplay, run_python, xvfb, xvfb_factory  # noqa: F401 (fixtures)
from tests.profiles import make_profile
from tests.trial_fixtures import set_config_toml

COLOUR_SET = set_config_toml("colour", "coffee", "rgb")

CONFIG = """seed = 1
[task]
feedback = false
[timing]
fixation_ms = 16
reference_ms = 16
isi_ms = 16
test_ms = 16
feedback_ms = 16
[trials]
per_condition = 2
practice = 1
catch_rate = 0.1
[schedule]
images_per_session = 1
[display]
stimulus_deg = {deg}
"""
WEIBULL = "weibull;threshold=0.2;seed=1"


@pytest.fixture(scope="module")
def colour_lab(tmp_path_factory) -> dict[str, Path]:
    """A built 16×16 RGB set, a per-gun and a grey-only profile (800×600 at 19.90 px/deg), a 3.2° config."""
    from eigdist_core.build import build_set

    base = tmp_path_factory.mktemp("colour")
    (base / "colour.toml").write_text(COLOUR_SET)
    stimuli = build_set(base / "colour.toml", base / "set", progress=False)
    monitors = base / "monitors"
    save_profile(make_profile(name="rgb", guns=True), monitors)
    save_profile(make_profile(name="greyonly"), monitors)
    (base / "deg.toml").write_text(CONFIG.format(deg=3.2))
    (base / "far.toml").write_text(CONFIG.format(deg=1.2))
    return {"base": base, "stimuli": Path(stimuli), "monitors": monitors}


def run(screen: VirtualDisplay, lab: dict, cwd: Path, monitor: str, config: str, *extra: str):
    cwd.mkdir(exist_ok=True)
    args = ["-m", "eigdist", "run", "--stimuli", str(lab["stimuli"]), "--monitor", monitor, "--monitors",
            str(lab["monitors"]), "--config", str(lab["base"] / config), "--data", str(cwd / "data"),
            "--participant", "P01", "--simulate", WEIBULL, "--window", "400x300", *extra]
    res = run_python(screen, *args, timeout=300)
    return res.returncode, res.stdout + res.stderr


@pytest.mark.display
def test_colour_session_at_a_size_in_degrees(colour_lab, xvfb, tmp_path):
    frame = tmp_path / "frame.png"
    rc, out = run(xvfb, colour_lab, tmp_path / "cwd", "rgb", "deg.toml", "--capture-frame", str(frame))
    assert rc == 0, out[-3000:]
    paths = session_paths(tmp_path / "cwd" / "data", "P01", 1)
    rows = read_trials(paths.trials)
    ppd = make_profile().ppd
    assert {r["color"] for r in rows} == {"rgb"} and {r["magnification"] for r in rows} == {4}
    assert [r["stimulus_deg"] for r in rows] == pytest.approx([64 / ppd] * len(rows), abs=1e-6)
    assert abs(rows[0]["stimulus_deg"] - 3.2) <= 0.05 * 3.2
    constants = load_sidecar(paths.sidecar)["constants"]
    assert (constants["color"], constants["magnification"]) == ("rgb", 4)
    assert constants["stimulus_deg"] == pytest.approx(64 / ppd, abs=1e-6)
    from PIL import Image

    shown = np.asarray(Image.open(frame)).astype(int)
    patch = shown[118:182, 168:232]  # the 64×64 stimulus, centred in the 400×300 window
    blocks = patch.reshape(16, 4, 16, 4, 3)
    assert np.all(blocks == blocks[:, :1, :, :1])  # pixel-replicated, 4×4
    assert len({tuple(p) for p in patch.reshape(-1, 3)}) > 50  # in colour: the guns differ
    assert np.any(patch[..., 0] != patch[..., 1])
    if "EIGDIST_DOCS_FRAME" in __import__("os").environ:  # regenerate docs/colour_trial_frame.png
        import shutil

        shutil.copy(frame, Path(__file__).resolve().parents[1] / "docs" / "colour_trial_frame.png")


@pytest.mark.display
def test_colour_set_on_a_grey_only_profile_is_refused_naming_the_calibration(colour_lab, xvfb, tmp_path):
    rc, out = run(xvfb, colour_lab, tmp_path / "cwd", "greyonly", "deg.toml")
    assert rc == 2
    assert "is colour (3 channels) but monitor 'greyonly' has no per-gun calibration (field 'calibration.guns'" in out
    assert not (tmp_path / "cwd" / "data").exists()


@pytest.mark.display
def test_unreachable_size_is_refused_before_the_window(colour_lab, xvfb, tmp_path):
    rc, out = run(xvfb, colour_lab, tmp_path / "cwd", "rgb", "far.toml")
    assert rc == 2 and "display.stimulus_deg = 1.2° needs a magnification of 1.49" in out
    assert not (tmp_path / "cwd" / "data").exists()


@pytest.mark.display
def test_simulated_observer_runs_on_a_screen_unlike_the_profile(colour_lab, xvfb_factory, tmp_path):
    """Issue 24.1: an 800×600 profile on a 1280×1024 screen exited 2 for ``--simulate weibull``."""
    screen = xvfb_factory(1280, 1024, 24)
    rc, out = run(screen, colour_lab, tmp_path / "cwd", "rgb", "deg.toml")
    assert rc == 0, out[-3000:]
    assert "simulated observer, screen not checked: screen is 1280x1024 px but the profile says 800x600" in out
    window = load_sidecar(session_paths(tmp_path / "cwd" / "data", "P01", 1).sidecar)["runs"][-1]["window"]
    assert window["enforced"] is False and window["screen_size"] == [1280, 1024]
    assert window["problems"][0].startswith("screen is 1280x1024 px but the profile says 800x600")


def test_config_takes_degrees_or_magnification_not_both(tmp_path):
    from experiments.config import ConfigError, parse_config

    assert parse_config({"display": {"stimulus_deg": 4.0}}).stimulus_deg == 4.0
    assert parse_config({"display": {"magnification": 3}}).magnification == 3
    with pytest.raises(ConfigError, match="set display.stimulus_deg or display.magnification, not both"):
        parse_config({"display": {"stimulus_deg": 4.0, "magnification": 3}})
    with pytest.raises(ConfigError, match="display.magnification must be an int >= 1 and <= 64, got 2.5"):
        parse_config({"display": {"magnification": 2.5}})




def test_colour_demo_plan_uses_the_colour_sets_and_a_per_gun_simulated_monitor(tmp_path):
    from eigdist.cli.demo import COLOR_OBSERVER_MODEL, MONITOR, demo_plan, simulated_monitor
    from eigdist.configs import built_in_config
    from eigdist_core.config import load_config
    from experiments.monitor import load_profile

    for quick, name in ((True, "demo_color_quick"), (False, "demo_color")):
        plan = demo_plan(quick, None, color=True)
        with built_in_config(plan.set_config) as path:
            config, _ = load_config(path)
        assert (config.name, config.color, plan.observer_model) == (name, "rgb", COLOR_OBSERVER_MODEL)
        assert any(m.spec == COLOR_OBSERVER_MODEL for m in config.models)
        assert any(m.weights.startswith("random") for m in config.models)  # a torchvision layer, random weights
    simulated_monitor(tmp_path)
    guns = load_profile(MONITOR, tmp_path).calibration.guns
    assert {g: round(c.gamma["gamma"], 6) for g, c in guns.items()} == {"r": 1.9, "g": 2.2, "b": 2.5}
