"""The display: the pure value → level mapping, then PsychoPy windows on a virtual X display.

Window tests run PsychoPy in subprocesses (tests/display_probe.py) on Xvfb screens started by
tests/display_fixtures.py; profiles are generated at test time and dated now.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from experiments.check_screen import check_pattern
from experiments.pixel_image import choose_magnification
from experiments.window import DisplayError, WindowReport, window_problems
from experiments.luminance import (
    background_level, background_value, channel_tables, continuous_levels, level_table, map_values, pixel_offset,
    replicate, size_deg, texture, top_left,
)
from experiments.monitor import ProfileError, save_profile
from tests.display_fixtures import VirtualDisplay, run_python, xvfb, xvfb_factory  # noqa: F401 (fixtures)
from tests.profiles import GUN_GAMMAS, make_profile


def gun_levels(values: np.ndarray, bits: int = 8) -> np.ndarray:
    """Closed form: the rounded level of each gun's value under its known gamma (``3 × …`` → ``… × 3``)."""
    top = 2**bits - 1
    return np.stack([np.rint(top * np.clip(values[i], 0, 1) ** (1 / GUN_GAMMAS[g])) for i, g in enumerate("rgb")],
                    axis=-1)


# ---------------------------------------------------------------- pure mapping


def test_undithered_mapping_is_the_rounded_inverse_gamma():
    p = make_profile()
    values = np.linspace(0, 1, 1001)[None]
    lum = 0.5 + values * 99.5
    expected = np.rint(255 * ((lum - 0.5) / 99.5) ** (1 / 2.2))
    m = map_values(values, p)
    assert m.bits == 8 and m.clipped == 0 and m.levels.dtype == np.int32
    np.testing.assert_array_equal(m.levels, expected)


@settings(max_examples=30, deadline=None)
@given(gamma=st.floats(1.0, 3.0), bits=st.sampled_from([8, 10]),
       values=st.lists(st.floats(0.0, 1.0), min_size=1, max_size=50))
def test_undithered_level_is_the_nearest_in_luminance(gamma, bits, values):
    p = make_profile(bits=bits, gamma=gamma)
    table = level_table(p)
    target = table[0] + np.asarray(values) * (table[-1] - table[0])
    got = table[map_values(np.asarray(values)[None], p).levels[0]]
    best = np.min(np.abs(table[None, :] - target[:, None]), axis=1)
    np.testing.assert_allclose(np.abs(got - target), best, atol=1e-9 * table[-1])


def test_continuous_levels_invert_the_table_linearly_between_levels():
    table = np.array([0.0, 1.0, 1.0, 3.0, 7.0])  # a flat run: the first level of it is used
    level, clipped = continuous_levels(np.array([[0.0, 1 / 7, 2 / 7, 5 / 7, 1.0, 1.2, -0.1]]), table)
    np.testing.assert_allclose(level[0], [0, 1, 2.5, 3.5, 4, 4, 0])
    assert clipped == 2


def test_dithering_is_unbiased_to_a_hundredth_of_a_level():
    p = make_profile()
    values = np.full((400, 500), 0.31234)
    target = continuous_levels(values[:1, :1], level_table(p))[0][0, 0]
    m = map_values(values, p, np.random.default_rng(1))
    assert set(np.unique(m.levels)) == {int(np.floor(target)), int(np.floor(target)) + 1}
    assert abs(m.levels.mean() - target) < 0.01
    mean_lum = level_table(p)[m.levels].mean()
    assert mean_lum == pytest.approx(0.5 + 0.31234 * 99.5, abs=0.01 * np.diff(level_table(p)).max())


def test_clipped_pixels_are_counted_and_shown_at_the_ends():
    p = make_profile()
    m = map_values(np.array([[-0.2, 0.0, 0.5, 1.0, 1.5]]), p, np.random.default_rng(0))
    assert m.clipped == 2
    assert m.levels[0, 0] == 0 and m.levels[0, -1] == 255


def test_bad_shapes_are_refused():
    p = make_profile()
    with pytest.raises(ValueError, match=r"H×W, 1×H×W \(grey\) or 3×H×W \(RGB\), got shape \(2, 4, 4\)"):
        map_values(np.zeros((2, 4, 4)), p)
    with pytest.raises(ValueError, match="1 NaN or infinite"):
        map_values(np.array([[0.1, np.nan]]), p)


def test_colour_without_per_gun_calibration_is_refused_naming_it():
    with pytest.raises(ProfileError, match="field 'guns' is missing \\(no per-gun calibration\\)"):
        map_values(np.zeros((3, 4, 4)), make_profile())


def test_colour_mapping_inverts_each_gun_through_its_own_gamma():
    p = make_profile(guns=True)
    values = np.random.default_rng(1).uniform(-0.1, 1.1, (3, 9, 7))
    m = map_values(values, p)
    assert m.levels.shape == (9, 7, 3)
    np.testing.assert_array_equal(m.levels, gun_levels(values))
    assert m.clipped == int(((values < 0) | (values > 1)).any(axis=0).sum())
    grey = map_values(values[0], p).levels  # a grey image goes through the grey curve
    np.testing.assert_array_equal(grey, map_values(values[0], make_profile()).levels)


def test_colour_dither_is_independent_per_gun_and_unbiased():
    p = make_profile(guns=True)
    values = np.full((3, 64, 64), 0.37)
    level, _ = continuous_levels(values, channel_tables(p, 3))
    mapped = [map_values(values, p, rng=np.random.default_rng(s)).levels for s in range(40)]
    mean = np.mean(mapped, axis=(0, 1, 2))
    np.testing.assert_allclose(mean, level[0, 0], atol=0.02)
    one = mapped[0].reshape(-1, 3).astype(float)
    assert abs(np.corrcoef(one.T)[0, 1]) < 0.1  # the guns' noise is not shared


def test_pixel_replication_makes_exact_blocks():
    m = map_values(np.random.default_rng(2).uniform(0, 1, (3, 5, 4)), make_profile(guns=True))
    tex = texture(m, 3)[::-1]  # back to row 0 at the top
    assert tex.shape == (15, 12, 3) and tex.min() >= 0  # RGB textures: PsychoPy's [0, 1] units
    np.testing.assert_array_equal(np.rint(tex[::3, ::3] * 255), m.levels)
    blocks = tex.reshape(5, 3, 4, 3, 3)
    assert np.all(blocks == blocks[:, :1, :, :1])
    np.testing.assert_array_equal(replicate(m.levels, 3)[::3, ::3], m.levels)


def test_texture_is_signed_and_flipped():
    m = map_values(np.array([[0.0], [1.0]]), make_profile(gamma=1.0))
    tex = texture(m)
    assert tex.dtype == np.float32
    np.testing.assert_array_equal(tex[:, 0], [1.0, -1.0])  # row 0 of the image (value 0) drawn at the bottom


def test_background_is_lmean_exactly():
    p = make_profile()
    cal = p.calibration
    assert level_table(p)[background_level(p)] == pytest.approx(cal.lum_mean, abs=1e-9)
    assert 0.45 < background_value(p) < 0.55


@pytest.mark.parametrize("win, img, offset, corner", [
    ((400, 300), (23, 37), (-0.5, 0.5), (131, 188)),
    ((400, 300), (24, 38), (0.0, 0.0), (131, 188)),
    ((401, 301), (24, 38), (-0.5, 0.5), (131, 188)),
])
def test_pixel_offset_and_corner(win, img, offset, corner):
    assert pixel_offset(win, img) == offset
    assert top_left(win, img) == corner


def test_size_in_degrees():
    p = make_profile()
    w, h = size_deg((256, 128), p)
    assert w == pytest.approx(256 / p.ppd) and h == pytest.approx(w / 2)


def test_window_problems_name_both_values():
    report = WindowReport(requested_size=(800, 600), framebuffer_size=(1600, 1200), screen_size=(2560, 1440),
                          profile_resolution=(1920, 1080), refresh_hz_profile=120.0, refresh_hz_measured=59.9,
                          red_bits=8, bits_profile=10, hardware_ramp="identity")
    text = "; ".join(window_problems(report, check_refresh=True))
    for part in ("screen is 2560x1440 px but the profile says 1920x1080",
                 "drawable is 1600x1200 px but 800x600 was requested (HiDPI",
                 "8 bits per gun but the profile says 10",
                 "measured refresh is 59.90 Hz but the profile says 120 Hz"):
        assert part in text
    assert len(window_problems(report, check_refresh=False)) == 3


def test_psychopy_monitor_maps_the_profile_and_keeps_the_default_gamma(tmp_path, monkeypatch):
    monkeypatch.setenv("HOME", str(tmp_path))
    from experiments.window import psychopy_monitor

    p = make_profile()
    mon = psychopy_monitor(p)
    assert (mon.getWidth(), mon.getDistance(), list(mon.getSizePix())) == (40.0, 57.0, [800, 600])
    assert list(mon.getLevelsPre()) == list(p.calibration.levels)
    assert mon.gammaIsDefault()  # PsychoPy must not load the curve into the hardware ramp


def test_check_pattern_has_ramp_and_outlined_patches():
    values, patches = check_pattern(400, 300, 0.5)
    assert [v for v, _, _ in patches] == [0.0, 0.25, 0.5, 0.75, 1.0]
    ramp = values[300 // 8 + 1, 40:360]
    assert ramp[0] == 0 and ramp[-1] == 1 and np.all(np.diff(ramp) > 0)
    for v, cx, cy in patches:
        assert values[cy, cx] == v


# ---------------------------------------------------------------- on a virtual screen


def probe(screen: VirtualDisplay, tmp_path: Path, case: str, profile, *options: str) -> dict:
    save_profile(profile, tmp_path)
    out = tmp_path / f"{case}.npz"
    res = run_python(screen, "tests/display_probe.py", case, str(tmp_path), profile.name, str(out), *options)
    assert res.returncode == 0, res.stderr[-3000:]
    with np.load(out) as data:
        return {k: data[k] for k in data.files}


@pytest.mark.display
def test_captured_frame_equals_the_mapped_stimulus(xvfb, tmp_path):
    p = make_profile()
    got = probe(xvfb, tmp_path, "frame", p)
    assert got["problems"].size == 0 and int(got["red_bits"]) == 8
    seen, intended = got["seen"], got["intended"]
    assert seen.shape == (37, 23)
    assert np.abs(seen - intended).max() <= 1  # the contract; in practice exact:
    np.testing.assert_array_equal(seen, intended)
    np.testing.assert_array_equal(got["seen_again"], seen)  # dither="trial": noise fixed within the trial
    # the mapping itself: undithered levels of the same values are within one level
    assert np.abs(intended - map_values(got["values"], p).levels).max() <= 1
    assert int(got["clipped"]) == int(((got["values"] < 0) | (got["values"] > 1)).sum()) > 0
    # outside the image: the background, Lmean
    frame = got["frame"][..., 0]
    r, c = top_left((400, 300), (23, 37))
    assert np.all(frame[: r] == background_level(p)) and np.all(frame[:, c + 23:] == background_level(p))
    np.testing.assert_allclose(got["size_deg"], (23 / p.ppd, 37 / p.ppd))


@pytest.mark.display
def test_mean_of_dithered_frames_reproduces_a_sub_level_step(xvfb, tmp_path):
    p = make_profile()
    v0, step_value = 0.3, 0.0015
    target = continuous_levels(np.array([[v0, v0 + step_value]]), level_table(p))[0][0]
    assert 0.2 < target[1] - target[0] < 0.5  # a step well below one output level
    got = probe(xvfb, tmp_path, "dither", p, f"v0={v0}", f"step={step_value}", "frames=40")
    mean = got["mean_frame"]
    left, right = mean[:, :32].mean(), mean[:, 32:].mean()
    assert abs(left - target[0]) < 0.1 and abs(right - target[1]) < 0.1
    assert abs((right - left) - (target[1] - target[0])) < 0.1
    assert int(got["distinct_frame"]) == 40 and int(got["distinct_off"]) == 1  # fresh noise every frame
    off = got["mean_off"]
    assert abs((off[:, 32:].mean() - off[:, :32].mean()) - (target[1] - target[0])) > 0.1  # rounding loses it


@pytest.mark.display
def test_ten_bit_window_reads_back_1024_levels(xvfb_factory, tmp_path):
    screen = xvfb_factory(800, 600, 30)
    p = make_profile(bits=10, gamma=1.0)
    got = probe(screen, tmp_path, "ramp", p)
    assert int(got["red_bits"]) == 10
    assert len(np.unique(got["seen"])) == 1024
    np.testing.assert_array_equal(got["seen"], got["intended"])


@pytest.mark.display
def test_window_refusals_name_both_values(xvfb, tmp_path):
    for p in (make_profile(resolution=(1920, 1080), name="big"), make_profile(), make_profile(bits=10, name="deep")):
        save_profile(p, tmp_path)
    got = probe(xvfb, tmp_path, "refusals", make_profile())
    # a profile whose resolution is not the screen's: refused, naming both; a pilot window opens and
    # reports it, and (not simulated) the measured refresh too
    assert got["big"].item().startswith("DisplayError: monitor 'big': screen is 800x600 px but the profile says 1920x1080")
    assert "screen is 800x600" in got["big_pilot"].item()
    # a simulated observer sees the arrays, not the screen: the mismatch is recorded, not refused (issue 24.1)
    assert got["big_simulated"].item().startswith("screen is 800x600 px but the profile says 1920x1080")
    assert "Hz but the profile says 60 Hz" in got["big_pilot"].item() or "could not be measured" in got["big_pilot"].item()
    # a real session needs the identity gamma ramp; Xvfb has no gamma-ramp extension
    assert "could not set the hardware gamma ramp to identity" in got["g"].item() and "--pilot" in got["g"].item()
    # a 10-bit profile on a 24-bit screen
    assert "the screen offers no 10-bit frame buffer" in got["deep"].item()


@pytest.mark.display
def test_cli_check_draws_ramp_and_patches(xvfb, tmp_path):
    p = make_profile()
    save_profile(p, tmp_path)
    png = tmp_path / "check.png"
    res = run_python(xvfb, "-m", "eigdist", "calibrate", "--monitors", str(tmp_path), "check", "g",
                     "--window", "400x300", "--frames", "2", "--save", str(png))
    assert res.returncode == 0, res.stderr[-2000:]
    assert "patch value 0.50: 50.25 cd/m2" in res.stdout
    from PIL import Image

    frame = np.asarray(Image.open(png))[..., 0].astype(int)
    expected = continuous_levels(np.linspace(0, 1, 320)[None], level_table(p))[0][0]
    assert np.all(np.abs(frame[300 // 8 + 5, 40:360] - expected) < 1)  # dithered ramp: within one level
    assert frame[0, 0] == background_level(p)


# ---------------------------------------------------------------- colour and size on a virtual screen


@pytest.mark.display
def test_colour_frame_reads_back_each_guns_intended_level(xvfb, tmp_path):
    p = make_profile(guns=True)
    got = probe(xvfb, tmp_path, "colour", p)
    seen, intended = got["seen"], got["intended"]
    assert seen.shape == intended.shape == (24, 31, 3)
    np.testing.assert_array_equal(seen, intended)  # every gun, every pixel, exactly
    # closed form (gammas 1.9, 2.2, 2.5): the rounded inverse, except where the piecewise-linear table and the
    # power function round to neighbouring levels (a value within 0.01 level of a half level)
    closed = gun_levels(got["values"])
    assert np.abs(intended - closed).max() <= 1 and np.mean(intended == closed) > 0.999
    assert [seen[0, :, g].min() for g in range(3)] == [0, 0, 0] and [seen[0, :, g].max() for g in range(3)] == [255] * 3


@pytest.mark.display
def test_mean_of_dithered_colour_frames_reproduces_a_sub_level_step_per_gun(xvfb, tmp_path):
    p = make_profile(guns=True)
    start = (100.2, 140.6, 60.4)
    got = probe(xvfb, tmp_path, "colour_dither", p, "levels=" + ",".join(map(str, start)), "step=0.3", "frames=40")
    mean = got["mean"]
    for g in range(3):
        left, right = mean[:, :32, g].mean(), mean[:, 32:, g].mean()
        assert abs(left - start[g]) < 0.1 and abs(right - (start[g] + 0.3)) < 0.1, (g, left, right)
        assert abs((right - left) - 0.3) < 0.1
    assert int(got["distinct"]) == 40


@pytest.mark.display
def test_magnified_stimulus_is_pixel_replicated_at_the_size_asked_in_degrees(xvfb, tmp_path):
    p = make_profile(guns=True)  # 800 px over 40 cm at 57 cm: 19.90 px/deg
    got = probe(xvfb, tmp_path, "magnify", p, "stimulus_deg=3.2")
    k, seen = int(got["k"]), got["seen"]
    assert k == 4 and seen.shape == (64, 64, 3)
    blocks = seen.reshape(16, k, 16, k, 3)
    assert np.all(blocks == blocks[:, :1, :, :1])  # every k×k block equal
    np.testing.assert_array_equal(blocks[:, 0, :, 0], got["intended"])  # and equal to the dithered stimulus pixel
    # its measured size on the frame: the columns and rows that are not background
    frame = got["frame"]
    differs = np.any(frame != frame[0, 0], axis=2)
    cols, rows = np.flatnonzero(differs.any(axis=0)), np.flatnonzero(differs.any(axis=1))
    width_px, height_px = cols[-1] - cols[0] + 1, rows[-1] - rows[0] + 1
    assert (width_px, height_px) == (64, 64)
    measured = width_px / p.ppd
    assert abs(measured - 3.2) <= 0.05 * 3.2 and measured == pytest.approx(float(got["achieved"]))
    np.testing.assert_allclose(got["size_deg"], (measured, measured))


def test_unreachable_sizes_are_refused_with_the_nearest_reachable_ones():
    p = make_profile()
    assert choose_magnification((16, 16), p, (800, 600), stimulus_deg=3.2) == (4, pytest.approx(64 / p.ppd))
    assert choose_magnification((16, 16), p, (800, 600), magnification=3)[0] == 3
    assert choose_magnification((16, 16), p, (800, 600))[0] == 1
    with pytest.raises(DisplayError, match=r"display.stimulus_deg = 1.2° needs a magnification of 1.49 for a 16-px "
                                           r"image at 19.90 px/deg .* reaches 0.804° \(x1\), 1.608° \(x2\), not "
                                           r"within display.size_tolerance = 0.05"):
        choose_magnification((16, 16), p, (800, 600), stimulus_deg=1.2)
    with pytest.raises(DisplayError, match=r"magnified x40 is 640x640 px, larger than the 800x600 window"):
        choose_magnification((16, 16), p, (800, 600), magnification=40)


@pytest.mark.display
def test_cli_check_on_a_mismatching_screen_is_a_clean_exit_2(xvfb, tmp_path):
    """Issue 24.3: the same DisplayError path as ``eigdist run`` (one line, exit 2, no traceback)."""
    save_profile(make_profile(resolution=(1920, 1080), name="big"), tmp_path)
    res = run_python(xvfb, "-m", "eigdist", "calibrate", "--monitors", str(tmp_path), "check", "big",
                     "--window", "400x300", "--frames", "1")
    assert res.returncode == 2, res.stderr[-2000:]
    assert res.stderr.strip().splitlines()[-1].startswith(
        "eigdist calibrate: error: monitor 'big': screen is 800x600 px but the profile says 1920x1080")
    assert "Traceback" not in res.stderr


@pytest.mark.display
def test_cli_check_shows_one_guns_patches(xvfb, tmp_path):
    p = make_profile(guns=True)
    save_profile(p, tmp_path)
    png = tmp_path / "check_g.png"
    res = run_python(xvfb, "-m", "eigdist", "calibrate", "--monitors", str(tmp_path), "check", "g", "--gun", "g",
                     "--window", "400x300", "--frames", "1", "--save", str(png))
    assert res.returncode == 0, res.stderr[-2000:]
    assert "g patch value 1.00: 60.00 cd/m2" in res.stdout  # the green gun's peak
    from PIL import Image

    frame = np.asarray(Image.open(png)).astype(int)
    assert frame[..., 0].max() == 0 and frame[..., 2].max() == 0 and frame[..., 1].max() == 255
    save_profile(make_profile(name="grey"), tmp_path)
    res = run_python(xvfb, "-m", "eigdist", "calibrate", "--monitors", str(tmp_path), "check", "grey", "--gun", "r",
                     "--window", "400x300", "--frames", "1")
    assert res.returncode == 2 and "field 'guns' is missing (no per-gun calibration)" in res.stderr


@pytest.mark.display
def test_ten_bit_colour_frame_reads_back_each_guns_level(xvfb_factory, tmp_path):
    screen = xvfb_factory(800, 600, 30)
    p = make_profile(bits=10, guns=True)
    got = probe(screen, tmp_path, "colour", p)
    assert int(got["red_bits"]) == 10
    np.testing.assert_array_equal(got["seen"], got["intended"])
    closed = gun_levels(got["values"], bits=10)
    assert np.abs(got["intended"] - closed).max() <= 1 and got["seen"].max() == 1023
