"""Monitor profiles: fit, LUT, files, expiry and the errors that name the field (no window)."""

from __future__ import annotations

import json
import math
from dataclasses import replace
from datetime import timedelta
from pathlib import Path

import numpy as np
import pytest

from eigdist.cli.main import main as eigdist
from experiments.monitor import (
    ProfileError, calibrated, check_calibrated, fit_calibration, gamma_curve, load_profile, monitors_dir,
    new_profile, parse_resolution, pixels_per_degree, profile_from_dict, profile_to_dict, read_readings,
    save_profile, utc_now,
)


def synthetic_readings(bits: int = 8, n: int = 18, lum0: float = 0.4, lum1: float = 120.0, gamma: float = 2.4,
                       noise: float = 0.0, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    top = 2**bits - 1
    levels = np.unique(np.r_[np.rint(np.linspace(0, top, n)), top])
    lum = gamma_curve(levels / top, lum0, lum1, gamma)
    return levels, lum + np.random.default_rng(seed).normal(0.0, noise, lum.shape)


def profile(bits: int = 8, **cal_kw) -> "object":
    base = new_profile("test", width_cm=53.0, distance_cm=57.0, resolution=(1920, 1080), refresh_hz=60.0, bits=bits)
    return calibrated(base, fit_calibration(*synthetic_readings(bits), bits, **cal_kw))


@pytest.mark.parametrize("gamma", [1.8, 2.2, 2.6])
def test_fit_recovers_known_gamma(gamma):
    cal = fit_calibration(*synthetic_readings(gamma=gamma), 8)
    assert cal.gamma["gamma"] == pytest.approx(gamma, rel=1e-6)
    assert cal.gamma["lum0"] == pytest.approx(0.4, rel=1e-6)
    assert cal.gamma["lum1"] == pytest.approx(120.0, rel=1e-6)


def test_fit_with_photometer_noise_is_close_and_lut_is_monotone():
    levels, lum = synthetic_readings(noise=0.3, n=24, seed=5)
    cal = fit_calibration(levels, lum, 8)
    assert cal.gamma["gamma"] == pytest.approx(2.4, abs=0.05)
    lut = np.asarray(cal.lut)
    assert lut.size == 256 and np.all(np.diff(lut) >= 0)
    truth = gamma_curve(np.arange(256) / 255, 0.4, 120.0, 2.4)
    assert np.max(np.abs(lut - truth)) < 1.5  # 5 noise SDs


def test_lut_interpolates_the_readings_exactly_when_they_are_monotone():
    levels, lum = synthetic_readings(n=12, gamma=2.0)
    cal = fit_calibration(levels, lum, 8)
    np.testing.assert_allclose(np.asarray(cal.lut)[levels.astype(int)], lum, rtol=1e-12)
    assert cal.lum_min == pytest.approx(lum[0]) and cal.lum_max == pytest.approx(lum[-1])
    # Lmean is a level's exact luminance, nearest to the midpoint: the undithered background is exact
    assert cal.lum_mean in cal.lut
    assert abs(cal.lum_mean - (lum[0] + lum[-1]) / 2) < max(np.diff(cal.lut))


def test_repeated_levels_are_averaged():
    levels, lum = synthetic_readings(n=10)
    cal = fit_calibration(np.r_[levels, levels], np.r_[lum + 0.3, lum - 0.3], 8)
    np.testing.assert_allclose(np.asarray(cal.lut)[levels.astype(int)], lum, rtol=1e-9)


def test_ten_bit_fit_has_1024_levels():
    cal = fit_calibration(*synthetic_readings(bits=10), 10)
    assert len(cal.lut) == 1024 and cal.gamma["gamma"] == pytest.approx(2.4, rel=1e-6)


@pytest.mark.parametrize(
    "levels, lum, message",
    [
        ([0, 64, 128, 255], [1, 2, 3, 4], "at least 5 distinct levels including 0 and 255"),
        ([10, 64, 128, 200, 255], [1, 2, 3, 4, 5], "including 0 and 255"),
        ([0, 64, 128, 200, 300], [1, 2, 3, 4, 5], "level must lie in 0..255"),
        ([0, 64, 128, 200, 255], [5, 4, 3, 2, 1], "luminance must rise with level"),
        ([0, 64, 128, 200, 255], [1, 2, float("nan"), 4, 5], "finite"),
        ([0, 64, 128, 200, 255], [1, 2, -3, 4, 5], ">= 0"),
    ],
)
def test_bad_readings_are_refused(levels, lum, message):
    with pytest.raises(ValueError, match=message):
        fit_calibration(levels, lum, 8)


def test_read_readings_names_missing_column_and_bad_line():
    with pytest.raises(ValueError, match="column 'luminance_cd_m2' is missing"):
        read_readings([{"level": "0", "lum": "1"}])
    with pytest.raises(ValueError, match="line 3"):
        read_readings([{"level": "0", "luminance_cd_m2": "1"}, {"level": "x", "luminance_cd_m2": "2"}])


def test_ppd_closed_form_and_psychopy_agree():
    # 1° at 57 cm spans 2·57·tan(0.5°) = 0.99486 cm; 1920 px over 53 cm → 36.224 px/cm
    assert pixels_per_degree(53.0, 1920, 57.0) == pytest.approx(2 * 57 * math.tan(math.radians(0.5)) * 1920 / 53)
    from psychopy.tools.monitorunittools import deg2pix

    class Mon:  # what deg2pix reads of a psychopy Monitor
        def getWidth(self):
            return 53.0

        def getDistance(self):
            return 57.0

        def getSizePix(self):
            return [1920, 1080]

    assert deg2pix(1.0, Mon()) == pytest.approx(pixels_per_degree(53.0, 1920, 57.0), rel=1e-4)


def test_profile_round_trips_through_json(tmp_path):
    p = profile()
    path = save_profile(p, tmp_path)
    assert path == tmp_path / "test.json"
    assert json.loads(path.read_text())["format"] == "eigdist-monitor/1"
    assert load_profile("test", tmp_path) == p


def test_profile_name_must_match_its_file(tmp_path):
    save_profile(profile(), tmp_path)
    (tmp_path / "test.json").rename(tmp_path / "other.json")
    with pytest.raises(ProfileError, match="field 'name' is 'test' but the file is named for 'other'"):
        load_profile("other", tmp_path)


def test_monitors_dir_precedence(monkeypatch, tmp_path):
    monkeypatch.setenv("EIGDIST_MONITORS", str(tmp_path / "env"))
    assert monitors_dir(tmp_path / "arg") == tmp_path / "arg"
    assert monitors_dir() == tmp_path / "env"
    monkeypatch.delenv("EIGDIST_MONITORS")
    monkeypatch.setenv("XDG_DATA_HOME", str(tmp_path / "xdg"))  # platformdirs' user data folder on Linux
    assert monitors_dir() == tmp_path / "xdg" / "eigdist" / "monitors"


def test_profiles_are_saved_per_user_never_into_the_package(monkeypatch, tmp_path):
    import experiments

    monkeypatch.delenv("EIGDIST_MONITORS", raising=False)
    monkeypatch.setenv("XDG_DATA_HOME", str(tmp_path / "xdg"))
    package = Path(experiments.__file__).parent
    before = sorted(package.rglob("*.json"))
    path = save_profile(profile(), None)
    assert path == tmp_path / "xdg" / "eigdist" / "monitors" / "test.json"
    assert load_profile("test").name == "test" and sorted(package.rglob("*.json")) == before


def test_shipped_example_is_read_from_any_folder_but_a_lab_profile_comes_first(tmp_path):
    assert load_profile("example", tmp_path).name == "example"  # the folder holds no example: the shipped one
    lab = replace(load_profile("example", tmp_path), notes="ours")
    save_profile(lab, tmp_path)
    assert load_profile("example", tmp_path).notes == "ours"


def test_missing_profile_names_folder_and_alternatives(tmp_path):
    save_profile(profile(), tmp_path)
    with pytest.raises(FileNotFoundError, match=r"no monitor profile 'lab2'.*profiles there: test"):
        load_profile("lab2", tmp_path)


def test_missing_calibration_names_the_field():
    p = new_profile("bare", width_cm=50, distance_cm=60, resolution=(800, 600), refresh_hz=60)
    with pytest.raises(ProfileError, match="field 'calibration' is missing"):
        check_calibrated(p)


def test_expired_calibration_names_the_field_and_the_age():
    p = profile()
    now = utc_now()
    assert check_calibrated(p, now=now + timedelta(days=29)) is p.calibration
    with pytest.raises(ProfileError, match=r"'calibration.date' .* 30 days old; calibrations expire after 30 days"):
        check_calibrated(p, now=now + timedelta(days=30, minutes=1))
    with pytest.raises(ProfileError, match="expire after 7 days"):
        check_calibrated(p, now=now + timedelta(days=8), expiry_days=7)
    with pytest.raises(ProfileError, match="lies in the future"):
        check_calibrated(p, now=now - timedelta(days=1))


@pytest.mark.parametrize(
    "path, value, message",
    [
        (("calibration", "lum_max"), None, "calibration: field 'lum_max' is missing"),
        (("calibration", "date"), None, "calibration: field 'date' is missing"),
        (("calibration", "date"), "yesterday", "'calibration.date' must be an ISO 8601 date"),
        (("calibration", "gamma", "gamma"), None, "calibration.gamma: field 'gamma' is missing"),
        (("calibration", "lut"), [1.0, 2.0], "field 'lut' must hold 256"),
        (("calibration", "curve"), "spline", "field 'curve' must be one of"),
        (("calibration", "levels"), ["a", 1], "field 'levels' must be a list of numbers"),
        (("width_cm",), None, "field 'width_cm' is missing"),
        (("width_cm",), -3, "field 'width_cm' must be a positive number, got -3"),
        (("resolution",), [1920], "field 'resolution' must be two positive integers"),
        (("resolution",), "1920x1080", "field 'resolution' must be two positive integers"),
        (("bits",), 12, "field 'bits' must be one of"),
        (("format",), "psychoMonitor", "field 'format' must be"),
    ],
)
def test_incomplete_or_bad_profile_names_the_field(path, value, message):
    data = profile_to_dict(profile())
    node = data
    for key in path[:-1]:
        node = node[key]
    if value is None:
        del node[path[-1]]
    else:
        node[path[-1]] = value
    with pytest.raises(ProfileError, match=message):
        profile_from_dict(data)


def test_bad_name_and_resolution():
    with pytest.raises(ProfileError, match="monitor name must match"):
        new_profile("lab/1", width_cm=50, distance_cm=60, resolution=(800, 600), refresh_hz=60)
    with pytest.raises(ValueError, match="resolution must be WxH in pixels, e.g. 1920x1080, got '1920'"):
        parse_resolution("1920")
    assert parse_resolution("1920x1080") == (1920, 1080)


def test_cli_new_fit_show(tmp_path, capsys):
    mon = str(tmp_path / "mon")
    new = ["calibrate", "--monitors", mon, "new", "lab1", "--width-cm", "53", "--distance-cm", "57",
           "--resolution", "1920x1080", "--refresh", "120"]
    assert eigdist(new) == 0
    assert eigdist(new) == 2
    assert "exists; use --force" in capsys.readouterr().err
    levels, lum = synthetic_readings(gamma=2.1)
    csv = tmp_path / "readings.csv"
    csv.write_text("level,luminance_cd_m2\n" + "".join(f"{a:g},{b:.6f}\n" for a, b in zip(levels, lum)))
    assert eigdist(["calibrate", "--monitors", mon, "fit", str(csv), "--monitor", "lab1"]) == 0
    assert "x^2.100" in capsys.readouterr().out
    p = load_profile("lab1", mon)
    assert p.refresh_hz == 120 and check_calibrated(p).source.endswith(csv.name + " sha256:" + p.calibration.source[-64:])
    out = tmp_path / "cal.png"
    assert eigdist(["calibrate", "--monitors", mon, "show", "lab1", "--out", str(out)]) == 0
    assert out.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_cli_fit_errors_name_the_problem(tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("EIGDIST_MONITORS", str(tmp_path))
    csv = tmp_path / "r.csv"
    csv.write_text("level,lum\n0,1\n")
    assert eigdist(["calibrate", "fit", str(csv), "--monitor", "nope"]) == 2
    assert "no monitor profile 'nope'" in capsys.readouterr().err
    assert eigdist(["calibrate", "new", "m", "--width-cm", "50", "--distance-cm", "60", "--resolution", "800x600",
                    "--refresh", "60"]) == 0
    assert eigdist(["calibrate", "fit", str(csv), "--monitor", "m"]) == 2
    assert "column 'luminance_cd_m2' is missing" in capsys.readouterr().err
    assert eigdist(["calibrate", "show", "m"]) == 2
    assert "has no calibration yet" in capsys.readouterr().err
    assert eigdist(["calibrate", "check", "m"]) == 2
    assert "field 'calibration' is missing" in capsys.readouterr().err


def test_shipped_example_profile_is_uncalibrated_and_refused(monkeypatch):
    monkeypatch.delenv("EIGDIST_MONITORS", raising=False)
    example = load_profile("example")
    assert "EXAMPLE" in example.notes and example.ppd == pytest.approx(35.97, abs=0.01)
    with pytest.raises(ProfileError, match="field 'calibration' is missing"):
        check_calibrated(example)
